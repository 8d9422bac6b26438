//! [`TrustedIssuersBuilder`]: the registry's settings, their defaults and
//! checks, and how a live issuer's key source is made from them.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::live::LiveIssuers;
use super::lookup::{LookupBounds, Lookups};
use super::registry::Registry;
use super::{file, IssuerEntry, IssuerLookup, TrustFileError, TrustedIssuers};
use crate::clock::{MonotonicClock, SystemClock, SystemMonotonicClock, WallClock};
use crate::jws::DEFAULT_MAX_LEN;
use crate::text;
use crate::verify::remote::{self, RemoteJwksBuilder, Shared};
use crate::verify::{RemoteJwks, RemoteJwksError, VerificationCache, MAX_TOKEN_LEN_LIMIT};

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
/// Default bound on lookups waiting for a place among those in flight: 64.
pub const DEFAULT_MAX_QUEUED_LOOKUPS: usize = 64;
/// Default longest a lookup lasts, its wait for a place included: 5 s.
pub const DEFAULT_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time past its lookup TTL that an entry found by the lookup is
/// still used while its lookups fail: 1 h.
pub const DEFAULT_LOOKUP_STALE_LIMIT: Duration = Duration::from_secs(3600);
#[derive(Debug, Clone, Copy)]
pub(super) struct RemoteSettings {
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
    lookup_stale_limit: Duration,
    max_lookups: usize,
    max_queued_lookups: usize,
    lookup_timeout: Duration,
    remote: RemoteSettings,
    clock: Arc<dyn MonotonicClock>,
    wall_clock: Arc<dyn WallClock>,
    cache: Option<VerificationCache>,
    max_token_len: Option<usize>,
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
    /// A registry token size cap over
    /// [`MAX_TOKEN_LEN_LIMIT`](crate::verify::MAX_TOKEN_LEN_LIMIT).
    #[error("the token size cap of {0} bytes is more than the limit of {MAX_TOKEN_LEN_LIMIT}")]
    TokenLenTooLarge(usize),
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
            lookup_stale_limit: DEFAULT_LOOKUP_STALE_LIMIT,
            max_lookups: DEFAULT_MAX_CONCURRENT_LOOKUPS,
            max_queued_lookups: DEFAULT_MAX_QUEUED_LOOKUPS,
            lookup_timeout: DEFAULT_LOOKUP_TIMEOUT,
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
            max_token_len: None,
        }
    }

    /// A builder holding the entries of the TOML file at `path` (format in
    /// [`file`](mod@super::file)); pinned key sets named by `jwks_file` are read relative to
    /// the file's folder.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<TrustedIssuersBuilder, TrustFileError> {
        Ok(Self::builder().issuers(file::read(path.as_ref())?))
    }
}

