//! Readiness of the backends behind `/readyz` (the signer, the replay
//! store): whether one works, learned from real calls and, once one failed,
//! from a probe at most every [`Health::PROBE_INTERVAL`], so `/readyz`
//! answers without calling the backend on every probe of a load balancer.
//! The handlers themselves are in `routes::health`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The health of one backend.
#[derive(Debug)]
pub(crate) struct Health {
    healthy: AtomicBool,
    last_probe_ms: AtomicU64,
    started: Instant,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            healthy: AtomicBool::new(true),
            last_probe_ms: AtomicU64::new(0),
            started: Instant::now(),
        }
    }
}

impl Health {
    /// How often `/readyz` may retry a failed backend.
    pub(crate) const PROBE_INTERVAL: Duration = Duration::from_secs(2);

    /// Records the outcome of a call.
    pub(crate) fn record(&self, ok: bool) {
        self.healthy.store(ok, Ordering::Relaxed);
    }

    /// Whether the last call worked.
    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Whether a failed backend is due for another probe (and claims the slot).
    pub(crate) fn probe_due(&self) -> bool {
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.last_probe_ms.load(Ordering::Relaxed);
        now.saturating_sub(last) >= Self::PROBE_INTERVAL.as_millis() as u64
            && self
                .last_probe_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}
