//! [`RemoteJwksBuilder`]: the settings of a [`RemoteJwks`], their checks,
//! the URL rules applied to its target, and its HTTP client.

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use url::Url;

use super::cache::{Flight, Inner, Limits, Source, State};
use super::{
    fetch, RemoteJwks, DEFAULT_CACHE_MAX, DEFAULT_CACHE_MIN, DEFAULT_MAX_BODY, DEFAULT_REFETCH_COOLDOWN,
    DEFAULT_STALE_LIMIT, DEFAULT_TIMEOUT, DISCOVERY_PATH,
};
use crate::clock::{MonotonicClock, SystemMonotonicClock};
use crate::http::{self, client_builder, HttpClientError, PlainHttp, UrlError};
use crate::text;

/// Why a [`RemoteJwks`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteJwksError {
    /// Not an absolute URL.
    #[error("{what} {url:?} is not a valid URL: {reason}")]
    InvalidUrl {
        /// Which URL (`JWKS URL`, `issuer`).
        what: &'static str,
        /// The URL as given (shortened).
        url: String,
        /// The parser's complaint.
        reason: String,
    },
    /// Neither `https` nor `http` to a loopback address.
    #[error("{what} {url:?} must use https (plain http is allowed only to a loopback address)")]
    Insecure {
        /// Which URL.
        what: &'static str,
        /// The URL as given (shortened).
        url: String,
    },
    /// User name or password in the URL: they would travel in every request
    /// and show up in every error message.
    #[error("{what} must not contain credentials")]
    Credentials {
        /// Which URL.
        what: &'static str,
    },
    /// An issuer with a query or fragment (OpenID Connect Discovery §3).
    #[error("issuer {0:?} must not have a query or fragment")]
    IssuerQuery(String),
    /// `cache_min` above `cache_max`.
    #[error("cache lifetime bounds are inconsistent: minimum {min:?} is above maximum {max:?}")]
    CacheBounds {
        /// The minimum.
        min: Duration,
        /// The maximum.
        max: Duration,
    },
    /// `failure_backoff` below `refetch_cooldown`.
    #[error("the failure backoff of {backoff:?} is below the refetch cooldown of {cooldown:?}")]
    BackoffBelowCooldown {
        /// The maximum backoff.
        backoff: Duration,
        /// The cooldown.
        cooldown: Duration,
    },
    /// A setting that must be positive is zero.
    #[error("{0} must be positive")]
    Zero(&'static str),
    /// The HTTPS client could not be set up.
    #[error(transparent)]
    Http(#[from] HttpClientError),
    /// The HTTP client could not be built with these settings.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// Builds a [`RemoteJwks`]; start with [`RemoteJwks::builder`] or
/// [`RemoteJwks::discovery`].
#[must_use]
#[derive(Debug, Clone)]
pub struct RemoteJwksBuilder {
    target: Target,
    cache_min: Duration,
    cache_max: Duration,
    cooldown: Duration,
    stale_limit: Duration,
    backoff: Option<Duration>,
    timeout: Duration,
    max_body: usize,
    clock: Arc<dyn MonotonicClock>,
    shared: Option<Shared>,
}

/// What the sources of a trust registry share: one HTTP client (one
/// connection pool, one TLS configuration) and one cap on fetches in flight.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) client: reqwest::Client,
    pub(crate) permits: Arc<tokio::sync::Semaphore>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("available_permits", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Target {
    Jwks(String),
    Issuer(String),
}

impl Target {
    /// Applies the URL rules: what `build` refuses, without building anything.
    pub(crate) fn check(&self) -> Result<(), RemoteJwksError> {
        self.source().map(drop)
    }

    fn source(&self) -> Result<Source, RemoteJwksError> {
        Ok(match self {
            Target::Jwks(url) => Source::Jwks(checked_url("JWKS URL", url)?),
            Target::Issuer(issuer) => {
                let parsed = checked_url("issuer", issuer)?;
                if parsed.query().is_some() || parsed.fragment().is_some() {
                    return Err(RemoteJwksError::IssuerQuery(text::excerpt(issuer)));
                }
                let base = issuer.strip_suffix('/').unwrap_or(issuer);
                let document = checked_url("issuer", &format!("{base}{DISCOVERY_PATH}"))?;
                Source::Discovery {
                    issuer: issuer.clone(),
                    document,
                    jwks: OnceLock::new(),
                }
            }
        })
    }
}

impl RemoteJwksBuilder {
    pub(super) fn new(target: Target) -> Self {
        Self {
            target,
            cache_min: DEFAULT_CACHE_MIN,
            cache_max: DEFAULT_CACHE_MAX,
            cooldown: DEFAULT_REFETCH_COOLDOWN,
            stale_limit: DEFAULT_STALE_LIMIT,
            backoff: None,
            timeout: DEFAULT_TIMEOUT,
            max_body: DEFAULT_MAX_BODY,
            clock: Arc::new(SystemMonotonicClock::new()),
            shared: None,
        }
    }

    /// Shortest cache lifetime, whatever `Cache-Control` says (default 60 s);
    /// also the lifetime of a response without `max-age`.
    pub fn cache_min(mut self, min: Duration) -> Self {
        self.cache_min = min;
        self
    }

    /// Longest cache lifetime, whatever `Cache-Control` says (default 1 h).
    pub fn cache_max(mut self, max: Duration) -> Self {
        self.cache_max = max;
        self
    }

    /// Least time between two fetches after the first (default 30 s): bounds
    /// the refetches caused by unknown kids and the retries of a failing
    /// endpoint. Must be positive.
    pub fn refetch_cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// How long past its lifetime the last good set stays in use while
    /// fetches fail (default 24 h). Zero: never past its lifetime.
    pub fn stale_limit(mut self, limit: Duration) -> Self {
        self.stale_limit = limit;
        self
    }

    /// Longest time between fetches while they keep failing (default: the
    /// cooldown, so no growth). After `n` consecutive failures the least time
    /// before the next fetch is the cooldown times 2<sup>n-1</sup>, up to
    /// `max`; a success resets it. Must not be below the cooldown.
    pub fn failure_backoff(mut self, max: Duration) -> Self {
        self.backoff = Some(max);
        self
    }

    /// Fetches through `shared`'s client and under its cap on fetches in
    /// flight (a permit is held for the whole fetch, discovery included).
    pub(crate) fn shared(mut self, shared: Shared) -> Self {
        self.shared = Some(shared);
        self
    }

    /// Bound on one HTTP exchange, connection and body included (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Largest response body accepted, in bytes (default 256 KiB).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Uses `clock` for cache ages and cooldowns instead of the system's
    /// monotonic clock (tests step over lifetimes with
    /// [`ManualMonotonicClock`](crate::clock::ManualMonotonicClock)).
    pub fn clock(mut self, clock: Arc<dyn MonotonicClock>) -> Self {
        self.clock = clock;
        self
    }

    /// Checks the settings and builds the source. Nothing is fetched until
    /// the first lookup (or [`RemoteJwks::refresh`]).
    pub fn build(self) -> Result<RemoteJwks, RemoteJwksError> {
        if self.cache_min > self.cache_max {
            return Err(RemoteJwksError::CacheBounds {
                min: self.cache_min,
                max: self.cache_max,
            });
        }
        if self.cache_max.is_zero() {
            return Err(RemoteJwksError::Zero("the maximum cache lifetime"));
        }
        if self.cooldown.is_zero() {
            return Err(RemoteJwksError::Zero("the refetch cooldown"));
        }
        if self.timeout.is_zero() {
            return Err(RemoteJwksError::Zero("the timeout"));
        }
        if self.max_body == 0 {
            return Err(RemoteJwksError::Zero("the body size cap"));
        }
        let backoff = self.backoff.unwrap_or(self.cooldown);
        if backoff < self.cooldown {
            return Err(RemoteJwksError::BackoffBelowCooldown {
                backoff,
                cooldown: self.cooldown,
            });
        }
        let source = self.target.source()?;
        let (client, permits) = match self.shared {
            Some(shared) => (shared.client, Some(shared.permits)),
            None => (http_client(self.timeout)?, None),
        };
        Ok(RemoteJwks {
            inner: Arc::new(Inner {
                source,
                client,
                permits,
                limits: Limits {
                    cache_min: self.cache_min,
                    cache_max: self.cache_max,
                    cooldown: self.cooldown,
                    backoff,
                    stale_limit: self.stale_limit,
                    max_body: self.max_body,
                },
                clock: self.clock,
                state: ArcSwap::from_pointee(State::default()),
                flight: Mutex::new(Flight::default()),
                fetches: AtomicU64::new(0),
                failures: AtomicU64::new(0),
            }),
        })
    }
}

/// The HTTP client of a remote source: the workspace's TLS setup, `timeout`
/// per exchange, redirects only within the origin.
pub(crate) fn http_client(timeout: Duration) -> Result<reqwest::Client, RemoteJwksError> {
    client_builder()?
        .timeout(timeout)
        .redirect(fetch::redirect_policy())
        .user_agent(concat!("oidc-core/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| RemoteJwksError::Client(http::error_chain(&e)))
}

/// [`http::checked_url`] with the errors of this module (the URL shortened:
/// it may come from a discovery document).
pub(crate) fn checked_url(what: &'static str, text: &str) -> Result<Url, RemoteJwksError> {
    http::checked_url(what, text, PlainHttp::LoopbackOnly).map_err(|e| match e {
        UrlError::Invalid { what, url, reason } => RemoteJwksError::InvalidUrl {
            what,
            url: text::excerpt(&url),
            reason,
        },
        UrlError::Insecure { what, url } => RemoteJwksError::Insecure {
            what,
            url: text::excerpt(&url),
        },
        UrlError::Credentials { what } => RemoteJwksError::Credentials { what },
    })
}
