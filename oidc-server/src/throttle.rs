//! Throttling of failed client authentication. A correct credential is never
//! refused because of failures someone else caused for the same client id
//! (ids are not secret: they are `sub` and `client_id` in every token):
//!
//! - **per peer**, before authentication: a peer (an IPv4 address, an IPv6
//!   /64) with `limit` failures within `window` is answered 429 until the
//!   window has passed, whatever it presents: the hard limit against floods;
//! - **per claimed client**, after authentication: once a registered client
//!   id has `limit` failures within `window`, further *failures* for it are
//!   answered 429 instead of 401; a request that proves the client is served.
//!
//! Only registered client ids are tracked (an attacker cannot grow the table
//! with made-up ids), in a table of their own, so that no number of peers
//! can push a client's counter out.
//!
//! # The tables
//!
//! Each table (peers, clients) is split into [`SHARDS`] shards by a keyed
//! hash of the subject (random per process, so no one can aim their
//! addresses at one shard), each a hash map to slots under a reader-writer
//! lock. The check every token request makes takes one shard's read lock for
//! one map probe and allocates nothing. A failure takes one shard's write
//! lock and does bounded work: a full shard looks at [`MAX_PROBE`] slots from
//! its clock hand and evicts one of them. It evicts rather than stops
//! tracking, since an untracked peer is an unlimited one.
//!
//! # What eviction picks, and why
//!
//! Among the probed slots: an expired window first (it limits no one); else
//! the entry with the **fewest failures in its window**, the oldest of those
//! on a tie. An entry with few failures holds little: dropping it gives its
//! peer back at most what a fresh address gets anyway. An entry at the limit
//! (a peer being refused) is evicted only when every probed slot is at the
//! limit too. Flushing one limited peer therefore costs an attacker a shard
//! filled with limited entries within one window: about `limit` failures
//! from each of [`MAX_SUBJECTS`] distinct peers, a million at the defaults. A
//! spray of fresh addresses, one failure each, only ever replaces other
//! one-failure entries. Clients are out of reach entirely: peers are never
//! stored in their table.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::net::IpAddr;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

/// Most subjects each table (peers, clients) tracks at once; beyond it, a
/// new subject evicts one (see the module docs for which).
const MAX_SUBJECTS: usize = 100_000;

/// Shards per table (more than there are cores, so that concurrent
/// requests rarely share a lock).
const SHARDS: usize = 16;

/// Slots a failure in a full shard looks at before it evicts one: the bound
/// on its work.
const MAX_PROBE: usize = 8;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// Failed-authentication counters.
#[derive(Debug)]
pub struct Throttle {
    limit: u32,
    window: Duration,
    peers: Table<IpAddr>,
    clients: Table<Box<str>>,
}

impl Throttle {
    /// At most `limit` failures per `window`.
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            peers: Table::new(MAX_SUBJECTS),
            clients: Table::new(MAX_SUBJECTS),
        }
    }

    /// How many peers can be tracked at once (beyond it, one is evicted).
    pub fn peer_capacity(&self) -> usize {
        self.peers.capacity
    }

    /// How many peers are tracked now (their windows may have expired).
    pub fn tracked_peers(&self) -> usize {
        self.peers.len()
    }

    /// How long a subject with `window` stays limited, if it is.
    fn limited(&self, window: Window, now: Instant) -> Option<Duration> {
        let ends = window.started + self.window;
        (window.failures >= self.limit && ends > now).then(|| ends - now)
    }

    /// `Err(retry_after)` if the peer (its throttle key, the /64 of an IPv6 address)
    /// is over its limit: refuse before authenticating.
    pub fn check_peer(&self, peer: Option<IpAddr>) -> Result<(), Duration> {
        let Some(peer) = peer else { return Ok(()) };
        // The clock is read only for a peer with failures on record.
        match self.peers.get(&self.peers.hashed(peer)) {
            Some(window) => self.limited(window, Instant::now()).map_or(Ok(()), Err),
            None => Ok(()),
        }
    }

    /// Counts a failed authentication for the (registered) claimed client and
    /// the peer. `Err(retry_after)` when the client is now over its limit:
    /// answer this failure 429 rather than 401.
    pub fn failed(&self, client: Option<&str>, peer: Option<IpAddr>) -> Result<(), Duration> {
        let now = Instant::now();
        // Over the limit already: this failure is one too many.
        let over = client.and_then(|client| {
            let before = self
                .clients
                .record(self.clients.hashed(Box::from(client)), now, self.window);
            before.and_then(|window| self.limited(window, now))
        });
        if let Some(peer) = peer {
            self.peers.record(self.peers.hashed(peer), now, self.window);
        }
        over.map_or(Ok(()), Err)
    }
}

