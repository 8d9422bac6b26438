//! The one HTTP-fetch policy of the workspace (feature `http`), used by the
//! control plane's JWKS source, the connector's token client and the token
//! server's outbound calls alike:
//!
//! - [`client_builder`]: reqwest on rustls with ring (the workspace keeps a
//!   single crypto stack) and the platform's trust store;
//! - [`checked_url`]: `https`, or plain `http` only to a loopback host; no
//!   credentials in the URL;
//! - [`read_capped`]: a response body read up to a size cap, announced or not;
//! - [`error_chain`]: a reqwest error and its causes, without the URL;
//! - [`shown`]: a URL for messages (no query, which may carry a secret);
//! - [`fetch_discovery`]: an OpenID Connect / RFC 8414 discovery document
//!   whose `issuer` is byte-equal to the expected one.
//!
//! Public because its types are in other public signatures
//! (`verify::RemoteJwksError`, with the `remote` feature, carries an
//! [`HttpClientError`]; connector-client hands out [`client_builder`] for
//! requests that carry its tokens), and because a program beside the
//! verifier or the client is best served by the same policy.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use reqwest::header::ACCEPT;
use reqwest::StatusCode;
use rustls_platform_verifier::BuilderVerifierExt;
use serde_json::{Map, Value};
use url::{Host, Url};

use crate::json::{self, JsonError};
use crate::text;

/// Why the HTTPS client could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot set up the HTTPS client: {0}")]
pub struct HttpClientError(String);

impl HttpClientError {
    /// An error with this explanation.
    pub fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

/// A reqwest builder with TLS configured; add timeouts and redirect policy to taste.
///
/// ```
/// let client = oidc_core::http::client_builder().unwrap().build().unwrap();
/// # drop(client);
/// ```
pub fn client_builder() -> Result<reqwest::ClientBuilder, HttpClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpClientError(e.to_string()))?
        .with_platform_verifier()
        .map_err(|e| HttpClientError(e.to_string()))?
        .with_no_client_auth();
    Ok(reqwest::Client::builder().tls_backend_preconfigured(tls))
}

/// Whether plain `http://` is allowed beyond loopback hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainHttp {
    /// `http` only to `127.0.0.0/8`, `::1` or `localhost` (the default everywhere).
    LoopbackOnly,
    /// `http` to any host: credentials and tokens travel unencrypted (test networks only).
    DangerAnywhere,
}

/// A URL refused by [`checked_url`]. `url` is the text as given: callers
/// shorten it where it came from a stranger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    /// Not an absolute URL.
    Invalid {
        /// Which URL (`JWKS URL`, `token URL`, ...).
        what: &'static str,
        /// The text.
        url: String,
        /// The parser's complaint.
        reason: String,
    },
    /// Neither `https` nor (where allowed) `http`.
    Insecure {
        /// Which URL.
        what: &'static str,
        /// The text.
        url: String,
    },
    /// A user name or password in the URL: they would travel in every request
    /// and show up in every error message.
    Credentials {
        /// Which URL.
        what: &'static str,
    },
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid { what, url, reason } => write!(f, "{what} {url:?} is not a valid URL: {reason}"),
            Self::Insecure { what, url } => write!(
                f,
                "{what} {url:?} must use https (plain http is allowed only to a loopback address)"
            ),
            Self::Credentials { what } => write!(f, "{what} must not contain credentials"),
        }
    }
}

impl std::error::Error for UrlError {}

/// Parses `text` and applies the workspace's rule for URLs it sends requests
/// to: `https` with a host, or `http` to a loopback host (any host with
/// [`PlainHttp::DangerAnywhere`]); never credentials.
///
/// ```
/// use oidc_core::http::{checked_url, PlainHttp};
/// assert!(checked_url("JWKS URL", "https://tokens.example.com/jwks", PlainHttp::LoopbackOnly).is_ok());
/// assert!(checked_url("JWKS URL", "http://127.0.0.1:8080/jwks", PlainHttp::LoopbackOnly).is_ok());
/// assert!(checked_url("JWKS URL", "http://tokens.example.com/jwks", PlainHttp::LoopbackOnly).is_err());
/// ```
pub fn checked_url(what: &'static str, text: &str, plain_http: PlainHttp) -> Result<Url, UrlError> {
    let url = Url::parse(text).map_err(|e| UrlError::Invalid {
        what,
        url: text.to_owned(),
        reason: e.to_string(),
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Credentials { what });
    }
    let allowed = match (url.scheme(), url.host()) {
        ("https", Some(_)) => true,
        ("http", Some(host)) => plain_http == PlainHttp::DangerAnywhere || is_loopback(&host),
        _ => false,
    };
    if !allowed {
        return Err(UrlError::Insecure {
            what,
            url: text.to_owned(),
        });
    }
    Ok(url)
}

