//! An opt-in verification cache for the polling pattern: a connector presents
//! the same token on every poll until it refreshes it, so the control plane
//! verifies each token dozens of times; a cache hit skips the signature check
//! and the parsing, and nothing else.
//!
//! # What a hit still checks
//!
//! - **Time**, against the verifier's clock and its policy's leeway, on every
//!   hit: `exp`, `nbf`, `iat` and the policy's maximum token age exactly as
//!   a full verification would (a
//!   clock stepped back is noticed too). An entry never outlives `exp` plus
//!   the leeway: past it, it is dropped and the token goes the full way,
//!   which refuses it with the same error as an uncached verifier.
//! - **The policy**: an entry is served only to a verifier whose policy is
//!   the one it was verified under (the same policy, or an equal one);
//!   otherwise it is dropped and the token verified anew.
//! - **The key**: an entry is served only while its key is still in the key
//!   source's current set ([`KeySource::is_current`]: the same `kid` with the
//!   same key material, and the set usable), so a key removed by rotation, or
//!   by the issuer and seen through a refetch, ends its entries at once. A
//!   source that cannot tell (the trait's default) never has a hit.
//! - **The type**: a token cached as one claims type and asked for as another
//!   is verified anew.
//!
//! # What it holds
//!
//! Only verifications that succeeded. The key of an entry is a keyed hash of
//! the token's bytes (128 bits of HMAC-SHA-256 under a random key drawn when
//! the cache is made): no token is held, and two tokens that differ in one
//! byte never share an entry. An entry holds the verified claims, the key
//! that verified them, the policy, and the three times.
//!
//! # Bounds
//!
//! At most [`capacity`](CacheStats::capacity) entries, in 16 shards (fewer
//! for a tiny cache), each a hash map under a reader-writer lock: a hit reads
//! one shard, and different tokens rarely share one. Each shard holds its
//! share of the bound (the keys are uniform, so the shares fill evenly, and a
//! shard may start evicting a few percent before the whole is full). A full
//! shard evicts by CLOCK (second chance: expired or not recently hit first),
//! looking at no more than eight slots per insert.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use oidc_core::keys::{LocalSigner, Signer};
//! use oidc_core::verify::VerificationCache;
//! use oidc_core::{AccessTokenClaims, Algorithm, Issuer, JwkSet, KeySet, Lifetime, Policy, TokenRequest, Verifier};
//!
//! let (signer, _pem) = LocalSigner::generate(Algorithm::ES256).unwrap();
//! let jwks = JwkSet::from_keys([signer.verifying_key().clone()]).unwrap();
//! let issuer = Issuer::new("https://tokens.example.com", Arc::new(KeySet::single(Arc::new(signer))), Lifetime::default()).unwrap();
//! let token = issuer.issue(&TokenRequest::new("connector-1", "https://api.example.com")).await.unwrap().token;
//!
//! let policy = Policy::builder("https://tokens.example.com", ["https://api.example.com"]).build().unwrap();
//! let cache = VerificationCache::new(10_000);
//! let verifier = Verifier::new(policy, jwks).with_cache(cache.clone());
//! for _ in 0..3 {
//!     verifier.verify::<AccessTokenClaims>(token.as_str()).await.unwrap();
//! }
//! assert_eq!((cache.stats().misses, cache.stats().hits), (1, 2));
//! # });
//! ```

mod table;

use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ring::hmac;
use serde_json::{Map, Value};

pub(crate) use self::table::CacheKey;
use self::table::Table;
use super::{numeric_date, KeySource, Policy, Verified};
use crate::claims::TokenBinding;
use crate::keys::VerifyingKey;
use crate::Algorithm;

/// A bounded cache of successful verifications, shared by its clones (an
/// `Arc` inside); see the [module docs](self). Turn it on with
/// [`Verifier::with_cache`](super::Verifier::with_cache) or
/// [`TrustedIssuersBuilder::verification_cache`](super::trust::TrustedIssuersBuilder::verification_cache).
#[derive(Clone)]
pub struct VerificationCache {
    table: Arc<Table>,
    hash_key: Arc<hmac::Key>,
}

/// The counters of a [`VerificationCache`], since it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Verifications served from the cache.
    pub hits: u64,
    /// Verifications that found no entry (or one of another claims type).
    pub misses: u64,
    /// Successful verifications stored.
    pub inserts: u64,
    /// Entries dropped to make room.
    pub evictions: u64,
    /// Entries dropped because they no longer held: expired, their key left
    /// the key set, or the policy changed.
    pub invalidations: u64,
    /// Entries held now.
    pub entries: usize,
    /// The bound on entries.
    pub capacity: usize,
}

impl VerificationCache {
    /// A cache of at most `max_entries` verifications (at least one), with
    /// a fresh random hashing key.
    pub fn new(max_entries: usize) -> Self {
        let rng = ring::rand::SystemRandom::new();
        // The system's random source failing is a broken machine; a cache
        // keyed with a fixed key would still be correct (tokens are compared
        // by a 128-bit MAC), only not secret, so fall back rather than panic.
        let hash_key = hmac::Key::generate(hmac::HMAC_SHA256, &rng)
            .unwrap_or_else(|_| hmac::Key::new(hmac::HMAC_SHA256, &std::process::id().to_le_bytes()));
        Self {
            table: Arc::new(Table::new(max_entries.max(1))),
            hash_key: Arc::new(hash_key),
        }
    }

