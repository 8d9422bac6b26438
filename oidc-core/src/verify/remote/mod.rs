//! A [`KeySource`] that fetches a JWK Set over HTTPS and caches it: from a JWKS
//! URL, or from an issuer through OpenID Connect discovery.
//!
//! It is built against the ways verifiers fail in the field: a rotated key
//! refused for hours because a long `max-age` was honoured and an unknown `kid`
//! never triggered a refetch; a stampede on the JWKS endpoint when a new `kid`
//! appears; a dead JWKS endpoint taking every request down with it.
//!
//! # The algorithm
//!
//! The cached set is one immutable snapshot behind an [`ArcSwap`]: a lookup
//! reads it without a lock and never waits for the network when the set is
//! usable and holds the `kid`.
//!
//! - **Lifetime.** A fetched set is fresh for its `Cache-Control: max-age`
//!   (less `Age`; `no-store`/`no-cache` count as 0; none at all counts as the
//!   minimum), clamped to [[`cache_min`](RemoteJwksBuilder::cache_min),
//!   [`cache_max`](RemoteJwksBuilder::cache_max)] (default 60 s, 1 h).
//!   Refetches send `If-None-Match` with the last `ETag`; a `304` renews the
//!   lifetime of the set in hand.
//! - **Past its lifetime**, the set keeps serving the keys it has while one
//!   background fetch replaces it (stale-while-revalidate).
//! - **Unknown `kid`.** A lookup for a `kid` the set does not hold starts one
//!   refetch and waits for it, unless a fetch started less than the
//!   [`refetch_cooldown`](RemoteJwksBuilder::refetch_cooldown) ago (default
//!   30 s): then it is an unknown key at once. A flood of made-up kids thus
//!   costs the endpoint at most one request per cooldown.
//! - **Single flight.** At most one fetch runs at a time; every lookup that
//!   needs one while it runs waits for that one. The fetch runs in its own
//!   task, so a caller that gives up (a dropped request) does not cancel it
//!   for the others. The cooldown applies to every fetch (after the first),
//!   so a failing endpoint is not retried more than once per cooldown either.
//! - **Failures.** A failed fetch keeps the last good set. It stays in use
//!   until it is [`stale_limit`](RemoteJwksBuilder::stale_limit) past its
//!   lifetime (default 24 h); after that, lookups fail with
//!   [`KeyLookupError::Unavailable`], saying how old the set is and why the last
//!   fetch failed. With no usable set, a lookup waits for a fetch (or fails at
//!   once during the cooldown) rather than every request hammering the endpoint.
//! - **Backoff.** With [`failure_backoff`](RemoteJwksBuilder::failure_backoff),
//!   the least time between fetches doubles after each consecutive failure,
//!   from the cooldown up to that maximum, and falls back to the cooldown
//!   after a success (default: no growth).
//!
//! # What is fetched
//!
//! - HTTPS only; plain `http` only to a loopback address (`127.0.0.0/8`, `::1`,
//!   `localhost`). URLs with credentials are refused.
//! - Bodies over [`max_body`](RemoteJwksBuilder::max_body) (default 256 KiB)
//!   are refused, whether or not `Content-Length` announces them; the whole
//!   exchange is bounded by [`timeout`](RemoteJwksBuilder::timeout) (default
//!   5 s); redirects are followed only within the same scheme, host and port,
//!   five at most.
//! - The set is parsed by [`JwkSet::from_json`]: every key pinned to one
//!   algorithm; entries with `use` other than `sig`, `key_ops` without
//!   `verify`, private members or symmetric keys left out; unknown key types
//!   skipped; duplicate kids make the whole document invalid. A document with
//!   no usable key at all counts as a failed fetch, so it never replaces a good
//!   set.
//! - Discovery fetches `{issuer}/.well-known/openid-configuration` (a trailing
//!   `/` of the issuer removed first, OpenID Connect Discovery §4), requires
//!   its `issuer` to be byte-equal to the configured issuer, and uses its
//!   `jwks_uri` under the same rules. The `jwks_uri` is discovered once, on the
//!   first fetch that succeeds in doing so, and kept for the life of the source.
//!
//! A `RemoteJwks` is cheap to clone (an `Arc` inside); clones share the cache.
//! Fetches run on the Tokio runtime of the lookup that starts them.

mod cache;
mod fetch;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use url::Url;

use self::cache::{wait, Flight, Inner, Limits, Lookup, Source, State};
use super::{KeyLookupError, KeySource};
use crate::http::{self, client_builder, HttpClientError, PlainHttp, UrlError};
use crate::json;
use crate::jwks::JwkSet;
use crate::keys::VerifyingKey;
use crate::time::{MonotonicClock, SystemMonotonicClock};

