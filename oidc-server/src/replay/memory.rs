//! The in-process replay store: for a single process only (the embedded
//! default, one container). A fleet (several replicas, Lambda's many
//! environments) needs the shared [`DynamoDbReplayStore`](super::DynamoDbReplayStore):
//! a credential replayed at another process would be accepted there.
//!
//! Each method has its own map and its own bound, so one kind of credential
//! can never crowd out the other. Entries leave in the order they expire
//! (a min-heap beside the map): no request scans the whole map.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use super::{FirstUse, Method, ReplayKey, ReplayStore, StoreError};

/// Live entries per method at most (a million is ~100 MB at worst).
pub(super) const DEFAULT_CAPACITY: usize = 1_000_000;

/// Expired entries removed per call at most, so one call's work is bounded;
/// at capacity every expired entry goes.
const PURGE_BATCH: usize = 128;

/// An in-process [`ReplayStore`] bounded per method.
#[derive(Debug)]
pub struct MemoryReplayStore {
    methods: [Mutex<Entries>; 4],
    capacity: usize,
}

#[derive(Debug, Default)]
struct Entries {
    /// Key digest → remember until (Unix seconds).
    live: HashMap<[u8; 32], u64>,
    /// The same entries by expiry, soonest first.
    by_expiry: BinaryHeap<Reverse<(u64, [u8; 32])>>,
}

impl Entries {
    /// Removes up to `limit` entries that expired before `now`.
    fn purge(&mut self, now: u64, limit: usize) {
        for _ in 0..limit {
            match self.by_expiry.peek() {
                Some(Reverse((until, digest))) if *until < now => {
                    if self.live.get(digest) == Some(until) {
                        self.live.remove(digest);
                    }
                    self.by_expiry.pop();
                }
                _ => return,
            }
        }
    }
}

impl MemoryReplayStore {
    /// A store holding at most `capacity` live entries per method.
    pub fn new(capacity: usize) -> Self {
        Self {
            methods: [
                Mutex::default(),
                Mutex::default(),
                Mutex::default(),
                Mutex::default(),
            ],
            capacity,
        }
    }

    fn entries(&self, method: Method) -> MutexGuard<'_, Entries> {
        // A poisoned lock means a panic mid-insert elsewhere; map and heap are
        // each still valid, and a missing heap entry only delays a removal.
        self.methods[method.index()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Live entries of `method` (for tests and diagnostics).
    pub fn len(&self, method: Method) -> usize {
        self.entries(method).live.len()
    }

    /// Whether no entry of any method is held.
    pub fn is_empty(&self) -> bool {
        Method::ALL.iter().all(|m| self.len(*m) == 0)
    }
}

impl Default for MemoryReplayStore {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

#[async_trait]
impl ReplayStore for MemoryReplayStore {
    async fn first_use(
        &self,
        key: &ReplayKey,
        remember_until: u64,
        now: u64,
    ) -> Result<FirstUse, StoreError> {
        let mut entries = self.entries(key.method);
        entries.purge(now, PURGE_BATCH);
        if let Some(until) = entries.live.get(&key.digest) {
            // Expired entries count as absent, as in the DynamoDB condition.
            if *until >= now {
                return Ok(FirstUse::Replayed);
            }
        }
        if entries.live.len() >= self.capacity {
            entries.purge(now, usize::MAX);
            if entries.live.len() >= self.capacity {
                // Refusing is safer than forgetting an entry still live.
                return Err(StoreError::Full(entries.live.len()));
            }
        }
        entries.live.insert(key.digest, remember_until);
        entries.by_expiry.push(Reverse((remember_until, key.digest)));
        Ok(FirstUse::Fresh)
    }

    async fn ready(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jti(n: u32) -> ReplayKey {
        ReplayKey::assertion("https://i", "c", &n.to_string())
    }

    #[tokio::test]
    async fn each_key_once_until_it_expires() {
        let store = MemoryReplayStore::new(2);
        assert_eq!(store.first_use(&jti(1), 100, 10).await, Ok(FirstUse::Fresh));
        assert_eq!(store.first_use(&jti(1), 100, 50).await, Ok(FirstUse::Replayed));
        assert_eq!(store.first_use(&jti(2), 100, 50).await, Ok(FirstUse::Fresh));
        assert_eq!(store.first_use(&jti(3), 100, 50).await, Err(StoreError::Full(2)));
        // The other method has its own bound.
        let sig = ReplayKey::aws_signature("aa");
        assert_eq!(store.first_use(&sig, 100, 50).await, Ok(FirstUse::Fresh));
        // Once expired, entries make room, and the same key may be used again
        // (an expired credential is refused before the store is asked).
        assert_eq!(store.first_use(&jti(3), 200, 150).await, Ok(FirstUse::Fresh));
        assert_eq!(store.first_use(&jti(1), 300, 150).await, Ok(FirstUse::Fresh));
        assert_eq!(store.len(Method::Assertion), 2);
    }

    #[tokio::test]
    async fn expired_entries_leave_in_time_order_with_bounded_work() {
        let store = MemoryReplayStore::new(10_000);
        for n in 0..1000 {
            store.first_use(&jti(n), 100 + u64::from(n), 0).await.unwrap();
        }
        // One call removes at most a batch of the expired entries.
        store.first_use(&jti(5000), 10_000, 2000).await.unwrap();
        assert_eq!(store.len(Method::Assertion), 1001 - PURGE_BATCH);
        // Later calls go on where it stopped, soonest first.
        for n in 0..8 {
            store.first_use(&jti(6000 + n), 10_000, 2000).await.unwrap();
        }
        assert_eq!(store.len(Method::Assertion), 9);
    }
}
