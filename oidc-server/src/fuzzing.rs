//! **Not a stable interface.** The parsers of request text that are private
//! to this crate, reachable for the fuzz targets in `fuzz/` (a workspace of
//! its own, which can only call public items): the form reader, client
//! authentication's credential finder, the `Basic` header, `aws_iam`
//! assertions and SigV4 headers. Each function is the crate's own code
//! path, not a copy, with its answer in a type of this module (the crate's
//! own types stay private); [`app`](crate::app) is public already.
//!
//! Compiled only under `--cfg fuzzing` (the fuzz build): never in a release
//! binary.

use axum::http::HeaderMap;

use crate::config::AwsIamConfig;

/// `client_assertion_type` of RFC 7523 (`private_key_jwt`).
pub const JWT_BEARER: &str = crate::auth::JWT_BEARER;
/// `client_assertion_type` of `aws_iam`.
pub const AWS_IAM_ASSERTION_TYPE: &str = crate::auth::aws_iam::AWS_IAM_ASSERTION_TYPE;
/// The header that names the issuer inside an `aws_iam` signed request.
pub const ISSUER_HEADER: &str = crate::auth::aws_iam::ISSUER_HEADER;
/// The header of the nonce an `aws_iam` client signs.
pub const NONCE_HEADER: &str = crate::auth::aws_iam::NONCE_HEADER;
/// The only headers an `aws_iam` signed request may carry.
pub const ALLOWED_HEADERS: &[&str] = &crate::auth::aws_iam::ALLOWED_HEADERS;

/// A token request body read by the token endpoint's strict form reader.
#[derive(Debug)]
pub struct Form(crate::form::Form);

/// A parameter that may appear at most once appears more than once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepeatedParameter;

impl Form {
    /// Parses `body` as the token endpoint does.
    pub fn parse(body: &[u8]) -> Self {
        Self(crate::form::Form::parse(body))
    }

    /// Every parameter in order, as parsed.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.pairs()
    }

    /// The value of a parameter that may appear at most once.
    pub fn single<'a>(&'a self, name: &str) -> Result<Option<&'a str>, RepeatedParameter> {
        // The pattern is irrefutable while repetition is the only error, as
        // the `form` target assumes; another variant stops this compiling.
        self.0
            .single(name)
            .map_err(|crate::form::FormError::Repeated| RepeatedParameter)
    }
}

/// The one client credential a request presents (secrets as plain strings:
/// fuzz inputs, not real secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// `client_secret_basic`.
    Basic {
        /// Client id.
        client_id: String,
        /// Secret.
        secret: String,
    },
    /// `client_secret_post`.
    Post {
        /// Client id.
        client_id: String,
        /// Secret.
        secret: String,
    },
    /// `aws_iam`.
    AwsIam {
        /// Client id.
        client_id: String,
        /// The encoded signed request.
        assertion: String,
    },
    /// `private_key_jwt`.
    Assertion {
        /// `client_id`, if sent.
        client_id: Option<String>,
        /// The compact JWS.
        assertion: String,
    },
}

/// The credential the token endpoint finds in `headers` and `form`, if the
/// request presents exactly one it can read.
pub fn credential(headers: &HeaderMap, form: &Form) -> Option<Credential> {
    use crate::auth::Credential as Found;
    Some(match Found::from_request(headers, &form.0).ok()? {
        Found::Basic { client_id, secret } => Credential::Basic {
            client_id,
            secret: secret.as_str().to_owned(),
        },
        Found::Post { client_id, secret } => Credential::Post {
            client_id,
            secret: secret.as_str().to_owned(),
        },
        Found::AwsIam { client_id, assertion } => Credential::AwsIam { client_id, assertion },
        Found::Assertion { client_id, assertion } => Credential::Assertion { client_id, assertion },
    })
}

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
