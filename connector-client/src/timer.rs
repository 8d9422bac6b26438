//! Monotonic time as the refresh logic sees it: read and slept on through a
//! [`Timer`], so that tests move time by hand instead of sleeping through
//! real token lifetimes.
//!
//! Token lifetimes are measured on this clock from `expires_in`; the wall
//! clock and the issuer's clock play no part in when a token is refreshed.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// A boxed, sendable future, as returned by [`Timer::sleep_until`].
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A monotonic clock with a way to wait for it.
pub trait Timer: Send + Sync + fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> Instant;

    /// Completes once [`now`](Self::now) has reached `deadline` (at once if it has already).
    fn sleep_until(&self, deadline: Instant) -> Sleep;
}

/// The real clock: [`Instant::now`] and Tokio's timer.
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioTimer;

impl Timer for TokioTimer {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        Box::pin(tokio::time::sleep_until(deadline.into()))
    }
}

/// A clock that moves only when told to; for tests.
///
/// Sleepers wake when [`advance`](Self::advance) carries the time past their
/// deadline. Nothing else moves it: unlike Tokio's paused time it never
/// jumps ahead on its own while real I/O (a test HTTP server) is pending.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// use std::time::Duration;
/// use connector_client::timer::{ManualTimer, Timer};
///
/// let clock = ManualTimer::new();
/// let start = clock.now();
/// let wake = clock.sleep_until(start + Duration::from_secs(60));
/// let waiter = tokio::spawn(wake);
/// clock.advance(Duration::from_secs(60));
/// waiter.await.unwrap();
/// assert_eq!(clock.now() - start, Duration::from_secs(60));
/// # });
/// ```
pub struct ManualTimer {
    now: watch::Sender<Instant>,
    // Serializes advances so that two concurrent `advance` calls add up.
    advancing: Mutex<()>,
}

impl ManualTimer {
    /// A clock that starts at the real current instant and then stands still.
    pub fn new() -> Self {
        Self {
            now: watch::Sender::new(Instant::now()),
            advancing: Mutex::new(()),
        }
    }

    /// Moves time forward by `by`, waking every sleeper whose deadline is reached.
    pub fn advance(&self, by: Duration) {
        // A poisoned lock only means another advance panicked: the time it
        // guards is still a valid instant, so carry on.
        let _guard = self.advancing.lock().unwrap_or_else(|e| e.into_inner());
        self.now.send_modify(|now| *now += by);
    }

    /// Moves time forward to `instant` (no-op if it is in the past).
    pub fn advance_to(&self, instant: Instant) {
        let _guard = self.advancing.lock().unwrap_or_else(|e| e.into_inner());
        self.now.send_if_modified(|now| {
            if instant > *now {
                *now = instant;
                true
            } else {
                false
            }
        });
    }

    /// How many [`sleep_until`](Timer::sleep_until) futures exist and have
    /// not completed; lets a test wait until a background task is parked.
    pub fn sleepers(&self) -> usize {
        self.now.receiver_count()
    }
}

impl Default for ManualTimer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ManualTimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualTimer")
            .field("sleepers", &self.sleepers())
            .finish_non_exhaustive()
    }
}

impl Timer for ManualTimer {
    fn now(&self) -> Instant {
        *self.now.borrow()
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        let mut now = self.now.subscribe();
        Box::pin(async move {
            loop {
                if *now.borrow_and_update() >= deadline {
                    return;
                }
                if now.changed().await.is_err() {
                    // The clock is gone: its time will never come.
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_sleepers_wake_only_at_their_deadline() {
        let clock = std::sync::Arc::new(ManualTimer::new());
        let start = clock.now();
        let sleep = tokio::spawn(clock.sleep_until(start + Duration::from_secs(10)));
        clock.advance(Duration::from_secs(9));
        tokio::task::yield_now().await;
        assert!(!sleep.is_finished());
        assert_eq!(clock.sleepers(), 1);
        clock.advance(Duration::from_secs(1));
        sleep.await.unwrap();
        assert_eq!(clock.sleepers(), 0);
        // A deadline already passed completes at once.
        clock.sleep_until(start).await;
    }
}
