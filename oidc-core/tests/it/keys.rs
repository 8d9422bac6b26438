//! Keys: PEM loading and its refusals, thumbprints, redacted Debug output,
//! and attribute names that would shadow registered claims.

use oidc_core::claims::{Attributes, ReservedClaim, RESERVED_CLAIMS};
use oidc_core::keys::{KeyError, LocalSigner, PublicKey, Signer, VerifyingKey};
use oidc_core::{Algorithm, Lifetime, TokenRequest};
use serde_json::{json, Map, Value};

use crate::helpers::*;

/// RFC 7638 §3.1: the example RSA key and its thumbprint.
const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
const RFC7638_THUMBPRINT: &str = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";

#[test]
fn rfc7638_thumbprint_example() {
    let key = PublicKey::rsa(&unb64(RFC7638_N), &unb64("AQAB")).expect("2048-bit key");
    assert_eq!(key.thumbprint(), RFC7638_THUMBPRINT);

    // The whole JWK of the example: the optional members do not count.
    let jwk = json!({"kty": "RSA", "n": RFC7638_N, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"});
    let key = VerifyingKey::from_jwk_json(jwk.to_string().as_bytes()).expect("jwk");
    assert_eq!(key.kid(), "2011-04-29");
    assert_eq!(key.public_key().thumbprint(), RFC7638_THUMBPRINT);
    let pinned = VerifyingKey::with_thumbprint(Algorithm::RS256, key.public_key().clone()).expect("key");
    assert_eq!(pinned.kid(), RFC7638_THUMBPRINT);
}

#[test]
fn signer_kid_is_the_thumbprint_of_its_jwk() {
    for alg in Algorithm::ALL {
        let (signer, _) = signer(alg);
        let jwk = Value::Object(signer.verifying_key().to_jwk());
        let reparsed = VerifyingKey::from_jwk_json(jwk.to_string().as_bytes()).expect("own JWK");
        assert_eq!(reparsed.public_key().thumbprint(), signer.kid());
        assert_eq!(reparsed, *signer.verifying_key());
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["alg"], alg.name());
    }
}

#[test]
fn rsa_1024_pem_is_refused() {
    let pem = key_pem("rsa1024");
    for alg in [None, Some(Algorithm::RS256), Some(Algorithm::PS256)] {
        assert_eq!(
            LocalSigner::from_pem_with_algorithm(&pem, alg).unwrap_err(),
            KeyError::RsaTooSmall { bits: 1024 },
            "{alg:?}"
        );
    }
}

#[test]
fn sec1_ec_private_key_is_refused_with_conversion_advice() {
    let error = LocalSigner::from_pem(&key_pem("p256-sec1")).unwrap_err();
    let KeyError::Pem(message) = &error else {
        panic!("{error:?}")
    };
    assert!(message.contains("EC PRIVATE KEY"), "{message}");
    assert!(message.contains("openssl pkcs8 -topk8 -nocrypt"), "{message}");
    // The same advice for PKCS#1 RSA keys (the tag alone decides).
    let pkcs1 = "-----BEGIN RSA PRIVATE KEY-----\nMAA=\n-----END RSA PRIVATE KEY-----\n";
    let KeyError::Pem(message) = LocalSigner::from_pem(pkcs1).unwrap_err() else {
        panic!("not a PEM error")
    };
    assert!(message.contains("openssl pkcs8 -topk8 -nocrypt"), "{message}");
}

#[test]
fn p384_signs_es384_only() {
    let pem = key_pem("p384");
    for alg in [None, Some(Algorithm::ES384)] {
        let signer = LocalSigner::from_pem_with_algorithm(&pem, alg).expect("P-384 key");
        assert_eq!(signer.algorithm(), Algorithm::ES384);
        let signature = signer.sign_now(b"input").expect("sign");
        assert_eq!(signature.len(), 96, "r‖s, 48 bytes each");
        signer
            .verifying_key()
            .verify(Algorithm::ES384, b"input", &signature)
            .expect("verifies");
    }
    assert_eq!(
        LocalSigner::from_pem_with_algorithm(&pem, Some(Algorithm::ES256)).unwrap_err(),
        KeyError::AlgorithmMismatch {
            alg: "ES256".into(),
            key: "EC P-384"
        }
    );
    assert_eq!(
        LocalSigner::from_pem_with_algorithm(&key_pem("p256"), Some(Algorithm::ES384)).unwrap_err(),
        KeyError::AlgorithmMismatch {
            alg: "ES384".into(),
            key: "EC P-256"
        }
    );
}

#[test]
fn key_of_another_type_than_the_algorithm_is_refused() {
    let cases = [
        ("ed25519", Algorithm::ES256, "OKP Ed25519"),
        ("p256", Algorithm::EdDSA, "EC P-256"),
        ("p256", Algorithm::PS256, "EC P-256"),
        ("rsa2048", Algorithm::ES256, "RSA"),
    ];
    for (file, alg, key) in cases {
        assert_eq!(
            LocalSigner::from_pem_with_algorithm(&key_pem(file), Some(alg)).unwrap_err(),
            KeyError::AlgorithmMismatch {
                alg: alg.name().into(),
                key
            },
            "{file} as {alg}"
        );
    }
}

#[test]
fn other_pem_documents_are_refused() {
    let encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----\n";
    assert_eq!(
        LocalSigner::from_pem(encrypted).unwrap_err(),
        KeyError::Pem("encrypted PKCS#8 is not supported; decrypt it first".into())
    );
    let certificate = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
    assert_eq!(
        LocalSigner::from_pem(certificate).unwrap_err(),
        KeyError::Pem("found a \"CERTIFICATE\" block, expected PRIVATE KEY".into())
    );
    assert!(matches!(
        LocalSigner::from_pem("not a PEM").unwrap_err(),
        KeyError::Pem(_)
    ));
    // A PRIVATE KEY block whose content is not a key.
    let junk = "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n";
    assert!(matches!(
        LocalSigner::from_pem(junk).unwrap_err(),
        KeyError::Pkcs8(_)
    ));
}

#[test]
fn openssl_keys_load_and_generated_keys_reload() {
    for (file, alg) in [
        ("p256", Algorithm::ES256),
        ("ed25519", Algorithm::EdDSA),
        ("rsa2048", Algorithm::RS256),
    ] {
        let signer = LocalSigner::from_pem(&key_pem(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(signer.algorithm(), alg);
        let signature = signer.sign_now(b"header.payload").expect("sign");
        signer
            .verifying_key()
            .verify(alg, b"header.payload", &signature)
            .expect("verifies");
    }
    for alg in [Algorithm::ES256, Algorithm::EdDSA] {
        let (signer, pem) = LocalSigner::generate(alg).expect("generate");
        let again = LocalSigner::from_pem(pem.as_str()).expect("reload");
        assert_eq!((again.algorithm(), again.kid()), (alg, signer.kid()));
    }
    for alg in [Algorithm::RS256, Algorithm::PS256] {
        assert_eq!(
            LocalSigner::generate(alg).unwrap_err(),
            KeyError::CannotGenerate(alg)
        );
    }
}

/// The base64 body lines of a PEM document.
fn pem_body(pem: &str) -> Vec<&str> {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 8)
        .collect()
}

#[tokio::test]
async fn debug_output_holds_no_key_material_or_token() {
    for alg in Algorithm::ALL {
        let f = Fixture::new(alg);
        let secrets = pem_body(&f.pem);
        assert!(!secrets.is_empty());
        for text in [format!("{:?}", f.signer), format!("{:#?}", f.signer)] {
            assert!(text.contains("redacted"), "{text}");
            for line in &secrets {
                assert!(!text.contains(line), "{alg}: LocalSigner Debug shows the key");
            }
        }

        let issued = f
            .issuer(Lifetime::default())
            .issue(&TokenRequest::new("connector-1", AUDIENCE))
            .await
            .expect("issue");
        let token = issued.token.as_str().to_owned();
        for text in [
            format!("{issued:?}"),
            format!("{issued:#?}"),
            format!("{:?}", issued.token),
            format!("{:#?}", issued.token),
        ] {
            assert!(!text.contains(&token), "{text}");
            for part in parts(&token) {
                assert!(!text.contains(part), "a token part in {text}");
            }
        }
        // Errors about a token do not quote it either.
        let [h, p, _] = parts(&token);
        let forged = format!("{h}.{p}.{}", b64([0u8; 64]));
        let error = f.refusal(&forged).await;
        for text in [format!("{error}"), format!("{error:?}")] {
            for part in parts(&forged) {
                assert!(!text.contains(part), "a token part in {text}");
            }
        }
    }
    // The PEM of a generated key.
    let (_, pem) = LocalSigner::generate(Algorithm::ES256).expect("generate");
    for text in [format!("{pem:?}"), format!("{pem:#?}")] {
        assert_eq!(text, "Pkcs8Pem([redacted])");
        for line in pem_body(pem.as_str()) {
            assert!(!text.contains(line));
        }
    }
}

#[test]
fn attributes_that_shadow_registered_claims_are_refused() {
    for name in RESERVED_CLAIMS {
        let mut attributes = Attributes::default();
        assert_eq!(
            attributes.insert(name, json!("x")),
            Err(ReservedClaim(name.to_owned()))
        );
        assert!(attributes.is_empty());
        let mut map = Map::new();
        map.insert("org_id".into(), json!("org-42"));
        map.insert(name.into(), json!("x"));
        assert_eq!(Attributes::try_from(map), Err(ReservedClaim(name.to_owned())));
    }
    for name in [
        "iss",
        "sub",
        "aud",
        "exp",
        "nbf",
        "iat",
        "jti",
        "client_id",
        "scope",
    ] {
        assert!(RESERVED_CLAIMS.contains(&name), "{name}");
    }
    // Names that are only similar are private claims like any other.
    let mut attributes = Attributes::default();
    for name in ["org_id", "account_id", "Sub", "iss_", "x-aud"] {
        attributes.insert(name, json!("ok")).expect(name);
    }
    assert_eq!(attributes.as_map().len(), 5);
}
