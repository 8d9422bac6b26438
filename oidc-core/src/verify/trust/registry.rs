//! [`TrustedIssuers`]: the registry, its builder, and the verification path
//! (exact `iss` lookup, lazy live issuer, that issuer's verifier).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::Semaphore;

use super::live::{EntryKeys, IssuerOrigin, LiveIssuer, LiveIssuers};
use super::lookup::Lookups;
use super::{file, IssuerEntry, IssuerKeys, IssuerLookup, TrustFileError, Trusted};
use crate::json;
use crate::jws::{UnverifiedJws, DEFAULT_MAX_LEN};
use crate::time::{MonotonicClock, SystemClock, SystemMonotonicClock, WallClock};
use crate::verify::cache::{CacheKey, Entry};
use crate::verify::remote::{self, RemoteJwksBuilder, Shared};
use crate::verify::{KeyLookupError, RemoteJwks, RemoteJwksError, VerificationCache, Verifier, VerifyError};

/// Default bound on live (cached) issuers: 10,000.
pub const DEFAULT_MAX_CACHED_ISSUERS: usize = 10_000;
/// Default cap on fetches in flight across all issuers: 16.
pub const DEFAULT_MAX_CONCURRENT_FETCHES: usize = 16;
/// Default longest pause between the fetches of an issuer that keeps failing: 10 min.
pub const DEFAULT_FAILURE_BACKOFF: Duration = Duration::from_secs(600);
/// Default time an issuer the lookup did not know stays unknown: 60 s.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(60);
/// Default bound on the negative cache: 10,000 issuers.
pub const DEFAULT_NEGATIVE_CAPACITY: usize = 10_000;
/// Default time before an entry found by the lookup is looked up again: 5 min.
pub const DEFAULT_LOOKUP_TTL: Duration = Duration::from_secs(300);
/// Default cap on lookups in flight: 16.
pub const DEFAULT_MAX_CONCURRENT_LOOKUPS: usize = 16;
/// After a failed repeat lookup, the entry in hand is used this long before
/// the next attempt.
const LOOKUP_RETRY: Duration = Duration::from_secs(10);

/// The registry of trusted issuers; see the [module docs](super). Cheap to
/// clone (an `Arc` inside); clones share everything.
///
/// ```no_run
/// # async fn run(token: &str) -> Result<(), Box<dyn std::error::Error>> {
/// use oidc_core::verify::trust::{IssuerEntry, TrustedIssuers};
/// use oidc_core::AccessTokenClaims;
///
/// let trusted = TrustedIssuers::builder()
///     .issuer(IssuerEntry::builder("acme", "https://tokens.acme.example", ["https://api.example.com"])
///         .require_claim("org_id", "acme")
///         .build()?)
///     .build()?;
/// let token = trusted.verify::<AccessTokenClaims>(token).await?;
/// println!("{} from {}", token.claims().sub, token.issuer_name());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TrustedIssuers {
    pub(super) inner: Arc<Registry>,
}

pub(super) struct Registry {
    /// The static list, by exact issuer and by name.
    statics: HashMap<String, Arc<IssuerEntry>>,
    pub(super) names: HashMap<String, Arc<IssuerEntry>>,
    pub(super) lookups: Option<Lookups>,
    pub(super) live: LiveIssuers,
    shared: Shared,
    remote: RemoteSettings,
    lookup_ttl: Duration,
    pub(super) clock: Arc<dyn MonotonicClock>,
    wall_clock: Arc<dyn WallClock>,
    pub(super) unknown: AtomicU64,
    pub(super) max_concurrent_fetches: usize,
    cache: Option<VerificationCache>,
}

#[derive(Debug, Clone, Copy)]
struct RemoteSettings {
    cache_min: Duration,
    cache_max: Duration,
    cooldown: Duration,
    backoff: Duration,
    stale_limit: Duration,
    timeout: Duration,
    max_body: usize,
}

/// Builds a [`TrustedIssuers`]; start with [`TrustedIssuers::builder`] or
/// [`TrustedIssuers::from_toml_file`].
#[must_use]
pub struct TrustedIssuersBuilder {
    entries: Vec<IssuerEntry>,
    lookup: Option<Arc<dyn IssuerLookup>>,
    max_cached: usize,
    max_fetches: usize,
    negative_ttl: Duration,
    negative_capacity: usize,
    lookup_ttl: Duration,
    max_lookups: usize,
    remote: RemoteSettings,
    clock: Arc<dyn MonotonicClock>,
    wall_clock: Arc<dyn WallClock>,
    cache: Option<VerificationCache>,
}

