//! The SigV4 `Authorization` parser of `aws_iam` assertions
//! (`SigV4::parse` in oidc-server, private; reached through its
//! `fuzzing` module).
//!
//! Properties: parse → print → parse is stable; an accepted value has a
//! 64-digit lower-case hex signature and lower-case signed header names.

use oidc_server::fuzzing::{sigv4, SigV4Parts};

/// Prints `parts` as an `Authorization` value the parser reads.
pub fn print(parts: &SigV4Parts) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/us-east-1/{}/aws4_request, SignedHeaders={}, Signature={}",
        parts.service,
        parts.signed_headers.join(";"),
        parts.signature
    )
}

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(parts) = sigv4(text) else { return };
    assert_eq!(parts.signature.len(), 64);
    assert!(parts
        .signature
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    for name in &parts.signed_headers {
        assert_eq!(
            name,
            &name.to_ascii_lowercase(),
            "a signed header name is not lower case"
        );
    }
    let printed = print(&parts);
    let again = sigv4(&printed).unwrap_or_else(|| panic!("the printed form {printed:?} does not parse"));
    assert_eq!(again, parts, "parse → print → parse changed the value");
}
