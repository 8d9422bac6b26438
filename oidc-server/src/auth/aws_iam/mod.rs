//! AWS IAM client authentication: the connector proves who it is with its IAM
//! credentials and no static secret, the way Vault's AWS auth does.
//!
//! The client SigV4-signs an `sts:GetCallerIdentity` request with its own
//! credentials and sends it as the client assertion:
//!
//! - `client_assertion_type`: [`AWS_IAM_ASSERTION_TYPE`]
//! - `client_assertion`: base64url (unpadded) of a JSON object
//!   `{"method": "POST", "headers": {name: value, ...}, "body": "Action=GetCallerIdentity&Version=2011-06-15"}`
//! - `client_id`: the connector id (required).
//!
//! The server forwards it to the configured STS endpoint only (never to a URL
//! or host from the request), and STS answers with the caller's ARN, which
//! must match one of the connector's `aws_principals`.
//!
//! What is refused before STS is asked: another method or body; headers other
//! than [`ALLOWED_HEADERS`] or larger than the limits; a missing or wrong
//! issuer header ([`ISSUER_HEADER`]) or one that is not among the SigV4
//! `SignedHeaders` (so a request signed for another service cannot be replayed
//! here); an `X-Amz-Date` more than the allowed skew from the server's clock;
//! a credential scope for another service than `sts`; a missing or unsigned
//! nonce ([`NONCE_HEADER`]); a repeated `Credential`, `SignedHeaders` or
//! `Signature` parameter. After STS has answered with an identity bound to
//! the client, the signature is recorded in the replay store and accepted
//! once; an identity bound to no connector is refused without a record (an
//! AWS account is free: strangers' own credentials must not fill the store
//! or cost the operator a write).

mod binding;
mod sts;

use std::time::Duration;

use oidc_core::calendar::Utc;
use serde_json::Value;

pub(crate) use binding::matches as principal_matches;
pub(crate) use sts::{ask_sts, StsOutcome};

use super::AuthFailure;
use crate::config::AwsIamConfig;

/// `client_assertion_type` of this method.
pub(crate) const AWS_IAM_ASSERTION_TYPE: &str =
    "urn:connector-identity:client-assertion-type:aws-sts-get-caller-identity";
/// The method's name in discovery.
pub(crate) const METHOD: &str = "aws_iam";
/// The header that names this issuer inside the signed request.
pub(crate) const ISSUER_HEADER: &str = "x-connector-token-issuer";
/// A random value the client signs with each request (128 bits or more,
/// base64url): SigV4 is deterministic, so without it two processes sharing
/// one role that sign in the same second would send the same signature,
/// and the second would be refused as a replay.
pub(crate) const NONCE_HEADER: &str = "x-connector-token-nonce";
/// The one request body accepted.
pub(crate) const BODY: &str = "Action=GetCallerIdentity&Version=2011-06-15";
/// Headers a signed request may carry (lower case).
pub(crate) const ALLOWED_HEADERS: [&str; 9] = [
    "authorization",
    "content-type",
    "host",
    "user-agent",
    "x-amz-content-sha256",
    "x-amz-date",
    "x-amz-security-token",
    ISSUER_HEADER,
    NONCE_HEADER,
];
/// Largest assertion accepted (session tokens make them a few KiB).
const MAX_ASSERTION_LEN: usize = 12 * 1024;
/// Largest single header value.
const MAX_HEADER_LEN: usize = 4096;

/// A signed request that passed the local checks, ready to forward. No
/// `Debug`: its headers hold a signature and possibly a session token.
pub(crate) struct SignedRequest {
    pub(crate) headers: Vec<(String, String)>,
    /// The SigV4 signature (hex), a replay key.
    pub(crate) signature: String,
    /// `X-Amz-Date` as Unix seconds.
    pub(crate) signed_at: u64,
}

