//! Tracing set up in one place: `RUST_LOG` (or the configured level) filters,
//! text or JSON lines on stderr, never coloured.
//!
//! Both are `tracing-subscriber`'s formats, set up in [`format`] to cost few
//! instructions per audit event (one per token request).
//!
//! Lines (the audit log among them: one event per token request) go through
//! [`log_writer`]: a request appends its line to a bounded buffer that a
//! writer thread writes out in batches, so a request never waits on stderr
//! and never pays a system call for its line. Not lossy: when the buffer is
//! full, a token request waits for room ([`wait_for_room`], at most `[log]
//! max_wait_ms`, without blocking a thread) and is then refused with 503
//! rather than an audit event being dropped; a failed write is kept and
//! retried. [`health`] tells `/healthz` whether the output keeps up, and
//! [`counters`] are exported as metrics. Everything queued is written when
//! the returned guard is dropped, at shutdown, or when [`flush`] is called.

use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

pub mod format;
pub mod log_writer;

use log_writer::{Limits, LogCounters, LogHealth, LogWriter, WriterThread};

/// The installed subscriber's writer, for [`flush`], [`health`] and
/// [`wait_for_room`].
static WRITER: OnceLock<LogWriter> = OnceLock::new();

/// What the installed writer counts (zero while none is installed).
static COUNTERS: LazyLock<LogCounters> = LazyLock::new(LogCounters::default);

/// How long [`flush`] waits for the lines of a Lambda invocation: well
/// inside the function's timeout, so a stalled output cannot hold it.
const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// Keeps the log writer running; dropping it writes out what is queued.
#[derive(Debug)]
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    _writer: Option<WriterThread>,
}

/// Installs the global subscriber (once; later calls install nothing and
/// return an empty guard). Without a thread for the writer (the system
/// refuses one) lines are written directly, each with its own system call.
pub fn init(log: &LogConfig) -> LogGuard {
    let limits = Limits {
        capacity: log.buffer_kib.saturating_mul(1024),
        max_wait: Duration::from_millis(log.max_wait_ms),
        ..Limits::default()
    };
    let spawned = LogWriter::spawn(
        "log-writer",
        Box::new(std::io::stderr()),
        limits,
        COUNTERS.clone(),
    );
    let Ok((writer, thread)) = spawned else {
        install(log, std::io::stderr);
        return LogGuard { _writer: None };
    };
    if !install(log, writer.clone()) {
        return LogGuard { _writer: None };
    }
    let _ = WRITER.set(writer);
    LogGuard {
        _writer: Some(thread),
    }
}

/// Installs the global subscriber writing to `writer`; false if one was
/// installed already.
fn install<W>(log: &LogConfig, writer: W) -> bool
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .with_timer(format::Timer);
    let installed = match log.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .event_format(format::JsonFormat::default())
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    installed.is_ok()
}

/// Waits until every log line so far is written (Lambda: before the
/// invocation ends and the environment may be frozen). Returns at once when
/// nothing is queued or no subscriber was installed by [`init`].
pub fn flush() {
    if let Some(writer) = WRITER.get() {
        // Not written in time (a stalled output): the lines stay queued
        // and `/healthz` says so; the invocation is not held hostage.
        let _ = writer.wait_written(FLUSH_WAIT);
    }
}

/// Whether the log output keeps up; `None` when no writer was installed by
/// [`init`] (lines then go to stderr directly).
pub fn health() -> Option<LogHealth> {
    WRITER.get().map(LogWriter::health)
}

/// Waits (asynchronously) until the log has room for a request's lines, at
/// most `[log] max_wait_ms`: false means the request must be refused, as
/// its audit line could not be kept. True at once without an installed
/// writer.
pub async fn wait_for_room() -> bool {
    match WRITER.get() {
        Some(writer) => writer.wait_for_room().await,
        None => true,
    }
}

/// The log writer's counters (the server registers them as metrics).
pub fn counters() -> &'static LogCounters {
    &COUNTERS
}
