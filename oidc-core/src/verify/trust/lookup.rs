//! Issuers found on demand: the [`IssuerLookup`] a control plane implements
//! (backed by its own database), called at most once at a time per issuer,
//! under a cap on lookups in flight, with a bounded negative cache so that a
//! flood of tokens naming unknown issuers costs one lookup per issuer per
//! interval, not one per token.
//!
//! A flood of *distinct* issuers (random `iss` values, each unknown) is not
//! helped by the negative cache: every one costs a lookup, before any
//! signature is checked. So the waiting is bounded too: at most
//! `max_queued` lookups wait for a place among the `max_in_flight` ones,
//! and a lookup (its wait and its call) lasts at most `timeout`. Beyond
//! either bound the token is refused at once as unavailable
//! ([`VerifyError::IssuerLookup`], a 503 for the caller, not "unknown"), and
//! nothing is remembered: the next token of that issuer asks again. A new
//! tenant's first token waits behind at most `max_queued` other lookups,
//! or is refused at once and succeeds on a retry once the flood ebbs;
//! issuers already live (and static ones) never wait for a lookup at all.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{OnceCell, Semaphore, SemaphorePermit};
use tokio::time::Instant;

use super::IssuerEntry;
use crate::text;
use crate::verify::VerifyError;

/// Looks trusted issuers up by their exact `iss`, on demand: the control
/// plane's own store of tenants. Called only for an `iss` that is neither in
/// the static list nor cached, at most once at a time per issuer, and not
/// again for an issuer it did not know until the negative cache forgets it.
///
/// Anyone can send a token naming any `iss`, and it is looked up before its
/// signature can be checked: answer `Ok(None)` without touching the database
/// for an issuer that cannot be one of yours (a prefix or pattern check, as
/// below), and keep the lookup fast (an indexed query). The registry bounds
/// the lookups in flight, waiting, and their duration
/// ([`max_concurrent_lookups`](super::TrustedIssuersBuilder::max_concurrent_lookups),
/// [`max_queued_lookups`](super::TrustedIssuersBuilder::max_queued_lookups),
/// [`lookup_timeout`](super::TrustedIssuersBuilder::lookup_timeout)).
///
/// ```
/// use async_trait::async_trait;
/// use oidc_core::verify::trust::{IssuerEntry, IssuerLookup, LookupError};
///
/// struct Tenants; // e.g. a database pool
///
/// #[async_trait]
/// impl IssuerLookup for Tenants {
///     async fn lookup(&self, issuer: &str) -> Result<Option<IssuerEntry>, LookupError> {
///         // SELECT tenant_id FROM tenants WHERE token_issuer = $1
///         let Some(tenant) = issuer.strip_prefix("https://tokens.example.com/t/") else {
///             return Ok(None);
///         };
///         let entry = IssuerEntry::builder(tenant, issuer, ["https://api.example.com"])
///             .require_claim("org_id", tenant)
///             .build()
///             .map_err(|e| LookupError::new(e.to_string()))?;
///         Ok(Some(entry))
///     }
/// }
/// ```
#[async_trait]
pub trait IssuerLookup: Send + Sync {
    /// The entry for exactly this issuer, `None` if it is not trusted. An
    /// entry whose issuer is not byte-equal to `issuer` is refused.
    async fn lookup(&self, issuer: &str) -> Result<Option<IssuerEntry>, LookupError>;
}

#[async_trait]
impl<L: IssuerLookup + ?Sized> IssuerLookup for Arc<L> {
    async fn lookup(&self, issuer: &str) -> Result<Option<IssuerEntry>, LookupError> {
        (**self).lookup(issuer).await
    }
}

/// Why a lookup could not say whether an issuer is trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LookupError(String);

