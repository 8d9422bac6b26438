//! Tracing set up in one place: `RUST_LOG` (or the configured level) filters,
//! text or JSON lines on stderr, coloured only when stderr is a terminal (a
//! log file or a pipe gets plain text).
//!
//! Lines (the audit log among them: one event per token request) are handed
//! to a writer thread through a bounded queue, so a request never waits on
//! stderr. The queue is not lossy: when it is full, the request waits for
//! room (backpressure) rather than an audit event being dropped. The queue
//! is flushed when the returned guard is dropped, at shutdown.

use std::io::IsTerminal;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Lines held for the writer thread at most; beyond, writers wait.
const QUEUED_LINES: usize = 65_536;

/// Keeps the log writer running; dropping it writes out what is queued.
#[derive(Debug)]
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    _writer: Option<WorkerGuard>,
}

/// Installs the global subscriber (once; later calls install nothing and
/// return an empty guard).
pub fn init(log: &LogConfig) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("log-writer")
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    LogGuard {
        _writer: installed.is_ok().then_some(guard),
    }
}
