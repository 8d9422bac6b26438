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

mod builder;
mod cache;
mod fetch;

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub(crate) use self::builder::{http_client, Shared, Target};
pub use self::builder::{RemoteJwksBuilder, RemoteJwksError};
use self::cache::{wait, Inner, Lookup};
use super::{KeyLookupError, KeySource};
use crate::jwks::JwkSet;
use crate::keys::VerifyingKey;

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

#[cfg(test)]
mod tests {
    use super::cache::Source;
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