/// Why a registry could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// Two entries share a name.
    #[error("two issuer entries are named {0:?}")]
    DuplicateName(String),
    /// Two entries share an issuer.
    #[error("issuer {issuer:?} is in two entries ({first:?} and {second:?})")]
    DuplicateIssuer {
        /// The issuer (shortened).
        issuer: String,
        /// The first entry.
        first: String,
        /// The second entry.
        second: String,
    },
    /// Neither a static entry nor a lookup: every token would be refused.
    #[error("no trusted issuer: give at least one entry or a lookup")]
    Empty,
    /// A bound that must be positive is zero.
    #[error("{0} must be positive")]
    Zero(&'static str),
    /// The key-source settings are inconsistent, or the HTTP client could
    /// not be set up.
    #[error(transparent)]
    Remote(#[from] RemoteJwksError),
}

impl TrustedIssuers {
    /// Starts an empty registry with the defaults above.
    pub fn builder() -> TrustedIssuersBuilder {
        TrustedIssuersBuilder {
            entries: Vec::new(),
            lookup: None,
            max_cached: DEFAULT_MAX_CACHED_ISSUERS,
            max_fetches: DEFAULT_MAX_CONCURRENT_FETCHES,
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            negative_capacity: DEFAULT_NEGATIVE_CAPACITY,
            lookup_ttl: DEFAULT_LOOKUP_TTL,
            max_lookups: DEFAULT_MAX_CONCURRENT_LOOKUPS,
            remote: RemoteSettings {
                cache_min: remote::DEFAULT_CACHE_MIN,
                cache_max: remote::DEFAULT_CACHE_MAX,
                cooldown: remote::DEFAULT_REFETCH_COOLDOWN,
                backoff: DEFAULT_FAILURE_BACKOFF,
                stale_limit: remote::DEFAULT_STALE_LIMIT,
                timeout: remote::DEFAULT_TIMEOUT,
                max_body: remote::DEFAULT_MAX_BODY,
            },
            clock: Arc::new(SystemMonotonicClock::new()),
            wall_clock: Arc::new(SystemClock),
            cache: None,
        }
    }

    /// A builder holding the entries of the TOML file at `path` (format in
    /// [`file`](mod@super::file)); pinned key sets named by `jwks_file` are read relative to
    /// the file's folder.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<TrustedIssuersBuilder, TrustFileError> {
        Ok(Self::builder().issuers(file::read(path.as_ref())?))
    }

    /// Verifies `token` against the entry its `iss` names, exactly, and
    /// deserializes its claims as `C`.
    ///
    /// Before anything is fetched: the token's form, its claims as strict
    /// JSON, and its `iss` are checked; an `iss` with no entry is
    /// [`VerifyError::UnknownIssuer`]. Then only that entry's policy and keys
    /// apply, as [`Verifier::verify`] applies them.
    pub async fn verify<C>(&self, token: &str) -> Result<Trusted<C>, VerifyError>
    where
        C: DeserializeOwned + Send + Sync + 'static,
    {
        self.verify_named(token).await.map_err(|(_, error)| error)
    }

    /// [`verify`](Self::verify), with the name of the entry that refused the
    /// token when its issuer was known (for logs).
    pub(crate) async fn verify_named<C>(
        &self,
        token: &str,
    ) -> Result<Trusted<C>, (Option<Arc<str>>, VerifyError)>
    where
        C: DeserializeOwned + Send + Sync + 'static,
    {
        let registry = &*self.inner;
        let cached = registry.cache.as_ref().map(|cache| (cache, cache.key(token)));
        if let Some((cache, key)) = cached {
            if let Some(trusted) = registry.cached(cache, key) {
                return Ok(trusted);
            }
        }
        let unnamed = |error: VerifyError| (None, error);
        let jws = UnverifiedJws::decode(token, DEFAULT_MAX_LEN).map_err(|e| unnamed(e.into()))?;
        // The issuer is chosen by the unverified `iss`; the claims are parsed
        // once, here, and checked after the signature by that issuer's policy.
        let claims =
            json::parse_object(jws.unverified_payload()).map_err(|e| unnamed(VerifyError::Claims(e)))?;
        let live = match claims.get("iss") {
            Some(Value::String(iss)) => registry.live_issuer(iss).await.map_err(unnamed)?,
            Some(_) => {
                return Err(unnamed(VerifyError::ClaimType {
                    claim: "iss",
                    expected: "a string",
                }))
            }
            None => return Err(unnamed(VerifyError::MissingClaim("iss"))),
        };
        match live.verifier.verify_decoded::<C>(jws, Some(claims)).await {
            Ok((verified, validity)) => {
                live.verified.fetch_add(1, Ordering::Relaxed);
                if let (Some((cache, key)), Some(validity)) = (cached, validity) {
                    let policy = live.verifier.shared_policy();
                    let scope = Some(Arc::clone(live.entry.shared_issuer()));
                    cache.insert(
                        key,
                        Entry::new(&verified, policy, validity, scope),
                        live.verifier.now(),
                    );
                }
                Ok(Trusted {
                    name: Arc::clone(live.entry.shared_name()),
                    verified,
                })
            }
            Err(error) => {
                live.refused.fetch_add(1, Ordering::Relaxed);
                Err((Some(Arc::clone(live.entry.shared_name())), error))
            }
        }
    }

    /// The static entries, in no particular order.
    pub fn static_entries(&self) -> impl Iterator<Item = &IssuerEntry> {
        self.inner.names.values().map(|entry| &**entry)
    }
}

