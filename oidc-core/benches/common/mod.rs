//! What the benchmarks share: the test keys, a one-poll executor, the bare
//! ring verify every verification is measured against, and the
//! `jsonwebtoken` baselines, written once for both versions (11 on
//! aws-lc-rs, 9 on ring) through a macro, since their APIs are the same but
//! their types are not.

#![allow(dead_code, unreachable_pub)]

#[cfg(feature = "remote")]
pub mod tenants;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use oidc_core::keys::PublicKey;
use ring::signature::{self as sig, UnparsedPublicKey};

/// The test keys every benchmark signs with.
pub const P256_PEM: &str = include_str!("../../tests/keys/p256.pem");
/// Ed25519.
pub const ED25519_PEM: &str = include_str!("../../tests/keys/ed25519.pem");
/// RSA 2048.
pub const RSA2048_PEM: &str = include_str!("../../tests/keys/rsa2048.pem");

/// Drives a future that never waits (local signing, a static key set, a warm
/// cache) to completion with one poll, as a task would, without a runtime.
pub fn now_or_never<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a local signer, a static key set or a warm cache never waits"),
    }
}

/// The floor of every verification: ring's `UnparsedPublicKey::verify` (RSA:
/// `RsaPublicKeyComponents::verify`) of `signature` over `message`.
pub fn ring_verify(key: &PublicKey, message: &[u8], signature: &[u8]) {
    match key {
        PublicKey::P256(point) => UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point)
            .verify(message, signature)
            .expect("valid"),
        PublicKey::P384(point) => UnparsedPublicKey::new(&sig::ECDSA_P384_SHA384_FIXED, point)
            .verify(message, signature)
            .expect("valid"),
        PublicKey::Ed25519(x) => UnparsedPublicKey::new(&sig::ED25519, x)
            .verify(message, signature)
            .expect("valid"),
        PublicKey::Rsa { n, e } => sig::RsaPublicKeyComponents { n, e }
            .verify(&sig::RSA_PKCS1_2048_8192_SHA256, message, signature)
            .expect("valid"),
    }
}

/// Defines `pub mod $module` around the crate `$krate`: keys built from the
/// same PEM and JWK as ours, and the encode, decode and signature-only calls
/// the benchmarks time.
macro_rules! jsonwebtoken_baseline {
    ($module:ident, $krate:ident) => {
        pub mod $module {
            use std::str::FromStr;

            use oidc_core::claims::{AccessTokenClaims, ACCESS_TOKEN_TYP};

            /// One key, one header and one validation, as an application would hold them.
            pub struct Baseline {
                alg: $krate::Algorithm,
                encoding_key: Option<$krate::EncodingKey>,
                decoding_key: $krate::DecodingKey,
                header: $krate::Header,
                validation: $krate::Validation,
            }

            impl Baseline {
                /// `alg` is a JOSE name (`ES256`, ...); `jwk` a public JWK as JSON;
                /// `pem` the private key, when encoding is timed too. Validation
                /// checks issuer, audience, `exp` and `nbf` with `leeway` seconds,
                /// and requires `exp`, `iss`, `aud` and `sub`.
                pub fn new(
                    alg: &str,
                    jwk: &serde_json::Value,
                    pem: Option<&str>,
                    kid: &str,
                    issuer: &str,
                    audience: &str,
                    leeway: u64,
                ) -> Self {
                    let alg = $krate::Algorithm::from_str(alg).expect("algorithm name");
                    let jwk: $krate::jwk::Jwk =
                        serde_json::from_value(jwk.clone()).expect("jsonwebtoken reads the JWK");
                    let encoding_key = pem.map(|pem| {
                        let pem = pem.as_bytes();
                        match alg {
                            $krate::Algorithm::ES256 => $krate::EncodingKey::from_ec_pem(pem),
                            $krate::Algorithm::EdDSA => $krate::EncodingKey::from_ed_pem(pem),
                            _ => $krate::EncodingKey::from_rsa_pem(pem),
                        }
                        .expect("jsonwebtoken reads the PEM")
                    });
                    let mut header = $krate::Header::new(alg);
                    header.typ = Some(ACCESS_TOKEN_TYP.to_owned());
                    header.kid = Some(kid.to_owned());
                    let mut validation = $krate::Validation::new(alg);
                    validation.set_issuer(&[issuer]);
                    validation.set_audience(&[audience]);
                    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
                    validation.validate_exp = true;
                    validation.validate_nbf = true;
                    validation.leeway = leeway;
                    Self {
                        alg,
                        encoding_key,
                        decoding_key: $krate::DecodingKey::from_jwk(&jwk).expect("jsonwebtoken key"),
                        header,
                        validation,
                    }
                }

                /// `encode` of `claims` under the header (`typ`, `kid`).
                pub fn encode(&self, claims: &AccessTokenClaims) -> String {
                    let key = self.encoding_key.as_ref().expect("built with a PEM");
                    $krate::encode(&self.header, claims, key).expect("encode")
                }

                /// `decode::<AccessTokenClaims>` with the validation.
                pub fn decode(&self, token: &str) -> AccessTokenClaims {
                    $krate::decode::<AccessTokenClaims>(token, &self.decoding_key, &self.validation)
                        .expect("decode")
                        .claims
                }

                /// The signature check alone (`crypto::verify`: a base64url
                /// decode of the signature and the crate's crypto backend).
                pub fn verify_signature(&self, signature_b64: &str, signing_input: &[u8]) {
                    let ok =
                        $krate::crypto::verify(signature_b64, signing_input, &self.decoding_key, self.alg)
                            .expect("verify");
                    assert!(ok, "signature refused");
                }
            }
        }
    };
}

jsonwebtoken_baseline!(jwt11, jsonwebtoken);
jsonwebtoken_baseline!(jwt9, jsonwebtoken9);
