//! The DER that KMS answers with, against Wycheproof: every ECDSA P-256
//! signature vector (DER `ECDSA-Sig-Value`) converted to JWS `r‖s` either
//! verifies or is refused exactly as labelled, and every vector file's
//! `SubjectPublicKeyInfo` parses to the key the file names.

// A vector that cannot be read has failed the test; the panic says where.
#![allow(clippy::unwrap_used)]

use oidc_core::keys::der::{self, DerError};
use oidc_core::keys::{PublicKey, VerifyingKey};
use oidc_core::Algorithm;
use serde_json::Value;

use crate::helpers::*;

fn load(name: &str) -> Value {
    let file = path(&format!("tests/vectors/wycheproof/{name}"));
    serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap()
}

fn hex(value: &Value) -> Vec<u8> {
    let text = value.as_str().unwrap();
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn ecdsa_der_signatures_convert_exactly_as_labelled() {
    let file = load("ecdsa_secp256r1_sha256_test.json");
    let (mut valid, mut refused_by_der, mut refused_by_verify) = (0, 0, 0);
    for group in file["testGroups"].as_array().unwrap() {
        let public = der::spki_public_key(&hex(&group["publicKeyDer"])).unwrap();
        assert_eq!(
            public,
            PublicKey::p256_uncompressed(&hex(&group["publicKey"]["uncompressed"])).unwrap()
        );
        let key = VerifyingKey::with_thumbprint(Algorithm::ES256, public).unwrap();
        for test in group["tests"].as_array().unwrap() {
            let id = test["tcId"].as_u64().unwrap();
            let msg = hex(&test["msg"]);
            let converted = der::ecdsa_p256_signature(&hex(&test["sig"]));
            match test["result"].as_str().unwrap() {
                "valid" => {
                    let rs = converted.unwrap_or_else(|e| panic!("tcId {id}: valid DER refused: {e}"));
                    key.verify(Algorithm::ES256, &msg, &rs)
                        .unwrap_or_else(|e| panic!("tcId {id}: converted signature does not verify: {e}"));
                    valid += 1;
                }
                "invalid" => match converted {
                    Err(_) => refused_by_der += 1,
                    Ok(rs) => {
                        assert!(
                            key.verify(Algorithm::ES256, &msg, &rs).is_err(),
                            "tcId {id}: invalid vector accepted after conversion"
                        );
                        refused_by_verify += 1;
                    }
                },
                other => panic!("tcId {id}: unexpected result {other}"),
            }
        }
    }
    assert_eq!(valid, 174);
    // The malformed encodings (BER lengths, negative or padded integers,
    // trailing bytes, wrong tags) stop at the DER reader; what is left are
    // well-formed signatures that do not verify.
    assert!(
        refused_by_der > 100,
        "only {refused_by_der} refused by the DER reader"
    );
    assert_eq!(refused_by_der + refused_by_verify, 310);
}

#[test]
fn short_scalars_are_left_padded_and_padding_octets_stripped() {
    // r = 0x01 (1 byte), s = 0x00 0x80.. (leading zero before a high bit).
    let mut der = vec![0x30, 0x26, 0x02, 0x01, 0x01, 0x02, 0x21, 0x00, 0x80];
    der.extend([0x11; 31]);
    let rs = der::ecdsa_p256_signature(&der).unwrap();
    assert_eq!(&rs[..31], &[0u8; 31]);
    assert_eq!(rs[31], 1);
    assert_eq!(rs[32], 0x80);
    assert_eq!(&rs[33..], &[0x11; 31]);
}

#[test]
fn malformed_ecdsa_der_is_refused_with_a_reason() {
    let ok = [0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02];
    assert!(der::ecdsa_p256_signature(&ok).is_ok());
    let mut trailing = ok.to_vec();
    trailing.push(0);
    assert_eq!(
        der::ecdsa_p256_signature(&trailing),
        Err(DerError::TrailingData(1))
    );
    assert_eq!(
        der::ecdsa_p256_signature(&[0x31, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02]),
        Err(DerError::UnexpectedTag {
            expected: 0x30,
            found: 0x31
        })
    );
    assert_eq!(
        der::ecdsa_p256_signature(&[0x30, 0x06, 0x02, 0x01, 0xff, 0x02, 0x01, 0x02]),
        Err(DerError::BadInteger)
    );
    let mut long = vec![0x30, 0x27, 0x02, 0x22, 0x01];
    long.extend([0u8; 33]);
    long.extend([0x02, 0x01, 0x01]);
    assert_eq!(der::ecdsa_p256_signature(&long), Err(DerError::ScalarTooLong(34)));
    // A 64-byte r‖s (what a JWS carries) is not DER.
    assert!(der::ecdsa_p256_signature(&[0x11; 64]).is_err());
    assert_eq!(der::ecdsa_p256_signature(&[]), Err(DerError::Truncated));
}

#[test]
fn rsa_and_ed25519_spki_parse_to_the_named_keys() {
    let rsa = load("rsa_signature_2048_sha256_test.json");
    for group in rsa["testGroups"].as_array().unwrap() {
        let key = der::spki_public_key(&hex(&group["publicKeyDer"])).unwrap();
        let jwk = group["keyJwk"].as_object().unwrap();
        let expected = PublicKey::rsa(
            &oidc_core::base64url::decode(jwk["n"].as_str().unwrap()).unwrap(),
            &oidc_core::base64url::decode(jwk["e"].as_str().unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(key, expected);
    }
    let ed = load("ed25519_test.json");
    let mut parsed = 0;
    for group in ed["testGroups"].as_array().unwrap() {
        match der::spki_public_key(&hex(&group["publicKeyDer"])) {
            Ok(key) => {
                assert_eq!(key, PublicKey::ed25519(&hex(&group["publicKey"]["pk"])).unwrap());
                parsed += 1;
            }
            // Small-order public keys are refused, as in a JWK.
            Err(DerError::Key(_)) => {}
            Err(e) => panic!("Ed25519 SPKI refused: {e}"),
        }
    }
    assert!(parsed > 50);
}

#[test]
fn other_curves_are_named_in_the_refusal() {
    // SPKI of a P-384 key: id-ecPublicKey with secp384r1.
    let mut spki = vec![
        0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
    ];
    spki.extend([0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22, 0x03, 0x62, 0x00, 0x04]);
    spki.extend([0x01; 96]);
    assert_eq!(
        der::spki_public_key(&spki),
        Err(DerError::UnsupportedAlgorithm("1.3.132.0.34".into()))
    );
}
