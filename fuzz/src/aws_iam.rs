//! oidc-server's `aws_iam::parse` (private; reached through
//! `oidc_server::fuzzing::aws_iam`): the local checks of an `aws_iam`
//! client assertion (a base64url JSON signed `sts:GetCallerIdentity`
//! request) before it is forwarded to STS.
//!
//! Input: the assertion text; or, when the first byte is `0x01`, the JSON
//! that the target base64url encodes itself. The issuer, configuration and
//! clock are fixed (the seeds are signed requests of [`NOW`]).
//!
//! Properties of an accepted request: it names this issuer; every header
//! is allowed, lower case, once, without control characters; its
//! `Authorization` is a SigV4 value for `sts` that signs the issuer, host,
//! date and nonce headers, with the signature that is returned; the nonce
//! is 22–128 base64url characters; the date is a real calendar date and
//! time (printing the returned instant gives the header back) within the
//! allowed skew.

use std::time::{Duration, UNIX_EPOCH};

use oidc_core::base64url;
use oidc_server::config::AwsIamConfig;
use oidc_server::fuzzing::{aws_iam, sigv4, ALLOWED_HEADERS, ISSUER_HEADER, NONCE_HEADER};

/// The issuer the requests must name.
pub const ISSUER: &str = "https://tokens.test";
/// The server's clock (2023-11-14T22:13:20Z).
pub const NOW: u64 = 1_700_000_000;
/// The allowed skew.
pub const SKEW: Duration = Duration::from_secs(300);

fn config() -> AwsIamConfig {
    AwsIamConfig {
        sts_endpoint: "https://sts.us-east-1.amazonaws.com".into(),
        timeout: Duration::from_secs(5),
        max_clock_skew: SKEW,
    }
}

/// `YYYYMMDDTHHMMSSZ` of Unix seconds.
fn amz_date(secs: u64) -> String {
    // httpdate prints "Tue, 14 Nov 2023 22:13:20 GMT".
    let text = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs));
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == &text[8..11])
    .map_or(0, |i| i + 1);
    format!(
        "{}{:02}{}T{}{}{}Z",
        &text[12..16],
        month,
        &text[5..7],
        &text[17..19],
        &text[20..22],
        &text[23..25]
    )
}

pub fn run(data: &[u8]) {
    let assertion = match data.split_first() {
        Some((1, json)) => base64url::encode(json),
        _ => match std::str::from_utf8(data) {
            Ok(text) => text.to_owned(),
            Err(_) => return,
        },
    };
    let Ok(request) = aws_iam(&assertion, ISSUER, &config(), NOW) else {
        return;
    };
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    for (i, (name, value)) in request.headers.iter().enumerate() {
        assert!(
            ALLOWED_HEADERS.contains(&name.as_str()),
            "header {name:?} is not allowed"
        );
        assert_eq!(name, &name.to_ascii_lowercase());
        assert!(
            !value.chars().any(char::is_control),
            "control character in {name}"
        );
        assert!(
            !request.headers[..i].iter().any(|(n, _)| n == name),
            "header {name} twice"
        );
    }
    assert_eq!(header(ISSUER_HEADER), Some(ISSUER));
    let authorization = sigv4(header("authorization").expect("accepted without Authorization"))
        .expect("accepted with an Authorization that is not SigV4");
    assert_eq!(authorization.service, "sts");
    assert_eq!(authorization.signature, request.signature);
    for signed in [ISSUER_HEADER, "host", "x-amz-date", NONCE_HEADER] {
        assert!(
            authorization.signed_headers.iter().any(|h| h == signed),
            "{signed} is not signed"
        );
    }
    let nonce = header(NONCE_HEADER).expect("accepted without a nonce");
    assert!((22..=128).contains(&nonce.len()));
    assert!(nonce
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert!(
        request.signed_at.abs_diff(NOW) <= SKEW.as_secs(),
        "accepted outside the skew"
    );
    let date = header("x-amz-date").expect("accepted without X-Amz-Date");
    assert_eq!(
        amz_date(request.signed_at),
        date,
        "X-Amz-Date {date:?} is not the instant it was read as"
    );
}
