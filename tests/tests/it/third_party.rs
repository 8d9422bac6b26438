//! Verifiers nobody here wrote accept the issued tokens through the running
//! server's JWKS URL: PyJWT (`PyJWKClient`) and npm `jose`
//! (`createRemoteJWKSet` + `jwtVerify`).

use e2e::tools::{run_node, run_python};
use e2e::{client_key, test_config, TestServer, AUDIENCE, SECRET_CLIENT};
use oidc_core::Algorithm;
use serde_json::Value;

/// PyJWT verifies with the key from the JWKS URL, requiring every claim we promise.
const PYJWT: &str = r#"
import json, sys, jwt
token, jwks_url, issuer, audience = sys.argv[1:5]
client = jwt.PyJWKClient(jwks_url)
key = client.get_signing_key_from_jwt(token)
header = jwt.get_unverified_header(token)
assert header["typ"] == "at+jwt", header
claims = jwt.decode(token, key.key, algorithms=[header["alg"]], audience=audience, issuer=issuer,
                    options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]})
print(json.dumps(claims))
"#;

/// jose verifies with createRemoteJWKSet, checking issuer, audience and typ.
const JOSE: &str = r#"
import { createRemoteJWKSet, jwtVerify } from 'jose';
const [token, jwksUrl, issuer, audience] = process.argv.slice(2);
const jwks = createRemoteJWKSet(new URL(jwksUrl));
const { payload, protectedHeader } = await jwtVerify(token, jwks, { issuer, audience, typ: 'at+jwt' });
console.log(JSON.stringify({ payload, protectedHeader }));
"#;

#[tokio::test]
async fn pyjwt_accepts_issued_tokens() {
    let (_signer, jwks) = client_key(Algorithm::ES256);
    let server = TestServer::start(&test_config(&jwks)).await;
    let token = server.token().await;
    let out = run_python(PYJWT, &[&token, &server.jwks_url(), &server.url, AUDIENCE]).await;
    assert_eq!(out.code, 0, "PyJWT refused the token: {}", out.stderr);
    let claims: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(claims["sub"], SECRET_CLIENT);

    // And it refuses a token for another audience: the check is real.
    let out = run_python(
        PYJWT,
        &[&token, &server.jwks_url(), &server.url, "https://other.test"],
    )
    .await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("InvalidAudienceError"), "{}", out.stderr);
}

#[tokio::test]
async fn jose_accepts_issued_tokens() {
    let (_signer, jwks) = client_key(Algorithm::ES256);
    let server = TestServer::start(&test_config(&jwks)).await;
    let token = server.token().await;
    let out = run_node(JOSE, &[&token, &server.jwks_url(), &server.url, AUDIENCE]).await;
    assert_eq!(out.code, 0, "jose refused the token: {}", out.stderr);
    let result: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(result["payload"]["sub"], SECRET_CLIENT);
    assert_eq!(result["protectedHeader"]["typ"], "at+jwt");

    let out = run_node(
        JOSE,
        &[&token, &server.jwks_url(), "http://wrong-issuer.test", AUDIENCE],
    )
    .await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("iss"), "{}", out.stderr);
}
