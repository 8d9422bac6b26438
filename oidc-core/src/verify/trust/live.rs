//! The issuers in use: each with its verifier and lazy key source, held in a
//! sharded map bounded by entry count, least recently used out first.
//!
//! A lookup takes one shard's read lock for a hash-map probe; recency is an
//! atomic time stamp on the issuer, written only when it moves (so tokens of
//! one issuer do not contend on a shared line more than they already share
//! its verifier). The bound is global and exact: an insert first reserves a
//! place in the count, evicting while there is none; an eviction takes the
//! least recently used issuer of the inserting shard (or, if that one is
//! empty, of the next shard that is not), a scan of one shard: bounded work,
//! on the path that creates an issuer, which is rare next to verifications.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use async_trait::async_trait;

use super::IssuerEntry;
use crate::jwks::JwkSet;
use crate::keys::VerifyingKey;
use crate::verify::{KeyLookupError, KeySource, RemoteJwks, Verifier};

/// The key source of one issuer: fetched lazily, or pinned.
#[derive(Debug, Clone)]
pub(super) enum EntryKeys {
    Remote(RemoteJwks),
    Pinned(Arc<JwkSet>),
}

#[async_trait]
impl KeySource for EntryKeys {
    async fn key(&self, kid: &str) -> Result<Arc<VerifyingKey>, KeyLookupError> {
        match self {
            Self::Remote(remote) => remote.key(kid).await,
            Self::Pinned(jwks) => jwks.key(kid).await,
        }
    }

    fn is_current(&self, key: &Arc<VerifyingKey>) -> bool {
        match self {
            Self::Remote(remote) => remote.is_current(key),
            Self::Pinned(jwks) => jwks.holds(key),
        }
    }
}

/// Where a live issuer's entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IssuerOrigin {
    /// The static list (code or file).
    Static,
    /// The on-demand [`IssuerLookup`](super::IssuerLookup).
    Lookup,
}

/// One issuer in use.
pub(super) struct LiveIssuer {
    pub(super) entry: Arc<IssuerEntry>,
    pub(super) verifier: Verifier<EntryKeys>,
    pub(super) origin: IssuerOrigin,
    /// Monotonic nanoseconds: when the entry should be looked up again
    /// (lookup entries only).
    pub(super) relookup_at: AtomicU64,
    /// Monotonic nanoseconds: from when on, unless a lookup has confirmed
    /// the entry again, its tokens are refused (lookup entries only).
    stale_at: AtomicU64,
    /// Monotonic milliseconds of the last use.
    last_used: AtomicU64,
    pub(super) verified: AtomicU64,
    pub(super) refused: AtomicU64,
}

