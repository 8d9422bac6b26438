//! `private_key_jwt` replay with many requests in flight on real connections:
//! exactly one wins. The other RFC 7523 checks of the security catalog are
//! oidc-server's own tests (`oidc-server/tests/it/assertions.rs`).

use e2e::{assertion, client_key, good_claims, test_config, TestServer, JWT_BEARER};
use oidc_core::Algorithm;

#[tokio::test]
async fn concurrent_replay_has_exactly_one_winner() {
    let (signer, jwks) = client_key(Algorithm::ES256);
    let server = TestServer::start(&test_config(&jwks)).await;
    let jwt = assertion(&signer, "JWT", good_claims(&server.url)).await;
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
