//! **Not a stable interface.** The parsers of request text that are private
//! to this crate, reachable for the fuzz targets in `fuzz/` (a workspace of
//! its own, which can only call public items). Each function is the crate's
//! own code path, not a copy; [`form::Form::parse`](crate::form::Form::parse),
//! [`Credential::from_request`](crate::auth::Credential::from_request) and
//! [`app`](crate::app) are public already.
//!
//! Compiled only under `--cfg fuzzing` (the fuzz build): never in a release
//! binary.

use crate::config::AwsIamConfig;

/// A parsed SigV4 `Authorization` value: what the server keeps of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigV4Parts {
    /// The credential scope's service (`sts` for an accepted request).
    pub service: String,
    /// `SignedHeaders`, lower case.
    pub signed_headers: Vec<String>,
    /// `Signature`, lower-case hex.
    pub signature: String,
}

/// The SigV4 `Authorization` header parser of `aws_iam` assertions.
pub fn sigv4(value: &str) -> Option<SigV4Parts> {
    crate::auth::aws_iam::SigV4::parse(value).map(|p| SigV4Parts {
        service: p.service,
        signed_headers: p.signed_headers,
        signature: p.signature,
    })
}

/// An `aws_iam` assertion that passed the local checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsIamRequest {
    /// The headers that would be forwarded to STS (names lower case).
    pub headers: Vec<(String, String)>,
    /// The SigV4 signature (the replay key).
    pub signature: String,
    /// `X-Amz-Date` as Unix seconds.
    pub signed_at: u64,
}

/// The local checks of an `aws_iam` assertion for `issuer` at `now`; the
/// error is the audit reason.
pub fn aws_iam(
    assertion: &str,
    issuer: &str,
    config: &AwsIamConfig,
    now: u64,
) -> Result<AwsIamRequest, &'static str> {
    crate::auth::aws_iam::parse(assertion, issuer, config, now)
        .map(|r| AwsIamRequest {
            headers: r.headers,
            signature: r.signature,
            signed_at: r.signed_at,
        })
        .map_err(|failure| failure.reason())
}

/// The `Authorization: Basic` parser of the token endpoint: client id and secret.
pub fn basic(value: &[u8]) -> Option<(String, String)> {
    crate::auth::parse_basic(value).map(|(id, secret)| (id, secret.as_str().to_owned()))
}
