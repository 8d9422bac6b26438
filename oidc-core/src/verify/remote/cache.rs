//! The cache of a [`RemoteJwks`](super::RemoteJwks): one immutable snapshot
//! behind an `ArcSwap`, single-flight fetches with a cooldown, and the landing
//! of a fetch's result (also when its task dies).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use reqwest::header::HeaderValue;
use tokio::sync::watch;
use url::Url;

use super::fetch::{log_refused, FetchError, Fetched};
use crate::clock::MonotonicClock;
use crate::jwks::JwkSet;
use crate::keys::VerifyingKey;
use crate::verify::KeyLookupError;

pub(super) struct Inner {
    pub(super) source: Source,
    pub(super) client: reqwest::Client,
    /// A cap on fetches in flight shared with other sources, if any.
    pub(super) permits: Option<Arc<tokio::sync::Semaphore>>,
    pub(super) limits: Limits,
    pub(super) clock: Arc<dyn MonotonicClock>,
    /// The cache: replaced whole, only by the one running fetch.
    pub(super) state: ArcSwap<State>,
    /// Single flight and cooldown; held for a few instructions, never across
    /// an await, and never on the path of a lookup that finds its key.
    pub(super) flight: Mutex<Flight>,
    /// Completed fetches, and the failed ones among them.
    pub(super) fetches: AtomicU64,
    pub(super) failures: AtomicU64,
}

#[derive(Debug)]
pub(super) enum Source {
    Jwks(Url),
    Discovery {
        issuer: String,
        document: Url,
        jwks: OnceLock<Url>,
    },
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) cache_min: Duration,
    pub(super) cache_max: Duration,
    pub(super) cooldown: Duration,
    /// The longest pause between fetches after consecutive failures.
    pub(super) backoff: Duration,
    pub(super) stale_limit: Duration,
    pub(super) max_body: usize,
}

impl Limits {
    /// The least time between the start of the last fetch and the next,
    /// after `failures` consecutive failures: the cooldown, doubled per
    /// failure after the first, at most the backoff.
    pub(super) fn pause(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.cooldown
            .saturating_mul(1u32 << doublings)
            .min(self.backoff)
            .max(self.cooldown)
    }
}

#[derive(Default, Clone)]
pub(super) struct State {
    /// The last good set.
    pub(super) keys: Option<Arc<JwkSet>>,
    pub(super) etag: Option<HeaderValue>,
    /// When `keys` was last fetched or revalidated.
    pub(super) fetched_at: Duration,
    pub(super) fresh_until: Duration,
    /// The last fetch, if it failed.
    pub(super) failure: Option<Failure>,
    /// Fetches failed since the last success.
    pub(super) consecutive_failures: u32,
}

#[derive(Clone)]
pub(super) struct Failure {
    pub(super) at: Duration,
    pub(super) error: FetchError,
}

#[derive(Default)]
pub(super) struct Flight {
    /// Set while a fetch runs; turns `true` when its result is in `state`.
    pub(super) running: Option<watch::Receiver<bool>>,
    pub(super) last_start: Option<Duration>,
}

pub(super) enum Lookup {
    Found {
        key: Arc<VerifyingKey>,
        fresh: bool,
    },
    /// The set is usable but has no such kid.
    Missing,
    /// No set, or one too stale to use.
    Unusable,
}

impl Inner {
    pub(super) fn lookup(&self, kid: &str, now: Duration) -> Lookup {
        let state = self.state.load();
        let Some(keys) = &state.keys else {
            return Lookup::Unusable;
        };
        let fresh = now < state.fresh_until;
        if !fresh && now >= state.fresh_until.saturating_add(self.limits.stale_limit) {
            return Lookup::Unusable;
        }
        match keys.get(kid) {
            Some(key) => Lookup::Found {
                key: Arc::clone(key),
                fresh,
            },
            None => Lookup::Missing,
        }
    }