impl LookupError {
    /// An error with this explanation.
    pub fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

/// An `iss` longer than this is unknown without a lookup.
pub const MAX_LOOKUP_ISSUER_LEN: usize = 2048;

/// A 128-bit keyed hash of an `iss`: what the negative cache and the
/// in-flight table hold instead of the text a stranger chose (so an entry
/// costs the same whatever the stranger sent).
type IssuerHash = u128;

type Outcome = Result<Option<IssuerEntry>, LookupError>;

/// The bounds on lookups: how many run at once, how many wait for a place,
/// and how long one lasts (its wait included).
#[derive(Debug, Clone, Copy)]
pub(super) struct LookupBounds {
    pub(super) max_in_flight: usize,
    pub(super) max_queued: usize,
    pub(super) timeout: Duration,
}

pub(super) struct Lookups {
    source: Arc<dyn IssuerLookup>,
    hash_keys: [std::collections::hash_map::RandomState; 2],
    negative: Mutex<NegativeCache>,
    negative_ttl: Duration,
    in_flight: Mutex<HashMap<IssuerHash, Arc<OnceCell<Outcome>>>>,
    permits: Semaphore,
    /// Lookups waiting for a permit now.
    queued: AtomicUsize,
    bounds: LookupBounds,
    pub(super) lookups: AtomicU64,
    pub(super) failures: AtomicU64,
    pub(super) refused: AtomicU64,
    pub(super) negative_hits: AtomicU64,
}

impl Lookups {
    pub(super) fn new(
        source: Arc<dyn IssuerLookup>,
        negative_capacity: usize,
        negative_ttl: Duration,
        bounds: LookupBounds,
    ) -> Self {
        Self {
            source,
            hash_keys: Default::default(),
            negative: Mutex::new(NegativeCache::new(negative_capacity)),
            negative_ttl,
            in_flight: Mutex::default(),
            permits: Semaphore::new(bounds.max_in_flight),
            queued: AtomicUsize::new(0),
            bounds,
            lookups: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            negative_hits: AtomicU64::new(0),
        }
    }

    fn hash(&self, issuer: &str) -> IssuerHash {
        let [a, b] = &self.hash_keys;
        let (mut ha, mut hb) = (a.build_hasher(), b.build_hasher());
        ha.write(issuer.as_bytes());
        hb.write(issuer.as_bytes());
        (u128::from(ha.finish()) << 64) | u128::from(hb.finish())
    }

    pub(super) fn negative_entries(&self) -> usize {
        lock(&self.negative).map.len()
    }

    /// Forgets that `issuer` was unknown (it was added to the store).
    pub(super) fn forget_negative(&self, issuer: &str) {
        let hash = self.hash(issuer);
        lock(&self.negative).map.remove(&hash);
    }

    /// The entry for `issuer`: `UnknownIssuer` from the negative cache or a
    /// lookup that found nothing; `IssuerLookup` when the lookup failed, took
    /// too long, or could not be made (too many waiting). `now` is the
    /// registry's monotonic time. `again`: the issuer's entry is in hand
    /// and due to be looked up again; such a lookup may wait even when
    /// `max_queued` others do (it is for a tenant that was trusted, whom a
    /// flood of strangers must not push past its stale limit).
    pub(super) async fn resolve(
        &self,
        issuer: &str,
        now: Duration,
        again: bool,
    ) -> Result<IssuerEntry, VerifyError> {
        let unknown = || VerifyError::UnknownIssuer {
            issuer: text::excerpt(issuer),
        };
        if issuer.is_empty() || issuer.len() > MAX_LOOKUP_ISSUER_LEN {
            return Err(unknown());
        }
        let hash = self.hash(issuer);
        if lock(&self.negative).contains(hash, now) {
            self.negative_hits.fetch_add(1, Ordering::Relaxed);
            return Err(unknown());
        }
        match self.lookup_once(issuer, hash, now, again).await {
            Ok(Some(entry)) if entry.issuer() == issuer => Ok(entry),
            Ok(Some(entry)) => {
                tracing::warn!(
                    entry = entry.name(),
                    "issuer lookup answered with an entry for another issuer; refused"
                );
                Err(VerifyError::IssuerLookup(format!(
                    "the lookup answered with entry {:?}, whose issuer is another",
                    entry.name()
                )))
            }
            Ok(None) => Err(unknown()),
            Err(error) => Err(VerifyError::IssuerLookup(error.to_string())),
        }
    }