impl fmt::Debug for TrustedIssuers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustedIssuers")
            .field("static_entries", &self.inner.names.len())
            .field("lookup", &self.inner.lookups.is_some())
            .field("cached_issuers", &self.inner.live.len())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// The cached verification of the token under `key`, if it still holds
    /// for the live issuer that verified it (an issuer no longer live, or
    /// due for a repeat lookup, goes the full way).
    fn cached<C: Send + Sync + 'static>(
        &self,
        cache: &VerificationCache,
        key: CacheKey,
    ) -> Option<Trusted<C>> {
        let entry = cache.get(key)?;
        let now = self.clock.elapsed();
        let live = entry.scope.as_deref().and_then(|iss| self.live.get(iss));
        let Some(live) = live.filter(|live| !live.due_for_lookup(now)) else {
            cache.invalidate(key, &entry);
            return None;
        };
        live.touch(now);
        let policy = live.verifier.shared_policy();
        let verified = cache.serve(key, &entry, policy, live.verifier.now(), live.keys())?;
        live.verified.fetch_add(1, Ordering::Relaxed);
        Some(Trusted {
            name: Arc::clone(live.entry.shared_name()),
            verified,
        })
    }

    /// The live issuer for exactly `iss`: cached, or made from the static
    /// list or the lookup (nothing is fetched here).
    async fn live_issuer(&self, iss: &str) -> Result<Arc<LiveIssuer>, VerifyError> {
        let now = self.clock.elapsed();
        if let Some(live) = self.live.get(iss) {
            live.touch(now);
            if live.due_for_lookup(now) {
                return self.lookup_again(live, now).await;
            }
            return Ok(live);
        }
        let (entry, origin) = match (self.statics.get(iss), &self.lookups) {
            (Some(entry), _) => (Arc::clone(entry), IssuerOrigin::Static),
            (None, Some(lookups)) => match lookups.resolve(iss, now).await {
                Ok(entry) => (Arc::new(entry), IssuerOrigin::Lookup),
                Err(error) => return Err(self.count(error)),
            },
            (None, None) => {
                return Err(self.count(VerifyError::UnknownIssuer {
                    issuer: json::excerpt(iss),
                }))
            }
        };
        let live = self.make_live(entry, origin, now, None)?;
        Ok(self.live.insert(live))
    }

    pub(super) fn shared_permits_available(&self) -> usize {
        self.shared.permits.available_permits()
    }

    fn count(&self, error: VerifyError) -> VerifyError {
        if matches!(error, VerifyError::UnknownIssuer { .. }) {
            self.unknown.fetch_add(1, Ordering::Relaxed);
        }
        error
    }

    /// A lookup entry past its TTL: the first caller looks it up again (the
    /// others go on with the entry in hand meanwhile); a changed entry
    /// replaces it, a removed one is gone, a failed lookup keeps it.
    async fn lookup_again(
        &self,
        live: Arc<LiveIssuer>,
        now: Duration,
    ) -> Result<Arc<LiveIssuer>, VerifyError> {
        let Some(lookups) = &self.lookups else {
            return Ok(live);
        };
        let due = live.relookup_at.load(Ordering::Relaxed);
        let retry_at = u64::try_from(now.saturating_add(LOOKUP_RETRY).as_nanos()).unwrap_or(u64::MAX);
        if live
            .relookup_at
            .compare_exchange(due, retry_at, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return Ok(live);
        }
        match lookups.resolve(live.entry.issuer(), now).await {
            Ok(entry) if entry == *live.entry => {
                live.lookup_again_at(now.saturating_add(self.lookup_ttl));
                Ok(live)
            }
            Ok(entry) => {
                tracing::info!(issuer = entry.name(), "issuer entry changed");
                let keys = (entry.keys() == live.entry.keys()).then(|| live.keys().clone());
                let replacement = self.make_live(Arc::new(entry), IssuerOrigin::Lookup, now, keys)?;
                Ok(self.live.replace(&live, replacement))
            }
            Err(error @ VerifyError::UnknownIssuer { .. }) => {
                tracing::info!(issuer = live.entry.name(), "issuer no longer trusted");
                self.live.remove(&live);
                Err(self.count(error))
            }
            Err(error) => {
                tracing::warn!(issuer = live.entry.name(), %error, "keeping the issuer entry in hand");
                Ok(live)
            }
        }
    }

    pub(super) fn make_live(
        &self,
        entry: Arc<IssuerEntry>,
        origin: IssuerOrigin,
        now: Duration,
        keys: Option<EntryKeys>,
    ) -> Result<Arc<LiveIssuer>, VerifyError> {
        let keys = match keys {
            Some(keys) => keys,
            None => self.key_source(&entry)?,
        };
        let verifier = Verifier::from_shared(Arc::clone(entry.shared_policy()), keys)
            .with_clock(self.wall_clock.clone());
        let relookup_at = now.saturating_add(self.lookup_ttl);
        Ok(Arc::new(LiveIssuer::new(
            entry,
            verifier,
            origin,
            now,
            relookup_at,
        )))
    }

    fn key_source(&self, entry: &IssuerEntry) -> Result<EntryKeys, VerifyError> {
        let builder = match entry.keys() {
            IssuerKeys::Pinned(jwks) => return Ok(EntryKeys::Pinned(Arc::clone(jwks))),
            IssuerKeys::Discovery => RemoteJwks::discovery(entry.issuer()),
            IssuerKeys::JwksUri(url) => RemoteJwks::builder(url.clone()),
        };
        // The URLs were checked when the entry was built, and the settings
        // when the registry was: this does not fail, but must not panic.
        self.remote
            .apply(builder, &self.shared, &self.clock)
            .build()
            .map(EntryKeys::Remote)
            .map_err(|e| VerifyError::Key(KeyLookupError::Unavailable(e.to_string())))
    }
}

