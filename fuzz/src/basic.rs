//! The token endpoint's `Authorization: Basic` parser (`parse_basic` in
//! oidc-server, private; reached through its `fuzzing` module).
//!
//! Properties: an accepted header names a non-empty client id and secret;
//! they are exactly what RFC 6749 §2.3.1 says the header encodes (base64
//! of `urlencode(id) ":" urlencode(secret)`, decoded here independently
//! with the percent-encoding crate); and parse → print → parse is stable.

use base64::Engine as _;
use oidc_server::fuzzing::basic;

/// `form-urlencoded` decoding of one value: `+` is a space, then
/// percent-decoding (invalid UTF-8 replaced, as the server does).
fn form_decode(text: &str) -> String {
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

/// What the header means, decoded independently of the server's parser.
fn expected(value: &[u8]) -> Option<(String, String)> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_decode(id), form_decode(secret)))
}

/// Prints an id and secret as the header a client sends.
pub fn print(id: &str, secret: &str) -> String {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", encode(id), encode(secret)))
    )
}

pub fn run(data: &[u8]) {
    let Some((id, secret)) = basic(data) else { return };
    assert!(
        !id.is_empty() && !secret.is_empty(),
        "an empty client id or secret"
    );
    assert_eq!(
        expected(data),
        Some((id.clone(), secret.clone())),
        "the header does not mean this id and secret"
    );
    let printed = print(&id, &secret);
    assert_eq!(
        basic(printed.as_bytes()),
        Some((id, secret)),
        "parse → print → parse changed the credential"
    );
}
