//! The table behind a [`VerificationCache`](super::VerificationCache):
//! sharded, each shard a hash map from key to slot under a reader-writer lock,
//! bounded by entry count, evicting by CLOCK (second chance) with a bounded
//! probe.
//!
//! A hit takes one shard's read lock for a map probe, clones the entry's
//! `Arc` and marks it referenced (a store only when the mark was clear);
//! counters live beside each shard on a cache line of their own. An insert
//! takes the shard's write lock and looks at no more than [`MAX_PROBE`]
//! slots before it evicts: expired or unreferenced entries first, the one
//! under the hand otherwise.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::Entry;

/// A keyed hash of a token: 128 bits of HMAC-SHA-256 under the cache's own
/// random key. Uniform, so its low bits serve as the map's hash and shard.
pub(crate) type CacheKey = u128;

/// Slots an insert into a full shard looks at before it evicts the one under
/// the hand: the bound on eviction work per insert.
pub(super) const MAX_PROBE: usize = 8;

/// Shards (more than there are cores, so that hot tokens rarely share a lock).
const SHARDS: usize = 16;

/// The counters of one shard, alone on their cache line.
#[derive(Default)]
#[repr(align(64))]
pub(super) struct Counters {
    pub(super) hits: AtomicU64,
    pub(super) misses: AtomicU64,
    pub(super) inserts: AtomicU64,
    pub(super) evictions: AtomicU64,
    pub(super) invalidations: AtomicU64,
}

struct Slot {
    key: CacheKey,
    entry: Arc<Entry>,
}

#[derive(Default)]
struct Shard {
    map: HashMap<CacheKey, usize, BuildHasherDefault<KeyHasher>>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    hand: usize,
}

pub(super) struct Table {
    shards: Box<[(RwLock<Shard>, Counters)]>,
    capacity: usize,
}

impl Table {
    pub(super) fn new(capacity: usize) -> Self {
        let shards = capacity.clamp(1, SHARDS);
        Self {
            shards: (0..shards).map(|_| Default::default()).collect(),
            capacity,
        }
    }

    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }

    fn index(&self, key: CacheKey) -> usize {
        // The high bits: the map hashes with the low ones.
        ((key >> 64) as u64 % self.shards.len() as u64) as usize
    }

    /// The share of the capacity of shard `i` (the shares add up to it).
    fn shard_capacity(&self, i: usize) -> usize {
        let n = self.shards.len();
        self.capacity / n + usize::from(i < self.capacity % n)
    }

    fn read(&self, i: usize) -> RwLockReadGuard<'_, Shard> {
        // Every critical section leaves the shard consistent.
        self.shards[i].0.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, i: usize) -> RwLockWriteGuard<'_, Shard> {
        self.shards[i].0.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn counters(&self, key: CacheKey) -> &Counters {
        &self.shards[self.index(key)].1
    }

    pub(super) fn get(&self, key: CacheKey) -> Option<Arc<Entry>> {
        let shard = self.read(self.index(key));
        let slot = shard.map.get(&key).and_then(|&i| shard.slots[i].as_ref())?;
        slot.entry.mark_referenced();
        Some(Arc::clone(&slot.entry))
    }

    /// Stores `entry` under `key` (replacing what was there), evicting an
    /// entry if the shard is full; `now` tells expired entries apart.
    pub(super) fn insert(&self, key: CacheKey, entry: Arc<Entry>, now: u64) {
        let i = self.index(key);
        let capacity = self.shard_capacity(i);
        let counters = &self.shards[i].1;
        let mut guard = self.write(i);
        let shard = &mut *guard;
        counters.inserts.fetch_add(1, Ordering::Relaxed);
        if let Some(&at) = shard.map.get(&key) {
            shard.slots[at] = Some(Slot { key, entry });
            return;
        }
        let at = if let Some(at) = shard.free.pop() {
            at
        } else if shard.slots.len() < capacity {
            shard.slots.push(None);
            shard.slots.len() - 1
        } else {
            let at = shard.victim(now);
            if let Some(old) = shard.slots[at].take() {
                shard.map.remove(&old.key);
                counters.evictions.fetch_add(1, Ordering::Relaxed);
            }
            at
        };
        shard.slots[at] = Some(Slot { key, entry });
        shard.map.insert(key, at);
    }

    /// Drops the entry under `key` if it is still `entry` (not one a
    /// concurrent insert put there since).
    pub(super) fn invalidate(&self, key: CacheKey, entry: &Arc<Entry>) {
        let i = self.index(key);
        let mut guard = self.write(i);
        let shard = &mut *guard;
        let Some(&at) = shard.map.get(&key) else {
            return;
        };
        if shard.slots[at]
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(&s.entry, entry))
        {
            shard.slots[at] = None;
            shard.map.remove(&key);
            shard.free.push(at);
            self.shards[i].1.invalidations.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn len(&self) -> usize {
        (0..self.shards.len()).map(|i| self.read(i).map.len()).sum()
    }

    pub(super) fn clear(&self) {
        for i in 0..self.shards.len() {
            *self.write(i) = Shard::default();
        }
    }

    pub(super) fn sum(&self, counter: impl Fn(&Counters) -> &AtomicU64) -> u64 {
        self.shards
            .iter()
            .map(|(_, c)| counter(c).load(Ordering::Relaxed))
            .sum()
    }
}

impl Shard {
    /// The slot to evict: within [`MAX_PROBE`] slots from the hand, the
    /// first expired or unreferenced one (clearing the marks passed over),
    /// else the one the hand reaches last.
    fn victim(&mut self, now: u64) -> usize {
        let n = self.slots.len();
        let mut at = self.hand % n;
        for _ in 0..MAX_PROBE {
            at = self.hand % n;
            self.hand = (self.hand + 1) % n;
            match &self.slots[at] {
                None => return at,
                Some(slot) if slot.entry.expired(now) || !slot.entry.take_referenced() => return at,
                Some(_) => {}
            }
        }
        at
    }
}

/// The map's hasher: the key is already a keyed hash, so its low 64 bits
/// are used as they are.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached for `u128` keys (`write_u128` below); folded for completeness.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}