/// Default shortest cache lifetime: 60 s, whatever `Cache-Control` says.
pub const DEFAULT_CACHE_MIN: Duration = Duration::from_secs(60);
/// Default longest cache lifetime: 1 h, whatever `Cache-Control` says.
pub const DEFAULT_CACHE_MAX: Duration = Duration::from_secs(3600);
/// Default least time between two fetches (unknown kids, failed fetches): 30 s.
pub const DEFAULT_REFETCH_COOLDOWN: Duration = Duration::from_secs(30);
/// Default time a set stays in use past its lifetime while fetches fail: 24 h.
pub const DEFAULT_STALE_LIMIT: Duration = Duration::from_secs(24 * 3600);
/// Default bound on one HTTP exchange (connect, request, body): 5 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default cap on a JWKS or discovery response body: 256 KiB.
pub const DEFAULT_MAX_BODY: usize = 256 * 1024;

/// Appended to the issuer for discovery (OpenID Connect Discovery 1.0 §4).
const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
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

/// A JWKS fetched over HTTPS and cached; see the [module docs](self) for the
/// caching, refetch and staleness rules.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use oidc_core::verify::RemoteJwks;
/// use oidc_core::{AccessTokenClaims, Policy, Verifier};
///
/// let keys = RemoteJwks::discovery("https://tokens.example.com").build()?;
/// let policy = Policy::builder("https://tokens.example.com", ["https://api.example.com"]).build()?;
/// let verifier = Verifier::new(policy, keys);
/// # let token = "";
/// let verified = verifier.verify::<AccessTokenClaims>(token).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RemoteJwks {
    inner: Arc<Inner>,
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
                    return Err(RemoteJwksError::IssuerQuery(json::excerpt(issuer)));
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

/// A snapshot of a [`RemoteJwks`] cache, for readiness checks and diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemoteJwksStatus {
    /// Usable keys in the cached set (0 before the first good fetch).
    pub keys: usize,
    /// Time since the set was last fetched or revalidated.
    pub age: Option<Duration>,
    /// Whether the set is within its cache lifetime.
    pub fresh: bool,
    /// Whether lookups can use the set (fresh, or stale within the limit).
    pub usable: bool,
    /// Why the last fetch failed, if it did.
    pub last_error: Option<String>,
    /// Whether a fetch is under way.
    pub fetching: bool,
    /// Fetches that completed (a `304` included), since the source was built.
    pub fetches: u64,
    /// Of those, the ones that failed.
    pub failures: u64,
    /// Failures since the last successful fetch.
    pub consecutive_failures: u32,
    /// Time until the next fetch may start (cooldown or backoff), if one
    /// may not start now.
    pub next_attempt_in: Option<Duration>,
}

impl RemoteJwks {
    /// Starts a source for the JWK Set at `jwks_url`.
    pub fn builder(jwks_url: impl Into<String>) -> RemoteJwksBuilder {
        RemoteJwksBuilder::new(Target::Jwks(jwks_url.into()))
    }

    /// Starts a source for the JWK Set of `issuer`, found through its OpenID
    /// Connect discovery document. `issuer` is compared byte for byte with the
    /// document's `issuer` (and should be the `iss` of the tokens).
    pub fn discovery(issuer: impl Into<String>) -> RemoteJwksBuilder {
        RemoteJwksBuilder::new(Target::Issuer(issuer.into()))
    }

    /// Fetches the set now, ignoring its lifetime and the cooldown (a fetch
    /// already running is joined instead). Meant for start-up, to fail fast or
    /// warm the cache; calling it per request would defeat the cooldown.
    pub async fn refresh(&self) -> Result<(), KeyLookupError> {
        let now = self.inner.clock.elapsed();
        match self.inner.start_or_join(now, true)? {
            Some(done) => wait(done).await,
            None => return Err(KeyLookupError::Unavailable("no fetch could be started".into())),
        }
        match &self.inner.state.load().failure {
            Some(failure) => Err(KeyLookupError::Unavailable(failure.error.to_string())),
            None => Ok(()),
        }
    }

    /// The state of the cache.
    pub fn status(&self) -> RemoteJwksStatus {
        let now = self.inner.clock.elapsed();
        let state = self.inner.state.load();
        let keys = state.keys.as_ref().map_or(0, |k| k.len());
        let has_keys = state.keys.is_some();
        let flight = self.inner.flight();
        let fetching = flight.running.is_some();
        let next_attempt_in = flight
            .last_start
            .map(|last| {
                last.saturating_add(self.inner.limits.pause(state.consecutive_failures))
                    .saturating_sub(now)
            })
            .filter(|wait| !wait.is_zero());
        drop(flight);
        RemoteJwksStatus {
            keys,
            age: has_keys.then(|| now.saturating_sub(state.fetched_at)),
            fresh: has_keys && now < state.fresh_until,
            usable: has_keys && now < state.fresh_until.saturating_add(self.inner.limits.stale_limit),
            last_error: state.failure.as_ref().map(|f| f.error.to_string()),
            fetching,
            fetches: self.inner.fetches.load(Ordering::Relaxed),
            failures: self.inner.failures.load(Ordering::Relaxed),
            consecutive_failures: state.consecutive_failures,
            next_attempt_in,
        }
    }

