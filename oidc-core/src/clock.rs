//! Time as the token layer sees it: wall-clock time in whole seconds since the
//! Unix epoch, read through a [`WallClock`] so that tests can set it; and
//! monotonic time for cache ages and cooldowns ([`MonotonicClock`]).
//!
//! Everything reads the system's clocks ([`SystemClock`],
//! [`SystemMonotonicClock`]) unless given others: an issuer or a verifier
//! through `with_clock` ([`Issuer::with_clock`](crate::Issuer::with_clock),
//! [`Verifier::with_clock`](crate::Verifier::with_clock)), a key source or
//! a registry of issuers through its builder. A test, or a host that drives
//! time itself (a simulation of weeks of service), sets them with
//! [`ManualWallClock`] and [`ManualMonotonicClock`], or its own
//! implementations of the two traits.
//!
//! ```
//! use std::sync::Arc;
//! use oidc_core::clock::ManualWallClock;
//! use oidc_core::keys::LocalSigner;
//! use oidc_core::{Algorithm, Issuer, KeySet, Lifetime};
//!
//! let (signer, _pem) = LocalSigner::generate(Algorithm::ES256).unwrap();
//! let keys = Arc::new(KeySet::single(Arc::new(signer)));
//! let clock = Arc::new(ManualWallClock::new(1_700_000_000));
//! let issuer = Issuer::new("https://tokens.example.com", keys, Lifetime::default())
//!     .unwrap()
//!     .with_clock(clock.clone());
//! clock.advance(60); // the issuer's next token is issued a minute later
//! # drop(issuer);
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of the current time in Unix seconds.
pub trait WallClock: Send + Sync + fmt::Debug {
    /// Seconds since 1970-01-01T00:00:00Z.
    fn now(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now(&self) -> u64 {
        // A clock before 1970 is a broken machine; treat it as the epoch.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// A clock that stands still until told otherwise; for tests.
///
/// ```
/// use oidc_core::clock::{ManualWallClock, WallClock};
/// let clock = ManualWallClock::new(1_700_000_000);
/// clock.advance(30);
/// assert_eq!(clock.now(), 1_700_000_030);
/// ```
#[derive(Debug, Default)]
pub struct ManualWallClock(AtomicU64);

impl ManualWallClock {
    /// A clock reading `now`.
    pub fn new(now: u64) -> Self {
        Self(AtomicU64::new(now))
    }

    /// Sets the time.
    pub fn set(&self, now: u64) {
        self.0.store(now, Ordering::SeqCst);
    }

    /// Moves the time forward by `seconds`.
    pub fn advance(&self, seconds: u64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl WallClock for ManualWallClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A monotonic time source for cache ages and cooldowns: time elapsed since
/// a fixed, arbitrary origin. Wall-clock time would let an NTP step expire a
/// cache early or keep it forever; this never goes backwards.
pub trait MonotonicClock: Send + Sync + fmt::Debug {
    /// Time since this clock's origin.
    fn elapsed(&self) -> Duration;
}

/// The system's monotonic clock ([`Instant`]), counted from its creation.
#[derive(Debug, Clone, Copy)]
pub struct SystemMonotonicClock(Instant);

impl SystemMonotonicClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Self(Instant::now())
    }

    /// A clock whose origin is `origin`.
    pub(crate) fn since(origin: Instant) -> Self {
        Self(origin)
    }
}

impl Default for SystemMonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl MonotonicClock for SystemMonotonicClock {
    fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}

/// A monotonic clock that moves only when told; for tests, so that they step
/// over cache lifetimes and cooldowns instead of sleeping through them.
///
/// ```
/// use std::time::Duration;
/// use oidc_core::clock::{ManualMonotonicClock, MonotonicClock};
/// let clock = ManualMonotonicClock::default();
/// clock.advance(Duration::from_secs(31));
/// assert_eq!(clock.elapsed(), Duration::from_secs(31));
/// ```
#[derive(Debug, Default)]
pub struct ManualMonotonicClock(AtomicU64);

impl ManualMonotonicClock {
    /// Moves the clock forward by `by` (whole nanoseconds, saturating).
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // fetch_update never fails with a closure that always returns Some.
        let _ = self.0.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
            Some(t.saturating_add(nanos))
        });
    }
}

impl MonotonicClock for ManualMonotonicClock {
    fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::SeqCst))
    }
}
