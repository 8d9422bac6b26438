//! The issuer's key set: the key that signs now and the public keys that are
//! published, swapped atomically as a whole so that a request never sees half
//! of a rotation.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::claims::ACCESS_TOKEN_TYP;
use crate::clock::{MonotonicClock, SystemMonotonicClock};
use crate::jwks::{JwkSet, JwkSetError};
use crate::jws::Header;
use crate::keys::{Signer, VerifyingKey};

/// The signer tokens are issued with, and the limit its publication puts on them.
pub struct ActiveKey {
    signer: Arc<dyn Signer>,
    encoded_header: String,
    signs_until: Option<u64>,
    max_lifetime: Option<Duration>,
}

impl fmt::Debug for ActiveKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActiveKey")
            .field("kid", &self.signer.kid())
            .field("alg", &self.signer.algorithm())
            .field("signs_until", &self.signs_until)
            .field("max_lifetime", &self.max_lifetime)
            .finish()
    }
}

impl ActiveKey {
    /// `signer` as the active key. `expires_by` (Unix seconds), when set, is the
    /// time by which every token it signs must have expired, because the key's
    /// publication may end then.
    pub fn new(signer: Arc<dyn Signer>, expires_by: Option<u64>) -> Self {
        let encoded_header = Header::encode(signer.algorithm(), ACCESS_TOKEN_TYP, signer.kid());
        Self {
            signer,
            encoded_header,
            signs_until: expires_by,
            max_lifetime: None,
        }
    }

    /// No token signed by this key may live longer than `lifetime` (the key
    /// set document's longest token lifetime, whatever the issuer asks).
    pub fn with_max_lifetime(mut self, lifetime: Duration) -> Self {
        self.max_lifetime = Some(lifetime);
        self
    }

    /// The longest lifetime of a token this key signs, if the key set caps it.
    pub fn max_lifetime(&self) -> Option<Duration> {
        self.max_lifetime
    }

    /// The signer.
    pub fn signer(&self) -> &Arc<dyn Signer> {
        &self.signer
    }

    /// The base64url access-token header for this key (computed once).
    pub fn encoded_header(&self) -> &str {
        &self.encoded_header
    }

    /// No token signed by this key may expire after this time (Unix seconds).
    pub fn expires_by(&self) -> Option<u64> {
        self.signs_until
    }
}

/// One consistent state of the key set.
#[derive(Debug)]
pub struct KeySetState {
    active: Option<ActiveKey>,
    published: JwkSet,
    jwks_json: Arc<str>,
    etag: Arc<str>,
    read_at: Option<ReadAt>,
    jwks_max_age: Option<Duration>,
}

/// When a state was read from the shared key set, on the clock its age is
/// measured with.
#[derive(Debug)]
struct ReadAt {
    clock: Arc<dyn MonotonicClock>,
    at: Duration,
}

impl KeySetState {
    /// A state with `active` signing (if any) and `published` keys in the JWKS.
    /// The active key is always published, whether or not it is listed.
    pub fn new(active: Option<ActiveKey>, published: Vec<VerifyingKey>) -> Result<Self, JwkSetError> {
        let mut keys = published;
        if let Some(active) = &active {
            let key = active.signer.verifying_key();
            if !keys.iter().any(|k| k.kid() == key.kid()) {
                keys.insert(0, key.clone());
            }
        }
        let published = JwkSet::from_keys(keys)?;
        let jwks_json: Arc<str> = published.to_json().into();
        let digest = ring::digest::digest(&ring::digest::SHA256, jwks_json.as_bytes());
        let etag = format!("\"{}\"", crate::base64url::encode(&digest.as_ref()[..16])).into();
        Ok(Self {
            active,
            published,
            jwks_json,
            etag,
            read_at: None,
            jwks_max_age: None,
        })
    }

    /// The state as read from a shared key set at `read_at`, whose rules
    /// assume verifiers cache its JWKS for at most `jwks_max_age`.
    pub fn read_at(self, read_at: Instant, jwks_max_age: Duration) -> Self {
        self.read_on(
            Arc::new(SystemMonotonicClock::since(read_at)),
            Duration::ZERO,
            jwks_max_age,
        )
    }

