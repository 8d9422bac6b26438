//! One use per proof: [`ProofReplayStore`], and the per-process
//! [`MemoryProofReplayStore`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use ring::digest::{Context, SHA256};

use super::ReplayError;

/// Proofs remembered at most by a default [`MemoryProofReplayStore`]
/// (about 100 bytes each: 100 MB at worst).
pub const DEFAULT_REPLAY_CAPACITY: usize = 1_000_000;

/// Proofs of one key remembered at most by default: a connector polling
/// ten times a second fills 650 of them in a 65 s window.
pub const DEFAULT_MAX_PER_KEY: usize = 4096;

/// Shards of the memory store: a key's proofs all live in one.
const SHARDS: usize = 16;

/// Expired entries removed per call at most (at capacity, all of them).
const PURGE_BATCH: usize = 64;

/// Whether a proof was seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstUse {
    /// First use: recorded now.
    Fresh,
    /// Seen before and still remembered: a replay.
    Replayed,
}

/// A proof's identity in a replay store: its key's thumbprint and its
/// `jti`, hashed (SHA-256, each part length-prefixed). Two keys' proofs
/// never collide, so no one can spend another client's `jti`; no text a
/// client chose becomes a store key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProofId {
    key: [u8; 32],
    proof: [u8; 32],
}

impl ProofId {
    /// The id of proof `jti` signed by the key with thumbprint `jkt`.
    pub fn new(jkt: &str, jti: &str) -> Self {
        let digest = |parts: &[&str]| {
            let mut context = Context::new(&SHA256);
            for part in parts {
                context.update(&(part.len() as u64).to_be_bytes());
                context.update(part.as_bytes());
            }
            let mut out = [0u8; 32];
            out.copy_from_slice(context.finish().as_ref());
            out
        };
        Self {
            key: digest(&[jkt]),
            proof: digest(&[jkt, jti]),
        }
    }

    /// The proof's digest: what a fleet-wide store records.
    pub fn digest(&self) -> &[u8; 32] {
        &self.proof
    }

    /// The digest of the key alone (for per-key bounds).
    pub fn key_digest(&self) -> &[u8; 32] {
        &self.key
    }
}

impl fmt::Debug for ProofId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProofId(")?;
        for byte in &self.proof[..8] {
            write!(f, "{byte:02x}")?;
        }
        write!(f, "…)")
    }
}

/// Where proof uses are recorded: per process ([`MemoryProofReplayStore`]),
/// or across a fleet (the token endpoint's store, behind this trait).
#[async_trait]
pub trait ProofReplayStore: Send + Sync + fmt::Debug {
    /// Records `proof` until `remember_until` (Unix seconds: past it the
    /// proof's `iat` is outside the window anyway), or finds it recorded
    /// and not yet expired at `now`. Check and record are one atomic step:
    /// of concurrent uses exactly one is [`FirstUse::Fresh`].
    async fn first_use(
        &self,
        proof: &ProofId,
        remember_until: u64,
        now: u64,
    ) -> Result<FirstUse, ReplayError>;
}

/// The counters of a [`MemoryProofReplayStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplayStats {
    /// Proofs remembered now.
    pub entries: usize,
    /// Proofs forgotten before their time to make room (see the type's docs).
    pub evictions: u64,
    /// Proofs refused because their key had [`DEFAULT_MAX_PER_KEY`] (or the
    /// configured bound) remembered.
    pub key_quota_refusals: u64,
}

