//! [`FileSink`]: keeps a [`TokenFile`] holding the current token of a
//! [`CachedTokenSource`], for programs that read their token from a file
//! (what Vault Agent's file sink and Kubernetes' projected tokens do).
//!
//! - Each new token is written (atomically, see [`TokenFile`]) as soon as the
//!   cache has it: the cache's own schedule decides when to refresh.
//! - While refreshing fails, the file keeps the last token, which is still
//!   valid. Once that token is no longer usable and no new one has come, the
//!   file is removed, so that a reader fails fast instead of presenting an
//!   expired token; the next token brings it back.
//! - A write that fails (disk full, permissions changed) is logged and tried
//!   again after a backoff (1 s doubling to 30 s); an expired token is
//!   removed all the same.
//! - One `info` line per token written (expiry, next refresh), one `warn`
//!   line when the file is removed and why (target `connector_client::file_sink`).
//!   Never the token.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::timer::Timer;
use crate::token_file::{rfc3339, TokenFile, TokenFileError, TokenInfo};
use crate::{AccessToken, CachedTokenSource, RefreshStatus};

/// What the token file holds, as a [`FileSink`] last left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileState {
    /// No token file: no token obtained yet, or the last one expired.
    Absent,
    /// The file holds a token that expires at this time (wall clock).
    Holding {
        /// When the token expires.
        expires_at: SystemTime,
    },
}

/// Keeps a [`TokenFile`] in step with a [`CachedTokenSource`] from a
/// background task; see the [module docs](self).
///
/// ```no_run
/// # async fn run(tokens: connector_client::CachedTokenSource) -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use connector_client::{FileSink, TokenFile};
///
/// let file = Arc::new(TokenFile::new("/var/run/connector/token")?);
/// file.check()?; // fail at start, not at the first token
/// let mut sink = FileSink::spawn(tokens, file.clone());
/// sink.holding().await; // the first token is on disk
/// // ... until shutdown:
/// sink.stop().await;
/// file.remove()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FileSink {
    state: watch::Receiver<FileState>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl FileSink {
    /// Starts keeping `file` on the current Tokio runtime (it must have
    /// timers enabled). Does not remove a file left by an earlier run: call
    /// [`TokenFile::remove_leftovers`] first for that.
    pub fn spawn(tokens: CachedTokenSource, file: Arc<TokenFile>) -> Self {
        let (state_tx, state) = watch::channel(FileState::Absent);
        let (stop, stop_rx) = oneshot::channel();
        let task = tokio::spawn(keep(tokens, file, state_tx, stop_rx));
        Self {
            state,
            stop: Some(stop),
            task,
        }
    }

    /// What the file holds now.
    pub fn state(&self) -> FileState {
        *self.state.borrow()
    }

    /// Waits until the file holds a token (at once if it does now).
    pub async fn holding(&mut self) {
        let holding = |s: &FileState| matches!(s, FileState::Holding { .. });
        if self.state.wait_for(holding).await.is_err() {
            // The task has ended: only `stop` ends it, and that takes `self`.
            std::future::pending::<()>().await;
        }
    }

    /// Stops keeping the file and waits for the task to end. The file is left
    /// as it is; remove it with [`TokenFile::remove`] if nothing else will
    /// keep it fresh.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Err(e) = (&mut self.task).await {
            if e.is_panic() {
                tracing::error!("the token file task panicked");
            }
        }
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the token file holds, as far as the sink knows, and when that stops
/// being usable.
struct Written {
    /// The token; `None` after a failed write, which may have left the old
    /// token or the new one.
    token: Option<AccessToken>,
    expires_at: Instant,
    valid_until: Instant,
}

/// Backoff of failed writes, or of failed removals.
#[derive(Default)]
struct Retry {
    failures: u32,
    at: Option<Instant>,
}

impl Retry {
    fn due(&self, now: Instant) -> bool {
        self.at.is_none_or(|at| now >= at)
    }

    fn failed(&mut self, now: Instant) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let delay =
            Duration::from_secs(1u64 << self.failures.saturating_sub(1).min(5)).min(Duration::from_secs(30));
        self.at = Some(now + delay);
        delay
    }

    fn succeeded(&mut self) {
        self.failures = 0;
        self.at = None;
    }
}

