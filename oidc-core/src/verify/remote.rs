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

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AGE, CACHE_CONTROL, ETAG, IF_NONE_MATCH};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::watch;
use url::{Host, Url};

use super::{KeyLookupError, KeySource};
use crate::http::{client_builder, HttpClientError};
use crate::json::{self, JsonError};
use crate::jwks::{JwkSet, JwkSetError};
use crate::keys::{KeyError, VerifyingKey};
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

/// Most redirects followed (all within the origin of the first URL).
const MAX_REDIRECTS: usize = 5;
/// Appended to the issuer for discovery (OpenID Connect Discovery 1.0 §4).
const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
const JWKS_ACCEPT: &str = "application/jwk-set+json, application/json;q=0.9";

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
    timeout: Duration,
    max_body: usize,
    clock: Arc<dyn MonotonicClock>,
}

#[derive(Debug, Clone)]
enum Target {
    Jwks(String),
    Issuer(String),
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
        RemoteJwksStatus {
            keys,
            age: has_keys.then(|| now.saturating_sub(state.fetched_at)),
            fresh: has_keys && now < state.fresh_until,
            usable: has_keys && now < state.fresh_until.saturating_add(self.inner.limits.stale_limit),
            last_error: state.failure.as_ref().map(|f| f.error.to_string()),
            fetching: self.inner.flight().running.is_some(),
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
}

impl RemoteJwksBuilder {
    fn new(target: Target) -> Self {
        Self {
            target,
            cache_min: DEFAULT_CACHE_MIN,
            cache_max: DEFAULT_CACHE_MAX,
            cooldown: DEFAULT_REFETCH_COOLDOWN,
            stale_limit: DEFAULT_STALE_LIMIT,
            timeout: DEFAULT_TIMEOUT,
            max_body: DEFAULT_MAX_BODY,
            clock: Arc::new(SystemMonotonicClock::new()),
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
    /// [`ManualMonotonicClock`](crate::time::ManualMonotonicClock)).
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
        let source = match self.target {
            Target::Jwks(url) => Source::Jwks(checked_url("JWKS URL", &url)?),
            Target::Issuer(issuer) => {
                let parsed = checked_url("issuer", &issuer)?;
                if parsed.query().is_some() || parsed.fragment().is_some() {
                    return Err(RemoteJwksError::IssuerQuery(json::excerpt(&issuer)));
                }
                let base = issuer.strip_suffix('/').unwrap_or(&issuer);
                let document = checked_url("issuer", &format!("{base}{DISCOVERY_PATH}"))?;
                Source::Discovery {
                    issuer,
                    document,
                    jwks: OnceLock::new(),
                }
            }
        };
        let client = client_builder()?
            .timeout(self.timeout)
            .redirect(redirect_policy())
            .user_agent(concat!("oidc-core/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RemoteJwksError::Client(error_chain(&e)))?;
        Ok(RemoteJwks {
            inner: Arc::new(Inner {
                source,
                client,
                limits: Limits {
                    cache_min: self.cache_min,
                    cache_max: self.cache_max,
                    cooldown: self.cooldown,
                    stale_limit: self.stale_limit,
                    max_body: self.max_body,
                },
                clock: self.clock,
                state: ArcSwap::from_pointee(State::default()),
                flight: Mutex::new(Flight::default()),
            }),
        })
    }
}

struct Inner {
    source: Source,
    client: reqwest::Client,
    limits: Limits,
    clock: Arc<dyn MonotonicClock>,
    /// The cache: replaced whole, only by the one running fetch.
    state: ArcSwap<State>,
    /// Single flight and cooldown; held for a few instructions, never across
    /// an await, and never on the path of a lookup that finds its key.
    flight: Mutex<Flight>,
}

#[derive(Debug)]
enum Source {
    Jwks(Url),
    Discovery {
        issuer: String,
        document: Url,
        jwks: OnceLock<Url>,
    },
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    cache_min: Duration,
    cache_max: Duration,
    cooldown: Duration,
    stale_limit: Duration,
    max_body: usize,
}

#[derive(Default, Clone)]
struct State {
    /// The last good set.
    keys: Option<Arc<JwkSet>>,
    etag: Option<HeaderValue>,
    /// When `keys` was last fetched or revalidated.
    fetched_at: Duration,
    fresh_until: Duration,
    /// The last fetch, if it failed.
    failure: Option<Failure>,
}

#[derive(Clone)]
struct Failure {
    at: Duration,
    error: FetchError,
}

#[derive(Default)]
struct Flight {
    /// Set while a fetch runs; turns `true` when its result is in `state`.
    running: Option<watch::Receiver<bool>>,
    last_start: Option<Duration>,
}

enum Lookup {
    Found {
        key: Arc<VerifyingKey>,
        fresh: bool,
    },
    /// The set is usable but has no such kid.
    Missing,
    /// No set, or one too stale to use.
    Unusable,
}

impl Inner {
    fn lookup(&self, kid: &str, now: Duration) -> Lookup {
        let state = self.state.load();
        let Some(keys) = &state.keys else {
            return Lookup::Unusable;
        };
        let fresh = now < state.fresh_until;
        if !fresh && now >= state.fresh_until.saturating_add(self.limits.stale_limit) {
            return Lookup::Unusable;
        }
        match keys.get(kid) {
            Some(key) => Lookup::Found {
                key: Arc::clone(key),
                fresh,
            },
            None => Lookup::Missing,
        }
    }

    fn flight(&self) -> MutexGuard<'_, Flight> {
        // The guarded section cannot panic half-way; a poisoned lock still
        // holds consistent data.
        self.flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Joins the running fetch, or starts one if none runs and the cooldown
    /// allows (or `force`). `None`: the cooldown holds fetches back.
    fn start_or_join(
        self: &Arc<Self>,
        now: Duration,
        force: bool,
    ) -> Result<Option<watch::Receiver<bool>>, KeyLookupError> {
        let mut flight = self.flight();
        if let Some(running) = &flight.running {
            return Ok(Some(running.clone()));
        }
        let cooling = flight
            .last_start
            .is_some_and(|last| now < last.saturating_add(self.limits.cooldown));
        if cooling && !force {
            return Ok(None);
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            KeyLookupError::Unavailable("RemoteJwks must be used from within a Tokio runtime".into())
        })?;
        let (sender, receiver) = watch::channel(false);
        flight.running = Some(receiver.clone());
        flight.last_start = Some(now);
        drop(flight);
        let landing = Landing {
            inner: Arc::clone(self),
            sender,
        };
        runtime.spawn(async move {
            landing.inner.fetch_and_store().await;
            drop(landing);
        });
        Ok(Some(receiver))
    }

    async fn fetch_and_store(&self) {
        let current = self.state.load_full();
        let result = self.fetch(&current).await;
        let now = self.clock.elapsed();
        let next = match result {
            Ok(Fetched::Keys { set, etag, max_age }) => {
                for refused in set.refused() {
                    log_refused(refused.kid.as_deref(), &refused.reason);
                }
                tracing::debug!(keys = set.len(), source = %self.source, "JWKS fetched");
                State {
                    keys: Some(Arc::new(set)),
                    etag,
                    fetched_at: now,
                    fresh_until: now.saturating_add(self.lifetime(max_age)),
                    failure: None,
                }
            }
            Ok(Fetched::NotModified { etag, max_age }) => {
                tracing::debug!(source = %self.source, "JWKS not modified");
                State {
                    keys: current.keys.clone(),
                    etag: etag.or_else(|| current.etag.clone()),
                    fetched_at: now,
                    fresh_until: now.saturating_add(self.lifetime(max_age)),
                    failure: None,
                }
            }
            Err(error) => {
                tracing::warn!(source = %self.source, %error, "JWKS fetch failed; keeping the last good key set");
                State {
                    failure: Some(Failure { at: now, error }),
                    ..(*current).clone()
                }
            }
        };
        self.state.store(Arc::new(next));
    }

    fn lifetime(&self, max_age: Option<Duration>) -> Duration {
        max_age
            .unwrap_or(self.limits.cache_min)
            .clamp(self.limits.cache_min, self.limits.cache_max)
    }

    async fn fetch(&self, current: &State) -> Result<Fetched, FetchError> {
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
        let body = read_capped(response, self.limits.max_body, &url).await?;
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
        let discovery_error = |problem: String| FetchError::Discovery {
            url: shown(document),
            problem,
        };
        let response = self
            .client
            .get(document.clone())
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| FetchError::request(document, &e))?;
        if response.status() != StatusCode::OK {
            return Err(FetchError::Status {
                url: shown(document),
                status: response.status().as_u16(),
            });
        }
        let body = read_capped(response, self.limits.max_body, document).await?;
        let doc = json::parse_object(&body).map_err(|e: JsonError| discovery_error(e.to_string()))?;
        match doc.get("issuer") {
            Some(Value::String(found)) if found == issuer => {}
            Some(Value::String(found)) => {
                return Err(discovery_error(format!(
                    "issuer {:?} is not the expected issuer {:?}",
                    json::excerpt(found),
                    json::excerpt(issuer)
                )))
            }
            _ => return Err(discovery_error("\"issuer\" is missing or not a string".into())),
        }
        let Some(Value::String(jwks_uri)) = doc.get("jwks_uri") else {
            return Err(discovery_error("\"jwks_uri\" is missing or not a string".into()));
        };
        let url = checked_url("jwks_uri", jwks_uri).map_err(|e| discovery_error(e.to_string()))?;
        tracing::debug!(issuer = %issuer, jwks_uri = %shown(&url), "OIDC discovery done");
        // Only the single running fetch gets here, so the cell is empty.
        let _ = jwks.set(url.clone());
        Ok(url)
    }

    fn unavailable(&self, now: Duration) -> KeyLookupError {
        let state = self.state.load();
        let flight = self.flight();
        let next = flight
            .last_start
            .map(|last| last.saturating_add(self.limits.cooldown).saturating_sub(now));
        drop(flight);
        let mut message = match &state.keys {
            None => format!("no key set could be fetched yet from {}", self.source),
            Some(_) => format!(
                "the last good key set from {} was fetched {} s ago and is {} s past its lifetime, \
                 beyond the stale limit of {} s",
                self.source,
                now.saturating_sub(state.fetched_at).as_secs(),
                now.saturating_sub(state.fresh_until).as_secs(),
                self.limits.stale_limit.as_secs()
            ),
        };
        if let Some(failure) = &state.failure {
            message.push_str(&format!(
                "; the last fetch ({} s ago) failed: {}",
                now.saturating_sub(failure.at).as_secs(),
                failure.error
            ));
        }
        if let Some(next) = next.filter(|n| !n.is_zero()) {
            message.push_str(&format!(
                "; next attempt in {} s at the earliest",
                next.as_secs().max(1)
            ));
        }
        KeyLookupError::Unavailable(message)
    }
}

/// Publishes the end of a fetch, also when the task is cancelled (runtime
/// shutdown) or panics: without it, a dead fetch would look like one still
/// running, and no fetch would ever start again.
struct Landing {
    inner: Arc<Inner>,
    sender: watch::Sender<bool>,
}

impl Drop for Landing {
    fn drop(&mut self) {
        self.inner.flight().running = None;
        // Nobody listening is fine.
        let _ = self.sender.send(true);
    }
}

async fn wait(mut done: watch::Receiver<bool>) {
    // An error means the fetch task is gone; its result (if any) is in the state.
    let _ = done.wait_for(|done| *done).await;
}

enum Fetched {
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
enum FetchError {
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
        if error.is_timeout() {
            Self::Timeout { url: shown(url) }
        } else {
            Self::Request {
                url: shown(url),
                detail: error_chain(error),
            }
        }
    }
}

/// A reqwest error and its causes, without the URL that its own `Display`
/// would add (a URL may carry a query with a secret in it).
fn error_chain(error: &reqwest::Error) -> String {
    let mut text = if error.is_redirect() {
        "redirect not followed"
    } else if error.is_connect() {
        "cannot connect"
    } else if error.is_body() || error.is_decode() {
        "error reading the response body"
    } else if error.is_builder() {
        "invalid request"
    } else {
        "request failed"
    }
    .to_owned();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A URL for messages and logs: origin and path, no query or fragment.
fn shown(url: &Url) -> String {
    format!("{}{}", url.origin().ascii_serialization(), url.path())
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Jwks(url) => f.write_str(&shown(url)),
            Self::Discovery { issuer, jwks, .. } => match jwks.get() {
                Some(url) => write!(f, "{} (issuer {})", shown(url), json::excerpt(issuer)),
                None => write!(f, "issuer {} (by discovery)", json::excerpt(issuer)),
            },
        }
    }
}

async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
    url: &Url,
) -> Result<Vec<u8>, FetchError> {
    let too_large = || FetchError::TooLarge {
        url: shown(url),
        limit,
    };
    // Refuse early when the length is announced; still count what arrives,
    // since a chunked body announces nothing.
    let announced = response.content_length().unwrap_or(0);
    if announced > limit as u64 {
        return Err(too_large());
    }
    let mut body = Vec::with_capacity(usize::try_from(announced).unwrap_or(0));
    while let Some(chunk) = response.chunk().await.map_err(|e| FetchError::request(url, &e))? {
        if chunk.len() > limit - body.len() {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
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

/// Parses `text` and requires https, or http to a loopback address.
fn checked_url(what: &'static str, text: &str) -> Result<Url, RemoteJwksError> {
    let url = Url::parse(text).map_err(|e| RemoteJwksError::InvalidUrl {
        what,
        url: json::excerpt(text),
        reason: e.to_string(),
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(RemoteJwksError::Credentials { what });
    }
    let allowed = match url.scheme() {
        "https" => url.host().is_some(),
        "http" => url.host().is_some_and(|host| is_loopback(&host)),
        _ => false,
    };
    if !allowed {
        return Err(RemoteJwksError::Insecure {
            what,
            url: json::excerpt(text),
        });
    }
    Ok(url)
}

fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        Host::Ipv6(ip) => IpAddr::V6(*ip).is_loopback(),
        Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
    }
}

/// Follows redirects only within the origin (scheme, host, port) of the first
/// URL: a JWKS endpoint must not be able to send the verifier elsewhere (to
/// plain http, to an internal address).
fn redirect_policy() -> reqwest::redirect::Policy {
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

fn log_refused(kid: Option<&str>, reason: &KeyError) {
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

    #[test]
    fn urls() {
        assert!(checked_url("x", "https://tokens.example.com/jwks").is_ok());
        assert!(checked_url("x", "http://127.0.0.1:8080/jwks").is_ok());
        assert!(checked_url("x", "http://127.8.9.10/jwks").is_ok());
        assert!(checked_url("x", "http://[::1]:8080/jwks").is_ok());
        assert!(checked_url("x", "http://localhost:8080/jwks").is_ok());
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
                matches!(checked_url("x", insecure), Err(RemoteJwksError::Insecure { .. })),
                "{insecure}"
            );
        }
        assert!(matches!(
            checked_url("x", "https://user:pw@tokens.example.com/jwks"),
            Err(RemoteJwksError::Credentials { .. })
        ));
        assert!(matches!(
            checked_url("x", "/jwks"),
            Err(RemoteJwksError::InvalidUrl { .. })
        ));
    }

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

    #[test]
    fn shown_urls_drop_queries() {
        let url = Url::parse("https://tokens.example.com:8443/jwks?api_key=secret#frag").unwrap();
        assert_eq!(shown(&url), "https://tokens.example.com:8443/jwks");
    }
}
