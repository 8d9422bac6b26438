//! A server's view of the key set in force: each poll reads `AWSCURRENT`
//! (one `GetSecretValue`), builds the signer of its current key (and of its
//! next key, ahead of its turn), and swaps the whole state into the
//! [`KeySet`] at once.
//!
//! Tokens signed with the current key are capped at the earliest time that
//! key could leave the set, given the document's creation and the start of
//! the last read that found it in force ([`Timings::signing_limit`]), and at
//! the document's longest token lifetime. Each successful read moves the cap
//! forward; a replica that cannot read the set keeps signing under the cap
//! of its last read, which holds whatever the others do, and stops (503
//! `key_retiring`) only once a removal of its key could have gone unseen.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::{KeyMaker, KeySetError, KeySetSecret, Stored};
use oidc_core::clock::{MonotonicClock, SystemClock, SystemMonotonicClock, WallClock};
use oidc_core::keys::Signer;
use oidc_core::{ActiveKey, KeySet, KeySetState};

use super::document::{KeySetDocument, KeySetValue, Timings};

/// What one poll found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollSummary {
    /// The version in force.
    pub version_id: String,
    /// The key that signs (`None`: the set has no keys yet).
    pub signing: Option<String>,
    /// The published kids.
    pub published: Vec<String>,
    /// No token may expire after this (Unix seconds).
    pub signs_until: Option<u64>,
    /// The document's timings (`None`: the secret holds no version yet).
    pub timings: Option<Timings>,
}

/// Keeps a [`KeySet`] on the key set in force.
#[derive(Debug)]
pub struct KeySetPoller {
    secret: KeySetSecret,
    keys: KeyMaker,
    issuer: String,
    signers: HashMap<String, Arc<dyn Signer>>,
    last: Option<PollSummary>,
    clock: Arc<dyn WallClock>,
    monotonic: Arc<dyn MonotonicClock>,
}

impl KeySetPoller {
    /// A poller of `secret` for a server whose issuer is `issuer` (a set
    /// made for another issuer is refused: its envelope keys are bound to
    /// it), opening keys with `keys`.
    pub fn new(secret: KeySetSecret, keys: KeyMaker, issuer: impl Into<String>) -> Self {
        Self {
            secret,
            keys,
            issuer: issuer.into(),
            signers: HashMap::new(),
            last: None,
            clock: Arc::new(SystemClock),
            monotonic: Arc::new(SystemMonotonicClock::new()),
        }
    }