/// Whether `host` is a loopback address or `localhost`.
pub fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        Host::Ipv6(ip) => IpAddr::V6(*ip).is_loopback(),
        Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
    }
}

/// A URL for messages and logs: origin and path, no query or fragment.
pub fn shown(url: &Url) -> String {
    format!("{}{}", url.origin().ascii_serialization(), url.path())
}

/// A reqwest error's causes (what actually happened: connection refused, a
/// certificate refused, a redirect refused), without the URL that reqwest's
/// own `Display` adds (a URL may carry a query with a secret in it).
pub fn error_chain(error: &reqwest::Error) -> String {
    let mut text = String::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if text.is_empty() {
        text = FailureKind::of(error).describe().to_owned();
    }
    text
}

/// What kind of failure a request met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// No connection could be made (DNS, refused, TLS handshake).
    Connect,
    /// The request or the connection timed out.
    Timeout,
    /// Anything else (connection reset, malformed HTTP, a redirect refused).
    Other,
}

impl FailureKind {
    /// The kind of `error`.
    pub fn of(error: &reqwest::Error) -> Self {
        if error.is_timeout() {
            Self::Timeout
        } else if error.is_connect() {
            Self::Connect
        } else {
            Self::Other
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Connect => "cannot connect",
            Self::Timeout => "timed out",
            Self::Other => "request failed",
        }
    }
}

/// A request that did not complete: its kind and [`error_chain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFailure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// What happened.
    pub detail: String,
}

impl RequestFailure {
    /// The failure `error` describes.
    pub fn from_reqwest(error: &reqwest::Error) -> Self {
        Self {
            kind: FailureKind::of(error),
            detail: error_chain(error),
        }
    }
}

impl fmt::Display for RequestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

/// A response body that could not be read in full.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// Larger than the cap (announced by `Content-Length`, or as it arrived).
    #[error("response body is larger than {limit} bytes")]
    TooLarge {
        /// The cap.
        limit: usize,
    },
    /// The connection failed or timed out while reading.
    #[error("{0}")]
    Body(RequestFailure),
}

/// Reads `response`'s body, refusing more than `limit` bytes: at once when
/// `Content-Length` announces more, else as soon as more has arrived (a
/// chunked body announces nothing).
pub async fn read_capped(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, ReadError> {
    let announced = response.content_length().unwrap_or(0);
    if announced > limit as u64 {
        return Err(ReadError::TooLarge { limit });
    }
    let mut body = Vec::with_capacity(usize::try_from(announced).unwrap_or(0));
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if chunk.len() > limit - body.len() {
                    return Err(ReadError::TooLarge { limit });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(ReadError::Body(RequestFailure::from_reqwest(&e))),
        }
    }
}

/// A discovery document whose `issuer` is the expected one.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The URL it was read from.
    pub url: Url,
    /// The document (strict JSON: no duplicate members).
    pub document: Map<String, Value>,
}

/// Why no discovery document could be had; `url` is the last one asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryError {
    /// The document URL (as [`shown`]).
    pub url: String,
    /// What went wrong.
    pub problem: DiscoveryProblem,
}

/// What went wrong with a discovery document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryProblem {
    /// The request failed.
    Request(RequestFailure),
    /// Not `200 OK`.
    Status(u16),
    /// Larger than the cap.
    TooLarge(usize),
    /// Not a strict JSON object.
    NotJson(JsonError),
    /// `issuer` is absent, not a string, or not byte-equal to the expected issuer.
    IssuerMismatch {
        /// The `issuer` found, if it is a string (shortened).
        found: Option<String>,
        /// The issuer expected (shortened).
        expected: String,
    },
}

