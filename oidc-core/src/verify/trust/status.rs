//! What a registry shows its operator: per-issuer status keyed by entry name,
//! registry-wide counters, and a forced refresh of one issuer.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::live::{EntryKeys, IssuerOrigin, LiveIssuer};
use super::registry::Registry;
use super::TrustedIssuers;
use crate::verify::remote::RemoteJwksStatus;
use crate::verify::KeyLookupError;

/// One live issuer, as [`TrustedIssuers::status`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IssuerStatus {
    /// The entry's name: the key to use in metrics and dashboards.
    pub name: String,
    /// The issuer (for people; never a metric label).
    pub issuer: String,
    /// Where the entry came from.
    pub origin: IssuerOrigin,
    /// The key source: fetches, failures, keys, age, last error.
    pub keys: KeysStatus,
    /// Tokens of this issuer verified since it became live.
    pub verified: u64,
    /// Tokens of this issuer refused since it became live (unavailable keys included).
    pub refused: u64,
    /// Time since its last token.
    pub idle: Duration,
}

/// The key source of a live issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeysStatus {
    /// Fetched: the [`RemoteJwks`](crate::verify::RemoteJwks) cache.
    Remote(RemoteJwksStatus),
    /// Pinned: never fetched.
    Pinned {
        /// Usable keys.
        keys: usize,
    },
}

impl KeysStatus {
    /// Usable keys in hand.
    pub fn keys(&self) -> usize {
        match self {
            Self::Remote(status) => status.keys,
            Self::Pinned { keys } => *keys,
        }
    }
}

/// Counters of the whole registry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrustStats {
    /// Live issuers now.
    pub cached_issuers: usize,
    /// Their bound.
    pub max_cached_issuers: usize,
    /// Issuers dropped to make room, since the start.
    pub evictions: u64,
    /// Tokens refused because their `iss` is not trusted.
    pub unknown_issuer_refusals: u64,
    /// Calls to the [`IssuerLookup`](super::IssuerLookup).
    pub lookups: u64,
    /// Of those, the ones that failed (or took longer than the lookup timeout).
    pub lookup_failures: u64,
    /// Lookups not made, their tokens refused at once as unavailable: too
    /// many were waiting already, or no place came within the lookup timeout.
    pub lookups_refused: u64,
    /// Unknown issuers answered from the negative cache (no lookup).
    pub negative_cache_hits: u64,
    /// Issuers in the negative cache now.
    pub negative_cache_entries: usize,
    /// Fetches running now, across all issuers.
    pub fetches_in_flight: usize,
}

/// Why a forced refresh did not happen or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RefreshError {
    /// No static entry and no live issuer has this name.
    #[error(
        "no issuer entry is named {0:?} (entries found by the lookup can be refreshed only while cached)"
    )]
    UnknownName(String),
    /// The issuer's key set could not be fetched.
    #[error("issuer {name:?}: {error}")]
    Keys {
        /// The entry.
        name: String,
        /// Why.
        error: KeyLookupError,
    },
}

impl TrustedIssuers {
    /// The live issuers, sorted by name.
    pub fn status(&self) -> Vec<IssuerStatus> {
        let now = self.inner.clock.elapsed();
        let mut all: Vec<IssuerStatus> = self
            .inner
            .live
            .all()
            .iter()
            .map(|live| describe(live, now))
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The live issuer named `name`, if it is live.
    pub fn issuer_status(&self, name: &str) -> Option<IssuerStatus> {
        let now = self.inner.clock.elapsed();
        self.inner.live.by_name(name).map(|live| describe(&live, now))
    }

    /// The registry's counters.
    pub fn stats(&self) -> TrustStats {
        let registry = &*self.inner;
        let lookups = registry.lookups.as_ref();
        let count = |c: Option<&std::sync::atomic::AtomicU64>| c.map_or(0, |c| c.load(Ordering::Relaxed));
        TrustStats {
            cached_issuers: registry.live.len(),
            max_cached_issuers: registry.live.capacity(),
            evictions: registry.live.evictions.load(Ordering::Relaxed),
            unknown_issuer_refusals: registry.unknown.load(Ordering::Relaxed),
            lookups: count(lookups.map(|l| &l.lookups)),
            lookup_failures: count(lookups.map(|l| &l.failures)),
            lookups_refused: count(lookups.map(|l| &l.refused)),
            negative_cache_hits: count(lookups.map(|l| &l.negative_hits)),
            negative_cache_entries: lookups.map_or(0, |l| l.negative_entries()),
            fetches_in_flight: registry.fetches_in_flight(),
        }
    }

    /// Fetches the key set of the issuer named `name` now, ignoring its
    /// lifetime, cooldown and backoff (the cap on fetches in flight still
    /// applies). A static entry that is not live becomes live. Meant for an
    /// operator who knows an issuer rotated or came back, not for every request.
    pub async fn refresh(&self, name: &str) -> Result<IssuerStatus, RefreshError> {
        let registry = &*self.inner;
        let now = registry.clock.elapsed();
        let live = match registry.live.by_name(name) {
            Some(live) => live,
            None => registry.static_live(name, now)?,
        };
        if let EntryKeys::Remote(remote) = live.keys() {
            remote.refresh().await.map_err(|error| RefreshError::Keys {
                name: name.to_owned(),
                error,
            })?;
        }
        Ok(describe(&live, registry.clock.elapsed()))
    }

    /// Forgets that `issuer` was unknown to the lookup (for example right
    /// after the tenant was added), so its next token asks again.
    pub fn forget_unknown(&self, issuer: &str) {
        if let Some(lookups) = &self.inner.lookups {
            lookups.forget_negative(issuer);
        }
    }
}

impl Registry {
    fn static_live(&self, name: &str, now: Duration) -> Result<Arc<LiveIssuer>, RefreshError> {
        let entry = self
            .names
            .get(name)
            .ok_or_else(|| RefreshError::UnknownName(crate::text::excerpt(name)))?;
        let live = self
            .make_live(Arc::clone(entry), IssuerOrigin::Static, now, None)
            .map_err(|error| RefreshError::Keys {
                name: name.to_owned(),
                error: KeyLookupError::Unavailable(error.to_string()),
            })?;
        Ok(self.live.insert(live))
    }

    fn fetches_in_flight(&self) -> usize {
        self.max_concurrent_fetches
            .saturating_sub(self.shared_permits_available())
    }
}

fn describe(live: &LiveIssuer, now: Duration) -> IssuerStatus {
    IssuerStatus {
        name: live.entry.name().to_owned(),
        issuer: live.entry.issuer().to_owned(),
        origin: live.origin,
        keys: match live.keys() {
            EntryKeys::Remote(remote) => KeysStatus::Remote(remote.status()),
            EntryKeys::Pinned(jwks) => KeysStatus::Pinned { keys: jwks.len() },
        },
        verified: live.verified.load(Ordering::Relaxed),
        refused: live.refused.load(Ordering::Relaxed),
        idle: live.idle(now),
    }
}
