//! Issuers found on demand: the [`IssuerLookup`] a control plane implements
//! (backed by its own database), called at most once at a time per issuer,
//! under a cap on lookups in flight, with a bounded negative cache so that a
//! flood of tokens naming unknown issuers costs one lookup per issuer per
//! interval, not one per token.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{OnceCell, Semaphore};

use super::IssuerEntry;
use crate::json;
use crate::verify::VerifyError;

/// Looks trusted issuers up by their exact `iss`, on demand: the control
/// plane's own store of tenants. Called only for an `iss` that is neither in
/// the static list nor cached, at most once at a time per issuer, and not
/// again for an issuer it did not know until the negative cache forgets it.
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

pub(super) struct Lookups {
    source: Arc<dyn IssuerLookup>,
    hash_keys: [std::collections::hash_map::RandomState; 2],
    negative: Mutex<NegativeCache>,
    negative_ttl: Duration,
    in_flight: Mutex<HashMap<IssuerHash, Arc<OnceCell<Outcome>>>>,
    permits: Semaphore,
    pub(super) lookups: AtomicU64,
    pub(super) failures: AtomicU64,
    pub(super) negative_hits: AtomicU64,
}

impl Lookups {
    pub(super) fn new(
        source: Arc<dyn IssuerLookup>,
        negative_capacity: usize,
        negative_ttl: Duration,
        max_in_flight: usize,
    ) -> Self {
        Self {
            source,
            hash_keys: Default::default(),
            negative: Mutex::new(NegativeCache::new(negative_capacity)),
            negative_ttl,
            in_flight: Mutex::default(),
            permits: Semaphore::new(max_in_flight),
            lookups: AtomicU64::new(0),
            failures: AtomicU64::new(0),
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
    /// lookup that found nothing; `IssuerLookup` when the lookup failed.
    /// `now` is the registry's monotonic time.
    pub(super) async fn resolve(&self, issuer: &str, now: Duration) -> Result<IssuerEntry, VerifyError> {
        let unknown = || VerifyError::UnknownIssuer {
            issuer: json::excerpt(issuer),
        };
        if issuer.is_empty() || issuer.len() > MAX_LOOKUP_ISSUER_LEN {
            return Err(unknown());
        }
        let hash = self.hash(issuer);
        if lock(&self.negative).contains(hash, now) {
            self.negative_hits.fetch_add(1, Ordering::Relaxed);
            return Err(unknown());
        }
        match self.lookup_once(issuer, hash, now).await {
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
    async fn lookup_once(&self, issuer: &str, hash: IssuerHash, now: Duration) -> Outcome {
        let cell = Arc::clone(lock(&self.in_flight).entry(hash).or_default());
        let outcome = cell
            .get_or_init(|| async {
                // The semaphore is never closed.
                let _permit = self.permits.acquire().await.ok();
                self.lookups.fetch_add(1, Ordering::Relaxed);
                let outcome = self.source.lookup(issuer).await;
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