    /// One lookup for `issuer`, shared by every caller that asks while it
    /// runs; a caller that gives up hands it to the next waiter.
    async fn lookup_once(&self, issuer: &str, hash: IssuerHash, now: Duration, again: bool) -> Outcome {
        let cell = Arc::clone(lock(&self.in_flight).entry(hash).or_default());
        let outcome = cell
            .get_or_init(|| async {
                let deadline = Instant::now() + self.bounds.timeout;
                let _permit = match self.permit(deadline, again).await {
                    Ok(permit) => permit,
                    Err(refusal) => {
                        self.refused.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%refusal, "issuer lookup refused");
                        return Err(refusal);
                    }
                };
                self.lookups.fetch_add(1, Ordering::Relaxed);
                let outcome = match tokio::time::timeout_at(deadline, self.source.lookup(issuer)).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(LookupError::new(format!(
                        "the issuer lookup took longer than {} ms",
                        self.bounds.timeout.as_millis()
                    ))),
                };
                match &outcome {
                    Ok(None) => lock(&self.negative).insert(hash, now.saturating_add(self.negative_ttl)),
                    Ok(Some(_)) => {}
                    Err(error) => {
                        self.failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%error, "issuer lookup failed");
                    }
                }
                outcome
            })
            .await
            .clone();
        let mut in_flight = lock(&self.in_flight);
        if in_flight.get(&hash).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            in_flight.remove(&hash);
        }
        outcome
    }

    /// A place among the lookups in flight: at once if one is free; else
    /// after waiting, if fewer than `max_queued` lookups wait already (or
    /// `again`), until `deadline` at the latest.
    async fn permit(&self, deadline: Instant, again: bool) -> Result<SemaphorePermit<'_>, LookupError> {
        if let Ok(permit) = self.permits.try_acquire() {
            return Ok(permit);
        }
        let max_queued = if again { usize::MAX } else { self.bounds.max_queued };
        let Some(_place) = QueuePlace::take(&self.queued, max_queued) else {
            return Err(LookupError::new(format!(
                "too many issuer lookups: {} in flight and {} waiting; try again",
                self.bounds.max_in_flight, self.bounds.max_queued
            )));
        };
        match tokio::time::timeout_at(deadline, self.permits.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed.
            Ok(Err(_)) => Err(LookupError::new("issuer lookups are shut down")),
            Err(_) => Err(LookupError::new(format!(
                "no issuer lookup could start within {} ms; try again",
                self.bounds.timeout.as_millis()
            ))),
        }
    }
}

/// A place in the bounded queue of lookups waiting for a permit, given back
/// when dropped (also when the waiting caller gives up).
struct QueuePlace<'a>(&'a AtomicUsize);

impl<'a> QueuePlace<'a> {
    fn take(queued: &'a AtomicUsize, max: usize) -> Option<Self> {
        queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(queued))
    }
}

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Unknown issuers, by hash, each until its expiry; at most `capacity`,
/// the oldest forgotten first. Every entry lives for the same TTL, so
/// insertion order is expiry order and both eviction and expiry are O(1).
struct NegativeCache {
    map: HashMap<IssuerHash, Duration>,
    order: VecDeque<(IssuerHash, Duration)>,
    capacity: usize,
}

impl NegativeCache {
    fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    fn contains(&mut self, hash: IssuerHash, now: Duration) -> bool {
        self.expire(now);
        self.map.get(&hash).is_some_and(|until| now < *until)
    }

    fn insert(&mut self, hash: IssuerHash, until: Duration) {
        self.map.insert(hash, until);
        self.order.push_back((hash, until));
        while self.order.len() > self.capacity {
            self.pop_front();
        }
    }

    fn expire(&mut self, now: Duration) {
        while self.order.front().is_some_and(|(_, until)| *until <= now) {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some((hash, until)) = self.order.pop_front() {
            // A later insert of the same hash has its own record.
            if self.map.get(&hash) == Some(&until) {
                self.map.remove(&hash);
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves the data consistent.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_cache_is_bounded_and_expires() {
        let s = Duration::from_secs;
        let mut cache = NegativeCache::new(3);
        for h in 0..10u128 {
            cache.insert(h, s(60));
            assert!(cache.map.len() <= 3 && cache.order.len() <= 3);
        }
        assert!(!cache.contains(0, s(1)));
        assert!(cache.contains(9, s(1)));
        assert!(!cache.contains(9, s(60)), "expired at its TTL");
        assert!(cache.map.is_empty());
        // Re-inserting a hash keeps one live record.
        cache.insert(1, s(10));
        cache.insert(1, s(20));
        assert!(cache.contains(1, s(15)));
    }
}