impl RemoteSettings {
    pub(super) fn apply(
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
    /// again (default 5 min): a tenant removed from the store, or changed,
    /// takes effect within it, as long as the lookup answers.
    pub fn lookup_ttl(mut self, ttl: Duration) -> Self {
        self.lookup_ttl = ttl;
        self
    }

    /// How long past its [`lookup_ttl`](Self::lookup_ttl) an entry found by
    /// the lookup is still used while its lookups fail (default 1 h).
    ///
    /// A failed lookup says nothing about the tenant: it may have been
    /// removed from the store meanwhile, or not. Within this limit the entry
    /// in hand is used (its tokens keep verifying through a store outage),
    /// and looked up again every 10 s; past it the registry fails closed:
    /// the issuer's tokens are refused as
    /// [`VerifyError::IssuerLookup`](crate::verify::VerifyError::IssuerLookup)
    /// until a lookup answers (found: trusted again; not found: unknown). So
    /// a removed tenant stays trusted for at most `lookup_ttl` + this limit,
    /// whatever the store does. [`Duration::ZERO`] fails closed as soon as a
    /// due lookup fails; [`Duration::MAX`] keeps the entry in hand for as
    /// long as the lookups fail.
    pub fn lookup_stale_limit(mut self, limit: Duration) -> Self {
        self.lookup_stale_limit = limit;
        self
    }

    /// Most lookups in flight (default 16).
    pub fn max_concurrent_lookups(mut self, max: usize) -> Self {
        self.max_lookups = max;
        self
    }

    /// Most lookups waiting for a place when
    /// [`max_concurrent_lookups`](Self::max_concurrent_lookups) run already
    /// (default 64; 0: none waits). A token whose issuer would need one more
    /// is refused at once as
    /// [`VerifyError::IssuerLookup`](crate::verify::VerifyError::IssuerLookup)
    /// (unavailable: try again), so a flood of tokens naming random issuers
    /// cannot make a queue that a new tenant's first token waits behind.
    /// The repeat lookup of an entry in hand (after its
    /// [`lookup_ttl`](Self::lookup_ttl)) may wait beyond this bound: it is
    /// for a tenant that was trusted, whom a flood must not push past its
    /// [`lookup_stale_limit`](Self::lookup_stale_limit).
    pub fn max_queued_lookups(mut self, max: usize) -> Self {
        self.max_queued_lookups = max;
        self
    }

    /// Longest a lookup lasts, its wait for a place included (default 5 s);
    /// past it the token is refused as
    /// [`VerifyError::IssuerLookup`](crate::verify::VerifyError::IssuerLookup)
    /// and the lookup's place is freed, so a store that hangs holds no place
    /// for longer.
    pub fn lookup_timeout(mut self, timeout: Duration) -> Self {
        self.lookup_timeout = timeout;
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

    /// The size cap applied to every token before it is decoded, when its
    /// issuer is not known yet (default: the largest cap of the static
    /// entries, at least 8 KiB; at most
    /// [`MAX_TOKEN_LEN_LIMIT`](crate::verify::MAX_TOKEN_LEN_LIMIT)). Each
    /// entry's own cap applies once its issuer is found.
    ///
    /// Raise it when the [lookup](Self::lookup) answers with entries for
    /// larger tokens than the static ones: an entry that accepts AWS STS
    /// web identity tokens (`typ` `JWT`) has a cap of 24 KiB, and without a
    /// static entry like it, tokens over 8 KiB are refused as too large
    /// before the lookup is asked.
    pub fn max_token_len(mut self, len: usize) -> Self {
        self.max_token_len = Some(len);
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
        if self.lookup_timeout.is_zero() {
            return Err(TrustError::Zero("the lookup timeout"));
        }
        if self.entries.is_empty() && self.lookup.is_none() {
            return Err(TrustError::Empty);
        }
        let max_token_len = match self.max_token_len {
            Some(0) => return Err(TrustError::Zero("the token size cap")),
            Some(len) if len > MAX_TOKEN_LEN_LIMIT => return Err(TrustError::TokenLenTooLarge(len)),
            Some(len) => len,
            None => self
                .entries
                .iter()
                .map(|entry| entry.policy().max_token_len())
                .fold(DEFAULT_MAX_LEN, usize::max),
        };
        let mut statics: HashMap<String, Arc<IssuerEntry>> = HashMap::new();
        let mut names: HashMap<String, Arc<IssuerEntry>> = HashMap::new();
        for entry in self.entries {
            let entry = Arc::new(entry);
            if let Some(first) = statics.get(entry.issuer()) {
                return Err(TrustError::DuplicateIssuer {
                    issuer: text::excerpt(entry.issuer()),
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
        let bounds = LookupBounds {
            max_in_flight: self.max_lookups,
            max_queued: self.max_queued_lookups,
            timeout: self.lookup_timeout,
        };
        let lookups = self
            .lookup
            .map(|source| Lookups::new(source, self.negative_capacity, self.negative_ttl, bounds));
        Ok(TrustedIssuers {
            inner: Arc::new(Registry {
                statics,
                names,
                lookups,
                live: LiveIssuers::new(self.max_cached),
                shared,
                remote: self.remote,
                lookup_ttl: self.lookup_ttl,
                lookup_stale_limit: self.lookup_stale_limit,
                clock: self.clock,
                wall_clock: self.wall_clock,
                unknown: AtomicU64::new(0),
                max_concurrent_fetches: self.max_fetches,
                cache: self.cache,
                max_token_len,
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
