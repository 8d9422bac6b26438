//! DPoP (RFC 9449) in the client: proofs on token requests, a bearer answer
//! refused, one retry with the token endpoint's nonce; the middleware's
//! `Authorization: DPoP` and proofs checked by oidc-core's verifier, and its
//! one retry with a resource server's nonce.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use connector_client::{
    AccessToken, BearerAuth, ClientAuth, ClientCredentials, ClientSecret, DpopKey, Endpoint, Error,
    ResponseProblem, TokenSource, TokenType,
};
use oidc_core::dpop::{DpopNonces, DpopVerifier, ProofTarget};

use crate::support::serve;

/// A server that checks proofs with oidc-core's verifier (nonces on when
/// `nonces` is set) and counts requests.
#[derive(Clone)]
struct Server {
    base: Arc<Mutex<String>>,
    verifier: DpopVerifier,
    requests: Arc<AtomicUsize>,
    /// The token type a token endpoint answers with.
    token_type: &'static str,
    /// The `htm` and `htu` of the proofs seen (decoded), and the nonce.
    seen: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Server {
    fn new(nonces: bool, token_type: &'static str) -> Self {
        let mut verifier = DpopVerifier::builder();
        if nonces {
            verifier = verifier.nonces(DpopNonces::generate(Duration::from_secs(60)).unwrap());
        }
        Self {
            base: Arc::default(),
            verifier: verifier.build().unwrap(),
            requests: Arc::default(),
            token_type,
            seen: Arc::default(),
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    async fn start(self, router: Router<Server>) -> (String, Self) {
        let addr = serve(router.with_state(self.clone())).await;
        let base = format!("http://{addr}");
        *self.base.lock().unwrap() = base.clone();
        (base, self)
    }

    /// Checks the request's proof; the refusal as RFC 9449 says.
    async fn check(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        token: Option<&str>,
    ) -> Result<(), (String, Option<String>)> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let Some(proof) = headers.get("dpop").and_then(|v| v.to_str().ok()) else {
            return Err(("invalid_dpop_proof".into(), None));
        };
        let payload = proof.split('.').nth(1).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&oidc_core::base64url::decode(payload).unwrap()).unwrap();
        self.seen.lock().unwrap().push(claims);
        let url = format!("{}{}", self.base.lock().unwrap(), uri);
        let mut target = ProofTarget::new(method.as_str(), &url);
        if let Some(token) = token {
            target = target.with_access_token(token);
        }
        match self.verifier.verify(proof, &target).await {
            Ok(_) => Ok(()),
            Err(e) => Err((e.error_code().to_owned(), self.verifier.fresh_nonce())),
        }
    }
}

async fn token_endpoint(
    State(server): State<Server>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    match server.check(&method, &uri, &headers, None).await {
        Ok(()) => {
            let n = server.requests();
            let body = serde_json::json!({
                "access_token": format!("at-{n}"),
                "token_type": server.token_type,
                "expires_in": 300,
            });
            let mut response = axum::Json(body).into_response();
            if let Some(nonce) = server.verifier.fresh_nonce() {
                response
                    .headers_mut()
                    .insert("dpop-nonce", nonce.parse().unwrap());
            }
            response
        }
        Err((code, nonce)) => {
            let mut response = (
                StatusCode::BAD_REQUEST,
                axum::Json(serde_json::json!({ "error": code })),
            )
                .into_response();
            if let Some(nonce) = nonce {
                response
                    .headers_mut()
                    .insert("dpop-nonce", nonce.parse().unwrap());
            }
            response
        }
    }
}

async fn actions(State(server): State<Server>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let Some(token) = auth.strip_prefix("DPoP ") else {
        return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "DPoP")]).into_response();
    };
    match server.check(&method, &uri, &headers, Some(token)).await {
        Ok(()) => axum::Json(serde_json::json!({ "actions": [] })).into_response(),
        Err((code, nonce)) => {
            let challenge = format!(r#"DPoP error="{code}", algs="ES256""#);
            let mut response =
                (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, challenge)]).into_response();
            if let Some(nonce) = nonce {
                response
                    .headers_mut()
                    .insert("dpop-nonce", nonce.parse().unwrap());
            }
            response
        }
    }
}

fn source(base: &str, key: &Arc<DpopKey>) -> ClientCredentials {
    ClientCredentials::builder(
        Endpoint::TokenUrl(format!("{base}/token")),
        "c1",
        ClientAuth::ClientSecretPost(ClientSecret::new("s3cr3t")),
    )
    .audience("https://control.example.com")
    .dpop(key.clone())
    .build()
    .unwrap()
}