    /// The cached key set, if one was fetched (fresh or not).
    pub fn cached(&self) -> Option<Arc<JwkSet>> {
        self.inner.state.load().keys.clone()
    }
}

impl fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.status();
        f.debug_struct("RemoteJwks")
            .field("source", &self.inner.source)
            .field("limits", &self.inner.limits)
            .field("keys", &status.keys)
            .field("fresh", &status.fresh)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl KeySource for RemoteJwks {
    async fn key(&self, kid: &str) -> Result<Arc<VerifyingKey>, KeyLookupError> {
        let inner = &self.inner;
        let now = inner.clock.elapsed();
        let done = match inner.lookup(kid, now) {
            Lookup::Found { key, fresh: true } => return Ok(key),
            Lookup::Found { key, fresh: false } => {
                // Serve what we have; replace it in the background. Whether a
                // fetch starts (or the cooldown holds it back) is not this
                // caller's concern.
                let _ = inner.start_or_join(now, false);
                return Ok(key);
            }
            Lookup::Missing | Lookup::Unusable => inner.start_or_join(now, false)?,
        };
        if let Some(done) = done {
            wait(done).await;
        }
        // Look again, also when the cooldown held a fetch back: a fetch may
        // have landed between the first look and the cooldown check.
        let now = inner.clock.elapsed();
        match inner.lookup(kid, now) {
            Lookup::Found { key, .. } => Ok(key),
            Lookup::Missing => Err(KeyLookupError::unknown(kid)),
            Lookup::Unusable => Err(inner.unavailable(now)),
        }
    }

    fn is_current(&self, key: &Arc<VerifyingKey>) -> bool {
        self.holds_now(key)
    }
}

impl RemoteJwks {
    /// [`KeySource::is_current`]: the set in hand is usable and holds `key`;
    /// a set past its lifetime starts one background refresh, as a lookup
    /// would, so that a cache that never calls [`KeySource::key`] still
    /// notices a rotation.
    fn holds_now(&self, key: &Arc<VerifyingKey>) -> bool {
        let inner = &self.inner;
        let now = inner.clock.elapsed();
        let state = inner.state.load();
        let Some(keys) = &state.keys else {
            return false;
        };
        let fresh = now < state.fresh_until;
        if !fresh && now >= state.fresh_until.saturating_add(inner.limits.stale_limit) {
            return false;
        }
        if !fresh {
            // Whether it starts (or the cooldown holds it back) is not this caller's concern.
            let _ = inner.start_or_join(now, false);
        }
        keys.holds(key)
    }
}

impl RemoteJwksBuilder {
    fn new(target: Target) -> Self {
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
    /// [`ManualMonotonicClock`](crate::internal::ManualMonotonicClock)).
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
            url: json::excerpt(&url),
            reason,
        },
        UrlError::Insecure { what, url } => RemoteJwksError::Insecure {
            what,
            url: json::excerpt(&url),
        },
        UrlError::Credentials { what } => RemoteJwksError::Credentials { what },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_checks() {
        let err = |b: RemoteJwksBuilder| b.build().unwrap_err();
        let b = || RemoteJwks::builder("https://tokens.example.com/jwks");
        assert!(matches!(
            err(b()
                .cache_min(Duration::from_secs(10))
                .cache_max(Duration::from_secs(5))),
            RemoteJwksError::CacheBounds { .. }
        ));
        assert!(matches!(
            err(b().refetch_cooldown(Duration::ZERO)),
            RemoteJwksError::Zero(_)
        ));
        assert!(matches!(err(b().max_body(0)), RemoteJwksError::Zero(_)));
        assert!(matches!(
            err(RemoteJwks::discovery("https://tokens.example.com/?tenant=1")),
            RemoteJwksError::IssuerQuery(_)
        ));
        assert!(matches!(
            err(RemoteJwks::discovery("http://tokens.example.com")),
            RemoteJwksError::Insecure { .. }
        ));
    }

    #[test]
    fn discovery_url() {
        for (issuer, expected) in [
            (
                "https://tokens.example.com",
                "https://tokens.example.com/.well-known/openid-configuration",
            ),
            (
                "https://tokens.example.com/",
                "https://tokens.example.com/.well-known/openid-configuration",
            ),
            (
                "https://example.com/tenant/a",
                "https://example.com/tenant/a/.well-known/openid-configuration",
            ),
        ] {
            let source = RemoteJwks::discovery(issuer).build().unwrap();
            match &source.inner.source {
                Source::Discovery { document, .. } => assert_eq!(document.as_str(), expected),
                Source::Jwks(_) => panic!("discovery source expected"),
            }
        }
    }
}
