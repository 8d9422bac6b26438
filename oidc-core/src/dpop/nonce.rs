//! Stateless server nonces (RFC 9449 §8).

use std::fmt;
use std::time::Duration;

use ring::hmac;
use zeroize::Zeroizing;

use super::NonceError;
use crate::base64url;

/// The default nonce time step: 60 s. A nonce is accepted during the step
/// it was made in and the next one, so for 60 to 120 s.
pub const DEFAULT_NONCE_STEP: Duration = Duration::from_secs(60);

/// The shortest nonce key accepted: 32 bytes (the HMAC-SHA-256 output size).
pub const MIN_NONCE_KEY_LEN: usize = 32;

/// Domain separation: the MAC input starts with this, so a key shared with
/// another use never yields a nonce by accident.
const LABEL: &[u8] = b"oidc-core DPoP-Nonce v1\0";

/// Server nonces that need no shared state: a nonce is
/// `base64url(step ‖ HMAC-SHA-256(key, label ‖ step))`, `step` being the
/// current time step (Unix seconds / step length, 8 bytes big-endian). It is
/// valid in its step and the next; every replica holding the same key
/// makes and accepts the same nonces, so a fleet agrees without talking.
///
/// The key is held zeroized on drop (ring's HMAC key, derived from it for
/// each nonce, lives only for that call); `Debug` shows the step only.
///
/// ```
/// use oidc_core::dpop::{DpopNonces, NonceError};
/// let nonces = DpopNonces::new(&[7u8; 32], std::time::Duration::from_secs(60)).unwrap();
/// // 1_700_000_040 starts a 60 s step.
/// let nonce = nonces.issue(1_700_000_040);
/// assert_eq!(nonces.check(&nonce, 1_700_000_099), Ok(()));
/// // Another replica with the same key agrees, in the next step too.
/// let replica = DpopNonces::new(&[7u8; 32], std::time::Duration::from_secs(60)).unwrap();
/// assert_eq!(replica.check(&nonce, 1_700_000_159), Ok(()));
/// // Two steps later it has expired.
/// assert_eq!(nonces.check(&nonce, 1_700_000_160), Err(NonceError::Expired));
/// ```
#[derive(Clone)]
pub struct DpopNonces {
    key: Zeroizing<Vec<u8>>,
    step: u64,
}

/// Why nonces could not be set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NonceSetupError {
    /// A key shorter than [`MIN_NONCE_KEY_LEN`].
    #[error("the nonce key is {0} bytes; at least {MIN_NONCE_KEY_LEN} are required")]
    ShortKey(usize),
    /// A step under one second.
    #[error("the nonce step must be at least one second")]
    ZeroStep,
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}

impl DpopNonces {
    /// Nonces under `key` (shared by every replica; at least 32 bytes),
    /// with time steps of `step` (whole seconds, at least one).
    pub fn new(key: &[u8], step: Duration) -> Result<Self, NonceSetupError> {
        if key.len() < MIN_NONCE_KEY_LEN {
            return Err(NonceSetupError::ShortKey(key.len()));
        }
        let step = step.as_secs();
        if step == 0 {
            return Err(NonceSetupError::ZeroStep);
        }
        Ok(Self {
            key: Zeroizing::new(key.to_vec()),
            step,
        })
    }

    /// Nonces under a fresh random key, for a single process.
    pub fn generate(step: Duration) -> Result<Self, NonceSetupError> {
        use ring::rand::SecureRandom;
        let mut key = Zeroizing::new([0u8; MIN_NONCE_KEY_LEN]);
        ring::rand::SystemRandom::new()
            .fill(key.as_mut())
            .map_err(|_| NonceSetupError::Random)?;
        Self::new(key.as_ref(), step)
    }

    /// The step length in seconds.
    pub fn step_secs(&self) -> u64 {
        self.step
    }

    /// The nonce for time `now` (Unix seconds): the `DPoP-Nonce` to send.
    pub fn issue(&self, now: u64) -> String {
        let step = now / self.step;
        let mut nonce = Vec::with_capacity(8 + 32);
        nonce.extend_from_slice(&step.to_be_bytes());
        nonce.extend_from_slice(self.tag(step).as_ref());
        base64url::encode(nonce)
    }

    /// Checks a proof's `nonce` at time `now`: made under this key, in the
    /// current step or the one before.
    pub fn check(&self, nonce: &str, now: u64) -> Result<(), NonceError> {
        let bytes = base64url::decode(nonce).map_err(|_| NonceError::Invalid)?;
        if bytes.len() != 8 + 32 {
            return Err(NonceError::Invalid);
        }
        let (step_bytes, tag) = bytes.split_at(8);
        let mut step = [0u8; 8];
        step.copy_from_slice(step_bytes);
        let step = u64::from_be_bytes(step);
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.key);
        hmac::verify(&key, &Self::input(step), tag).map_err(|_| NonceError::Invalid)?;
        let current = now / self.step;
        if step == current || step.checked_add(1) == Some(current) {
            Ok(())
        } else {
            // A future step is a clock far behind another replica's:
            // answered like an old one, with a fresh nonce.
            Err(NonceError::Expired)
        }
    }

    fn tag(&self, step: u64) -> hmac::Tag {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &self.key), &Self::input(step))
    }

    fn input(step: u64) -> Vec<u8> {
        let mut input = Vec::with_capacity(LABEL.len() + 8);
        input.extend_from_slice(LABEL);
        input.extend_from_slice(&step.to_be_bytes());
        input
    }
}

impl fmt::Debug for DpopNonces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopNonces")
            .field("step_secs", &self.step)
            .field("key", &"[redacted]")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_bound_to_key_and_step() {
        let nonces = DpopNonces::new(&[1u8; 32], Duration::from_secs(10)).unwrap();
        let other = DpopNonces::new(&[2u8; 32], Duration::from_secs(10)).unwrap();
        let nonce = nonces.issue(1005);
        assert_eq!(nonces.check(&nonce, 1000), Ok(()));
        assert_eq!(nonces.check(&nonce, 1019), Ok(()));
        assert_eq!(nonces.check(&nonce, 1020), Err(NonceError::Expired));
        assert_eq!(nonces.check(&nonce, 999), Err(NonceError::Expired));
        assert_eq!(other.check(&nonce, 1005), Err(NonceError::Invalid));
        // Another step written over a valid tag is not a nonce.
        let mut bytes = base64url::decode(&nonce).unwrap();
        bytes[7] ^= 1;
        assert_eq!(
            nonces.check(&base64url::encode(&bytes), 1005),
            Err(NonceError::Invalid)
        );
        assert_eq!(nonces.check("", 1005), Err(NonceError::Invalid));
        assert_eq!(nonces.check("not base64!", 1005), Err(NonceError::Invalid));
        assert_eq!(
            DpopNonces::new(&[1u8; 31], Duration::from_secs(10)).err(),
            Some(NonceSetupError::ShortKey(31))
        );
        assert_eq!(
            DpopNonces::new(&[1u8; 32], Duration::from_millis(500)).err(),
            Some(NonceSetupError::ZeroStep)
        );
        assert!(!format!("{nonces:?}").contains("1, 1"));
    }
}