/// A subject with its keyed hash, computed once for the shard and the map.
#[derive(Debug, Clone)]
struct Hashed<K> {
    hash: u64,
    key: K,
}

impl<K: PartialEq> PartialEq for Hashed<K> {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.key == other.key
    }
}

impl<K: Eq> Eq for Hashed<K> {}

impl<K> Hash for Hashed<K> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// The map's hasher: the key carries its keyed hash already.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached (`Hashed` writes one `u64`); folded for completeness.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Debug)]
struct Slot<K> {
    key: Hashed<K>,
    window: Window,
}

/// One shard: a map from subject to slot, and the slots the clock hand walks
/// (never more than the shard's capacity; a slot is only ever replaced).
#[derive(Debug)]
struct Shard<K> {
    map: HashMap<Hashed<K>, usize, BuildHasherDefault<PassThrough>>,
    slots: Vec<Slot<K>>,
    hand: usize,
}

impl<K> Default for Shard<K> {
    fn default() -> Self {
        Self {
            map: HashMap::default(),
            slots: Vec::new(),
            hand: 0,
        }
    }
}

#[derive(Debug)]
struct Table<K> {
    hasher: RandomState,
    shards: Box<[RwLock<Shard<K>>]>,
    capacity: usize,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new(capacity: usize) -> Self {
        Self {
            hasher: RandomState::new(),
            shards: (0..capacity.clamp(1, SHARDS))
                .map(|_| Default::default())
                .collect(),
            capacity,
        }
    }

    fn hashed(&self, key: K) -> Hashed<K> {
        Hashed {
            hash: self.hasher.hash_one(&key),
            key,
        }
    }

    fn index(&self, hash: u64) -> usize {
        // Middle bits: the map takes its buckets from the low ones and its
        // tags from the top ones.
        ((hash >> 32) % self.shards.len() as u64) as usize
    }

    /// The share of the capacity of shard `i` (the shares add up to it).
    fn shard_capacity(&self, i: usize) -> usize {
        let n = self.shards.len();
        self.capacity / n + usize::from(i < self.capacity % n)
    }

    fn read(&self, i: usize) -> RwLockReadGuard<'_, Shard<K>> {
        // The counters are plain numbers; a panic elsewhere leaves them valid.
        self.shards[i].read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self, i: usize) -> RwLockWriteGuard<'_, Shard<K>> {
        self.shards[i].write().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, key: &Hashed<K>) -> Option<Window> {
        let shard = self.read(self.index(key.hash));
        shard.map.get(key).map(|&at| shard.slots[at].window)
    }

    /// Counts one failure of `key` at `now` (a window older than `length`
    /// starts over); the window as it was before, if `key` was tracked.
    fn record(&self, key: Hashed<K>, now: Instant, length: Duration) -> Option<Window> {
        let i = self.index(key.hash);
        let capacity = self.shard_capacity(i);
        let mut guard = self.write(i);
        let shard = &mut *guard;
        if let Some(&at) = shard.map.get(&key) {
            let window = &mut shard.slots[at].window;
            let before = *window;
            if window.started + length <= now {
                *window = Window {
                    started: now,
                    failures: 0,
                };
            }
            window.failures = window.failures.saturating_add(1);
            return Some(before);
        }
        let slot = Slot {
            key: key.clone(),
            window: Window {
                started: now,
                failures: 1,
            },
        };
        let at = if shard.slots.len() < capacity {
            shard.slots.push(slot);
            shard.slots.len() - 1
        } else {
            let at = shard.victim(now, length);
            let old = std::mem::replace(&mut shard.slots[at], slot);
            shard.map.remove(&old.key);
            at
        };
        shard.map.insert(key, at);
        None
    }

    fn len(&self) -> usize {
        (0..self.shards.len()).map(|i| self.read(i).map.len()).sum()
    }
}

