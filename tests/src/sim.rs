//! One simulated clock for a whole deployment: the token service's issuer,
//! key-set poller and JWKS max-age, the control plane's verifier and JWKS
//! cache, the connector's token cache and its signed requests, and the AWS
//! emulator (through libfaketime) all read the same time, which moves only
//! when [`SimClock::advance_to`] moves it. Weeks of service then run in
//! minutes, every duration at its real value.
//!
//! It is each clock the components take:
//! [`WallClock`] (Unix seconds: tokens, assertions, the key set's rules),
//! [`MonotonicClock`] (cache ages, cooldowns) and connector-client's
//! [`Timer`] (refresh schedules, which sleep on it). Sleepers are recorded,
//! so that a driver can step to the next instant anyone waits for
//! ([`SimClock::next_deadline`]) and know when every sleeper it woke has
//! run ([`SimClock::due_sleepers`]).
//!
//! moto reads it through libfaketime: [`SimClock::with_faketime_file`]
//! names the file of a `moto_server` started with [`faketime_env`], and
//! every move of the clock rewrites that file (atomically: a new file
//! renamed over the old) with the new time, frozen, before any component
//! sees the move; `FAKETIME_NO_CACHE` makes moto read it at every call.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use connector_client::timer::{Sleep, Timer};
use oidc_core::calendar::Utc;
use oidc_core::clock::{MonotonicClock, WallClock};
use tokio::sync::watch;

/// A clock that moves only when told to (see the [module docs](self)).
/// Cheap to clone: clones are the same clock.
#[derive(Clone)]
pub struct SimClock(Arc<Inner>);

struct Inner {
    /// The Unix time at simulated time zero.
    start_unix: u64,
    /// The [`Instant`] that stands for simulated time zero (the [`Timer`]
    /// speaks in instants).
    origin: Instant,
    /// Simulated time since zero.
    now: watch::Sender<Duration>,
    /// Deadlines of the sleepers not yet dropped, by id.
    sleepers: Mutex<BTreeMap<u64, Duration>>,
    next_sleeper: AtomicU64,
    faketime_file: Option<PathBuf>,
    /// Serializes moves (and the file writes that go with them).
    moving: Mutex<()>,
}

impl SimClock {
    /// A clock at `start_unix` (Unix seconds).
    pub fn new(start_unix: u64) -> Self {
        Self::build(start_unix, None)
    }

    /// A clock at `start_unix` that writes every time it moves to `file`,
    /// in libfaketime's frozen absolute format (`2030-01-01 00:00:00`).
    pub fn with_faketime_file(start_unix: u64, file: &Path) -> Self {
        let clock = Self::build(start_unix, Some(file.to_owned()));
        clock.write_faketime(start_unix);
        clock
    }

    fn build(start_unix: u64, faketime_file: Option<PathBuf>) -> Self {
        Self(Arc::new(Inner {
            start_unix,
            origin: Instant::now(),
            now: watch::Sender::new(Duration::ZERO),
            sleepers: Mutex::new(BTreeMap::new()),
            next_sleeper: AtomicU64::new(0),
            faketime_file,
            moving: Mutex::new(()),
        }))
    }

    /// Simulated time since zero.
    pub fn elapsed(&self) -> Duration {
        *self.0.now.borrow()
    }

    /// The simulated Unix time (whole seconds).
    pub fn unix(&self) -> u64 {
        self.0.start_unix + self.elapsed().as_secs()
    }

    /// The Unix time at simulated time zero.
    pub fn start_unix(&self) -> u64 {
        self.0.start_unix
    }

    /// Moves the clock forward to `to` (since zero; no-op if it is not
    /// ahead), moto's time first, then every sleeper whose deadline it
    /// reaches is woken.
    pub fn advance_to(&self, to: Duration) {
        let _moving = self.0.moving.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.elapsed();
        if to <= now {
            return;
        }
        if to.as_secs() != now.as_secs() {
            self.write_faketime(self.0.start_unix + to.as_secs());
        }
        self.0.now.send_replace(to);
    }