    /// Reads the time of each read from `clock` (the issuer's: the cap it
    /// puts on tokens is compared with their `exp`) instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn WallClock>) -> Self {
        self.clock = clock;
        self
    }

    /// Measures the age of each state read (which lowers the JWKS max-age
    /// served from it, [`KeySetState::jwks_max_age`]) on `clock` instead of
    /// the system's monotonic clock: for a host that drives time itself,
    /// with [`with_clock`](Self::with_clock) on the same time.
    pub fn with_monotonic_clock(mut self, clock: Arc<dyn MonotonicClock>) -> Self {
        self.monotonic = clock;
        self
    }

    /// The secret polled.
    pub fn secret(&self) -> &KeySetSecret {
        &self.secret
    }

    /// Reads the set in force and swaps it into `keys`. On error `keys` is
    /// left as it was (its tokens stay under the cap of the last set read).
    pub async fn poll(&mut self, keys: &KeySet) -> Result<PollSummary, KeySetError> {
        let read_at = self.monotonic.elapsed();
        // The start of the read: the set was in force at least until then.
        let read_at_unix = self.clock.now();
        let stored = self.secret.current().await?;
        let monotonic = self.monotonic.clone();
        let no_keys = |version_id: String, timings: Option<Timings>| {
            let state = KeySetState::new(None, Vec::new())
                .unwrap_or_else(|_| unreachable!("an empty set has no duplicate kid"))
                .read_on(monotonic, read_at, Duration::ZERO);
            let summary = PollSummary {
                version_id,
                signing: None,
                published: Vec::new(),
                signs_until: None,
                timings,
            };
            (summary, state)
        };
        let (summary, state) = match stored {
            // No keys yet (a stack before its first rotation): nothing to
            // sign with or publish, and nothing worth caching.
            None => no_keys(String::new(), None),
            Some(Stored {
                version_id,
                value: KeySetValue::Template(template),
                ..
            }) => {
                self.check_issuer(&template.issuer)?;
                no_keys(version_id, Some(template.timings))
            }
            Some(Stored {
                version_id,
                created_at,
                value: KeySetValue::Document(document),
            }) => {
                self.check_issuer(&document.issuer)?;
                self.state_of(&document, version_id, created_at, (read_at, read_at_unix))
                    .await?
            }
        };
        keys.replace(state);
        if self.last.as_ref().map(|l| (&l.version_id, &l.signing))
            != Some((&summary.version_id, &summary.signing))
        {
            tracing::info!(
                secret = self.secret.secret_id(),
                version = summary.version_id.as_str(),
                signing = ?summary.signing,
                published = ?summary.published,
                "key set in force"
            );
        }
        self.last = Some(summary.clone());
        Ok(summary)
    }

    fn check_issuer(&self, issuer: &str) -> Result<(), KeySetError> {
        if issuer == self.issuer {
            return Ok(());
        }
        Err(KeySetError::Refused(format!(
            "key set {} is for issuer {issuer}, this server is {}",
            self.secret.secret_id(),
            self.issuer
        )))
    }

    async fn state_of(
        &mut self,
        document: &KeySetDocument,
        version_id: String,
        created_at: u64,
        (read_at, read_at_unix): (Duration, u64),
    ) -> Result<(PollSummary, KeySetState), KeySetError> {
        // Signers of keys no longer in the set go (an envelope key's
        // plaintext is zeroized with its signer).
        self.signers
            .retain(|kid, _| document.keys().any(|k| k.kid() == kid));
        // The next key is opened ahead of its turn, so that its rotation
        // swaps without waiting on KMS; failing here only delays that. Both
        // at once: a cold start waits for one KMS call, not two.
        let (signer, next) = tokio::join!(
            self.opened(&document.current, &document.issuer),
            self.opened(&document.next, &document.issuer)
        );
        let signer = signer?;
        self.signers
            .insert(document.current.kid().to_owned(), signer.clone());
        match next {
            Ok(next) => {
                self.signers.insert(document.next.kid().to_owned(), next);
            }
            Err(e) => tracing::warn!(kid = document.next.kid(), error = %e, "cannot open the next key yet"),
        }
        let timings = document.timings;
        let signs_until = timings.signing_limit(created_at, read_at_unix);
        let active = ActiveKey::new(signer, Some(signs_until)).with_max_lifetime(timings.max_token_lifetime);
        let state = KeySetState::new(Some(active), document.published())
            .map_err(|e| KeySetError::Rotation {
                token: version_id.clone(),
                reason: e.to_string(),
            })?
            .read_on(self.monotonic.clone(), read_at, timings.jwks_max_age);
        let summary = PollSummary {
            version_id,
            signing: Some(document.current.kid().to_owned()),
            published: document.keys().map(|k| k.kid().to_owned()).collect(),
            signs_until: Some(signs_until),
            timings: Some(timings),
        };
        Ok((summary, state))
    }

    /// The signer of `key`: the one opened before, or opened now.
    async fn opened(
        &self,
        key: &super::document::KeyRef,
        issuer: &str,
    ) -> Result<Arc<dyn Signer>, KeySetError> {
        match self.signers.get(key.kid()) {
            Some(signer) => Ok(signer.clone()),
            None => self.keys.signer(key, issuer).await,
        }
    }

    /// Polls every `interval` in the background until `keys` is dropped
    /// (inside a tokio runtime); the handle also refreshes on demand.
    pub fn spawn(self, keys: &Arc<KeySet>, interval: Duration) -> PollerHandle {
        let handle = self.on_demand(keys, interval);
        let background = handle.clone();
        let interval = interval.max(Duration::from_millis(100));
        tokio::spawn(async move {
            // Reads start every interval (not an interval after the last one
            // ended): the signing cap counts on a read starting at least
            // that often.
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if !background.poll_now().await {
                    return;
                }
            }
        });
        handle
    }

    /// A handle that polls only when asked ([`PollerHandle::refresh_if_stale`]):
    /// for AWS Lambda, whose environments run only during invocations.
    pub fn on_demand(self, keys: &Arc<KeySet>, interval: Duration) -> PollerHandle {
        let monotonic = self.monotonic.clone();
        PollerHandle(Arc::new(Shared {
            poller: tokio::sync::Mutex::new(self),
            keys: Arc::downgrade(keys),
            interval,
            last_read: Mutex::new(None),
            monotonic,
            reads: AtomicU64::new(0),
        }))
    }
}

