//! [`CachedTokenSource`]: one token shared by every caller, refreshed in the
//! background ahead of expiry.
//!
//! # How it works
//!
//! - The current token sits in an [`ArcSwapOption`]; [`token`](CachedTokenSource::token)
//!   reads it without a lock and returns it while the clock is before its
//!   *usable-until* instant (expiry minus a small margin, so that a token does
//!   not expire on its way to the server).
//! - Expiry is `time the request was sent + expires_in` on the local monotonic
//!   clock. The token's own `exp` and the issuer's clock are never consulted,
//!   so a skewed issuer clock cannot make us refresh too late (or in a loop).
//! - One background task sleeps until the refresh time and fetches a new token
//!   while the old one is still valid. All fetches, background or on demand,
//!   go through one async lock: concurrent callers that find no valid token
//!   queue behind a single fetch and share its result.
//! - A failed fetch schedules the next attempt with exponential backoff and
//!   jitter, never earlier than the server's `Retry-After`. Until then callers
//!   get the still-valid token if there is one, else an
//!   [`Error::Unavailable`] that carries the last cause, at once and without
//!   a request of their own.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use tokio::sync::{watch, Notify};

use crate::error::{ConfigError, InvalidResponse, NoTokenReason, ResponseProblem, UnavailableError};
use crate::timer::{Timer, TokioTimer};
use crate::{AccessToken, Error, TokenSource};

/// When and how a [`CachedTokenSource`] refreshes, and how it backs off.
///
/// The defaults suit tokens of a few minutes to a few hours. Fields can be set
/// one by one on [`RefreshPolicy::default()`]; [`CachedTokenSourceBuilder::build`]
/// checks that they fit together.
///
/// **Refresh time** after receipt, for a lifetime `L` and a uniform random `u` in `[0, 1)`:
///
/// ```text
/// base  = min(L × refresh_fraction, L − min_buffer)    // about 80%, but leave min_buffer
/// base  = max(base, L × min(0.5, refresh_fraction))    // short tokens: at half-life, not in a loop
/// delay = base − L × jitter_fraction × u               // spread a fleet out: 75–80% by default
/// ```
///
/// **Backoff** after `n` consecutive failures:
///
/// ```text
/// d     = min(backoff_max, backoff_initial × 2^(n−1))
/// d     = max(d, backoff_not_retryable) if the error is not retryable (still ≤ backoff_max)
/// delay = d/2 + d/2 × u                                // "equal jitter": in [d/2, d)
/// delay = max(delay, min(Retry-After, retry_after_max))
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RefreshPolicy {
    /// Fraction of the lifetime after which to refresh, before jitter (default 0.80).
    pub refresh_fraction: f64,
    /// Largest random amount taken off the refresh time, as a fraction of the
    /// lifetime (default 0.05: refresh between 75% and 80%).
    pub jitter_fraction: f64,
    /// Refresh at least this long before expiry when the lifetime allows
    /// (default 30 s), leaving room for retries.
    pub min_buffer: Duration,
    /// A token is not handed out in the last `min(expiry_margin, lifetime / 10)`
    /// of its life (default 5 s), so that it does not expire in flight.
    pub expiry_margin: Duration,
    /// Backoff after the first failure (default 1 s).
    pub backoff_initial: Duration,
    /// Backoff cap (default 60 s).
    pub backoff_max: Duration,
    /// Least backoff after an error that is not retryable, such as
    /// `invalid_client` (default 10 s): fast retries cannot fix it, but an
    /// operator may, so attempts continue at a slower pace.
    pub backoff_not_retryable: Duration,
    /// Cap on a server's `Retry-After` (default 10 min), against a broken or
    /// hostile value keeping a connector off for hours.
    pub retry_after_max: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            refresh_fraction: 0.80,
            jitter_fraction: 0.05,
            min_buffer: Duration::from_secs(30),
            expiry_margin: Duration::from_secs(5),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            backoff_not_retryable: Duration::from_secs(10),
            retry_after_max: Duration::from_secs(600),
        }
    }
}