async fn keep(
    tokens: CachedTokenSource,
    file: Arc<TokenFile>,
    state: watch::Sender<FileState>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut changes = tokens.changes();
    let mut keeper = Keeper {
        timer: tokens.timer().clone(),
        tokens,
        file,
        state,
        written: None,
        write_retry: Retry::default(),
        remove_retry: Retry::default(),
    };
    loop {
        let wake = keeper.step().await;
        let timer = keeper.timer.clone();
        let sleep = async move {
            match wake {
                Some(at) => timer.sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut stop => return,
            changed = changes.changed() => {
                if changed.is_err() {
                    // Cannot happen while the keeper holds the cache; stop cleanly if it does.
                    return;
                }
            }
            () = sleep => {}
        }
    }
}

/// The sink's task state.
struct Keeper {
    tokens: CachedTokenSource,
    file: Arc<TokenFile>,
    timer: Arc<dyn Timer>,
    state: watch::Sender<FileState>,
    written: Option<Written>,
    write_retry: Retry,
    remove_retry: Retry,
}

impl Keeper {
    /// Brings the file up to date with the cache; returns when to look again
    /// if nothing changes meanwhile (`None`: only on a change).
    async fn step(&mut self) -> Option<Instant> {
        // Status first: a token stored in between is newer than the status,
        // and its change notification brings us back here at once.
        let status = self.tokens.status();
        let current = self.tokens.cached();

        let mut write_pending = false;
        if let (Some(token), Some(expires_at), Some(valid_until)) =
            (current.as_ref(), status.expires_at, status.valid_until)
        {
            let stale = self
                .written
                .as_ref()
                .is_none_or(|w| w.token.as_ref() != Some(token) || w.expires_at != expires_at);
            if stale && self.write_retry.due(self.timer.now()) {
                self.write(token, expires_at, valid_until, &status).await;
            }
            write_pending = self.written.as_ref().is_none_or(|w| w.token.is_none());
        }

        // Never leave a token that is no longer usable: expired, or dropped
        // from the cache because a server refused it.
        let now = self.timer.now();
        let unusable = |w: &Written| now >= w.valid_until || status.expires_at.is_none();
        if self.written.as_ref().is_some_and(unusable) && self.remove_retry.due(now) {
            self.remove(&status).await;
        }

        let until_unusable = self.written.as_ref().map(|w| match unusable(w) {
            // Removing it failed: try again after the backoff.
            true => self.remove_retry.at.unwrap_or(now),
            false => w.valid_until,
        });
        let retry_write = self.write_retry.at.filter(|_| write_pending);
        until_unusable.into_iter().chain(retry_write).min()
    }

    async fn write(
        &mut self,
        token: &AccessToken,
        expires_at: Instant,
        valid_until: Instant,
        status: &RefreshStatus,
    ) {
        let info = TokenInfo::of(token, wall(&*self.timer, expires_at));
        let written = blocking(&self.file, {
            let (token, info) = (token.clone(), info.clone());
            move |file| file.write(&token, &info)
        })
        .await;
        match written {
            Ok(()) => {
                self.write_retry.succeeded();
                log_written(&self.file, &*self.timer, &info, status);
                self.written = Some(Written {
                    token: Some(token.clone()),
                    expires_at,
                    valid_until,
                });
                self.state.send_replace(FileState::Holding {
                    expires_at: info.expires_at,
                });
            }
            Err(e) => {
                let delay = self.write_retry.failed(self.timer.now());
                tracing::error!(error = %e, retry_in_s = delay.as_secs(), "cannot write the token file");
                // The file may hold the old token or the new one: it must go
                // when the earlier of the two stops being usable.
                let (expires_at, valid_until) = match &self.written {
                    Some(w) if w.valid_until < valid_until => (w.expires_at, w.valid_until),
                    _ => (expires_at, valid_until),
                };
                self.written = Some(Written {
                    token: None,
                    expires_at,
                    valid_until,
                });
            }
        }
    }

    async fn remove(&mut self, status: &RefreshStatus) {
        let removed = match blocking(&self.file, TokenFile::remove).await {
            Ok(_) => Ok(()),
            // The token is gone; only the info file is left over.
            Err(e) if e.path() != self.file.path() => {
                tracing::error!(error = %e, "cannot remove the token's info file");
                Ok(())
            }
            Err(e) => Err(e),
        };
        match removed {
            Ok(()) => {
                self.remove_retry.succeeded();
                if let Some(w) = self.written.take() {
                    let expired = self.timer.now() >= w.valid_until;
                    log_removed(&self.file, &*self.timer, &w, expired, status);
                }
                self.state.send_replace(FileState::Absent);
            }
            Err(e) => {
                let delay = self.remove_retry.failed(self.timer.now());
                tracing::error!(
                    error = %e,
                    retry_in_s = delay.as_secs(),
                    "cannot remove the token file holding an unusable token"
                );
            }
        }
    }
}

/// Runs a file operation on the blocking pool (it calls `fsync`).
async fn blocking<T: Send + 'static>(
    file: &Arc<TokenFile>,
    operation: impl FnOnce(&TokenFile) -> Result<T, TokenFileError> + Send + 'static,
) -> Result<T, TokenFileError> {
    let shared = file.clone();
    match tokio::task::spawn_blocking(move || operation(&shared)).await {
        Ok(result) => result,
        // The runtime is shutting down (or the operation panicked): report it as an I/O failure.
        Err(e) => Err(TokenFileError::new(
            "finish an operation on",
            file.path(),
            std::io::Error::other(e.to_string()),
        )),
    }
}

/// An instant of `timer` on the wall clock.
fn wall(timer: &dyn Timer, instant: Instant) -> SystemTime {
    let (now, wall_now) = (timer.now(), SystemTime::now());
    match instant.checked_duration_since(now) {
        Some(ahead) => wall_now.checked_add(ahead),
        None => wall_now.checked_sub(now.duration_since(instant)),
    }
    .unwrap_or(wall_now)
}

fn log_written(file: &TokenFile, timer: &dyn Timer, info: &TokenInfo, status: &RefreshStatus) {
    let refresh_at = status.refresh_at.map(|at| rfc3339(wall(timer, at)));
    tracing::info!(
        path = %file.path().display(),
        expires_at = %rfc3339(info.expires_at),
        next_refresh_at = %refresh_at.as_deref().unwrap_or("-"),
        "token file written"
    );
}

fn log_removed(file: &TokenFile, timer: &dyn Timer, w: &Written, expired: bool, status: &RefreshStatus) {
    let path = file.path().display();
    let expired_at = rfc3339(wall(timer, w.expires_at));
    let last_error = status.last_error.as_ref().map(ToString::to_string);
    let next_attempt_at = status.retry_at.map(|at| rfc3339(wall(timer, at)));
    if expired {
        tracing::warn!(
            path = %path,
            expired_at = %expired_at,
            failures = status.failures,
            last_error = %last_error.as_deref().unwrap_or("-"),
            next_attempt_at = %next_attempt_at.as_deref().unwrap_or("-"),
            "token file removed: its token is no longer usable and no new one could be obtained"
        );
    } else {
        tracing::warn!(
            path = %path,
            "token file removed: a server refused its token; waiting for a new one"
        );
    }
}