    /// [`read_at`](Self::read_at) on `clock` instead of the system's
    /// monotonic clock: read when `clock` showed `at` (a host that drives
    /// time itself, such as a simulation of weeks of service).
    pub fn read_on(mut self, clock: Arc<dyn MonotonicClock>, at: Duration, jwks_max_age: Duration) -> Self {
        self.read_at = Some(ReadAt { clock, at });
        self.jwks_max_age = Some(jwks_max_age);
        self
    }

    /// How long ago the state was read from the shared key set (`None` for a
    /// key set that lives in this process only).
    pub fn age(&self) -> Option<Duration> {
        self.read_at
            .as_ref()
            .map(|read| read.clock.elapsed().saturating_sub(read.at))
    }

    /// The `max-age` to serve the JWKS with when the server would serve
    /// `configured`: at most the key set's own, lowered by the age of the
    /// state, so that no verifier caches it past the time the shared set
    /// may have moved on (a key published since may sign `max-age` after
    /// its publication).
    pub fn jwks_max_age(&self, configured: Duration) -> Duration {
        // An empty set is about to change (a first key is coming): nobody
        // should keep it.
        if self.published.is_empty() {
            return Duration::ZERO;
        }
        let cap = self.jwks_max_age.map_or(configured, |cap| cap.min(configured));
        cap.saturating_sub(self.age().unwrap_or_default())
    }

    /// The signing key, if one is active.
    pub fn active(&self) -> Option<&ActiveKey> {
        self.active.as_ref()
    }

    /// The published public keys.
    pub fn published(&self) -> &JwkSet {
        &self.published
    }

    /// The JWKS document, serialized once per state.
    pub fn jwks_json(&self) -> &Arc<str> {
        &self.jwks_json
    }

    /// A strong `ETag` for the JWKS document (quoted).
    pub fn etag(&self) -> &str {
        &self.etag
    }
}

/// The issuer's key set, shared by the issuer and the JWKS endpoint.
///
/// ```
/// use std::sync::Arc;
/// use oidc_core::keys::LocalSigner;
/// use oidc_core::{Algorithm, KeySet};
///
/// let (signer, _pem) = LocalSigner::generate(Algorithm::ES256).unwrap();
/// let keys = KeySet::single(Arc::new(signer));
/// assert_eq!(keys.current().published().len(), 1);
/// ```
#[derive(Debug)]
pub struct KeySet {
    state: ArcSwap<KeySetState>,
}

impl KeySet {
    /// A key set in `state`.
    pub fn new(state: KeySetState) -> Self {
        Self {
            state: ArcSwap::from_pointee(state),
        }
    }

    /// One key that signs and is published, with no rotation.
    pub fn single(signer: Arc<dyn Signer>) -> Self {
        let state = KeySetState::new(Some(ActiveKey::new(signer, None)), Vec::new())
            .unwrap_or_else(|_| unreachable!("a set of one key has no duplicate kid"));
        Self::new(state)
    }

    /// The current state (cheap: an atomic load and a reference count).
    pub fn current(&self) -> Arc<KeySetState> {
        self.state.load_full()
    }

    /// Replaces the whole state at once.
    pub fn replace(&self, state: KeySetState) {
        self.state.store(Arc::new(state));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualMonotonicClock;
    use crate::keys::LocalSigner;
    use crate::Algorithm;

    #[test]
    fn a_state_ages_on_the_clock_it_was_read_on() {
        let (signer, _pem) = LocalSigner::generate(Algorithm::ES256).expect("a key");
        let clock = Arc::new(ManualMonotonicClock::default());
        clock.advance(Duration::from_secs(1000));
        let state = KeySetState::new(Some(ActiveKey::new(Arc::new(signer), None)), Vec::new())
            .expect("a state")
            .read_on(clock.clone(), clock.elapsed(), Duration::from_secs(300));
        assert_eq!(state.age(), Some(Duration::ZERO));
        assert_eq!(
            state.jwks_max_age(Duration::from_secs(600)),
            Duration::from_secs(300)
        );
        // Only the clock it was read on ages it, whatever real time does.
        clock.advance(Duration::from_secs(120));
        assert_eq!(state.age(), Some(Duration::from_secs(120)));
        assert_eq!(
            state.jwks_max_age(Duration::from_secs(600)),
            Duration::from_secs(180)
        );
        clock.advance(Duration::from_secs(1000));
        assert_eq!(state.jwks_max_age(Duration::from_secs(600)), Duration::ZERO);
    }
}