impl RefreshPolicy {
    fn validate(&self) -> Result<(), ConfigError> {
        let fraction = |x: f64| x.is_finite() && (0.0..=1.0).contains(&x);
        if !fraction(self.refresh_fraction) || self.refresh_fraction == 0.0 {
            return Err(ConfigError::RefreshPolicy("refresh_fraction must be in (0, 1]"));
        }
        if !fraction(self.jitter_fraction) || self.jitter_fraction >= self.refresh_fraction.min(0.5) {
            return Err(ConfigError::RefreshPolicy(
                "jitter_fraction must be in [0, min(refresh_fraction, 0.5))",
            ));
        }
        if self.backoff_initial.is_zero() || self.backoff_initial > self.backoff_max {
            return Err(ConfigError::RefreshPolicy(
                "backoff_initial must be positive and at most backoff_max",
            ));
        }
        if self.backoff_not_retryable > self.backoff_max {
            return Err(ConfigError::RefreshPolicy(
                "backoff_not_retryable must be at most backoff_max",
            ));
        }
        Ok(())
    }

    /// Time after receipt at which a token of `lifetime` is refreshed; `u` in `[0, 1)`.
    pub fn refresh_delay(&self, lifetime: Duration, u: f64) -> Duration {
        let l = lifetime.as_secs_f64();
        let base = (l * self.refresh_fraction)
            .min(l - self.min_buffer.as_secs_f64())
            .max(l * self.refresh_fraction.min(0.5));
        let delay = base - l * self.jitter_fraction * u.clamp(0.0, 1.0);
        Duration::try_from_secs_f64(delay.max(0.0)).unwrap_or(lifetime)
    }

    /// Time to wait after `failures` consecutive failures; `u` in `[0, 1)`.
    pub fn backoff_delay(
        &self,
        failures: u32,
        retryable: bool,
        retry_after: Option<Duration>,
        u: f64,
    ) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        let mut d = self
            .backoff_initial
            .saturating_mul(1u32 << doublings)
            .min(self.backoff_max);
        if !retryable {
            d = d.max(self.backoff_not_retryable).min(self.backoff_max);
        }
        let delay = d / 2 + d.mul_f64(u.clamp(0.0, 1.0) / 2.0);
        match retry_after {
            Some(wait) => delay.max(wait.min(self.retry_after_max)),
            None => delay,
        }
    }

    fn margin(&self, lifetime: Duration) -> Duration {
        self.expiry_margin.min(lifetime / 10)
    }
}

/// Builds a [`CachedTokenSource`]; see [`CachedTokenSource::builder`].
#[must_use]
pub struct CachedTokenSourceBuilder {
    source: Box<dyn TokenSource>,
    clock: Arc<dyn Timer>,
    policy: RefreshPolicy,
}

impl CachedTokenSourceBuilder {
    /// Uses `timer` instead of the real one (tests: [`ManualTimer`](crate::timer::ManualTimer)).
    pub fn timer(mut self, timer: Arc<dyn Timer>) -> Self {
        self.clock = timer;
        self
    }

    /// Uses `policy` instead of [`RefreshPolicy::default`].
    pub fn policy(mut self, policy: RefreshPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Checks the policy and starts the background refresh task, which fetches
    /// the first token right away. Must be called inside a Tokio runtime with
    /// timers enabled.
    pub fn build(self) -> Result<CachedTokenSource, Error> {
        self.policy.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ConfigError::NoRuntime)?;
        let shared = Arc::new(Shared {
            source: self.source,
            clock: self.clock,
            policy: self.policy,
            current: ArcSwapOption::empty(),
            control: Mutex::new(Control::default()),
            flight: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            changes: watch::Sender::new(0),
        });
        let task = runtime.spawn(refresher(shared.clone()));
        Ok(CachedTokenSource {
            shared,
            _refresher: Arc::new(AbortOnDrop(task.abort_handle())),
        })
    }
}

impl fmt::Debug for CachedTokenSourceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedTokenSourceBuilder")
            .field("clock", &self.clock)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// A token source that keeps one token and refreshes it ahead of expiry.
