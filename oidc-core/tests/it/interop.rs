//! Interop with the `jsonwebtoken` crate (aws-lc-rs backend), both ways: it
//! verifies what we issue, and we accept what it signs correctly, but never
//! its HMAC tokens.

use std::sync::Arc;

use jsonwebtoken as jwt;
use oidc_core::jws::JwsError;
use oidc_core::keys::Signer;
use oidc_core::{
    AccessTokenClaims, Algorithm, AlgorithmError, Audience, Issuer, KeySet, Lifetime, TokenRequest,
    VerifyError,
};
use serde_json::{json, Value};

use crate::helpers::*;

fn jwt_alg(alg: Algorithm) -> jwt::Algorithm {
    match alg {
        Algorithm::ES256 => jwt::Algorithm::ES256,
        Algorithm::EdDSA => jwt::Algorithm::EdDSA,
        Algorithm::RS256 => jwt::Algorithm::RS256,
        Algorithm::PS256 => jwt::Algorithm::PS256,
        Algorithm::ES384 => jwt::Algorithm::ES384,
    }
}

fn encoding_key(f: &Fixture) -> jwt::EncodingKey {
    let pem = f.pem.as_bytes();
    match f.alg() {
        Algorithm::ES256 | Algorithm::ES384 => jwt::EncodingKey::from_ec_pem(pem),
        Algorithm::EdDSA => jwt::EncodingKey::from_ed_pem(pem),
        Algorithm::RS256 | Algorithm::PS256 => jwt::EncodingKey::from_rsa_pem(pem),
    }
    .expect("jsonwebtoken reads our PKCS#8 PEM")
}

#[tokio::test]
async fn jsonwebtoken_verifies_our_tokens() {
    for alg in Algorithm::ALL {
        let f = Fixture::new(alg);
        // jsonwebtoken checks times against the real clock: issue on it.
        let signer: Arc<dyn Signer> = f.signer.clone();
        let issuer =
            Issuer::new(ISSUER, Arc::new(KeySet::single(signer)), Lifetime::default()).expect("issuer");
        let request = TokenRequest {
            scope: Some("poll".into()),
            ..TokenRequest::new("connector-1", AUDIENCE)
        };
        let issued = issuer.issue(&request).await.expect("issue");

        // The key as a consumer finds it: in our JWKS document, by kid.
        let jwks: jwt::jwk::JwkSet = serde_json::from_str(&f.jwks.to_json()).expect("its JWKS parser");
        let jwk = jwks.find(f.kid()).expect("kid in the JWKS");
        let key = jwt::DecodingKey::from_jwk(jwk).expect("its JWK import");
        let header = jwt::decode_header(issued.token.as_str()).expect("header");
        assert_eq!(header.alg, jwt_alg(alg));
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.kid.as_deref(), Some(f.kid()));

        let mut validation = jwt::Validation::new(jwt_alg(alg));
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 0;
        let data = jwt::decode::<Value>(issued.token.as_str(), &key, &validation)
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(data.claims["sub"], "connector-1");
        assert_eq!(data.claims["client_id"], "connector-1");
        assert_eq!(data.claims["jti"], json!(issued.jti));
        assert_eq!(data.claims["exp"], json!(issued.expires_at));
        assert_eq!(data.claims["scope"], "poll");

        // And it notices tampering, as a verifier should.
        let [h, _, s] = parts(issued.token.as_str());
        let mut claims = data.claims.clone();
        claims["sub"] = json!("connector-2");
        let tampered = format!("{h}.{}.{s}", b64(claims.to_string()));
        assert!(jwt::decode::<Value>(&tampered, &key, &validation).is_err());
    }
}

/// Claims as jsonwebtoken users write them: every RFC 9068 claim.
fn rfc9068_claims() -> Value {
    json!({
        "iss": ISSUER,
        "exp": NOW + 300,
        "aud": AUDIENCE,
        "sub": "connector-1",
        "client_id": "connector-1",
        "iat": NOW,
        "jti": "Zm9vYmFyYmF6cXV4cXV1eA",
        "nbf": NOW,
        "scope": "poll",
        "org_id": "org-42",
    })
}

#[tokio::test]
async fn we_accept_its_well_formed_tokens() {
    for alg in Algorithm::ALL {
        let f = Fixture::new(alg);
        let mut header = jwt::Header::new(jwt_alg(alg));
        header.typ = Some("at+jwt".into());
        header.kid = Some(f.kid().into());
        let token = jwt::encode(&header, &rfc9068_claims(), &encoding_key(&f)).expect("encode");

        let verified = f.verify(&token).await.unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!((verified.kid(), verified.algorithm()), (f.kid(), alg));
        let claims: AccessTokenClaims = verified.into_claims();
        assert_eq!(claims.aud, Audience::One(AUDIENCE.into()));
        assert_eq!(claims.attributes["org_id"], "org-42");
        assert_eq!((claims.iat, claims.nbf, claims.exp), (NOW, Some(NOW), NOW + 300));
    }
}

#[tokio::test]
async fn we_refuse_its_hmac_tokens() {
    let f = Fixture::es256();
    // Shared secrets an attacker might try: the published JWKS, or anything.
    let jwks = f.jwks.to_json();
    for (alg, name) in [
        (jwt::Algorithm::HS256, "HS256"),
        (jwt::Algorithm::HS384, "HS384"),
        (jwt::Algorithm::HS512, "HS512"),
    ] {
        for secret in [jwks.as_bytes(), b"a very secret secret".as_slice()] {
            let mut header = jwt::Header::new(alg);
            header.typ = Some("at+jwt".into());
            header.kid = Some(f.kid().into());
            let token = jwt::encode(&header, &rfc9068_claims(), &jwt::EncodingKey::from_secret(secret))
                .expect("encode");
            assert_eq!(
                f.refusal(&token).await,
                VerifyError::Malformed(JwsError::Algorithm(AlgorithmError::Symmetric(name.into())))
            );
        }
    }
}

#[tokio::test]
async fn we_refuse_its_default_jwt_typ() {
    // Its default header says typ "JWT": not an access token (RFC 9068 §4).
    let f = Fixture::es256();
    let mut header = jwt::Header::new(jwt::Algorithm::ES256);
    header.kid = Some(f.signer.kid().into());
    let token = jwt::encode(&header, &rfc9068_claims(), &encoding_key(&f)).expect("encode");
    assert_eq!(
        f.refusal(&token).await,
        VerifyError::WrongType {
            found: Some("JWT".into()),
            expected: "at+jwt".into()
        }
    );
}