/// The per-process proof store: for a control plane (or one token
/// endpoint process) on its own.
///
/// # Bounds, and what a flood does
///
/// Proofs are recorded only once everything else about them holds (at a
/// control plane: the token verified and bound to the proof's key), so only
/// a holder of a valid bound token and its key can add entries, and each
/// entry leaves once its `iat` window has passed. On top of that:
///
/// - **Per key**, at most `max_per_key` proofs are remembered; beyond it
///   that key's proofs are refused ([`ReplayError::KeyQuota`]) until older
///   ones expire. Only the key's holder can reach it: a flood from one
///   stolen-and-bound or malicious connector hurts that connector alone.
/// - **In all**, at most `capacity` proofs (in 16 shards, a key's proofs
///   all in one shard). A full shard **evicts** the proof closest to
///   expiry rather than refuse the new one: a flood from many keys at
///   once (each needs its own bound token) must not lock out legitimate
///   clients. The cost is that an evicted proof could be replayed for what
///   is left of its window; evictions are counted
///   ([`ReplayStats::evictions`]) so the capacity can be raised before that
///   happens.
///
/// Entries leave in the order they expire (a min-heap beside each map): no
/// call scans a whole shard.
pub struct MemoryProofReplayStore {
    shards: Vec<Mutex<Shard>>,
    shard_capacity: usize,
    max_per_key: usize,
    evictions: AtomicU64,
    key_quota_refusals: AtomicU64,
}

#[derive(Default)]
struct Shard {
    /// Proof digest → (remember until, key digest).
    live: HashMap<[u8; 32], (u64, [u8; 32])>,
    /// The same entries by expiry, soonest first.
    by_expiry: BinaryHeap<Reverse<(u64, [u8; 32])>>,
    /// Live proofs per key digest.
    per_key: HashMap<[u8; 32], usize>,
}

impl Shard {
    /// Removes the entry at the top of the heap if it is live with that
    /// expiry; whether the heap had one.
    fn pop(&mut self) -> bool {
        let Some(Reverse((until, digest))) = self.by_expiry.pop() else {
            return false;
        };
        if let Some(&(live_until, key)) = self.live.get(&digest) {
            if live_until == until {
                self.live.remove(&digest);
                if let Some(count) = self.per_key.get_mut(&key) {
                    *count -= 1;
                    if *count == 0 {
                        self.per_key.remove(&key);
                    }
                }
            }
        }
        true
    }

    /// Removes up to `limit` entries that expired before `now`.
    fn purge(&mut self, now: u64, limit: usize) {
        for _ in 0..limit {
            match self.by_expiry.peek() {
                Some(Reverse((until, _))) if *until < now => {
                    self.pop();
                }
                _ => return,
            }
        }
    }
}

impl Default for MemoryProofReplayStore {
    /// [`DEFAULT_REPLAY_CAPACITY`] proofs, [`DEFAULT_MAX_PER_KEY`] per key.
    fn default() -> Self {
        Self::new(DEFAULT_REPLAY_CAPACITY, DEFAULT_MAX_PER_KEY)
    }
}

impl MemoryProofReplayStore {
    /// A store of at most `capacity` proofs (at least 16), at most
    /// `max_per_key` (at least one) per key.
    pub fn new(capacity: usize, max_per_key: usize) -> Self {
        let shard_capacity = capacity.div_ceil(SHARDS).max(1);
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            shard_capacity,
            max_per_key: max_per_key.max(1),
            evictions: AtomicU64::new(0),
            key_quota_refusals: AtomicU64::new(0),
        }
    }

    /// The counters.
    pub fn stats(&self) -> ReplayStats {
        ReplayStats {
            entries: self.shards.iter().map(|s| lock(s).live.len()).sum(),
            evictions: self.evictions.load(Ordering::Relaxed),
            key_quota_refusals: self.key_quota_refusals.load(Ordering::Relaxed),
        }
    }

    /// [`ProofReplayStore::first_use`], without the future.
    pub fn first_use_now(
        &self,
        proof: &ProofId,
        remember_until: u64,
        now: u64,
    ) -> Result<FirstUse, ReplayError> {
        let index = usize::from(proof.key[0]) % SHARDS;
        let mut shard = lock(&self.shards[index]);
        shard.purge(now, PURGE_BATCH);
        if let Some(&(until, _)) = shard.live.get(&proof.proof) {
            if until >= now {
                return Ok(FirstUse::Replayed);
            }
        }
        let count = shard.per_key.get(&proof.key).copied().unwrap_or(0);
        if count >= self.max_per_key {
            self.key_quota_refusals.fetch_add(1, Ordering::Relaxed);
            return Err(ReplayError::KeyQuota(count));
        }
        if shard.live.len() >= self.shard_capacity {
            shard.purge(now, usize::MAX);
        }
        while shard.live.len() >= self.shard_capacity && shard.pop() {
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        let previous = shard.live.insert(proof.proof, (remember_until, proof.key));
        if previous.is_none() {
            *shard.per_key.entry(proof.key).or_insert(0) += 1;
        }
        shard.by_expiry.push(Reverse((remember_until, proof.proof)));
        Ok(FirstUse::Fresh)
    }
}

