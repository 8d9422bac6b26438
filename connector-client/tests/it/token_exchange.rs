//! TokenExchange (RFC 8693) against the small token endpoint of
//! `client_credentials`: the form it posts, the answer it insists on, how
//! errors read, discovery, and the cache in front of it with a subject token
//! file read again for every exchange.

use std::path::PathBuf;
use std::time::Duration;

use connector_client::token_exchange::{
    SubjectTokenFile, GRANT_TYPE, TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT,
};
use connector_client::{
    CachedTokenSource, Endpoint, Error, ResponseProblem, SubjectTokenProblem, TokenExchange, TokenSource,
};

use crate::client_credentials::TokenServer;

const EXCHANGED: &str = r#"{"access_token":"eyJ.exchanged.sig","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":300}"#;

/// A folder of its own, removed at the end.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("cc-exchange-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// A subject token file holding `token`.
    fn token_file(&self, token: &str) -> SubjectTokenFile {
        let path = self.0.join("token");
        std::fs::write(&path, token).unwrap();
        SubjectTokenFile::new(path)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn server() -> (TokenServer, String) {
    let server = TokenServer::new();
    let base = server.start().await;
    server.answer(200, &[], EXCHANGED);
    (server, base)
}

#[tokio::test]
async fn the_request_is_an_rfc_8693_exchange_without_client_authentication() {
    let (server, base) = server().await;
    let dir = Dir::new("shape");
    let source = TokenExchange::builder(
        Endpoint::TokenUrl(format!("{base}/token")),
        dir.token_file("eyJhbGciOiJFUzM4NCJ9.eyJzdWIiOiJ4In0.c2ln\n"),
    )
    .audience("https://control.example.com")
    .scope("actions:read")
    .build()
    .unwrap();
    let token = source.token().await.unwrap();
    assert_eq!(token.secret().as_str(), "eyJ.exchanged.sig");
    assert_eq!(token.expires_in(), Duration::from_secs(300));

    let seen = server.last();
    assert_eq!(seen.authorization, None, "no client authentication");
    assert_eq!(seen.accept.as_deref(), Some("application/json"));
    assert_eq!(
        seen.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    let form: Vec<(&str, &str)> = seen.form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        form,
        [
            ("audience", "https://control.example.com"),
            ("grant_type", GRANT_TYPE),
            ("scope", "actions:read"),
            ("subject_token", "eyJhbGciOiJFUzM4NCJ9.eyJzdWIiOiJ4In0.c2ln"),
            ("subject_token_type", TOKEN_TYPE_JWT),
        ]
    );
    assert_eq!(GRANT_TYPE, "urn:ietf:params:oauth:grant-type:token-exchange");

    // `resource` instead of `audience`, and neither when none is asked for.
    let source = TokenExchange::builder(
        Endpoint::TokenUrl(format!("{base}/token")),
        dir.token_file("a.b.c"),
    )
    .resource("urn:control")
    .build()
    .unwrap();
    source.token().await.unwrap();
    let form = server.last().form;
    assert_eq!(form.get("resource").map(String::as_str), Some("urn:control"));
    assert!(!form.contains_key("audience") && !form.contains_key("scope"));
    assert!(!form.keys().any(|k| k.starts_with("client")), "{form:?}");
}

#[tokio::test]
async fn the_answer_must_be_a_bearer_access_token() {
    let (server, base) = server().await;
    let dir = Dir::new("answer");
    let source = TokenExchange::builder(
        Endpoint::TokenUrl(format!("{base}/token")),
        dir.token_file("a.b.c"),
    )
    .build()
    .unwrap();
    let problem = |error: Error| match error {
        Error::InvalidResponse(e) => e.problem().clone(),
        other => panic!("{other:?}"),
    };

    // RFC 6749's answer without RFC 8693's issued_token_type.
    server.answer(
        200,
        &[],
        r#"{"access_token":"a","token_type":"Bearer","expires_in":60}"#,
    );
    assert_eq!(
        problem(source.token().await.unwrap_err()),
        ResponseProblem::Member("issued_token_type")
    );
    // Another kind of token (RFC 8693 allows N_A for what is not an access token).
    server.answer(
        200,
        &[],
        r#"{"access_token":"a","issued_token_type":"urn:ietf:params:oauth:token-type:id_token","token_type":"N_A","expires_in":60}"#,
    );
    assert_eq!(
        problem(source.token().await.unwrap_err()),
        ResponseProblem::IssuedTokenType {
            found: "urn:ietf:params:oauth:token-type:id_token".into(),
            expected: TOKEN_TYPE_ACCESS_TOKEN
        }
    );
    // An access token, but not a bearer one.
    server.answer(
        200,
        &[],
        r#"{"access_token":"a","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"DPoP","expires_in":60}"#,
    );
    assert_eq!(
        problem(source.token().await.unwrap_err()),
        ResponseProblem::TokenType("DPoP".into())
    );
    // expires_in is only recommended by RFC 8693: absent is an error unless a default is set.
    let without_lifetime = r#"{"access_token":"a","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer"}"#;
    server.answer(200, &[], without_lifetime);
    assert_eq!(
        problem(source.token().await.unwrap_err()),
        ResponseProblem::ExpiresIn("absent".into())
    );
    let defaulted = TokenExchange::builder(
        Endpoint::TokenUrl(format!("{base}/token")),
        dir.token_file("a.b.c"),
    )
    .default_lifetime(Duration::from_secs(120))
    .build()
    .unwrap();
    assert_eq!(
        defaulted.token().await.unwrap().expires_in(),
        Duration::from_secs(120)
    );
}

#[tokio::test]
async fn error_responses_read_as_the_crates_errors_with_exchange_hints() {
    let (server, base) = server().await;
    let dir = Dir::new("errors");
    let source = TokenExchange::builder(
        Endpoint::TokenUrl(format!("{base}/token")),
        dir.token_file("eyJ.secret-subject.sig"),
    )
    .build()
    .unwrap();

    server.answer(
        400,
        &[],
        r#"{"error":"invalid_request","error_description":"subject token expired"}"#,
    );
    let error = source.token().await.unwrap_err();
    let Error::Endpoint(e) = &error else {
        panic!("{error:?}")
    };
    assert_eq!((e.status(), e.oauth_error()), (400, Some("invalid_request")));
    assert!(!error.is_retryable());
    assert_eq!(
        error.to_string(),
        format!(
            "token endpoint {base}/token answered 400 invalid_request: subject token expired (the subject \
             token may have been refused: check its issuer, subject, audience and expiry against what the \
             server trusts)"
        )
    );
    assert!(!format!("{error:?}").contains("secret-subject"));

    server.answer(400, &[], r#"{"error":"unsupported_grant_type"}"#);
    let error = source.token().await.unwrap_err();
    assert!(
        error
            .to_string()
            .ends_with("(the server does not offer token exchange (RFC 8693))"),
        "{error}"
    );
    server.answer(401, &[], r#"{"error":"invalid_client"}"#);
    let error = source.token().await.unwrap_err();
    assert!(
        error.to_string().contains("wants client authentication"),
        "{error}"
    );

    server.answer(
        503,
        &[("retry-after", "9")],
        r#"{"error":"temporarily_unavailable"}"#,
    );
    let error = source.token().await.unwrap_err();
    assert!(error.is_retryable());
    assert_eq!(error.retry_after(), Some(Duration::from_secs(9)));
}

#[tokio::test]
async fn discovery_comes_first_and_a_bad_file_makes_no_request() {
    let (server, base) = server().await;
    let dir = Dir::new("discovery");
    let file = dir.token_file("a.b.c");
    server.discovery(serde_json::json!({"issuer": base, "token_endpoint": format!("{base}/token")}));
    let source = TokenExchange::builder(Endpoint::Issuer(base.clone()), file.clone())
        .build()
        .unwrap();
    assert_eq!(
        source.token_endpoint().await.unwrap().as_str(),
        format!("{base}/token")
    );
    source.token().await.unwrap();
    assert_eq!(server.requests().len(), 1);

    std::fs::remove_file(file.path()).unwrap();
    let error = source.token().await.unwrap_err();
    let Error::SubjectToken(e) = &error else {
        panic!("{error:?}")
    };
    assert!(matches!(e.problem(), SubjectTokenProblem::Read(_)), "{e:?}");
    assert!(error.is_retryable());
    assert!(
        error.to_string().contains(&file.path().display().to_string()),
        "{error}"
    );
    std::fs::write(file.path(), "").unwrap();
    let error = source.token().await.unwrap_err();
    assert!(error.to_string().ends_with("the file is empty"), "{error}");
    assert_eq!(server.requests().len(), 1, "no exchange without a subject token");
}

/// Behind the cache: every refresh reads the file again, so a token the
/// platform rotated is the one presented next.
#[tokio::test]
async fn behind_the_cache_each_refresh_presents_the_current_file() {
    let (server, base) = server().await;
    let dir = Dir::new("cache");
    let file = dir.token_file("eyJ.first.sig");
    let source = TokenExchange::builder(Endpoint::TokenUrl(format!("{base}/token")), file.clone())
        .build()
        .unwrap();
    let cache = CachedTokenSource::new(source).unwrap();
    let first = cache.token().await.unwrap();
    assert_eq!(first.secret().as_str(), "eyJ.exchanged.sig");
    std::fs::write(file.path(), "eyJ.second.sig").unwrap();
    cache.invalidate(&first);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.requests().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no second exchange");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let presented: Vec<String> = server
        .requests()
        .iter()
        .map(|seen| seen.form["subject_token"].clone())
        .collect();
    assert_eq!(presented, ["eyJ.first.sig", "eyJ.second.sig"]);
}
