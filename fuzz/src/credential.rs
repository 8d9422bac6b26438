//! oidc-server's `Credential::from_request` (private; reached through
//! `oidc_server::fuzzing::credential`): which one credential a token
//! request presents (headers and form body).
//!
//! Input: header lines (`Name: value`), an empty line, then the form body
//! (see [`crate::token_endpoint::parse_request`]).
//!
//! Properties: a credential is found only when exactly one method is
//! presented, and it is what the request says: Basic is the one
//! `Authorization` header's id and secret (and a `client_id` in the form,
//! if any, is the same), Post is the form's `client_id` and
//! `client_secret`, `aws_iam` and `private_key_jwt` are the form's
//! assertion with their `client_assertion_type`.

use axum::http::{header, HeaderMap};
use oidc_server::fuzzing::{basic, credential, Credential, Form, AWS_IAM_ASSERTION_TYPE, JWT_BEARER};

/// Reads `Name: value` lines into a header map, skipping lines that are
/// not a valid header.
pub fn headers(lines: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in lines.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name),
            header::HeaderValue::from_bytes(value),
        ) {
            map.append(name, value);
        }
    }
    map
}

pub fn run(data: &[u8]) {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[][..]),
    };
    let headers = headers(head);
    let form = Form::parse(body);
    let Some(credential) = credential(&headers, &form) else {
        return;
    };
    let authorization: Vec<_> = headers.get_all(header::AUTHORIZATION).iter().collect();
    let single = |name| {
        form.single(name)
            .expect("a credential from a form with a repeated parameter")
    };
    let assertion_presented =
        single("client_assertion").is_some() || single("client_assertion_type").is_some();
    let presented = usize::from(!authorization.is_empty())
        + usize::from(single("client_secret").is_some())
        + usize::from(assertion_presented);
    assert_eq!(
        presented, 1,
        "a credential from {presented} authentication methods"
    );
    match &credential {
        Credential::Basic { client_id, secret } => {
            assert_eq!(authorization.len(), 1);
            let (id, s) =
                basic(authorization[0].as_bytes()).expect("Basic credential from an unreadable header");
            assert_eq!((client_id, secret.as_str()), (&id, s.as_str()));
            if let Some(form_id) = single("client_id") {
                assert_eq!(form_id, client_id, "a form client_id other than the header's");
            }
        }
        Credential::Post { client_id, secret } => {
            assert_eq!(single("client_id"), Some(client_id.as_str()));
            assert_eq!(single("client_secret"), Some(secret.as_str()));
        }
        Credential::AwsIam { client_id, assertion } => {
            assert_eq!(single("client_assertion_type"), Some(AWS_IAM_ASSERTION_TYPE));
            assert_eq!(single("client_assertion"), Some(assertion.as_str()));
            assert_eq!(single("client_id"), Some(client_id.as_str()));
        }
        Credential::Assertion { client_id, assertion } => {
            assert_eq!(single("client_assertion_type"), Some(JWT_BEARER));
            assert_eq!(single("client_assertion"), Some(assertion.as_str()));
            assert_eq!(single("client_id"), client_id.as_deref());
        }
    }
}
