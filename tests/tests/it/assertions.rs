//! `private_key_jwt` at the token endpoint: the RFC 7523 checks of the
//! security catalog, replay (sequential and concurrent), wrong keys.

use e2e::{client_key, test_config, TestServer, JWT_CLIENT, SECRET_CLIENT};
use oidc_core::jws::{self, Header};
use oidc_core::keys::{LocalSigner, Signer};
use oidc_core::Algorithm;
use serde_json::{json, Value};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn assertion(signer: &LocalSigner, typ: &str, claims: Value) -> String {
    let header = Header::encode(signer.algorithm(), typ, signer.kid());
    jws::sign(&header, claims.to_string().as_bytes(), signer)
        .await
        .unwrap()
}

fn good_claims(server: &TestServer) -> Value {
    let now = now();
    json!({
        "iss": JWT_CLIENT, "sub": JWT_CLIENT, "aud": server.url,
        "jti": oidc_core::Jti::random().unwrap().as_str(), "iat": now, "exp": now + 60,
    })
}

async fn post(server: &TestServer, assertion: &str) -> (u16, Value) {
    let response = e2e::http()
        .post(server.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion),
        ])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn setup() -> (TestServer, LocalSigner) {
    let (signer, jwks) = client_key(Algorithm::ES256);
    (TestServer::start(&test_config(&jwks)).await, signer)
}

#[tokio::test]
async fn valid_assertion_gets_a_token_for_its_client() {
    let (server, signer) = setup().await;
    for typ in ["client-authentication+jwt", "JWT"] {
        let (status, body) = post(&server, &assertion(&signer, typ, good_claims(&server)).await).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["token_type"], "Bearer");
    }
    // The token endpoint URL is an accepted audience too.
    let mut claims = good_claims(&server);
    claims["aud"] = json!(server.token_url());
    assert_eq!(
        post(&server, &assertion(&signer, "JWT", claims).await).await.0,
        200
    );
}

async fn refused(server: &TestServer, assertion: String) {
    let (status, body) = post(server, &assertion).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_client");
}

#[tokio::test]
async fn replay_is_refused() {
    let (server, signer) = setup().await;
    let jwt = assertion(&signer, "JWT", good_claims(&server)).await;
    assert_eq!(post(&server, &jwt).await.0, 200);
    refused(&server, jwt).await;
}

#[tokio::test]
async fn concurrent_replay_has_exactly_one_winner() {
    let (server, signer) = setup().await;
    let jwt = assertion(&signer, "JWT", good_claims(&server)).await;
    let attempts = (0..32).map(|_| {
        let url = server.token_url();
        let jwt = jwt.clone();
        tokio::spawn(async move {
            e2e::http()
                .post(url)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_assertion_type", JWT_BEARER),
                    ("client_assertion", jwt.as_str()),
                ])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    });
    let statuses: Vec<u16> = futures_util::future::join_all(attempts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 401 || *s == 429),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn wrong_audience_is_refused() {
    let (server, signer) = setup().await;
    let mut claims = good_claims(&server);
    claims["aud"] = json!("https://somewhere-else.test");
    refused(&server, assertion(&signer, "JWT", claims).await).await;
}

#[tokio::test]
async fn missing_jti_is_refused() {
    let (server, signer) = setup().await;
    let mut claims = good_claims(&server);
    claims.as_object_mut().unwrap().remove("jti");
    refused(&server, assertion(&signer, "JWT", claims).await).await;
}

#[tokio::test]
async fn missing_exp_is_refused() {
    let (server, signer) = setup().await;
    let mut claims = good_claims(&server);
    claims.as_object_mut().unwrap().remove("exp");
    refused(&server, assertion(&signer, "JWT", claims).await).await;
}

#[tokio::test]
async fn long_lifetime_is_refused() {
    let (server, signer) = setup().await;
    let mut claims = good_claims(&server);
    claims["exp"] = json!(now() + 3600);
    refused(&server, assertion(&signer, "JWT", claims).await).await;
}

#[tokio::test]
async fn expired_assertion_is_refused() {
    let (server, signer) = setup().await;
    let mut claims = good_claims(&server);
    claims["iat"] = json!(now() - 200);
    claims["exp"] = json!(now() - 100);
    refused(&server, assertion(&signer, "JWT", claims).await).await;
}

#[tokio::test]
async fn access_token_typ_is_refused_as_assertion() {
    let (server, signer) = setup().await;
    refused(&server, assertion(&signer, "at+jwt", good_claims(&server)).await).await;
}

#[tokio::test]
async fn another_clients_key_is_refused() {
    let (server, _signer) = setup().await;
    let (stranger, _) = client_key(Algorithm::ES256);
    refused(&server, assertion(&stranger, "JWT", good_claims(&server)).await).await;
}

#[tokio::test]
async fn subject_of_another_client_is_refused() {
    let (server, signer) = setup().await;
    let mut claims = good_claims(&server);
    claims["iss"] = json!(SECRET_CLIENT);
    claims["sub"] = json!(SECRET_CLIENT);
    refused(&server, assertion(&signer, "JWT", claims).await).await;
}

#[tokio::test]
async fn tampered_assertion_is_refused() {
    let (server, signer) = setup().await;
    let jwt = assertion(&signer, "JWT", good_claims(&server)).await;
    let (head, sig) = jwt.rsplit_once('.').unwrap();
    let mut sig = oidc_core::internal::base64url::decode(sig).unwrap();
    sig[10] ^= 1;
    refused(
        &server,
        format!("{head}.{}", oidc_core::internal::base64url::encode(sig)),
    )
    .await;
}

#[tokio::test]
async fn wrong_assertion_type_is_invalid_request() {
    let (server, signer) = setup().await;
    let jwt = assertion(&signer, "JWT", good_claims(&server)).await;
    let response = e2e::http()
        .post(server.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
            ),
            ("client_assertion", jwt.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
}
