//! **Not a stable interface.** The parsers of what a token endpoint or an
//! issuer answers, reachable for the fuzz targets in `fuzz/` (which live in
//! a workspace of their own and can only call public items). Each function
//! is the crate's own code path, not a copy.
//!
//! Compiled only under `--cfg fuzzing` (the fuzz build): never in a release
//! binary.

use std::time::{Duration, SystemTime};

use reqwest::{StatusCode, Url};

use crate::{AccessToken, EndpointError, Error};

/// A token response body (RFC 6749 §5.1) from `url`, as the client reads it.
pub fn token_response(
    url: &str,
    body: &[u8],
    default_lifetime: Option<Duration>,
) -> Result<AccessToken, Error> {
    crate::token_endpoint::response::parse_token_response(url, body, default_lifetime)
}

/// An error response (RFC 6749 §5.2) with `status`, as the client reads it;
/// `None` for a status that is not an HTTP status code.
pub fn error_response(
    url: &str,
    status: u16,
    body: &[u8],
    retry_after: Option<Duration>,
) -> Option<EndpointError> {
    let status = StatusCode::from_u16(status).ok()?;
    Some(crate::token_endpoint::response::parse_error_response(
        url,
        status,
        body,
        retry_after,
    ))
}

/// The token endpoint named by a discovery document served at `url` for
/// `issuer` (oidc-core's strict document reader, then the client's checks).
pub fn discovery(issuer: &str, url: &Url, body: &[u8], allow_plain_http: bool) -> Result<Url, Error> {
    crate::token_endpoint::discovery::token_endpoint_in(issuer, url, body, allow_plain_http)
}

/// A `Retry-After` value read at wall-clock time `now`.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    crate::retry_after::parse(value, now)
}
