//! `oidc_core::keys::der::spki_public_key`, the reader of the
//! `SubjectPublicKeyInfo` that KMS `GetPublicKey` answers with.
//!
//! Properties: a key is read only from canonical DER (the input is exactly
//! the minimal SPKI encoding of the key read: P-256 uncompressed, Ed25519,
//! or RSA with `NULL` parameters); the key survives its JWK; and it is
//! usable for verification under its default algorithm.

use oidc_core::keys::der;
use oidc_core::keys::{PublicKey, VerifyingKey};

use crate::der_signature::{der_element, der_integer};

/// `AlgorithmIdentifier` of id-ecPublicKey with prime256v1.
const EC_P256: &[u8] = &[
    0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07,
];
/// `AlgorithmIdentifier` of id-ecPublicKey with secp384r1.
const EC_P384: &[u8] = &[
    0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00,
    0x22,
];
/// `AlgorithmIdentifier` of id-Ed25519 (no parameters).
const ED25519: &[u8] = &[0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];
/// `AlgorithmIdentifier` of rsaEncryption with `NULL` parameters.
const RSA: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];

/// The canonical SPKI DER of `key`.
pub fn encode(key: &PublicKey) -> Vec<u8> {
    let (algorithm, subject) = match key {
        PublicKey::P256(point) => (EC_P256, point.to_vec()),
        PublicKey::P384(point) => (EC_P384, point.to_vec()),
        PublicKey::Ed25519(x) => (ED25519, x.to_vec()),
        PublicKey::Rsa { n, e } => {
            let mut ints = der_integer(n);
            ints.extend(der_integer(e));
            (RSA, der_element(0x30, &ints))
        }
    };
    let mut bits = vec![0u8];
    bits.extend(subject);
    let mut info = algorithm.to_vec();
    info.extend(der_element(0x03, &bits));
    der_element(0x30, &info)
}

pub fn run(data: &[u8]) {
    let Ok(key) = der::spki_public_key(data) else {
        return;
    };
    assert_eq!(
        encode(&key),
        data,
        "a key read from DER that is not its canonical SPKI"
    );
    let verifying = VerifyingKey::with_thumbprint(key.default_algorithm(), key.clone())
        .expect("a key read from SPKI is usable under its default algorithm");
    let again = VerifyingKey::from_jwk(&verifying.to_jwk()).expect("its JWK is usable");
    assert_eq!(again.public_key(), &key, "the key changed through its JWK");
}
