//! The token endpoint over a real connection. The security catalog's
//! token-endpoint items are oidc-server's own tests (`oidc-server/tests/it/
//! token_endpoint.rs`, the router without a socket); what stays here is
//! about the connection itself.

use base64::Engine;
use e2e::{client_key, test_config, TestServer, SECRET, SECRET_CLIENT};
use oidc_core::Algorithm;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE};
use serde_json::Value;

/// A chunked body over the limit is answered 413 before it ends, and the
/// client reads that answer (not a reset connection).
#[tokio::test]
async fn chunked_body_over_the_limit_is_413_over_a_socket() {
    let (_signer, jwks) = client_key(Algorithm::ES256);
    let server = TestServer::start(&test_config(&jwks)).await;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{SECRET_CLIENT}:{SECRET}"));
    let stream = futures_util::stream::iter((0..64).map(|_| Ok::<_, std::io::Error>(vec![b'a'; 1024])));
    let response = e2e::http()
        .post(server.token_url())
        .header("authorization", format!("Basic {basic}"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request", "{body}");
}
