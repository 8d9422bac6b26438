//! Replay protection for client assertions: each `jti` is accepted once per
//! client and remembered until the assertion expires.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

/// Whether a one-time credential was seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstUse {
    /// First use: recorded now.
    Fresh,
    /// Seen before and still remembered: a replay.
    Replayed,
}

/// Remembers assertion ids. Implement it over a shared store (Redis,
/// DynamoDB) when several replicas serve the same clients.
#[async_trait]
pub trait ReplayCache: Send + Sync + std::fmt::Debug {
    /// Records `jti` of `client_id` until `expires_at` (Unix seconds), or
    /// finds it already recorded: a replay. Check and insert are one atomic
    /// step, so of two concurrent uses exactly one is [`FirstUse::Fresh`].
    async fn first_use(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<FirstUse, ReplayCacheFull>;
}

/// The cache is full of unexpired entries; refusing is safer than forgetting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("replay cache is full")]
pub struct ReplayCacheFull;

/// An in-process [`ReplayCache`] bounded to `capacity` live entries.
#[derive(Debug)]
pub struct InMemoryReplayCache {
    entries: Mutex<HashMap<(String, String), u64>>,
    capacity: usize,
}

impl InMemoryReplayCache {
    /// A cache holding at most `capacity` unexpired ids.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }
}

impl Default for InMemoryReplayCache {
    fn default() -> Self {
        Self::new(1_000_000)
    }
}

#[async_trait]
impl ReplayCache for InMemoryReplayCache {
    async fn first_use(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<FirstUse, ReplayCacheFull> {
        // A poisoned lock only means another request panicked mid-insert; the map is still valid.
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let key = (client_id.to_owned(), jti.to_owned());
        if let Some(until) = entries.get(&key) {
            if *until >= now {
                return Ok(FirstUse::Replayed);
            }
        }
        if entries.len() >= self.capacity {
            entries.retain(|_, until| *until >= now);
            if entries.len() >= self.capacity {
                return Err(ReplayCacheFull);
            }
        }
        entries.insert(key, expires_at);
        Ok(FirstUse::Fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_id_once_until_it_expires() {
        let cache = InMemoryReplayCache::new(2);
        assert_eq!(cache.first_use("c", "a", 100, 10).await, Ok(FirstUse::Fresh));
        assert_eq!(cache.first_use("c", "a", 100, 50).await, Ok(FirstUse::Replayed));
        assert_eq!(cache.first_use("d", "a", 100, 50).await, Ok(FirstUse::Fresh));
        assert_eq!(cache.first_use("c", "b", 100, 50).await, Err(ReplayCacheFull));
        // Once expired, entries make room (and the id may not matter any more:
        // an expired assertion is refused before the cache is asked).
        assert_eq!(cache.first_use("c", "b", 200, 150).await, Ok(FirstUse::Fresh));
    }
}
