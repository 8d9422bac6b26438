//! ClientCredentials against a small token endpoint: the shape of each kind
//! of request, discovery, and how answers become tokens or errors.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use connector_client::{
    CachedTokenSource, ClientAuth, ClientCredentials, ClientSecret, ConfigError, DiscoveryProblem, Endpoint,
    Error, PrivateKeyJwt, ResponseProblem, TokenSource, TransportErrorKind,
};
use oidc_core::jws::UnverifiedJws;
use oidc_core::keys::{LocalSigner, Signer};
use oidc_core::Algorithm;

use crate::support::serve;

/// What the token endpoint received.
#[derive(Debug, Clone, Default)]
pub(crate) struct Seen {
    pub(crate) authorization: Option<String>,
    pub(crate) accept: Option<String>,
    pub(crate) content_type: Option<String>,
    pub(crate) form: BTreeMap<String, String>,
}

/// Status, extra headers and body of an answer.
type Answer = (StatusCode, Vec<(String, String)>, String);

/// A token endpoint (and discovery) that records each request and answers
/// as the test says; shared with `token_exchange`.
#[derive(Clone)]
pub(crate) struct TokenServer {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// What every token request is answered with.
    answer: Arc<Mutex<Answer>>,
    /// The discovery document, or `None` for 404.
    openid: Arc<Mutex<Option<serde_json::Value>>>,
    oauth: Arc<Mutex<Option<serde_json::Value>>>,
}

impl TokenServer {
    pub(crate) fn new() -> Self {
        Self {
            seen: Arc::default(),
            answer: Arc::new(Mutex::new((
                StatusCode::OK,
                vec![],
                r#"{"access_token":"eyJ.header.sig","token_type":"Bearer","expires_in":300,"scope":"poll"}"#
                    .into(),
            ))),
            openid: Arc::default(),
            oauth: Arc::default(),
        }
    }

    pub(crate) fn answer(&self, status: u16, headers: &[(&str, &str)], body: &str) {
        *self.answer.lock().unwrap() = (
            StatusCode::from_u16(status).unwrap(),
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body.into(),
        );
    }

    pub(crate) fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().expect("no request")
    }

    pub(crate) fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub(crate) fn discovery(&self, document: serde_json::Value) {
        *self.openid.lock().unwrap() = Some(document);
    }

    pub(crate) async fn start(&self) -> String {
        let addr = serve(
            Router::new()
                .route("/token", post(token))
                .route("/.well-known/openid-configuration", get(openid))
                .route("/.well-known/oauth-authorization-server", get(oauth))
                .with_state(self.clone()),
        )
        .await;
        format!("http://{addr}")
    }
}

async fn token(State(server): State<TokenServer>, headers: HeaderMap, body: String) -> Response {
    let header = |name| {
        headers
            .get(name)
            .map(|v: &header::HeaderValue| v.to_str().unwrap().to_owned())
    };
    server.seen.lock().unwrap().push(Seen {
        authorization: header(header::AUTHORIZATION),
        accept: header(header::ACCEPT),
        content_type: header(header::CONTENT_TYPE),
        form: url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect(),
    });
    let (status, extra, body) = server.answer.lock().unwrap().clone();
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    for (name, value) in extra {
        response.headers_mut().insert(
            header::HeaderName::try_from(name).unwrap(),
            value.parse().unwrap(),
        );
    }
    response
}

async fn openid(State(server): State<TokenServer>) -> Response {
    document(server.openid.lock().unwrap().clone())
}

async fn oauth(State(server): State<TokenServer>) -> Response {
    document(server.oauth.lock().unwrap().clone())
}