impl fmt::Display for DiscoveryProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Request(failure) => write!(f, "request failed: {failure}"),
            Self::Status(status) => write!(f, "answered HTTP {status}"),
            Self::TooLarge(limit) => write!(f, "response is larger than {limit} bytes"),
            Self::NotJson(e) => write!(f, "{e}"),
            Self::IssuerMismatch {
                found: Some(found),
                expected,
            } => {
                write!(f, "issuer {found:?} is not the expected issuer {expected:?}")
            }
            Self::IssuerMismatch { found: None, .. } => f.write_str("\"issuer\" is missing or not a string"),
        }
    }
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "discovery document {}: {}", self.url, self.problem)
    }
}

impl std::error::Error for DiscoveryError {}

/// Reads the body of a `200 OK` discovery answer from `url`: a strict JSON
/// object whose `issuer` is byte-equal to `issuer`. What [`fetch_discovery`]
/// does with each body, without the network (the fuzz targets call it).
pub fn discovery_document(issuer: &str, url: &Url, body: &[u8]) -> Result<Discovered, DiscoveryError> {
    let fail = |problem| DiscoveryError {
        url: shown(url),
        problem,
    };
    let document = json::parse_object(body).map_err(|e| fail(DiscoveryProblem::NotJson(e)))?;
    match document.get("issuer") {
        Some(Value::String(found)) if found == issuer => Ok(Discovered {
            url: url.clone(),
            document,
        }),
        found => Err(fail(DiscoveryProblem::IssuerMismatch {
            found: found.and_then(Value::as_str).map(text::excerpt),
            expected: text::excerpt(issuer),
        })),
    }
}

/// Fetches the first of `candidates` that exists (a `404` moves on to the
/// next) and requires its `issuer` to be byte-equal to `issuer`.
pub async fn fetch_discovery(
    client: &reqwest::Client,
    issuer: &str,
    candidates: &[Url],
    max_body: usize,
) -> Result<Discovered, DiscoveryError> {
    let mut last = None;
    for url in candidates {
        let fail = |problem| DiscoveryError {
            url: shown(url),
            problem,
        };
        let response = client
            .get(url.clone())
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| fail(DiscoveryProblem::Request(RequestFailure::from_reqwest(&e))))?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            last = Some(fail(DiscoveryProblem::Status(404)));
            continue;
        }
        if status != StatusCode::OK {
            return Err(fail(DiscoveryProblem::Status(status.as_u16())));
        }
        let body = read_capped(response, max_body).await.map_err(|e| {
            fail(match e {
                ReadError::TooLarge { limit } => DiscoveryProblem::TooLarge(limit),
                ReadError::Body(failure) => DiscoveryProblem::Request(failure),
            })
        })?;
        return discovery_document(issuer, url, &body);
    }
    Err(last.unwrap_or_else(|| DiscoveryError {
        url: text::excerpt(issuer),
        problem: DiscoveryProblem::Status(404),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let lo = PlainHttp::LoopbackOnly;
        assert!(checked_url("x", "https://tokens.example.com/jwks", lo).is_ok());
        assert!(checked_url("x", "http://127.0.0.1:8080/jwks", lo).is_ok());
        assert!(checked_url("x", "http://127.8.9.10/jwks", lo).is_ok());
        assert!(checked_url("x", "http://[::1]:8080/jwks", lo).is_ok());
        assert!(checked_url("x", "http://localhost:8080/jwks", lo).is_ok());
        for insecure in [
            "http://tokens.example.com/jwks",
            "http://10.0.0.1/jwks",
            "http://[::2]/jwks",
            "http://localhost.example.com/jwks",
            "ftp://tokens.example.com/jwks",
            "file:///etc/passwd",
            "data:,{}",
        ] {
            assert!(
                matches!(checked_url("x", insecure, lo), Err(UrlError::Insecure { .. })),
                "{insecure}"
            );
        }
        assert!(checked_url("x", "http://tokens.example.com/jwks", PlainHttp::DangerAnywhere).is_ok());
        assert!(checked_url("x", "ftp://tokens.example.com/jwks", PlainHttp::DangerAnywhere).is_err());
        assert!(matches!(
            checked_url("x", "https://user:pw@tokens.example.com/jwks", lo),
            Err(UrlError::Credentials { .. })
        ));
        assert!(matches!(
            checked_url("x", "/jwks", lo),
            Err(UrlError::Invalid { .. })
        ));
    }

    #[test]
    fn shown_urls_drop_queries() {
        let url = Url::parse("https://tokens.example.com:8443/jwks?api_key=secret#frag").unwrap();
        assert_eq!(shown(&url), "https://tokens.example.com:8443/jwks");
    }
}
