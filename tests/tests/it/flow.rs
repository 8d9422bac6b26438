//! The whole flow as a control plane sees it: discovery → JWKS → token →
//! verification with oidc-core's verifier through `jwks_uri`.

use e2e::{client_key, test_config, TestServer, AUDIENCE, SECRET, SECRET_CLIENT};
use oidc_core::verify::remote::RemoteJwks;
use oidc_core::{AccessTokenClaims, Algorithm, Policy, Verifier};
use serde_json::Value;

#[tokio::test]
async fn discovery_jwks_token_verify() {
    let (_signer, jwks) = client_key(Algorithm::ES256);
    let server = TestServer::start(&test_config(&jwks)).await;

    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let doc: Value = server.get_json(path).await;
        assert_eq!(doc["issuer"], server.url);
        assert_eq!(doc["jwks_uri"], server.jwks_url());
        assert_eq!(doc["token_endpoint"], server.token_url());
        assert_eq!(
            doc["grant_types_supported"],
            serde_json::json!(["client_credentials"])
        );
        let methods = doc["token_endpoint_auth_methods_supported"].as_array().unwrap();
        for method in ["client_secret_basic", "client_secret_post", "private_key_jwt"] {
            assert!(methods.iter().any(|m| m == method), "{method} missing");
        }
    }

    let jwks = e2e::http().get(server.jwks_url()).send().await.unwrap();
    assert_eq!(jwks.status(), 200);
    let etag = jwks.headers()["etag"].to_str().unwrap().to_owned();
    let cache_control = jwks.headers()["cache-control"].to_str().unwrap().to_owned();
    assert_eq!(cache_control, "public, max-age=300");
    let keys: Value = jwks.json().await.unwrap();
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1);
    assert_eq!(keys["keys"][0]["alg"], "ES256");
    let revalidated = e2e::http()
        .get(server.jwks_url())
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), 304);

    let token = server.token().await;
    let keys = RemoteJwks::discovery(server.url.clone()).build().unwrap();
    let policy = Policy::builder(server.url.clone(), [AUDIENCE]).build().unwrap();
    let verified = Verifier::new(policy, keys)
        .verify::<AccessTokenClaims>(&token)
        .await
        .unwrap();
    let claims = verified.claims();
    assert_eq!(claims.sub, SECRET_CLIENT);
    assert_eq!(claims.client_id, SECRET_CLIENT);
    assert_eq!(claims.iss, server.url);
    assert!(claims.aud.contains(AUDIENCE));
    assert_eq!(claims.scope.as_deref(), Some("actions:read"));
    assert_eq!(claims.exp - claims.iat, 300);
    assert_eq!(claims.attributes["org_id"], "org-1");
    assert_eq!(claims.attributes["account_id"], "123456789012");
    assert_eq!(oidc_core::base64url::decode(&claims.jti).unwrap().len(), 16);
    let kid = verified.kid().to_owned();
    let active = server.state.keys().current();
    assert_eq!(kid, active.active().unwrap().signer().kid());
}

#[tokio::test]
async fn health_and_readiness() {
    let (_signer, jwks) = client_key(Algorithm::ES256);
    let server = TestServer::start(&test_config(&jwks)).await;
    assert_eq!(
        e2e::http()
            .get(format!("{}/healthz", server.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        e2e::http()
            .get(format!("{}/readyz", server.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn graceful_shutdown_finishes_requests_in_flight() {
    let (_signer, jwks) = client_key(Algorithm::ES256);
    let server = TestServer::start(&test_config(&jwks)).await;
    let url = server.token_url();
    // Start a request whose body arrives slowly, then ask the server to stop.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
    let request = tokio::spawn(
        e2e::http()
            .post(url)
            .basic_auth(SECRET_CLIENT, Some(SECRET))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send(),
    );
    tx.send(Ok(b"grant_type=".to_vec())).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let stopping = tokio::spawn(server.stop());
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    tx.send(Ok(b"client_credentials".to_vec())).await.unwrap();
    drop(tx);
    let response = request.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    stopping.await.unwrap();
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