///
/// Cheap to clone (clones share the token and the refresh task); the task
/// stops when the last clone is dropped. See the [module docs](self) for the
/// algorithm and [`RefreshPolicy`] for its numbers.
///
/// ```no_run
/// # async fn run(source: connector_client::ClientCredentials) -> Result<(), connector_client::Error> {
/// use connector_client::CachedTokenSource;
///
/// let tokens = CachedTokenSource::new(source)?;
/// let token = tokens.token().await?; // lock-free once a token is cached
/// # drop(token); Ok(()) }
/// ```
#[derive(Clone)]
pub struct CachedTokenSource {
    shared: Arc<Shared>,
    _refresher: Arc<AbortOnDrop>,
}

impl CachedTokenSource {
    /// Caches `source` with the default policy and the real clock.
    pub fn new(source: impl TokenSource + 'static) -> Result<Self, Error> {
        Self::builder(source).build()
    }

    /// Starts a configuration with a custom clock or policy.
    pub fn builder(source: impl TokenSource + 'static) -> CachedTokenSourceBuilder {
        CachedTokenSourceBuilder {
            source: Box::new(source),
            clock: Arc::new(TokioTimer),
            policy: RefreshPolicy::default(),
        }
    }

    /// A valid token: the cached one (no lock, no I/O), else the result of a
    /// fetch shared with every concurrent caller, else an
    /// [`Error::Unavailable`] carrying the last failure while backing off.
    pub async fn token(&self) -> Result<AccessToken, Error> {
        match self.cached() {
            Some(token) => Ok(token),
            // Boxed so that the slow path's large state (lock acquisition,
            // fetch) does not inflate the future every fast read builds.
            None => Box::pin(self.shared.token_slow()).await,
        }
    }

    /// The cached token if it is still valid; never waits, never fetches.
    pub fn cached(&self) -> Option<AccessToken> {
        let current = self.shared.current.load();
        let entry = current.as_ref()?;
        (self.shared.clock.now() < entry.usable_until).then(|| entry.token.clone())
    }

    /// Drops `token` if it is still the current one, because a server refused
    /// it, and has a new one fetched. Calls for an older token do nothing, so
    /// many requests failing with the same token cause one fetch.
    pub fn invalidate(&self, token: &AccessToken) {
        self.shared.invalidate(token)
    }

    /// A subscription to changes of the current token: a new one stored by a
    /// fetch, or the current one dropped by [`invalidate`](Self::invalidate).
    /// For code that acts on each new token (writing it to a file, handing it
    /// to another process) without polling; read the token itself with
    /// [`cached`](Self::cached) and its times with [`status`](Self::status).
    pub fn changes(&self) -> TokenChanges {
        TokenChanges(self.shared.changes.subscribe())
    }

    /// The clock this cache runs on; the instants in [`status`](Self::status)
    /// are on it.
    pub fn timer(&self) -> &Arc<dyn Timer> {
        &self.shared.clock
    }

    /// A snapshot of the refresh state, for health checks, metrics and tests.
    pub fn status(&self) -> RefreshStatus {
        let shared = &self.shared;
        let current = shared.current.load();
        let control = shared.control();
        RefreshStatus {
            valid_until: current.as_ref().map(|e| e.usable_until),
            expires_at: current.as_ref().map(|e| e.expires_at),
            refresh_at: current.as_ref().map(|e| e.refresh_at),
            retry_at: control.retry_at,
            failures: control.failures,
            last_error: control.last_error.as_deref().cloned(),
            fetches: control.fetches,
        }
    }
}

impl fmt::Debug for CachedTokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedTokenSource")
            .field("clock", &self.shared.clock)
            .field("policy", &self.shared.policy)
            .field("status", &self.status())
            .finish()
    }
}

#[async_trait]
impl TokenSource for CachedTokenSource {
    async fn token(&self) -> Result<AccessToken, Error> {
        CachedTokenSource::token(self).await
    }

    fn invalidate(&self, token: &AccessToken) {
        CachedTokenSource::invalidate(self, token)
    }
}

