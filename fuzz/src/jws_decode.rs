//! `oidc_core::jws::UnverifiedJws::decode`, the strict compact-JWS decoder.
//!
//! Input: the token text; or, when the first byte is `0x01`, a header, a
//! payload and a signature separated by `\n`, which the target base64url
//! encodes itself (so the fuzzer works on the JSON, not on its encoding).
//!
//! Properties of an accepted token: at most the size cap; exactly three
//! parts; each part is the canonical base64url of its bytes (one token has
//! one encoding); the header is a strict JSON object whose `alg`, `kid` and
//! `typ` are what `header()` says, with none of the forbidden parameters.

use oidc_core::jws::{JwsError, UnverifiedJws, DEFAULT_MAX_LEN, FORBIDDEN_HEADER_PARAMETERS};
use oidc_core::{base64url, json};
use serde_json::Value;

/// Builds `b64(header).b64(payload).b64(signature)` from `\n`-separated parts.
pub fn assemble(data: &[u8]) -> String {
    let parts = crate::split(data, b'\n', 3);
    parts.iter().map(base64url::encode).collect::<Vec<_>>().join(".")
}

pub fn run(data: &[u8]) {
    let token = match data.split_first() {
        Some((1, rest)) => assemble(rest),
        _ => match std::str::from_utf8(data) {
            Ok(text) => text.to_owned(),
            Err(_) => return,
        },
    };
    check(&token);
}

/// Decodes `token` and checks what an accepted one must satisfy.
pub fn check(token: &str) {
    let Ok(jws) = UnverifiedJws::decode(token, DEFAULT_MAX_LEN) else {
        return;
    };
    assert!(token.len() <= DEFAULT_MAX_LEN, "accepted a token over the cap");
    assert!(
        matches!(
            UnverifiedJws::decode(token, token.len() - 1),
            Err(JwsError::TooLarge { .. })
        ),
        "the cap is not checked first"
    );
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "accepted a token without exactly three parts");
    let decoded: Vec<Vec<u8>> = parts
        .iter()
        .map(|p| base64url::decode(p).expect("an accepted part is base64url"))
        .collect();
    for (part, bytes) in parts.iter().zip(&decoded) {
        assert_eq!(
            &base64url::encode(bytes),
            part,
            "a part is not canonical base64url"
        );
    }
    assert_eq!(
        jws.unverified_payload(),
        &decoded[1][..],
        "payload is not the decoded part"
    );
    let header = json::parse_object(&decoded[0]).expect("an accepted header is a strict JSON object");
    let reparsed: Value = serde_json::from_slice(&decoded[0]).expect("serde_json reads the header");
    assert_eq!(reparsed, Value::Object(header.clone()));
    for name in FORBIDDEN_HEADER_PARAMETERS {
        assert!(
            !header.contains_key(name),
            "accepted forbidden header parameter {name}"
        );
    }
    let h = jws.header();
    assert_eq!(header.get("alg").and_then(Value::as_str), Some(h.alg.name()));
    assert_eq!(header.get("kid").and_then(Value::as_str), h.kid.as_deref());
    assert_eq!(header.get("typ").and_then(Value::as_str), h.typ.as_deref());
}
