//! `oidc_core::keys::der::ecdsa_p256_signature`, the reader of the DER
//! `ECDSA-Sig-Value` that KMS answers with.
//!
//! Input: a DER signature, checked against one fixed key and message (a
//! Wycheproof P-256 key and the message most of its vectors sign), so that
//! mutations of the seeds' valid signatures stay near valid ones.
//!
//! Properties: the converter yields `r‖s` only for canonical DER (the
//! minimal encoding of exactly that `r` and `s`, so never an `r‖s` that
//! ring verifies where the DER was not canonical), with both scalars in
//! `[1, n-1]`; and whenever ring's own DER verifier accepts the input, the
//! converter yields the `r‖s` that verifies.

use oidc_core::keys::der;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_FIXED};

/// The key of Wycheproof's `ecdsa_secp256r1_sha256_test.json` group with
/// the most vectors over [`MESSAGE`] (uncompressed point, hex).
pub const PUBLIC_KEY: &str = "042927b10512bae3eddcfe467828128bad2903269919f7086069c8c4df6c732838c7787964eaac00e5921fb1498a60f4606766b3d9685001558d1a974e7341513e";
/// The message those vectors sign ("123400").
pub const MESSAGE: &[u8] = b"123400";

fn public_key() -> Vec<u8> {
    (0..PUBLIC_KEY.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&PUBLIC_KEY[i..i + 2], 16).unwrap_or(0))
        .collect()
}

/// Minimal DER of a non-negative integer given big-endian.
pub fn der_integer(magnitude: &[u8]) -> Vec<u8> {
    let trimmed = match magnitude.iter().position(|b| *b != 0) {
        Some(i) => &magnitude[i..],
        None => &[0][..],
    };
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed[0] & 0x80 != 0 {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    der_element(0x02, &content)
}

/// DER of one element: tag, minimal length, contents.
pub fn der_element(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let octets: Vec<u8> = len
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | octets.len() as u8);
        out.extend_from_slice(&octets);
    }
    out.extend_from_slice(content);
    out
}

pub fn run(data: &[u8]) {
    let key = public_key();
    let converted = der::ecdsa_p256_signature(data);
    if let Ok(rs) = &converted {
        let mut canonical = der_integer(&rs[..32]);
        canonical.extend(der_integer(&rs[32..]));
        let canonical = der_element(0x30, &canonical);
        assert_eq!(
            canonical, data,
            "r‖s from DER that is not the canonical encoding of r and s"
        );
        assert!(
            rs[..32].iter().any(|b| *b != 0) && rs[32..].iter().any(|b| *b != 0),
            "a zero scalar"
        );
        let fixed = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &key).verify(MESSAGE, rs);
        let asn1 = UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &key).verify(MESSAGE, data);
        assert_eq!(
            fixed.is_ok(),
            asn1.is_ok(),
            "ring disagrees with itself on the converted signature"
        );
    }
    if UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &key)
        .verify(MESSAGE, data)
        .is_ok()
    {
        let rs = converted.expect("ring verifies DER that the converter refuses");
        assert!(
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &key)
                .verify(MESSAGE, &rs)
                .is_ok(),
            "the converted form of a valid DER signature does not verify"
        );
    }
}