    pub(super) fn flight(&self) -> MutexGuard<'_, Flight> {
        // The guarded section cannot panic half-way; a poisoned lock still
        // holds consistent data.
        self.flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Joins the running fetch, or starts one if none runs and the cooldown
    /// allows (or `force`). `None`: the cooldown holds fetches back.
    pub(super) fn start_or_join(
        self: &Arc<Self>,
        now: Duration,
        force: bool,
    ) -> Result<Option<watch::Receiver<bool>>, KeyLookupError> {
        let mut flight = self.flight();
        if let Some(running) = &flight.running {
            return Ok(Some(running.clone()));
        }
        let pause = self.limits.pause(self.state.load().consecutive_failures);
        let cooling = flight
            .last_start
            .is_some_and(|last| now < last.saturating_add(pause));
        if cooling && !force {
            return Ok(None);
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            KeyLookupError::Unavailable("RemoteJwks must be used from within a Tokio runtime".into())
        })?;
        let (sender, receiver) = watch::channel(false);
        flight.running = Some(receiver.clone());
        flight.last_start = Some(now);
        drop(flight);
        let landing = Landing {
            inner: Arc::clone(self),
            sender,
        };
        runtime.spawn(async move {
            // Held for the whole fetch; the semaphore is never closed.
            let _permit = match &landing.inner.permits {
                Some(permits) => Arc::clone(permits).acquire_owned().await.ok(),
                None => None,
            };
            landing.inner.fetch_and_store().await;
            drop(landing);
        });
        Ok(Some(receiver))
    }

    async fn fetch_and_store(&self) {
        let current = self.state.load_full();
        let result = self.fetch(&current).await;
        let now = self.clock.elapsed();
        self.fetches.fetch_add(1, Ordering::Relaxed);
        if result.is_err() {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        let next = match result {
            Ok(Fetched::Keys { set, etag, max_age }) => {
                for refused in set.refused() {
                    log_refused(refused.kid.as_deref(), &refused.reason);
                }
                tracing::debug!(keys = set.len(), source = %self.source, "JWKS fetched");
                State {
                    keys: Some(Arc::new(set)),
                    etag,
                    fetched_at: now,
                    fresh_until: now.saturating_add(self.lifetime(max_age)),
                    failure: None,
                    consecutive_failures: 0,
                }
            }
            Ok(Fetched::NotModified { etag, max_age }) => {
                tracing::debug!(source = %self.source, "JWKS not modified");
                State {
                    keys: current.keys.clone(),
                    etag: etag.or_else(|| current.etag.clone()),
                    fetched_at: now,
                    fresh_until: now.saturating_add(self.lifetime(max_age)),
                    failure: None,
                    consecutive_failures: 0,
                }
            }
            Err(error) => {
                tracing::warn!(source = %self.source, %error, "JWKS fetch failed; keeping the last good key set");
                State {
                    failure: Some(Failure { at: now, error }),
                    consecutive_failures: current.consecutive_failures.saturating_add(1),
                    ..(*current).clone()
                }
            }
        };
        self.state.store(Arc::new(next));
    }

    fn lifetime(&self, max_age: Option<Duration>) -> Duration {
        max_age
            .unwrap_or(self.limits.cache_min)
            .clamp(self.limits.cache_min, self.limits.cache_max)
    }

    pub(super) fn unavailable(&self, now: Duration) -> KeyLookupError {
        let state = self.state.load();
        let pause = self.limits.pause(state.consecutive_failures);
        let flight = self.flight();
        let next = flight
            .last_start
            .map(|last| last.saturating_add(pause).saturating_sub(now));
        drop(flight);
        let mut message = match &state.keys {
            None => format!("no key set could be fetched yet from {}", self.source),
            Some(_) => format!(
                "the last good key set from {} was fetched {} s ago and is {} s past its lifetime, \
                 beyond the stale limit of {} s",
                self.source,
                now.saturating_sub(state.fetched_at).as_secs(),
                now.saturating_sub(state.fresh_until).as_secs(),
                self.limits.stale_limit.as_secs()
            ),
        };
        if let Some(failure) = &state.failure {
            message.push_str(&format!(
                "; the last fetch ({} s ago) failed: {}",
                now.saturating_sub(failure.at).as_secs(),
                failure.error
            ));
        }
        if let Some(next) = next.filter(|n| !n.is_zero()) {
            message.push_str(&format!(
                "; next attempt in {} s at the earliest",
                next.as_secs().max(1)
            ));
        }
        KeyLookupError::Unavailable(message)
    }
}

/// Publishes the end of a fetch, also when the task is cancelled (runtime
/// shutdown) or panics: without it, a dead fetch would look like one still
/// running, and no fetch would ever start again.
struct Landing {
    inner: Arc<Inner>,
    sender: watch::Sender<bool>,
}

impl Drop for Landing {
    fn drop(&mut self) {
        self.inner.flight().running = None;
        // Nobody listening is fine.
        let _ = self.sender.send(true);
    }
}

pub(super) async fn wait(mut done: watch::Receiver<bool>) {
    // An error means the fetch task is gone; its result (if any) is in the state.
    let _ = done.wait_for(|done| *done).await;
}