/// A poisoned lock only means another thread panicked while holding it;
/// the maps are still consistent enough to serve (each step leaves them so).
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

#[async_trait]
impl ProofReplayStore for MemoryProofReplayStore {
    async fn first_use(
        &self,
        proof: &ProofId,
        remember_until: u64,
        now: u64,
    ) -> Result<FirstUse, ReplayError> {
        self.first_use_now(proof, remember_until, now)
    }
}

impl fmt::Debug for MemoryProofReplayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryProofReplayStore")
            .field("capacity", &(self.shard_capacity * SHARDS))
            .field("max_per_key", &self.max_per_key)
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_until_expiry_and_bounds_keys_and_entries() {
        let store = MemoryProofReplayStore::new(16 * 4, 3);
        let a = ProofId::new("key-a", "1");
        assert_eq!(store.first_use_now(&a, 100, 50), Ok(FirstUse::Fresh));
        assert_eq!(store.first_use_now(&a, 100, 60), Ok(FirstUse::Replayed));
        assert_eq!(store.first_use_now(&a, 100, 100), Ok(FirstUse::Replayed));
        // Past its time it is forgotten.
        assert_eq!(store.first_use_now(&a, 200, 101), Ok(FirstUse::Fresh));
        // Another key's proof with the same jti is another proof.
        assert_eq!(
            store.first_use_now(&ProofId::new("key-b", "1"), 200, 101),
            Ok(FirstUse::Fresh)
        );

        // One key: at most three live proofs; others' keys are not affected.
        for jti in ["2", "3"] {
            assert_eq!(
                store.first_use_now(&ProofId::new("key-a", jti), 200, 101),
                Ok(FirstUse::Fresh)
            );
        }
        assert_eq!(
            store.first_use_now(&ProofId::new("key-a", "4"), 200, 101),
            Err(ReplayError::KeyQuota(3))
        );
        assert_eq!(
            store.first_use_now(&ProofId::new("key-b", "4"), 200, 101),
            Ok(FirstUse::Fresh)
        );
        assert_eq!(store.stats().key_quota_refusals, 1);
        // Once they expire, the key may go on.
        assert_eq!(
            store.first_use_now(&ProofId::new("key-a", "4"), 300, 201),
            Ok(FirstUse::Fresh)
        );
    }

    #[test]
    fn a_flood_of_keys_evicts_rather_than_refuses() {
        // 16 shards of 2.
        let store = MemoryProofReplayStore::new(32, 10);
        for i in 0..1000 {
            let id = ProofId::new(&format!("flood-{i}"), "x");
            assert_eq!(store.first_use_now(&id, 1000 + i, 10), Ok(FirstUse::Fresh));
        }
        assert!(store.stats().entries <= 32, "{:?}", store.stats());
        assert!(store.stats().evictions >= 1000 - 32);
        // A legitimate client's proof is still accepted, and remembered.
        let legit = ProofId::new("legit", "j");
        assert_eq!(store.first_use_now(&legit, 5000, 10), Ok(FirstUse::Fresh));
        assert_eq!(store.first_use_now(&legit, 5000, 11), Ok(FirstUse::Replayed));
    }
}