/// Changes of a [`CachedTokenSource`]'s current token; see
/// [`CachedTokenSource::changes`].
///
/// Changes are not queued: [`changed`](Self::changed) completes once for any
/// number of changes since it last completed, so a slow reader sees the
/// latest state, never a backlog. It does not keep the cache alive.
#[derive(Debug)]
pub struct TokenChanges(watch::Receiver<u64>);

impl TokenChanges {
    /// Waits until the current token has changed since this subscription was
    /// made or this method last returned (at once if it has already).
    /// Fails with [`CacheDropped`] once every clone of the cache is gone:
    /// nothing will change any more.
    pub async fn changed(&mut self) -> Result<(), CacheDropped> {
        self.0.changed().await.map_err(|_| CacheDropped)
    }
}

/// Every clone of the [`CachedTokenSource`] a [`TokenChanges`] watches has been dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the token cache was dropped")]
pub struct CacheDropped;

/// The state of a [`CachedTokenSource`] at one moment. Instants are on its clock.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RefreshStatus {
    /// Until when the current token is handed out (expiry minus the margin).
    pub valid_until: Option<Instant>,
    /// When the current token expires (request time + `expires_in`).
    pub expires_at: Option<Instant>,
    /// When the current token is due to be refreshed.
    pub refresh_at: Option<Instant>,
    /// When the next attempt is due, while attempts are failing.
    pub retry_at: Option<Instant>,
    /// Consecutive failed attempts.
    pub failures: u32,
    /// The error of the last attempt, while attempts are failing.
    pub last_error: Option<Error>,
    /// Requests made to the inner source so far (successful or not).
    pub fetches: u64,
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The current token and its schedule, all on the cache's clock.
struct Entry {
    token: AccessToken,
    usable_until: Instant,
    expires_at: Instant,
    refresh_at: Instant,
}

#[derive(Default)]
struct Control {
    failures: u32,
    last_error: Option<Arc<Error>>,
    retry_at: Option<Instant>,
    refused: bool,
    fetches: u64,
}

struct Shared {
    source: Box<dyn TokenSource>,
    clock: Arc<dyn Timer>,
    policy: RefreshPolicy,
    current: ArcSwapOption<Entry>,
    /// Failure bookkeeping; held only for short, synchronous sections.
    control: Mutex<Control>,
    /// Held for the whole of every fetch: this is what makes fetches single-flight.
    flight: tokio::sync::Mutex<()>,
    /// Tells the refresher that the schedule changed.
    wake: Notify,
    /// Counts changes of `current`, for [`TokenChanges`].
    changes: watch::Sender<u64>,
}

impl Shared {
    fn control(&self) -> MutexGuard<'_, Control> {
        // Nothing panics while holding this lock; if something did, the
        // counters are still meaningful, so keep going.
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn valid_token(&self, now: Instant) -> Option<AccessToken> {
        let current = self.current.load();
        let entry = current.as_ref()?;
        (now < entry.usable_until).then(|| entry.token.clone())
    }

    async fn token_slow(&self) -> Result<AccessToken, Error> {
        let _flight = self.flight.lock().await;
        // Whoever held the lock before us may have just fetched a token.
        if let Some(token) = self.valid_token(self.clock.now()) {
            return Ok(token);
        }
        if let Some(error) = self.backing_off(self.clock.now()) {
            return Err(error);
        }
        match self.fetch().await {
            Ok(token) => Ok(token),
            Err(_) => Err(self
                .backing_off(self.clock.now())
                .unwrap_or_else(|| self.unavailable(self.clock.now(), None))),
        }
    }

    /// The error to return while a retry is scheduled in the future.
    fn backing_off(&self, now: Instant) -> Option<Error> {
        let retry_at = self.control().retry_at?;
        (retry_at > now).then(|| self.unavailable(now, Some(retry_at - now)))
    }

