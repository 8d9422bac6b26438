//! Builds the issuer's key set from the `[signing]` configuration, and tracks
//! whether the signer is usable (for `/readyz` and 503 answers).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oidc_core::keys::{KeyError, Signer};
use oidc_core::KeySet;

use crate::config::{Config, SigningConfig};

/// The signer could not be set up at start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SigningSetupError {
    /// The local key was refused.
    #[error("signing key: {0}")]
    Key(#[from] KeyError),
}

/// The key set for `config`.
pub async fn key_set(config: &Config) -> Result<Arc<KeySet>, SigningSetupError> {
    match &config.signing {
        SigningConfig::Local(key) => {
            let signer: Arc<dyn Signer> = Arc::new(key.signer()?);
            Ok(Arc::new(KeySet::single(signer)))
        }
    }
}

/// Whether signing works, learned from real signing attempts and, when it
/// failed, from a probe at most every [`SignerHealth::PROBE_INTERVAL`].
#[derive(Debug)]
pub struct SignerHealth {
    healthy: AtomicBool,
    last_probe_ms: AtomicU64,
    started: Instant,
}

impl Default for SignerHealth {
    fn default() -> Self {
        Self {
            healthy: AtomicBool::new(true),
            last_probe_ms: AtomicU64::new(0),
            started: Instant::now(),
        }
    }
}

impl SignerHealth {
    /// How often `/readyz` may retry a failed signer.
    pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);

    /// Records the outcome of a signature.
    pub fn record(&self, ok: bool) {
        self.healthy.store(ok, Ordering::Relaxed);
    }

    /// Whether the last signature worked.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Whether a failed signer is due for another probe (and claims the slot).
    pub fn probe_due(&self) -> bool {
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.last_probe_ms.load(Ordering::Relaxed);
        now.saturating_sub(last) >= Self::PROBE_INTERVAL.as_millis() as u64
            && self
                .last_probe_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}
