//! Verifiers nobody here wrote accept the issued tokens through the running
//! server's JWKS URL: PyJWT (`PyJWKClient`) and npm `jose`
//! (`createRemoteJWKSet` + `jwtVerify`), through `e2e::tools`.

use e2e::tools::{verify_with_jose, verify_with_pyjwt};
use e2e::{client_key, test_config, TestServer, AUDIENCE, SECRET_CLIENT};
use oidc_core::Algorithm;

#[tokio::test]
async fn pyjwt_accepts_issued_tokens() {
    let (_signer, jwks) = client_key(Algorithm::ES256);
    let server = TestServer::start(&test_config(&jwks)).await;
    let token = server.token().await;
    let accepted = verify_with_pyjwt(&server.jwks_url(), &server.url, AUDIENCE, &token)
        .await
        .unwrap_or_else(|out| panic!("PyJWT refused the token: {}", out.stderr));
    assert_eq!(accepted.claims["sub"], SECRET_CLIENT);

    // And it refuses a token for another audience: the check is real.
    let out = verify_with_pyjwt(&server.jwks_url(), &server.url, "https://other.test", &token)
        .await
        .unwrap_err();
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("InvalidAudienceError"), "{}", out.stderr);
}

#[tokio::test]
async fn jose_accepts_issued_tokens() {
    let (_signer, jwks) = client_key(Algorithm::ES256);
    let server = TestServer::start(&test_config(&jwks)).await;
    let token = server.token().await;
    let accepted = verify_with_jose(&server.jwks_url(), &server.url, AUDIENCE, &token)
        .await
        .unwrap_or_else(|out| panic!("jose refused the token: {}", out.stderr));
    assert_eq!(accepted.claims["sub"], SECRET_CLIENT);
    assert_eq!(accepted.header["typ"], "at+jwt");

    let out = verify_with_jose(&server.jwks_url(), "http://wrong-issuer.test", AUDIENCE, &token)
        .await
        .unwrap_err();
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("iss"), "{}", out.stderr);
}