    /// The counters.
    pub fn stats(&self) -> CacheStats {
        let t = &self.table;
        CacheStats {
            hits: t.sum(|c| &c.hits),
            misses: t.sum(|c| &c.misses),
            inserts: t.sum(|c| &c.inserts),
            evictions: t.sum(|c| &c.evictions),
            invalidations: t.sum(|c| &c.invalidations),
            entries: t.len(),
            capacity: t.capacity(),
        }
    }

    /// Drops every entry (the counters stay).
    pub fn clear(&self) {
        self.table.clear();
    }

    /// The key of `token`.
    pub(crate) fn key(&self, token: &str) -> CacheKey {
        let tag = hmac::sign(&self.hash_key, token.as_bytes());
        let mut first = [0u8; 16];
        first.copy_from_slice(&tag.as_ref()[..16]);
        u128::from_le_bytes(first)
    }

    /// The entry under `key`, if any (a miss is recorded when there is none).
    pub(crate) fn get(&self, key: CacheKey) -> Option<Arc<Entry>> {
        let entry = self.table.get(key);
        if entry.is_none() {
            self.table.counters(key).misses.fetch_add(1, Ordering::Relaxed);
        }
        entry
    }

    /// The verification `entry` holds, if it still holds for a verifier with
    /// `policy` and `keys` at `now`; a hit, an invalidation (the entry is
    /// dropped) or a miss (another claims type) is recorded.
    pub(crate) fn serve<C, K>(
        &self,
        key: CacheKey,
        entry: &Arc<Entry>,
        policy: &Arc<Policy>,
        now: u64,
        keys: &K,
    ) -> Option<Verified<C>>
    where
        C: Send + Sync + 'static,
        K: KeySource + ?Sized,
    {
        let counters = self.table.counters(key);
        if !entry.holds(policy, now) || !keys.is_current(&entry.key) {
            self.table.invalidate(key, entry);
            return None;
        }
        match Arc::clone(&entry.claims).downcast::<C>() {
            Ok(claims) => {
                counters.hits.fetch_add(1, Ordering::Relaxed);
                Some(Verified {
                    claims,
                    key: Arc::clone(&entry.key),
                    alg: entry.alg,
                    binding: entry.binding.clone(),
                })
            }
            Err(_) => {
                counters.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Drops `entry` (it can no longer be served), counting an invalidation.
    #[cfg(feature = "remote")]
    pub(crate) fn invalidate(&self, key: CacheKey, entry: &Arc<Entry>) {
        self.table.invalidate(key, entry);
    }

    /// Stores a successful verification.
    pub(crate) fn insert(&self, key: CacheKey, entry: Entry, now: u64) {
        self.table.insert(key, Arc::new(entry), now);
    }
}

impl fmt::Debug for VerificationCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerificationCache")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// The times a cached verification depends on, read from claims that passed
/// the policy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Validity {
    exp: u64,
    nbf: Option<u64>,
    iat: u64,
}

impl Validity {
    /// From claims that passed [`Policy::check_claims`] (so `exp` and `iat`
    /// are there); `None` otherwise, and nothing is cached.
    pub(crate) fn of(claims: &Map<String, Value>) -> Option<Self> {
        Some(Self {
            exp: numeric_date(claims, "exp").ok()??,
            nbf: numeric_date(claims, "nbf").ok()?,
            iat: numeric_date(claims, "iat").ok()??,
        })
    }
}

/// One cached verification.
pub(crate) struct Entry {
    claims: Arc<dyn Any + Send + Sync>,
    key: Arc<VerifyingKey>,
    alg: Algorithm,
    binding: TokenBinding,
    policy: Arc<Policy>,
    validity: Validity,
    /// Who vouched, for a registry: the issuer whose entry verified it.
    // Read by the trust registry only (feature `remote`).
    #[cfg_attr(not(feature = "remote"), allow(dead_code))]
    pub(crate) scope: Option<Arc<str>>,
    referenced: AtomicBool,
}

impl Entry {
    pub(crate) fn new<C: Send + Sync + 'static>(
        verified: &Verified<C>,
        policy: &Arc<Policy>,
        validity: Validity,
        scope: Option<Arc<str>>,
    ) -> Self {
        Self {
            claims: Arc::clone(&verified.claims) as Arc<dyn Any + Send + Sync>,
            key: Arc::clone(&verified.key),
            alg: verified.alg,
            binding: verified.binding.clone(),
            policy: Arc::clone(policy),
            validity,
            scope,
            referenced: AtomicBool::new(false),
        }
    }

    /// Whether the entry may be served under `policy` at `now`: the same
    /// policy, and the time checks of a full verification.
    fn holds(&self, policy: &Arc<Policy>, now: u64) -> bool {
        let same_policy = Arc::ptr_eq(&self.policy, policy) || *self.policy == **policy;
        let leeway = policy.leeway_secs();
        let Validity { exp, nbf, iat } = self.validity;
        same_policy
            && now < exp.saturating_add(leeway)
            && nbf.is_none_or(|nbf| nbf <= now.saturating_add(leeway))
            && iat <= now.saturating_add(leeway)
            && policy.within_age(iat, now)
    }

    /// Past `exp` plus its policy's leeway: of no use to anyone.
    fn expired(&self, now: u64) -> bool {
        now >= self.validity.exp.saturating_add(self.policy.leeway_secs())
    }

    fn mark_referenced(&self) {
        if !self.referenced.load(Ordering::Relaxed) {
            self.referenced.store(true, Ordering::Relaxed);
        }
    }

    /// Clears the mark; whether it was set.
    fn take_referenced(&self) -> bool {
        self.referenced.swap(false, Ordering::Relaxed)
    }
}
