//! What one fetch of a [`RemoteJwks`](super::RemoteJwks) does: discovery (once),
//! the JWKS request with `If-None-Match`, the size cap, `Cache-Control`, the
//! same-origin redirect rule, and why a fetch failed.

use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AGE, CACHE_CONTROL, ETAG, IF_NONE_MATCH};
use reqwest::StatusCode;
use serde_json::Value;
use url::Url;

use super::builder::checked_url;
use super::cache::{Inner, Source, State};
use crate::http::{self, shown, DiscoveryProblem, FailureKind, ReadError, RequestFailure};
use crate::jwks::{JwkSet, JwkSetError};
use crate::keys::KeyError;
use crate::text;

/// Most redirects followed (all within the origin of the first URL).
const MAX_REDIRECTS: usize = 5;
const JWKS_ACCEPT: &str = "application/jwk-set+json, application/json;q=0.9";

impl Inner {
    pub(super) async fn fetch(&self, current: &State) -> Result<Fetched, FetchError> {
        let url = self.jwks_url().await?;
        let mut request = self.client.get(url.clone()).header(ACCEPT, JWKS_ACCEPT);
        // Only revalidate what we can fall back on.
        let revalidating = match (&current.keys, &current.etag) {
            (Some(_), Some(etag)) => {
                request = request.header(IF_NONE_MATCH, etag.clone());
                true
            }
            _ => false,
        };
        let response = request.send().await.map_err(|e| FetchError::request(&url, &e))?;
        let status = response.status();
        let headers = response.headers();
        let etag = headers.get(ETAG).cloned();
        let max_age = max_age(headers);
        if status == StatusCode::NOT_MODIFIED && revalidating {
            return Ok(Fetched::NotModified { etag, max_age });
        }
        if status != StatusCode::OK {
            return Err(FetchError::Status {
                url: shown(&url),
                status: status.as_u16(),
            });
        }
        let body = http::read_capped(response, self.limits.max_body)
            .await
            .map_err(|e| FetchError::read(&url, e))?;
        let set = JwkSet::from_json(&body).map_err(|error| FetchError::Jwks {
            url: shown(&url),
            error,
        })?;
        if set.is_empty() {
            return Err(FetchError::NoUsableKey {
                url: shown(&url),
                refused: set.refused().len(),
                first: set.refused().first().map(|r| r.reason.to_string()),
            });
        }
        Ok(Fetched::Keys { set, etag, max_age })
    }

    /// The JWKS URL: configured, or discovered (once).
    async fn jwks_url(&self) -> Result<Url, FetchError> {
        let (issuer, document, jwks) = match &self.source {
            Source::Jwks(url) => return Ok(url.clone()),
            Source::Discovery {
                issuer,
                document,
                jwks,
            } => (issuer, document, jwks),
        };
        if let Some(url) = jwks.get() {
            return Ok(url.clone());
        }
        let discovered = http::fetch_discovery(
            &self.client,
            issuer,
            std::slice::from_ref(document),
            self.limits.max_body,
        )
        .await
        .map_err(|e| match e.problem {
            DiscoveryProblem::Request(failure) => FetchError::failed(e.url, failure),
            DiscoveryProblem::Status(status) => FetchError::Status { url: e.url, status },
            DiscoveryProblem::TooLarge(limit) => FetchError::TooLarge { url: e.url, limit },
            problem => FetchError::Discovery {
                url: e.url,
                problem: problem.to_string(),
            },
        })?;
        let discovery_error = |problem: String| FetchError::Discovery {
            url: shown(document),
            problem,
        };
        let doc = discovered.document;
        let Some(Value::String(jwks_uri)) = doc.get("jwks_uri") else {
            return Err(discovery_error("\"jwks_uri\" is missing or not a string".into()));
        };
        let url = checked_url("jwks_uri", jwks_uri).map_err(|e| discovery_error(e.to_string()))?;
        tracing::debug!(issuer = %issuer, jwks_uri = %shown(&url), "OIDC discovery done");
        // Only the single running fetch gets here, so the cell is empty.
        let _ = jwks.set(url.clone());
        Ok(url)
    }
}

pub(super) enum Fetched {
    Keys {
        set: JwkSet,
        etag: Option<HeaderValue>,
        max_age: Option<Duration>,
    },
    NotModified {
        etag: Option<HeaderValue>,
        max_age: Option<Duration>,
    },
}

/// Why a fetch failed; kept to explain later refusals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum FetchError {
    #[error("request to {url} timed out")]
    Timeout { url: String },
    #[error("request to {url} failed: {detail}")]
    Request { url: String, detail: String },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("response from {url} is larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("{url}: {error}")]
    Jwks { url: String, error: JwkSetError },
    #[error("JWKS from {url} has no usable key ({refused} entries refused{})", first.as_ref().map(|f| format!(", the first because: {f}")).unwrap_or_default())]
    NoUsableKey {
        url: String,
        refused: usize,
        first: Option<String>,
    },
    #[error("discovery document {url}: {problem}")]
    Discovery { url: String, problem: String },
}