impl RemoteSettings {
    fn apply(
        &self,
        builder: RemoteJwksBuilder,
        shared: &Shared,
        clock: &Arc<dyn MonotonicClock>,
    ) -> RemoteJwksBuilder {
        builder
            .cache_min(self.cache_min)
            .cache_max(self.cache_max)
            .refetch_cooldown(self.cooldown)
            .failure_backoff(self.backoff)
            .stale_limit(self.stale_limit)
            .timeout(self.timeout)
            .max_body(self.max_body)
            .clock(Arc::clone(clock))
            .shared(shared.clone())
    }
}

impl TrustedIssuersBuilder {
    /// Adds a static entry.
    pub fn issuer(mut self, entry: IssuerEntry) -> Self {
        self.entries.push(entry);
        self
    }

    /// Adds static entries.
    pub fn issuers(mut self, entries: impl IntoIterator<Item = IssuerEntry>) -> Self {
        self.entries.extend(entries);
        self
    }

    /// Asks `lookup` for issuers the static list does not have.
    pub fn lookup(mut self, lookup: impl IssuerLookup + 'static) -> Self {
        self.lookup = Some(Arc::new(lookup));
        self
    }

    /// Most issuers live at once (default 10,000); the least recently used
    /// is dropped for a new one, and fetched again on its next token.
    pub fn max_cached_issuers(mut self, max: usize) -> Self {
        self.max_cached = max;
        self
    }

    /// Most fetches in flight across all issuers (default 16).
    pub fn max_concurrent_fetches(mut self, max: usize) -> Self {
        self.max_fetches = max;
        self
    }

    /// Longest pause between the fetches of an issuer that keeps failing
    /// (default 10 min); see [`RemoteJwksBuilder::failure_backoff`].
    pub fn failure_backoff(mut self, max: Duration) -> Self {
        self.remote.backoff = max;
        self
    }

    /// Least time between two fetches of one issuer (default 30 s); see
    /// [`RemoteJwksBuilder::refetch_cooldown`].
    pub fn refetch_cooldown(mut self, cooldown: Duration) -> Self {
        self.remote.cooldown = cooldown;
        self
    }

    /// Bounds on a key set's cache lifetime (default 60 s and 1 h); see
    /// [`RemoteJwksBuilder::cache_min`].
    pub fn cache_lifetime(mut self, min: Duration, max: Duration) -> Self {
        self.remote.cache_min = min;
        self.remote.cache_max = max;
        self
    }