impl LiveIssuer {
    pub(super) fn new(
        entry: Arc<IssuerEntry>,
        verifier: Verifier<EntryKeys>,
        origin: IssuerOrigin,
        now: Duration,
        relookup_at: Duration,
        stale_at: Duration,
    ) -> Self {
        Self {
            entry,
            verifier,
            origin,
            relookup_at: AtomicU64::new(nanos(relookup_at)),
            stale_at: AtomicU64::new(nanos(stale_at)),
            last_used: AtomicU64::new(millis(now)),
            verified: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    pub(super) fn touch(&self, now: Duration) {
        let now = millis(now);
        if self.last_used.load(Ordering::Relaxed) != now {
            self.last_used.store(now, Ordering::Relaxed);
        }
    }

    pub(super) fn idle(&self, now: Duration) -> Duration {
        Duration::from_millis(millis(now).saturating_sub(self.last_used.load(Ordering::Relaxed)))
    }

    pub(super) fn keys(&self) -> &EntryKeys {
        self.verifier.key_source()
    }

    pub(super) fn due_for_lookup(&self, now: Duration) -> bool {
        self.origin == IssuerOrigin::Lookup && nanos(now) >= self.relookup_at.load(Ordering::Relaxed)
    }

    /// Whether the entry's lookups have failed for too long for it to be
    /// used (lookup entries only).
    pub(super) fn stale(&self, now: Duration) -> bool {
        self.origin == IssuerOrigin::Lookup && nanos(now) >= self.stale_at.load(Ordering::Relaxed)
    }

    /// A lookup confirmed the entry: look it up again at `relookup_at`, and
    /// stop using it at `stale_at` unless one confirms it again.
    pub(super) fn confirmed(&self, relookup_at: Duration, stale_at: Duration) {
        self.stale_at.store(nanos(stale_at), Ordering::Relaxed);
        self.relookup_at.store(nanos(relookup_at), Ordering::Relaxed);
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

type Shard = HashMap<Arc<str>, Arc<LiveIssuer>>;

/// The live issuers by exact issuer, at most `capacity` in all.
pub(super) struct LiveIssuers {
    shards: Box<[RwLock<Shard>]>,
    hasher: RandomState,
    capacity: usize,
    /// Issuers in all shards, plus places reserved by inserts under way.
    count: AtomicUsize,
    pub(super) evictions: AtomicU64,
}

/// Shards of the map (more than there are cores, so that lookups of
/// different issuers rarely meet on one lock).
const SHARDS: usize = 16;

impl LiveIssuers {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: RandomState::new(),
            capacity,
            count: AtomicUsize::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }

    fn index(&self, issuer: &str) -> usize {
        // usize from u64: the modulo keeps it in range on any platform.
        (self.hasher.hash_one(issuer) % self.shards.len() as u64) as usize
    }

    fn read(&self, i: usize) -> RwLockReadGuard<'_, Shard> {
        // Every critical section leaves the map consistent.
        self.shards[i].read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, i: usize) -> RwLockWriteGuard<'_, Shard> {
        self.shards[i].write().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn get(&self, issuer: &str) -> Option<Arc<LiveIssuer>> {
        self.read(self.index(issuer)).get(issuer).cloned()
    }

    /// Adds `live` unless its issuer is live already (another caller got
    /// there first: theirs is returned, so every caller shares one key
    /// source); evicts the least recently used issuer of the shard if full.
    pub(super) fn insert(&self, live: Arc<LiveIssuer>) -> Arc<LiveIssuer> {
        let i = self.index(live.entry.issuer());
        if let Some(existing) = self.get(live.entry.issuer()) {
            return existing;
        }
        self.reserve(i);
        let mut shard = self.write(i);
        if let Some(existing) = shard.get(live.entry.issuer()) {
            self.count.fetch_sub(1, Ordering::Relaxed);
            return Arc::clone(existing);
        }
        shard.insert(Arc::clone(live.entry.shared_issuer()), Arc::clone(&live));
        live
    }

    /// Takes a place in the count, evicting until there is one. Called with
    /// no shard lock held (an eviction takes one).
    fn reserve(&self, shard: usize) {
        loop {
            let n = self.count.load(Ordering::Relaxed);
            if n < self.capacity {
                if self
                    .count
                    .compare_exchange(n, n + 1, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
                {
                    return;
                }
                continue;
            }
            self.evict_one(shard);
        }
    }

    /// Evicts the least recently used issuer of shard `start`, or of the
    /// next shard that has one.
    fn evict_one(&self, start: usize) {
        let n = self.shards.len();
        for j in (0..n).map(|k| (start + k) % n) {
            let mut shard = self.write(j);
            let oldest = shard
                .iter()
                .min_by_key(|(_, live)| live.last_used.load(Ordering::Relaxed))
                .map(|(issuer, _)| Arc::clone(issuer));
            if let Some(evicted) = oldest.and_then(|issuer| shard.remove(&issuer)) {
                self.count.fetch_sub(1, Ordering::Relaxed);
                self.evictions.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(issuer = evicted.entry.name(), "issuer evicted from the cache");
                return;
            }
        }
        // Every shard is empty: the places are reserved by inserts under
        // way, which will find room once they land or give up theirs.
        std::thread::yield_now();
    }

    /// Puts `live` in place of `old` (an entry that changed), or adds it if
    /// `old` is gone; returns what is live afterwards.
    pub(super) fn replace(&self, old: &Arc<LiveIssuer>, live: Arc<LiveIssuer>) -> Arc<LiveIssuer> {
        let i = self.index(live.entry.issuer());
        let mut shard = self.write(i);
        match shard.get(live.entry.issuer()) {
            Some(current) if !Arc::ptr_eq(current, old) => Arc::clone(current),
            Some(_) => {
                shard.insert(Arc::clone(live.entry.shared_issuer()), Arc::clone(&live));
                live
            }
            // Evicted meanwhile: it comes back as a new issuer would.
            None => {
                drop(shard);
                self.insert(live)
            }
        }
    }

    /// Removes `old` if it is still the live issuer for its issuer.
    pub(super) fn remove(&self, old: &Arc<LiveIssuer>) {
        let mut shard = self.write(self.index(old.entry.issuer()));
        if shard.get(old.entry.issuer()).is_some_and(|c| Arc::ptr_eq(c, old)) {
            shard.remove(old.entry.issuer());
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub(super) fn len(&self) -> usize {
        (0..self.shards.len()).map(|i| self.read(i).len()).sum()
    }

    /// Every live issuer (a copy: no lock is held afterwards).
    pub(super) fn all(&self) -> Vec<Arc<LiveIssuer>> {
        (0..self.shards.len())
            .flat_map(|i| self.read(i).values().cloned().collect::<Vec<_>>())
            .collect()
    }

    /// The live issuer named `name` (a scan: for the status view and
    /// forced refreshes, not for verification).
    pub(super) fn by_name(&self, name: &str) -> Option<Arc<LiveIssuer>> {
        (0..self.shards.len()).find_map(|i| {
            self.read(i)
                .values()
                .find(|live| live.entry.name() == name)
                .cloned()
        })
    }
}