/// Decodes and checks an assertion for `issuer` at time `now`.
pub(crate) fn parse(
    assertion: &str,
    issuer: &str,
    config: &AwsIamConfig,
    now: u64,
) -> Result<SignedRequest, AuthFailure> {
    let refuse = |reason| AuthFailure::Assertion(reason);
    if assertion.len() > MAX_ASSERTION_LEN {
        return Err(refuse("aws_request_too_large"));
    }
    let json = oidc_core::base64url::decode(assertion).map_err(|_| refuse("aws_request_malformed"))?;
    let request = oidc_core::json::parse_object(&json).map_err(|_| refuse("aws_request_malformed"))?;
    if request.get("method").and_then(Value::as_str) != Some("POST") {
        return Err(refuse("aws_request_not_post"));
    }
    if request.get("body").and_then(Value::as_str) != Some(BODY) {
        return Err(refuse("aws_request_not_get_caller_identity"));
    }
    if request
        .keys()
        .any(|k| !matches!(k.as_str(), "method" | "headers" | "body"))
    {
        return Err(refuse("aws_request_malformed"));
    }
    let Some(Value::Object(raw_headers)) = request.get("headers") else {
        return Err(refuse("aws_request_malformed"));
    };
    let mut headers = Vec::with_capacity(raw_headers.len());
    for (name, value) in raw_headers {
        let name = name.to_ascii_lowercase();
        let value = value.as_str().ok_or(refuse("aws_request_malformed"))?;
        if !ALLOWED_HEADERS.contains(&name.as_str()) {
            return Err(refuse("aws_request_unexpected_header"));
        }
        if value.len() > MAX_HEADER_LEN || value.chars().any(|c| c.is_control()) {
            return Err(refuse("aws_request_header_too_large"));
        }
        if headers.iter().any(|(n, _)| *n == name) {
            return Err(refuse("aws_request_malformed"));
        }
        headers.push((name, value.to_owned()));
    }
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());

    if header(ISSUER_HEADER) != Some(issuer) {
        return Err(refuse("aws_request_wrong_issuer"));
    }
    if let Some(host) = header("host") {
        if !host.eq_ignore_ascii_case(endpoint_authority(&config.sts_endpoint)) {
            return Err(refuse("aws_request_wrong_host"));
        }
    }
    let authorization = header("authorization").ok_or(refuse("aws_request_unsigned"))?;
    let sigv4 = SigV4::parse(authorization).ok_or(refuse("aws_request_unsigned"))?;
    if sigv4.service != "sts" {
        return Err(refuse("aws_request_wrong_service"));
    }
    for required in [ISSUER_HEADER, "host", "x-amz-date"] {
        if !sigv4.signed_headers.iter().any(|h| h == required) {
            return Err(refuse("aws_request_issuer_not_signed"));
        }
    }
    let nonce_ok = header(NONCE_HEADER).is_some_and(|n| {
        (22..=128).contains(&n.len())
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if !nonce_ok || !sigv4.signed_headers.iter().any(|h| h == NONCE_HEADER) {
        return Err(refuse("aws_request_nonce_missing"));
    }
    let signed_at = header("x-amz-date")
        .and_then(parse_amz_date)
        .ok_or(refuse("aws_request_malformed"))?;
    if signed_at.abs_diff(now) > config.max_clock_skew.as_secs() {
        return Err(refuse("aws_request_stale"));
    }
    Ok(SignedRequest {
        signature: sigv4.signature,
        headers,
        signed_at,
    })
}

pub(crate) struct SigV4 {
    pub(crate) service: String,
    pub(crate) signed_headers: Vec<String>,
    pub(crate) signature: String,
}

impl SigV4 {
    /// `AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request, SignedHeaders=a;b, Signature=hex`
    pub(crate) fn parse(value: &str) -> Option<Self> {
        let rest = value.strip_prefix("AWS4-HMAC-SHA256 ")?;
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let (key, val) = part.trim().split_once('=')?;
            let slot = match key {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed,
                "Signature" => &mut signature,
                _ => return None,
            };
            // A repeated parameter could mean one thing to us and another to STS.
            if slot.replace(val).is_some() {
                return None;
            }
        }
        let scope: Vec<&str> = credential?.split('/').collect();
        let [_key_id, _date, _region, service, "aws4_request"] = scope.as_slice() else {
            return None;
        };
        let signature = signature?;
        if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(Self {
            service: (*service).to_owned(),
            signed_headers: signed?.split(';').map(str::to_ascii_lowercase).collect(),
            signature: signature.to_ascii_lowercase(),
        })
    }
}

/// `YYYYMMDDTHHMMSSZ` → Unix seconds.
fn parse_amz_date(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u64> {
        let s = text.get(range)?;
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    // A real instant after 1970: SigV4 dates are printed from Unix time, so
    // no leap second and no February 30 (the fuzz target aws_iam found year 0).
    Utc {
        year: num(0..4)?,
        month: num(4..6)?,
        day: num(6..8)?,
        hour: num(9..11)?,
        minute: num(11..13)?,
        second: num(13..15)?,
    }
    .unix_seconds()
}

fn endpoint_authority(endpoint: &str) -> &str {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

/// A retry hint for clients when STS is unavailable.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_dates() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20240229T123456Z"), Some(1_709_210_096));
        assert_eq!(parse_amz_date("2024-02-29T12:34:56Z"), None);
        assert_eq!(parse_amz_date("20241301T000000Z"), None);
        assert_eq!(parse_amz_date("20240229T000000Z"), Some(1_709_164_800));
        assert_eq!(parse_amz_date("20000229T000000Z"), Some(951_782_400));
    }

    /// Found by the fuzz target `aws_iam`: a year before the epoch with a
    /// month before March underflowed (a panic with overflow checks, a
    /// wrapped date without).
    #[test]
    fn fuzz_regression_amz_date_before_1970() {
        assert_eq!(parse_amz_date("00000101T000000Z"), None);
        assert_eq!(parse_amz_date("00010228T235959Z"), None);
        assert_eq!(parse_amz_date("19691231T235959Z"), None);
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
    }

    /// Found by the fuzz target `aws_iam` (X-Amz-Date must print back as
    /// the instant it was read as): days past the end of the month and a
    /// 60th second were read as a later date.
    #[test]
    fn fuzz_regression_amz_date_not_on_the_calendar() {
        for date in [
            "20230231T221320Z",
            "20230229T000000Z",
            "21000229T000000Z",
            "20230431T000000Z",
            "20231114T221360Z",
        ] {
            assert_eq!(parse_amz_date(date), None, "{date}");
        }
    }

    #[test]
    fn sigv4_authorization() {
        let sig = "a".repeat(64);
        let v = format!("AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/sts/aws4_request, SignedHeaders=host;x-amz-date;x-connector-token-issuer, Signature={sig}");
        let parsed = SigV4::parse(&v).unwrap();
        assert_eq!(parsed.service, "sts");
        assert_eq!(
            parsed.signed_headers,
            ["host", "x-amz-date", "x-connector-token-issuer"]
        );
        assert!(SigV4::parse(
            "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/sts/aws4_request, Signature=zz"
        )
        .is_none());
        assert!(SigV4::parse("Basic abc").is_none());
        for repeated in [
            format!("AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/sts/aws4_request, Credential=X/20240101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature={sig}"),
            format!("AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/sts/aws4_request, SignedHeaders=host, SignedHeaders=x-amz-date, Signature={sig}"),
            format!("AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature={sig}, Signature={sig}"),
        ] {
            assert!(SigV4::parse(&repeated).is_none(), "{repeated}");
        }
    }
}
