//! Where a verifier finds the key named by a token's `kid`.

use std::sync::Arc;

use async_trait::async_trait;

use crate::jwks::JwkSet;
use crate::keys::VerifyingKey;
use crate::text;

/// Looks up verification keys by `kid`.
///
/// A static [`JwkSet`] is one; the `remote` feature adds a source that fetches
/// and caches a JWKS URL or an issuer's discovery document.
#[async_trait]
pub trait KeySource: Send + Sync {
    /// The key with this `kid`, or why there is none.
    async fn key(&self, kid: &str) -> Result<Arc<VerifyingKey>, KeyLookupError>;

    /// Whether `key` is still in the current key set: its `kid` there with
    /// the same key material, and the set usable now. Answers at once,
    /// without waiting for the network (a source that caches may start a
    /// background refresh, as [`key`](Self::key) would). A
    /// [`VerificationCache`](crate::verify::VerificationCache) serves a
    /// cached verification only while this holds; the default, `false`,
    /// means a source that cannot tell never has a verification served from
    /// a cache.
    fn is_current(&self, key: &Arc<VerifyingKey>) -> bool {
        let _ = key;
        false
    }
}

/// Why no key was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyLookupError {
    /// No key has this `kid` (also for kids that are absurdly long or odd:
    /// they are just unknown).
    #[error("no key with kid {0:?}")]
    UnknownKid(String),
    /// The key set could not be obtained (network, HTTP status, invalid JWKS,
    /// too stale to use). The text says which.
    #[error("key set unavailable: {0}")]
    Unavailable(String),
}

impl KeyLookupError {
    /// An unknown-kid error carrying a shortened copy of the kid.
    pub fn unknown(kid: &str) -> Self {
        Self::UnknownKid(text::excerpt(kid))
    }
}

#[async_trait]
impl KeySource for JwkSet {
    async fn key(&self, kid: &str) -> Result<Arc<VerifyingKey>, KeyLookupError> {
        self.get(kid).cloned().ok_or_else(|| KeyLookupError::unknown(kid))
    }

    fn is_current(&self, key: &Arc<VerifyingKey>) -> bool {
        self.holds(key)
    }
}

#[async_trait]
impl<K: KeySource + ?Sized> KeySource for Arc<K> {
    async fn key(&self, kid: &str) -> Result<Arc<VerifyingKey>, KeyLookupError> {
        (**self).key(kid).await
    }

    fn is_current(&self, key: &Arc<VerifyingKey>) -> bool {
        (**self).is_current(key)
    }
}