    /// The earliest deadline a sleeper waits for, if any sleeps (since zero).
    pub fn next_deadline(&self) -> Option<Duration> {
        let sleepers = self.0.sleepers.lock().unwrap_or_else(|e| e.into_inner());
        sleepers.values().min().copied()
    }

    /// Sleepers whose deadline has come but that have not run yet (they are
    /// dropped once their task has gone past them).
    pub fn due_sleepers(&self) -> usize {
        let now = self.elapsed();
        let sleepers = self.0.sleepers.lock().unwrap_or_else(|e| e.into_inner());
        sleepers.values().filter(|d| **d <= now).count()
    }

    /// Sleepers waiting for a time still to come.
    pub fn waiting_sleepers(&self) -> usize {
        let now = self.elapsed();
        let sleepers = self.0.sleepers.lock().unwrap_or_else(|e| e.into_inner());
        sleepers.values().filter(|d| **d > now).count()
    }

    fn write_faketime(&self, unix: u64) {
        let Some(file) = &self.0.faketime_file else { return };
        let t = Utc::from_unix_seconds(unix);
        let text = format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}\n",
            t.year, t.month, t.day, t.hour, t.minute, t.second
        );
        let temporary = file.with_extension("next");
        std::fs::write(&temporary, text).expect("write the faketime file");
        std::fs::rename(&temporary, file).expect("replace the faketime file");
    }
}

impl fmt::Debug for SimClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimClock")
            .field("unix", &self.unix())
            .field("elapsed", &self.elapsed())
            .finish_non_exhaustive()
    }
}

impl WallClock for SimClock {
    fn now(&self) -> u64 {
        self.unix()
    }
}

impl MonotonicClock for SimClock {
    fn elapsed(&self) -> Duration {
        SimClock::elapsed(self)
    }
}

/// Removes a sleeper's record when its future is dropped (done or not).
struct Registered {
    inner: Arc<Inner>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut sleepers = self.inner.sleepers.lock().unwrap_or_else(|e| e.into_inner());
        sleepers.remove(&self.id);
    }
}

impl Timer for SimClock {
    fn now(&self) -> Instant {
        self.0.origin + self.elapsed()
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        let deadline = deadline.saturating_duration_since(self.0.origin);
        let id = self.0.next_sleeper.fetch_add(1, Ordering::Relaxed);
        self.0
            .sleepers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, deadline);
        let registered = Registered {
            inner: self.0.clone(),
            id,
        };
        let mut now = self.0.now.subscribe();
        Box::pin(async move {
            let _registered = registered;
            loop {
                if *now.borrow_and_update() >= deadline {
                    return;
                }
                if now.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}

/// The environment of a `moto_server` whose clock is the one written to
/// `file` (libfaketime, file mode, read at every call). Monotonic time is
/// faked too (frozen with the rest): moto measures nothing with it that
/// matters here, and with it left real moto answers ten times slower.
pub fn faketime_env(file: &Path) -> Vec<(String, String)> {
    vec![
        (
            "LD_PRELOAD".into(),
            crate::tools::faketime_library().display().to_string(),
        ),
        ("FAKETIME_TIMESTAMP_FILE".into(), file.display().to_string()),
        ("FAKETIME_NO_CACHE".into(), "1".into()),
    ]
}

/// A small deterministic random source (splitmix64): a simulation replays
/// the same schedule from the same seed.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A source seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sleepers_wake_when_the_clock_reaches_them() {
        let clock = SimClock::new(1_900_000_000);
        let start = Timer::now(&clock);
        let sleep = tokio::spawn(clock.sleep_until(start + Duration::from_secs(10)));
        assert_eq!(clock.next_deadline(), Some(Duration::from_secs(10)));
        clock.advance_to(Duration::from_secs(9));
        tokio::task::yield_now().await;
        assert!(!sleep.is_finished());
        assert_eq!(clock.unix(), 1_900_000_009);
        clock.advance_to(Duration::from_secs(10));
        assert_eq!(clock.due_sleepers(), 1);
        sleep.await.unwrap();
        assert_eq!((clock.due_sleepers(), clock.next_deadline()), (0, None));
    }
}