fn document(doc: Option<serde_json::Value>) -> Response {
    match doc {
        Some(doc) => axum::Json(doc).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn basic(secret: &str) -> ClientAuth {
    ClientAuth::ClientSecretBasic(ClientSecret::new(secret))
}

fn client(base: &str, client_id: &str, auth: ClientAuth) -> connector_client::ClientCredentialsBuilder {
    ClientCredentials::builder(Endpoint::TokenUrl(format!("{base}/token")), client_id, auth)
}

#[tokio::test]
async fn client_secret_basic_request_shape() {
    let server = TokenServer::new();
    let base = server.start().await;
    let source = client(&base, "connector 1", basic("s:e/c+r t"))
        .audience("https://control.example.com")
        .scope("poll report")
        .build()
        .unwrap();
    let token = source.token().await.unwrap();
    assert_eq!(token.secret().as_str(), "eyJ.header.sig");
    assert_eq!(token.expires_in(), Duration::from_secs(300));
    assert_eq!(token.scope(), Some("poll"));

    let seen = server.last();
    // RFC 6749 §2.3.1: id and secret are form-encoded, then Basic-encoded.
    let expected = base64::engine::general_purpose::STANDARD.encode("connector+1:s%3Ae%2Fc%2Br+t");
    assert_eq!(seen.authorization, Some(format!("Basic {expected}")));
    assert_eq!(seen.accept.as_deref(), Some("application/json"));
    assert_eq!(
        seen.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    let form: Vec<_> = seen.form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        form,
        [
            ("audience", "https://control.example.com"),
            ("grant_type", "client_credentials"),
            ("scope", "poll report"),
        ]
    );
}

#[tokio::test]
async fn client_secret_post_request_shape() {
    let server = TokenServer::new();
    let base = server.start().await;
    let source = client(
        &base,
        "connector-1",
        ClientAuth::ClientSecretPost(ClientSecret::new("s3cr3t")),
    )
    .resource("https://control.example.com/")
    .build()
    .unwrap();
    source.token().await.unwrap();
    let seen = server.last();
    assert_eq!(seen.authorization, None);
    let form: Vec<_> = seen.form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        form,
        [
            ("client_id", "connector-1"),
            ("client_secret", "s3cr3t"),
            ("grant_type", "client_credentials"),
            ("resource", "https://control.example.com/"),
        ]
    );
}

/// Checks a client assertion and returns its claims.
fn check_assertion(seen: &Seen, signer: &LocalSigner) -> serde_json::Value {
    assert_eq!(seen.authorization, None);
    assert_eq!(
        seen.form["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    assert!(!seen.form.contains_key("client_secret"));
    let jws = UnverifiedJws::decode(&seen.form["client_assertion"], 8192).unwrap();
    assert_eq!(jws.header().typ.as_deref(), Some("client-authentication+jwt"));
    assert_eq!(jws.header().kid.as_deref(), Some(signer.kid()));
    assert_eq!(jws.header().alg, Algorithm::ES256);
    let payload = jws.verify(signer.verifying_key()).unwrap();
    serde_json::from_slice(&payload).unwrap()
}

#[tokio::test]
async fn private_key_jwt_signs_a_fresh_short_assertion() {
    let server = TokenServer::new();
    let base = server.start().await;
    let (signer, pem) = LocalSigner::generate(Algorithm::ES256).unwrap();
    let auth = ClientAuth::PrivateKeyJwt(PrivateKeyJwt::from_pem(pem.as_str()).unwrap());
    let source = client(&base, "connector-1", auth).build().unwrap();

    source.token().await.unwrap();
    let first = check_assertion(&server.last(), &signer);
    assert_eq!(first["iss"], "connector-1");
    assert_eq!(first["sub"], "connector-1");
    // Given the token URL, the audience is its origin (the issuer of a server at the root).
    assert_eq!(first["aud"], base);
    assert_eq!(
        first["exp"].as_u64().unwrap() - first["iat"].as_u64().unwrap(),
        60
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(first["iat"].as_u64().unwrap().abs_diff(now) <= 5);
    assert_eq!(first["jti"].as_str().unwrap().len(), 22);

    source.token().await.unwrap();
    let second = check_assertion(&server.last(), &signer);
    assert_ne!(first["jti"], second["jti"], "jti reused");
}

#[tokio::test]
async fn private_key_jwt_audience_is_the_discovered_issuer_or_as_configured() {
    let server = TokenServer::new();
    let base = server.start().await;
    let issuer = format!("{base}/");
    *server.openid.lock().unwrap() =
        Some(serde_json::json!({"issuer": issuer, "token_endpoint": format!("{base}/token")}));
    let (signer, pem) = LocalSigner::generate(Algorithm::ES256).unwrap();
    let key = PrivateKeyJwt::from_pem(pem.as_str()).unwrap();

    let source = ClientCredentials::builder(
        Endpoint::Issuer(issuer.clone()),
        "connector-1",
        ClientAuth::PrivateKeyJwt(key.clone()),
    )
    .build()
    .unwrap();
    source.token().await.unwrap();
    assert_eq!(check_assertion(&server.last(), &signer)["aud"], issuer);

    let source = client(&base, "connector-1", ClientAuth::PrivateKeyJwt(key))
        .assertion_audience("https://tokens.example.com")
        .build()
        .unwrap();
    source.token().await.unwrap();
    assert_eq!(
        check_assertion(&server.last(), &signer)["aud"],
        "https://tokens.example.com"
    );
}

#[tokio::test]
async fn discovery_finds_the_token_endpoint_and_checks_the_issuer() {
    let server = TokenServer::new();
    let base = server.start().await;
    let doc = |issuer: &str| serde_json::json!({"issuer": issuer, "token_endpoint": format!("{base}/token")});
    let source = |issuer: &str| {
        ClientCredentials::builder(Endpoint::Issuer(issuer.into()), "c", basic("s"))
            .build()
            .unwrap()
    };

    // Neither document: 404.
    let error = source(&base).token().await.unwrap_err();
    assert!(
        matches!(&error, Error::Discovery(e) if *e.problem() == DiscoveryProblem::Status(404)),
        "{error:?}"
    );

    // RFC 8414 only: found through the fallback.
    *server.oauth.lock().unwrap() = Some(doc(&base));
    let found = source(&base);
    assert_eq!(
        found.token_endpoint().await.unwrap().as_str(),
        format!("{base}/token")
    );
    found.token().await.unwrap();

    // OpenID document naming another issuer: refused, even if only a slash differs.
    *server.openid.lock().unwrap() = Some(doc(&format!("{base}/")));
    let error = source(&base).token().await.unwrap_err();
    assert!(
        matches!(&error, Error::Discovery(e) if matches!(e.problem(), DiscoveryProblem::IssuerMismatch { .. })),
        "{error:?}"
    );
    assert!(error.to_string().contains("must match byte for byte"), "{error}");

    // A plain-http token endpoint on a remote host is refused.
    *server.openid.lock().unwrap() =
        Some(serde_json::json!({"issuer": base, "token_endpoint": "http://tokens.example.com/token"}));
    let error = source(&base).token().await.unwrap_err();
    assert!(
        matches!(&error, Error::Discovery(e) if matches!(e.problem(), DiscoveryProblem::BadTokenEndpoint(_))),
        "{error:?}"
    );
}

#[tokio::test]
async fn endpoint_errors_carry_code_description_and_retry_after() {
    let server = TokenServer::new();
    let base = server.start().await;
    let source = client(&base, "connector-1", basic("wrong")).build().unwrap();

    server.answer(
        401,
        &[("www-authenticate", "Basic")],
        r#"{"error":"invalid_client","error_description":"client authentication failed"}"#,
    );
    let error = source.token().await.unwrap_err();
    let Error::Endpoint(e) = &error else {
        panic!("{error:?}")
    };
    assert_eq!((e.status(), e.oauth_error()), (401, Some("invalid_client")));
    assert!(!error.is_retryable());
    assert_eq!(
        error.to_string(),
        format!(
            "token endpoint {base}/token answered 401 invalid_client: client authentication failed \
             (check the client id and its secret or key)"
        )
    );

    server.answer(
        503,
        &[("retry-after", "7")],
        r#"{"error":"temporarily_unavailable"}"#,
    );
    let error = source.token().await.unwrap_err();
    assert!(error.is_retryable());
    assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));

    server.answer(429, &[("retry-after", "Fri, 31 Dec 2100 23:59:59 GMT")], "");
    let error = source.token().await.unwrap_err();
    assert!(error.is_retryable());
    assert!(error.retry_after().unwrap() > Duration::from_secs(365 * 86_400));

    server.answer(502, &[], "<html>bad gateway</html>");
    let error = source.token().await.unwrap_err();
    assert!(matches!(&error, Error::Endpoint(e) if e.status() == 502 && e.oauth_error().is_none()));
    assert!(error.is_retryable());

    server.answer(
        200,
        &[],
        r#"{"access_token":"a","token_type":"N_A","expires_in":60}"#,
    );
    let error = source.token().await.unwrap_err();
    assert!(
        matches!(&error, Error::InvalidResponse(e) if *e.problem() == ResponseProblem::TokenType("N_A".into())),
        "{error:?}"
    );

    let huge = format!(r#"{{"pad":"{}"}}"#, "x".repeat(100 * 1024));
    server.answer(200, &[], &huge);
    let error = source.token().await.unwrap_err();
    assert!(
        matches!(&error, Error::Transport(e) if e.kind() == TransportErrorKind::TooLarge),
        "{error:?}"
    );
}

#[tokio::test]
async fn retry_after_reaches_the_cache() {
    let server = TokenServer::new();
    let base = server.start().await;
    server.answer(
        503,
        &[("retry-after", "40")],
        r#"{"error":"temporarily_unavailable"}"#,
    );
    let source = client(&base, "connector-1", basic("s")).build().unwrap();
    let cache = CachedTokenSource::new(source).unwrap();
    let error = cache.token().await.unwrap_err();
    let status = cache.status();
    assert_eq!(status.failures, 1);
    let wait = status.retry_at.unwrap() - std::time::Instant::now();
    assert!(
        wait > Duration::from_secs(35) && wait <= Duration::from_secs(40),
        "{wait:?}"
    );
    assert!(error.to_string().contains("retry after 40 s"), "{error}");
    assert_eq!(server.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn unreachable_endpoint_is_a_retryable_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let source = client(&format!("http://{addr}"), "c", basic("s"))
        .build()
        .unwrap();
    let error = source.token().await.unwrap_err();
    assert!(
        matches!(&error, Error::Transport(e) if e.kind() == TransportErrorKind::Connect),
        "{error:?}"
    );
    assert!(error.is_retryable());
    assert!(
        error
            .to_string()
            .starts_with(&format!("cannot connect to http://{addr}/token: ")),
        "{error}"
    );
}

#[test]
fn configuration_is_checked_at_build() {
    let build = |url: &str, auth| {
        ClientCredentials::builder(Endpoint::TokenUrl(url.into()), "c", auth)
            .build()
            .map(drop)
    };
    assert!(matches!(
        build("http://tokens.example.com/token", basic("s")),
        Err(Error::Config(ConfigError::InsecureUrl { .. }))
    ));
    assert!(matches!(
        build("https://tokens.example.com/token", basic("")),
        Err(Error::Config(ConfigError::Empty("client secret")))
    ));
    assert!(matches!(
        ClientCredentials::builder(
            Endpoint::TokenUrl("https://t.example/token".into()),
            "",
            basic("s")
        )
        .build(),
        Err(Error::Config(ConfigError::Empty("client id")))
    ));
    assert!(matches!(
        PrivateKeyJwt::from_pem("not a key"),
        Err(ConfigError::Key(_))
    ));
    assert!(build("http://tokens.example.com/token", basic("s")).is_err());
    assert!(ClientCredentials::builder(
        Endpoint::TokenUrl("http://tokens.example.com/token".into()),
        "c",
        basic("s")
    )
    .danger_allow_plain_http()
    .build()
    .is_ok());
}

#[test]
fn secrets_never_show_in_debug() {
    let source = ClientCredentials::builder(
        Endpoint::TokenUrl("https://t.example/token".into()),
        "connector-1",
        basic("hunter2-very-secret"),
    )
    .build()
    .unwrap();
    let shown = format!("{source:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("connector-1"), "{shown}");
}
