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

/// Authlib's `private_key_jwt` as a new user would write it, with its
/// defaults (an assertion that lives 3,600 s, `aud` = the token endpoint, no
/// `kid`): the token service accepts it, once.
const AUTHLIB: &str = r#"
import sys
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc.jwk import ECKey
client_id, token_url, key_file = sys.argv[1:4]
# Authlib reads a PEM string as an RSA key; an EC key is passed as a key object.
key = ECKey.import_key(open(key_file).read())
session = OAuth2Session(client_id, key, token_endpoint_auth_method="private_key_jwt")
session.register_client_auth_method(PrivateKeyJWT(token_url, alg="ES256"))
token = session.fetch_token(token_url, grant_type="client_credentials")
print(token["access_token"])
"#;

#[tokio::test]
async fn authlib_private_key_jwt_with_its_defaults_gets_a_token() {
    let (signer, pem) = oidc_core::keys::LocalSigner::generate(Algorithm::ES256).unwrap();
    let jwks = serde_json::json!({
        "keys": [serde_json::Value::Object(oidc_core::keys::Signer::verifying_key(&signer).to_jwk())]
    });
    let server = TestServer::start(&test_config(&jwks)).await;
    let key_file = std::env::temp_dir().join(format!("authlib-key-{}.pem", std::process::id()));
    std::fs::write(&key_file, pem.as_str()).unwrap();
    let out = e2e::tools::run_python(
        AUTHLIB,
        &[e2e::JWT_CLIENT, &server.token_url(), key_file.to_str().unwrap()],
    )
    .await;
    let _ = std::fs::remove_file(&key_file);
    assert_eq!(out.code, 0, "Authlib's token request failed: {}", out.stderr);
    let claims = server.verify(out.stdout.trim()).await;
    assert_eq!(claims.sub, e2e::JWT_CLIENT);
}