    fn unavailable(&self, now: Instant, retry_in: Option<Duration>) -> Error {
        let (failures, cause, refused) = {
            let control = self.control();
            (control.failures, control.last_error.clone(), control.refused)
        };
        let reason = match (self.current.load().as_ref(), refused) {
            (Some(entry), _) => NoTokenReason::Expired {
                ago: now.saturating_duration_since(entry.expires_at),
            },
            (None, true) => NoTokenReason::Refused,
            (None, false) => NoTokenReason::NeverObtained,
        };
        // Every path here follows a failed attempt, which recorded its error;
        // the fallback only keeps this total.
        let cause = cause.unwrap_or_else(|| {
            Arc::new(
                InvalidResponse::new(
                    "",
                    ResponseProblem::ExpiredOnArrival {
                        expires_in: Duration::ZERO,
                    },
                )
                .into(),
            )
        });
        UnavailableError::new(reason, failures, retry_in, cause).into()
    }

    /// Fetches a token and records the outcome. The caller holds `flight`.
    async fn fetch(&self) -> Result<AccessToken, Arc<Error>> {
        let started = self.clock.now();
        self.control().fetches += 1;
        let result = self.source.token().await;
        let now = self.clock.now();
        let result = result.and_then(|token| {
            let lifetime = token.expires_in();
            // Measured from when the request was sent: the token cannot have
            // been issued earlier, so this errs on the side of refreshing early.
            let expires_at = started
                .checked_add(lifetime)
                .unwrap_or(started + crate::MAX_EXPIRES_IN);
            let usable_until = expires_at - self.policy.margin(lifetime);
            if now >= usable_until {
                return Err(Error::from(InvalidResponse::new(
                    "",
                    ResponseProblem::ExpiredOnArrival { expires_in: lifetime },
                )));
            }
            let refresh_at = (started + self.policy.refresh_delay(lifetime, rand::random::<f64>()))
                .min(usable_until)
                .max(now);
            Ok((token, usable_until, expires_at, refresh_at))
        });
        let outcome = match result {
            Ok((token, usable_until, expires_at, refresh_at)) => {
                tracing::info!(
                    expires_in_s = token.expires_in().as_secs(),
                    refresh_in_s = refresh_at.saturating_duration_since(now).as_secs(),
                    "access token refreshed"
                );
                self.current.store(Some(Arc::new(Entry {
                    token: token.clone(),
                    usable_until,
                    expires_at,
                    refresh_at,
                })));
                {
                    let mut control = self.control();
                    control.failures = 0;
                    control.last_error = None;
                    control.retry_at = None;
                    control.refused = false;
                }
                // After the bookkeeping, so that a subscriber woken by this
                // sees a status that matches the new token.
                self.changes.send_modify(|n| *n = n.wrapping_add(1));
                Ok(token)
            }
            Err(error) => {
                let mut control = self.control();
                control.failures = control.failures.saturating_add(1);
                let delay = self.policy.backoff_delay(
                    control.failures,
                    error.is_retryable(),
                    error.retry_after(),
                    rand::random::<f64>(),
                );
                let still_valid_s = self
                    .current
                    .load()
                    .as_ref()
                    .map_or(0, |e| e.usable_until.saturating_duration_since(now).as_secs());
                tracing::warn!(
                    error = %error,
                    failures = control.failures,
                    retry_in_ms = delay.as_millis() as u64,
                    still_valid_s,
                    "access token refresh failed"
                );
                let error = Arc::new(error);
                control.retry_at = Some(now + delay);
                control.last_error = Some(error.clone());
                Err(error)
            }
        };
        self.wake.notify_one();
        outcome
    }

    /// When the refresher should next fetch.
    fn next_attempt(&self, now: Instant) -> Instant {
        if let Some(retry_at) = self.control().retry_at {
            return retry_at;
        }
        self.current.load().as_ref().map_or(now, |e| e.refresh_at)
    }

    fn invalidate(&self, token: &AccessToken) {
        let current = self.current.load_full();
        let Some(entry) = &current else { return };
        if entry.token.secret() != token.secret() {
            return;
        }
        // Only drop it if no fetch replaced it meanwhile.
        let previous = self.current.compare_and_swap(&current, None);
        let swapped = previous.as_ref().is_some_and(|p| Arc::ptr_eq(p, entry));
        if swapped {
            self.control().refused = true;
            tracing::info!("access token refused by a server; fetching a new one");
            self.changes.send_modify(|n| *n = n.wrapping_add(1));
            self.wake.notify_one();
        }
    }
}