impl FetchError {
    fn request(url: &Url, error: &reqwest::Error) -> Self {
        Self::failed(shown(url), RequestFailure::from_reqwest(error))
    }

    fn failed(url: String, failure: RequestFailure) -> Self {
        match failure.kind {
            FailureKind::Timeout => Self::Timeout { url },
            _ => Self::Request {
                url,
                detail: failure.detail,
            },
        }
    }

    fn read(url: &Url, error: ReadError) -> Self {
        match error {
            ReadError::TooLarge { limit } => Self::TooLarge {
                url: shown(url),
                limit,
            },
            ReadError::Body(failure) => Self::failed(shown(url), failure),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Jwks(url) => f.write_str(&shown(url)),
            Self::Discovery { issuer, jwks, .. } => match jwks.get() {
                Some(url) => write!(f, "{} (issuer {})", shown(url), text::excerpt(issuer)),
                None => write!(f, "issuer {} (by discovery)", text::excerpt(issuer)),
            },
        }
    }
}

/// The freshness lifetime a response grants: `max-age` (the smallest, if
/// repeated) less `Age`; zero for `no-store` or `no-cache`; `None` without
/// `max-age`. `s-maxage` is for shared caches and ignored.
fn max_age(headers: &HeaderMap) -> Option<Duration> {
    let mut max_age: Option<u64> = None;
    let mut no_cache = false;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let (name, argument) = match directive.split_once('=') {
                Some((name, argument)) => (name.trim(), Some(argument.trim().trim_matches('"'))),
                None => (directive.trim(), None),
            };
            if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
                no_cache = true;
            } else if name.eq_ignore_ascii_case("max-age") {
                if let Some(seconds) = argument.and_then(delta_seconds) {
                    max_age = Some(max_age.map_or(seconds, |m| m.min(seconds)));
                }
            }
        }
    }
    if no_cache {
        return Some(Duration::ZERO);
    }
    let age = headers
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(delta_seconds)
        .unwrap_or(0);
    max_age.map(|m| Duration::from_secs(m.saturating_sub(age)))
}

/// RFC 9111 §1.2.2 delta-seconds: digits only; too large means "very long".
fn delta_seconds(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse().unwrap_or(u64::MAX))
}

/// Follows redirects only within the origin (scheme, host, port) of the first
/// URL: a JWKS endpoint must not be able to send the verifier elsewhere (to
/// plain http, to an internal address).
pub(super) fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let same_origin = attempt
            .previous()
            .first()
            .is_some_and(|first| first.origin() == attempt.url().origin());
        if !same_origin {
            let to = attempt.url().origin().ascii_serialization();
            attempt.error(RedirectRefused(format!(
                "redirect to another origin ({to}) refused"
            )))
        } else if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error(RedirectRefused(format!("more than {MAX_REDIRECTS} redirects")))
        } else {
            attempt.follow()
        }
    })
}

#[derive(Debug)]
struct RedirectRefused(String);

impl fmt::Display for RedirectRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RedirectRefused {}

pub(super) fn log_refused(kid: Option<&str>, reason: &KeyError) {
    match reason {
        // Other key types and curves are expected in mixed sets.
        KeyError::UnsupportedKeyType(_) | KeyError::UnsupportedCurve(_) => {
            tracing::debug!(kid = ?kid, %reason, "JWKS entry skipped");
        }
        _ => tracing::warn!(kid = ?kid, %reason, "JWKS entry refused"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn cache_control() {
        let s = Duration::from_secs;
        assert_eq!(max_age(&headers(&[])), None);
        assert_eq!(
            max_age(&headers(&[("cache-control", "public, max-age=300")])),
            Some(s(300))
        );
        assert_eq!(
            max_age(&headers(&[("cache-control", "Max-Age=\"30\"")])),
            Some(s(30))
        );
        assert_eq!(
            max_age(&headers(&[("cache-control", "max-age=300"), ("age", "100")])),
            Some(s(200))
        );
        assert_eq!(
            max_age(&headers(&[("cache-control", "max-age=300"), ("age", "1000")])),
            Some(s(0))
        );
        assert_eq!(
            max_age(&headers(&[
                ("cache-control", "max-age=300"),
                ("cache-control", "max-age=60")
            ])),
            Some(s(60))
        );
        assert_eq!(
            max_age(&headers(&[("cache-control", "max-age=300, no-cache")])),
            Some(s(0))
        );
        assert_eq!(max_age(&headers(&[("cache-control", "no-store")])), Some(s(0)));
        assert_eq!(max_age(&headers(&[("cache-control", "max-age=-1")])), None);
        assert_eq!(max_age(&headers(&[("cache-control", "max-age=1e3")])), None);
        assert_eq!(max_age(&headers(&[("cache-control", "s-maxage=10")])), None);
        assert_eq!(
            max_age(&headers(&[("cache-control", "max-age=99999999999999999999999")])),
            Some(s(u64::MAX))
        );
    }
}