#[tokio::test]
async fn a_token_request_carries_a_proof_and_retries_once_with_the_nonce() {
    let (base, server) = Server::new(true, "DPoP")
        .start(Router::new().route("/token", post(token_endpoint)))
        .await;
    let key = Arc::new(DpopKey::generate().unwrap());
    let source = source(&base, &key);
    assert!(format!("{source:?}").contains(key.thumbprint()));

    let token = source.token().await.unwrap();
    // The first request had no nonce and was refused; the retry had it.
    assert_eq!(server.requests(), 2);
    assert_eq!(token.token_type(), TokenType::Dpop);
    assert_eq!(token.dpop_key().unwrap().thumbprint(), key.thumbprint());
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen[0]["htm"], "POST");
    assert_eq!(seen[0]["htu"], format!("{base}/token"));
    assert!(seen[0].get("nonce").is_none());
    assert!(seen[0].get("ath").is_none());
    assert!(seen[1]["nonce"].is_string());
    assert_ne!(seen[0]["jti"], seen[1]["jti"]);

    // The nonce is remembered: the next request needs no retry.
    source.token().await.unwrap();
    assert_eq!(server.requests(), 3);
}

#[tokio::test]
async fn a_bearer_answer_to_a_request_with_a_proof_is_refused() {
    let (base, server) = Server::new(false, "Bearer")
        .start(Router::new().route("/token", post(token_endpoint)))
        .await;
    let key = Arc::new(DpopKey::generate().unwrap());
    let error = source(&base, &key).token().await.unwrap_err();
    assert_eq!(server.requests(), 1);
    let Error::InvalidResponse(e) = &error else {
        panic!("{error:?}")
    };
    assert_eq!(e.problem(), &ResponseProblem::NotDpopBound("Bearer".into()));
    assert!(error.to_string().contains("ignored it"), "{error}");
}

#[tokio::test]
async fn an_endless_nonce_demand_is_retried_only_once() {
    // A server that wants a nonce it never accepts: answers use_dpop_nonce
    // with a new nonce every time.
    async fn always(State(count): State<Arc<AtomicUsize>>) -> Response {
        let n = count.fetch_add(1, Ordering::SeqCst);
        let mut response = (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({ "error": "use_dpop_nonce" })),
        )
            .into_response();
        response
            .headers_mut()
            .insert("dpop-nonce", format!("n{n}").parse().unwrap());
        response
    }
    let count = Arc::new(AtomicUsize::new(0));
    let addr = serve(
        Router::new()
            .route("/token", post(always))
            .with_state(count.clone()),
    )
    .await;
    let key = Arc::new(DpopKey::generate().unwrap());
    let error = source(&format!("http://{addr}"), &key).token().await.unwrap_err();
    assert_eq!(count.load(Ordering::SeqCst), 2);
    let Error::Endpoint(e) = &error else {
        panic!("{error:?}")
    };
    assert_eq!(e.oauth_error(), Some("use_dpop_nonce"));
}

/// Hands out one fixed token.
struct Fixed(AccessToken);

#[async_trait]
impl TokenSource for Fixed {
    async fn token(&self) -> Result<AccessToken, Error> {
        Ok(self.0.clone())
    }
}

#[tokio::test]
async fn the_middleware_sends_a_fresh_proof_and_retries_once_with_the_nonce() {
    let (base, server) = Server::new(true, "DPoP")
        .start(Router::new().route("/v1/actions", get(actions).post(actions)))
        .await;
    let key = Arc::new(DpopKey::generate().unwrap());
    let token = AccessToken::new("the-token", Duration::from_secs(300)).with_dpop_key(key.clone());
    let client = reqwest_middleware::ClientBuilder::new(
        connector_client::http_client_builder().unwrap().build().unwrap(),
    )
    .with(BearerAuth::new(Fixed(token)))
    .build();

    let url = format!("{base}/v1/actions?wait=20#frag");
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(server.requests(), 2, "one use_dpop_nonce, one retry");
    let response = client
        .post(format!("{base}/v1/actions"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(server.requests(), 3, "the nonce is remembered");

    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen[1]["htm"], "GET");
    assert_eq!(seen[1]["htu"], format!("{base}/v1/actions"));
    // The verifier checked `ath` against the token it was sent with.
    assert!(seen[1]["ath"].is_string());
    assert_eq!(seen[2]["htm"], "POST");
    assert_eq!(seen[1]["nonce"], seen[2]["nonce"]);
    let jtis: std::collections::HashSet<_> = seen.iter().map(|c| c["jti"].to_string()).collect();
    assert_eq!(jtis.len(), 3, "a fresh proof for every request");
}

#[tokio::test]
async fn a_bearer_token_gets_no_proof() {
    async fn echo(headers: HeaderMap) -> String {
        format!(
            "{}|{}",
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
            headers.contains_key("dpop")
        )
    }
    let addr = serve(Router::new().route("/", get(echo))).await;
    let client = reqwest_middleware::ClientBuilder::new(
        connector_client::http_client_builder().unwrap().build().unwrap(),
    )
    .with(BearerAuth::new(Fixed(AccessToken::new(
        "plain",
        Duration::from_secs(60),
    ))))
    .build();
    let body = client
        .get(format!("http://{addr}/"))
        .header("dpop", "stale")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "Bearer plain|false");
}