/// A poller shared by its background loop and whoever refreshes on demand.
#[derive(Debug, Clone)]
pub struct PollerHandle(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    poller: tokio::sync::Mutex<KeySetPoller>,
    keys: Weak<KeySet>,
    interval: Duration,
    /// The start of the last successful read, on `monotonic`.
    last_read: Mutex<Option<Duration>>,
    /// The poller's monotonic clock (the system's, or a host's).
    monotonic: Arc<dyn MonotonicClock>,
    reads: AtomicU64,
}

impl PollerHandle {
    /// When the set was last read successfully: the start of that read, as
    /// an instant as long ago as the read is on the poller's monotonic
    /// clock ([`KeySetPoller::with_monotonic_clock`]).
    pub fn last_read(&self) -> Option<Instant> {
        let age = self.read_age()?;
        Some(Instant::now().checked_sub(age).unwrap_or_else(Instant::now))
    }

    /// How long ago the last successful read started, on the poller's
    /// monotonic clock (`None`: never read).
    pub fn read_age(&self) -> Option<Duration> {
        let at = (*self.0.last_read.lock().unwrap_or_else(|e| e.into_inner()))?;
        Some(self.0.monotonic.elapsed().saturating_sub(at))
    }

    /// Successful reads made through this handle (and marked with
    /// [`mark_read`](Self::mark_read)).
    pub fn reads(&self) -> u64 {
        self.0.reads.load(Ordering::Relaxed)
    }

    /// Records a successful poll made before the handle existed (the first
    /// poll at start), started at `at`.
    pub fn mark_read(&self, at: Instant) {
        self.mark_read_ago(at.elapsed());
    }

    fn mark_read_ago(&self, ago: Duration) {
        let at = self.0.monotonic.elapsed().saturating_sub(ago);
        *self.0.last_read.lock().unwrap_or_else(|e| e.into_inner()) = Some(at);
        self.0.reads.fetch_add(1, Ordering::Relaxed);
    }

    fn is_stale(&self) -> bool {
        self.read_age().is_none_or(|age| age >= self.0.interval)
    }

    /// Polls now, whatever the schedule (a platform hook, a simulation
    /// driving time itself); `false` once the key set is gone (nothing to
    /// keep current). A failed read is logged and leaves the set as it was.
    pub async fn poll_now(&self) -> bool {
        let Some(keys) = self.0.keys.upgrade() else {
            return false;
        };
        let mut poller = self.0.poller.lock().await;
        self.poll_with(&mut poller, &keys).await;
        true
    }

    async fn poll_with(&self, poller: &mut KeySetPoller, keys: &KeySet) {
        let started = self.0.monotonic.elapsed();
        match poller.poll(keys).await {
            Ok(_) => self.mark_read_ago(self.0.monotonic.elapsed().saturating_sub(started)),
            Err(e) => tracing::warn!(
                secret = poller.secret().secret_id(),
                error = %e,
                "cannot read the key set; keeping the last one"
            ),
        }
    }

    /// Reads the set again if it was last read longer ago than the poll
    /// interval (an AWS Lambda environment thawed after a freeze), waiting at
    /// most `timeout`; on failure or timeout the last set stays, under its
    /// cap. Returns whether the set is fresh afterwards.
    pub async fn refresh_if_stale(&self, timeout: Duration) -> bool {
        if !self.is_stale() {
            return true;
        }
        let refresh = async {
            let Some(keys) = self.0.keys.upgrade() else { return };
            let mut poller = self.0.poller.lock().await;
            // Another caller may have refreshed while this one waited.
            if self.is_stale() {
                self.poll_with(&mut poller, &keys).await;
            }
        };
        if tokio::time::timeout(timeout, refresh).await.is_err() {
            tracing::warn!(
                timeout_ms = timeout.as_millis() as u64,
                "refreshing the key set timed out; serving the last one"
            );
        }
        !self.is_stale()
    }
}