impl<K> Shard<K> {
    /// The slot to evict from a full shard: within [`MAX_PROBE`] slots from
    /// the hand, the first expired one, else the one with the fewest
    /// failures, the oldest of those (the module docs say why).
    fn victim(&mut self, now: Instant, length: Duration) -> usize {
        let n = self.slots.len();
        let mut best: Option<(usize, (u32, Instant))> = None;
        for _ in 0..MAX_PROBE.min(n) {
            let at = self.hand % n;
            self.hand = (at + 1) % n;
            let window = self.slots[at].window;
            if window.started + length <= now {
                return at;
            }
            let rank = (window.failures, window.started);
            if best.is_none_or(|(_, least)| rank < least) {
                best = Some((at, rank));
            }
        }
        best.map_or(self.hand % n, |(at, _)| at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_limit_the_peer_and_the_failures_of_a_client_never_its_success() {
        let t = Throttle::new(3, Duration::from_secs(60));
        let attacker = Some(IpAddr::from([10, 0, 0, 1]));
        for _ in 0..3 {
            assert!(t.failed(Some("c"), attacker).is_ok());
        }
        // The flooding peer is refused before it authenticates...
        assert!(t.check_peer(attacker).is_err());
        // ...another peer is not: whether it is served depends on its credential.
        let connector = Some(IpAddr::from([10, 0, 0, 2]));
        assert!(t.check_peer(connector).is_ok());
        assert!(t.check_peer(None).is_ok());
        // A failure for the over-limit client is answered 429, from anywhere.
        let wait = t
            .failed(Some("c"), Some(IpAddr::from([10, 0, 0, 3])))
            .unwrap_err();
        assert!(wait <= Duration::from_secs(60) && wait > Duration::from_secs(58));
        // Other clients are untouched.
        assert!(t.failed(Some("other"), Some(IpAddr::from([10, 0, 0, 4]))).is_ok());
    }

    /// A distinct peer per `n` (IPv6 /64s: what an attacker has plenty of).
    fn spray(n: u64) -> Option<IpAddr> {
        Some(IpAddr::from(std::net::Ipv6Addr::from(
            u128::from(n) << 64 | 0x2001_0db8 << 96,
        )))
    }

    /// Found in the hardening review: once the table was full, every failure
    /// scanned all of it under the one lock every request takes, and new
    /// peers were never counted (so never limited).
    #[test]
    fn a_full_table_still_limits_new_peers_and_keeps_the_limited_ones() {
        let limit = 10;
        let t = Throttle::new(limit, Duration::from_secs(600));
        // A peer at its limit and a client with failures, before the flood.
        let limited = Some(IpAddr::from([192, 0, 2, 1]));
        for _ in 0..limit {
            let _ = t.failed(Some("victim"), limited);
        }
        assert!(t.check_peer(limited).is_err());

        // A spray of fresh addresses, one failure each, fills every shard.
        let capacity = t.peer_capacity();
        let mut n = 0;
        while n < capacity as u64 * 3 / 2 {
            assert!(t.failed(None, spray(n)).is_ok());
            n += 1;
        }
        assert_eq!(t.tracked_peers(), capacity, "full, and no larger");
        // 1,000 more failures, from more fresh addresses: the table stays bounded.
        for _ in 0..1_000 {
            assert!(t.failed(None, spray(n)).is_ok());
            n += 1;
        }
        assert_eq!(t.tracked_peers(), capacity);

        // A new peer is counted, and limited, in the full table...
        let newcomer = Some(IpAddr::from([198, 51, 100, 9]));
        for _ in 0..limit {
            assert!(t.check_peer(newcomer).is_ok());
            let _ = t.failed(None, newcomer);
        }
        assert!(
            t.check_peer(newcomer).is_err(),
            "a new peer must still be limited"
        );
        // ...the flood flushed neither the limited peer nor the client's count...
        assert!(
            t.check_peer(limited).is_err(),
            "the spray released a limited peer"
        );
        assert!(
            t.failed(Some("victim"), None).is_err(),
            "the spray reset a client's count"
        );
        // ...and peers that did not fail are still served.
        assert!(t.check_peer(Some(IpAddr::from([198, 51, 100, 10]))).is_ok());
    }

    #[test]
    fn eviction_takes_expired_windows_then_the_fewest_failures() {
        let now = Instant::now();
        let length = Duration::from_secs(60);
        let table = Table::<IpAddr>::new(4);
        let window = |failures, ago| Window {
            started: now - Duration::from_secs(ago),
            failures,
        };
        let mut shard = Shard::<IpAddr>::default();
        for (i, w) in [window(10, 5), window(3, 50), window(3, 20), window(10, 1)]
            .into_iter()
            .enumerate()
        {
            shard.slots.push(Slot {
                key: table.hashed(IpAddr::from([10, 0, 0, i as u8])),
                window: w,
            });
        }
        // The fewest failures, the older of two.
        assert_eq!(shard.victim(now, length), 1);
        // An expired window goes first, wherever the hand is.
        shard.slots[3].window = window(50, 61);
        assert_eq!(shard.victim(now, length), 3);
    }
}