    /// How long past its lifetime a key set serves while fetches fail
    /// (default 24 h); see [`RemoteJwksBuilder::stale_limit`].
    pub fn stale_limit(mut self, limit: Duration) -> Self {
        self.remote.stale_limit = limit;
        self
    }

    /// Bound on one HTTP exchange (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.remote.timeout = timeout;
        self
    }

    /// Largest discovery or JWKS body (default 256 KiB).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.remote.max_body = bytes;
        self
    }

    /// How long an issuer the lookup did not know stays unknown without
    /// asking again (default 60 s).
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// Most issuers remembered as unknown (default 10,000; the oldest go first).
    pub fn negative_capacity(mut self, max: usize) -> Self {
        self.negative_capacity = max;
        self
    }

    /// How long an entry found by the lookup is used before it is looked up
    /// again (default 5 min).
    pub fn lookup_ttl(mut self, ttl: Duration) -> Self {
        self.lookup_ttl = ttl;
        self
    }

    /// Most lookups in flight (default 16).
    pub fn max_concurrent_lookups(mut self, max: usize) -> Self {
        self.max_lookups = max;
        self
    }

    /// Uses `clock` for cache ages, cooldowns, TTLs and recency (tests step
    /// over them with a manual clock).
    pub fn clock(mut self, clock: Arc<dyn MonotonicClock>) -> Self {
        self.clock = clock;
        self
    }

    /// Uses `clock` for `exp`, `nbf` and `iat` instead of the system clock.
    pub fn wall_clock(mut self, clock: Arc<dyn WallClock>) -> Self {
        self.wall_clock = clock;
        self
    }

    /// Serves repeated tokens from `cache` (see
    /// [`VerificationCache`](crate::verify::VerificationCache)): an entry is
    /// served only while the issuer that verified it is live, under the same
    /// entry policy, with its key still in that issuer's key set.
    pub fn verification_cache(mut self, cache: VerificationCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Checks the entries and settings, and builds the registry. Nothing is
    /// fetched until the first token.
    pub fn build(self) -> Result<TrustedIssuers, TrustError> {
        for (value, what) in [
            (self.max_cached, "the number of cached issuers"),
            (self.max_fetches, "the number of concurrent fetches"),
            (self.negative_capacity, "the negative cache capacity"),
            (self.max_lookups, "the number of concurrent lookups"),
        ] {
            if value == 0 {
                return Err(TrustError::Zero(what));
            }
        }
        if self.entries.is_empty() && self.lookup.is_none() {
            return Err(TrustError::Empty);
        }
        let mut statics: HashMap<String, Arc<IssuerEntry>> = HashMap::new();
        let mut names: HashMap<String, Arc<IssuerEntry>> = HashMap::new();
        for entry in self.entries {
            let entry = Arc::new(entry);
            if let Some(first) = statics.get(entry.issuer()) {
                return Err(TrustError::DuplicateIssuer {
                    issuer: json::excerpt(entry.issuer()),
                    first: first.name().to_owned(),
                    second: entry.name().to_owned(),
                });
            }
            if names.contains_key(entry.name()) {
                return Err(TrustError::DuplicateName(entry.name().to_owned()));
            }
            statics.insert(entry.issuer().to_owned(), Arc::clone(&entry));
            names.insert(entry.name().to_owned(), entry);
        }
        let shared = Shared {
            client: remote::http_client(self.remote.timeout)?,
            permits: Arc::new(Semaphore::new(self.max_fetches)),
        };
        // Every setting checked once, by the rules of the sources it makes.
        self.remote
            .apply(RemoteJwks::builder("http://127.0.0.1/"), &shared, &self.clock)
            .build()?;
        let lookups = self.lookup.map(|source| {
            Lookups::new(
                source,
                self.negative_capacity,
                self.negative_ttl,
                self.max_lookups,
            )
        });
        Ok(TrustedIssuers {
            inner: Arc::new(Registry {
                statics,
                names,
                lookups,
                live: LiveIssuers::new(self.max_cached),
                shared,
                remote: self.remote,
                lookup_ttl: self.lookup_ttl,
                clock: self.clock,
                wall_clock: self.wall_clock,
                unknown: AtomicU64::new(0),
                max_concurrent_fetches: self.max_fetches,
                cache: self.cache,
            }),
        })
    }
}

impl fmt::Debug for TrustedIssuersBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustedIssuersBuilder")
            .field("entries", &self.entries.len())
            .field("lookup", &self.lookup.is_some())
            .field("max_cached", &self.max_cached)
            .field("max_fetches", &self.max_fetches)
            .finish_non_exhaustive()
    }
}
