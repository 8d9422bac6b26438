//! Shared helpers: a scripted token source, a cache on a manual clock, waiting
//! for background work, and serving an axum router on a loopback port.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use connector_client::timer::ManualTimer;
use connector_client::{AccessToken, CachedTokenSource, Error, SourceError, TokenSource, UnavailableError};
use tokio::sync::watch;

/// What the next fetches of a [`Fake`] return.
#[derive(Clone)]
pub(crate) enum Outcome {
    /// `token-N` (N = the fetch number) with this lifetime.
    Token(Duration),
    /// This error.
    Fail(Error),
}

/// A token source whose answers the test sets, counting its fetches and able
/// to hold them at a gate.
#[derive(Clone)]
pub(crate) struct Fake(Arc<FakeInner>);

pub(crate) struct FakeInner {
    fetches: AtomicU64,
    done: AtomicU64,
    outcome: Mutex<Outcome>,
    gate_open: watch::Sender<bool>,
}

impl Fake {
    pub(crate) fn new(lifetime: Duration) -> Self {
        Self(Arc::new(FakeInner {
            fetches: AtomicU64::new(0),
            done: AtomicU64::new(0),
            outcome: Mutex::new(Outcome::Token(lifetime)),
            gate_open: watch::Sender::new(true),
        }))
    }

    pub(crate) fn failing(error: Error) -> Self {
        let fake = Self::new(Duration::from_secs(300));
        fake.set(Outcome::Fail(error));
        fake
    }

    pub(crate) fn set(&self, outcome: Outcome) {
        *self.0.outcome.lock().unwrap() = outcome;
    }

    /// Fetches started so far (counted before the gate).
    pub(crate) fn fetches(&self) -> u64 {
        self.0.fetches.load(Ordering::SeqCst)
    }

    /// Fetches that have returned.
    pub(crate) fn done(&self) -> u64 {
        self.0.done.load(Ordering::SeqCst)
    }

    pub(crate) fn close_gate(&self) {
        self.0.gate_open.send_replace(false);
    }

    pub(crate) fn open_gate(&self) {
        self.0.gate_open.send_replace(true);
    }
}

#[async_trait]
impl TokenSource for Fake {
    async fn token(&self) -> Result<AccessToken, Error> {
        let n = self.0.fetches.fetch_add(1, Ordering::SeqCst) + 1;
        let mut gate = self.0.gate_open.subscribe();
        // The sender lives as long as `self`.
        gate.wait_for(|open| *open).await.unwrap();
        let outcome = self.0.outcome.lock().unwrap().clone();
        self.0.done.fetch_add(1, Ordering::SeqCst);
        match outcome {
            Outcome::Token(lifetime) => Ok(AccessToken::new(format!("token-{n}"), lifetime)),
            Outcome::Fail(error) => Err(error),
        }
    }
}

/// A retryable error, as a failing network would give.
pub(crate) fn outage(text: &str) -> Error {
    SourceError::new(std::io::Error::other(text.to_owned())).into()
}

/// A cache over `fake` on a fresh manual clock.
pub(crate) fn cache(fake: &Fake) -> (CachedTokenSource, Arc<ManualTimer>) {
    let clock = Arc::new(ManualTimer::new());
    let cache = CachedTokenSource::builder(fake.clone())
        .timer(clock.clone())
        .build()
        .unwrap();
    (cache, clock)
}

/// Waits (real time, at most 10 s) until `condition` holds.
pub(crate) async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Gives background tasks a moment (real time) to do something they should not.
pub(crate) async fn settle() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Waits until the refresher has fetched `n` times in total and is parked
/// on the clock again, so that the recorded state is final.
pub(crate) async fn fetched(fake: &Fake, cache: &CachedTokenSource, clock: &ManualTimer, n: u64) {
    eventually(&format!("{n} fetches"), || fake.done() >= n).await;
    // The outcome is recorded right after the source returns, before the
    // refresher parks on the clock again.
    eventually("the refresher to sleep", || clock.sleepers() >= 1).await;
    settle().await;
    assert!(cache.status().fetches >= n);
    assert_eq!(fake.fetches(), n, "more fetches than expected");
}

pub(crate) fn unavailable(error: &Error) -> &UnavailableError {
    match error {
        Error::Unavailable(e) => e,
        other => panic!("expected Error::Unavailable, got {other:?}"),
    }
}

/// Serves `router` on 127.0.0.1 and returns its address; the server stops with the test's runtime.
pub(crate) async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}