/// The background task: sleep until the next attempt is due (or the schedule
/// changes), then fetch unless someone else already did.
async fn refresher(shared: Arc<Shared>) {
    loop {
        let due = shared.next_attempt(shared.clock.now());
        tokio::select! {
            () = shared.clock.sleep_until(due) => {}
            () = shared.wake.notified() => continue,
        }
        let _flight = shared.flight.lock().await;
        // An on-demand fetch may have run while we waited for the lock.
        if shared.next_attempt(shared.clock.now()) <= shared.clock.now() {
            // The outcome is recorded in `shared`; nobody is waiting for it here.
            let _ = shared.fetch().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn refresh_delay_bounds() {
        let p = RefreshPolicy::default();
        let s = |secs: u64, u: f64| p.refresh_delay(Duration::from_secs(secs), u).as_secs_f64();
        // 300 s: 80% = 240 s, jitter up to 15 s.
        assert_eq!(s(300, 0.0), 240.0);
        assert_eq!(s(300, 1.0), 225.0);
        // 3600 s: 2880 → 2700.
        assert_eq!(s(3600, 0.0), 2880.0);
        assert_eq!(s(3600, 1.0), 2700.0);
        // 100 s: 80 s would leave only 20 s; min_buffer pulls it to 70 s.
        assert_eq!(s(100, 0.0), 70.0);
        assert_eq!(s(100, 1.0), 65.0);
        // 40 s: L − 30 s = 10 s is below half-life; refresh at 20 s.
        assert_eq!(s(40, 0.0), 20.0);
        assert_eq!(s(40, 1.0), 18.0);
        // Never zero for a positive lifetime.
        assert!(s(1, 1.0) > 0.0);
    }

    #[test]
    fn backoff_bounds() {
        let p = RefreshPolicy::default();
        for n in 1..=12u32 {
            let d = (Duration::from_secs(1) * 2u32.pow(n - 1)).min(MIN);
            assert_eq!(p.backoff_delay(n, true, None, 0.0), d / 2, "n={n}");
            assert!(p.backoff_delay(n, true, None, 0.999) < d, "n={n}");
        }
        assert_eq!(p.backoff_delay(u32::MAX, true, None, 0.0), MIN / 2);
        // Not retryable: at least 10 s before jitter.
        assert_eq!(p.backoff_delay(1, false, None, 0.0), Duration::from_secs(5));
        assert_eq!(p.backoff_delay(7, false, None, 0.0), Duration::from_secs(30));
        // Retry-After wins when longer, within its cap.
        let ra = |secs| Some(Duration::from_secs(secs));
        assert_eq!(p.backoff_delay(1, true, ra(30), 0.5), Duration::from_secs(30));
        assert_eq!(p.backoff_delay(1, true, ra(0), 0.0), Duration::from_millis(500));
        assert_eq!(
            p.backoff_delay(1, true, ra(86_400), 0.0),
            Duration::from_secs(600)
        );
    }

    #[test]
    fn policy_validation() {
        assert!(RefreshPolicy::default().validate().is_ok());
        let p = RefreshPolicy {
            jitter_fraction: 0.9,
            ..RefreshPolicy::default()
        };
        assert!(p.validate().is_err());
        let p = RefreshPolicy {
            refresh_fraction: f64::NAN,
            ..RefreshPolicy::default()
        };
        assert!(p.validate().is_err());
        let p = RefreshPolicy {
            backoff_initial: Duration::ZERO,
            ..RefreshPolicy::default()
        };
        assert!(p.validate().is_err());
        let p = RefreshPolicy {
            backoff_not_retryable: Duration::from_secs(3600),
            ..RefreshPolicy::default()
        };
        assert!(p.validate().is_err());
    }

    #[test]
    fn margin_is_small_for_short_tokens() {
        let p = RefreshPolicy::default();
        assert_eq!(p.margin(Duration::from_secs(300)), Duration::from_secs(5));
        assert_eq!(p.margin(Duration::from_secs(10)), Duration::from_secs(1));
    }
}
