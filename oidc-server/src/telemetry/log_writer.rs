//! The log writer: formatted lines go into one bounded in-memory buffer and
//! a thread of its own writes that buffer out in batches.
//!
//! Why not a line per `write(2)`: on the token endpoint every request logs
//! an audit line, and a system call per line (plus waking a writer thread
//! per line) costs more than the rest of the logging. Here a request only
//! appends its line under a mutex; the writer thread wakes when the buffer
//! stops being empty, lets lines gather for [`LINGER`], and writes them all
//! with one call, so a line reaches stderr within milliseconds.
//!
//! # Never lossy, never stuck
//!
//! stderr can stop taking lines (a full pipe nobody reads, a stalled log
//! driver) or fail (a closed pipe, a full disk). Two promises hold anyway:
//!
//! - **No audit line is lost.** A token request first waits, asynchronously
//!   and at most [`Limits::max_wait`], for the buffer to have room
//!   ([`LogWriter::wait_for_room`]); without room it is refused with 503
//!   (`log_unavailable`) before anything is issued, so no token exists
//!   whose audit line could not be kept. A line whose write fails is kept,
//!   ahead of the lines after it, and written again (after a pause that
//!   grows up to [`RETRY_MAX`]); it counts as written only once written. The
//!   refusal itself is counted (`tokens_refused_total{reason}`), not logged:
//!   its line is what there is no room for.
//! - **No thread waits on stderr, and no wait is unbounded.** Queuing a line
//!   never blocks (the Tokio workers that log keep serving `/healthz`,
//!   JWKS and discovery); the only waits are that asynchronous one, and
//!   [`LogWriter::wait_written`] and closing, each with a deadline.
//!
//! Memory stays bounded: requests stop adding lines at [`Limits::capacity`]
//! bytes waiting. Lines logged outside a request (background tasks) still
//! go in, up to twice the capacity; past that such a line is dropped and
//! counted ([`LogCounters::dropped_lines`]): the one case where a line is
//! lost, with stderr stalled while more than [`Limits::capacity`] bytes of
//! background lines pile up, and never an audit line of an issued token.
//!
//! [`LogWriter::health`] says whether the output keeps up: stalled (bytes
//! waiting and nothing written for [`Limits::stall_after`]), full, or
//! failing; `/healthz` answers 503 with that sentence. [`LogCounters`]
//! counts the waits, the refusals for want of room, the failed writes and
//! the dropped lines; the server exports them as metrics.
//!
//! [`LogWriter::wait_written`] waits until everything queued before it is
//! written (Lambda calls it at the end of each invocation, before the
//! environment may be frozen); closing writes everything out (bounded by
//! [`CLOSE_WAIT`]); a line logged after closing is written directly.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

/// How long the writer lets lines gather after the first one arrives.
pub const LINGER: Duration = Duration::from_millis(5);

/// The first pause after a failed write; it doubles up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_millis(50);

/// The longest pause between two attempts at a failing output.
pub const RETRY_MAX: Duration = Duration::from_secs(1);

/// How long closing waits for the queued lines to be written (a stalled
/// stderr must not keep the process from exiting).
pub const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// What the buffer holds and how long anyone waits for it.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes waiting at most for requests: beyond, a request waits for room.
    pub capacity: usize,
    /// Bytes waiting that make the writer start before its linger is over.
    pub batch: usize,
    /// Longest a request waits for room before it is refused.
    pub max_wait: Duration,
    /// Bytes waiting with nothing written for this long: the output is stalled.
    pub stall_after: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            capacity: 8 << 20,
            batch: 256 << 10,
            max_wait: Duration::from_secs(1),
            stall_after: Duration::from_secs(2),
        }
    }
}

/// What the writer counts (cheap to clone: every clone counts into the same
/// counters). Fixed names, no labels from anything a client sends.
#[derive(Debug, Clone, Default)]
pub struct LogCounters {
    /// Requests that had to wait for room in the buffer.
    pub waits: Counter,
    /// Requests refused because no room came within [`Limits::max_wait`].
    pub wait_timeouts: Counter,
    /// Writes to the output that failed (their bytes are kept and retried).
    pub write_failures: Counter,
    /// Lines dropped: logged outside a request with twice the capacity waiting.
    pub dropped_lines: Counter,
    /// Bytes queued and not yet written.
    pub unwritten_bytes: Gauge,
}

type Output = Box<dyn Write + Send>;

/// The handle loggers write through (cheap to clone; every clone feeds the
/// same buffer). Dropping it does not stop the writer: [`WriterThread`] does.
#[derive(Clone)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

/// The thread that writes; dropping it writes out what is queued and stops it.
pub struct WriterThread {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    /// The writer thread waits here for lines, for a flush or for closing.
    work: Condvar,
    /// Flushes wait here for their lines to be written, closing for the end.
    progress: Condvar,
    /// Requests waiting for room (asynchronously) are woken here.
    room: tokio::sync::Notify,
    /// Bytes queued and not yet written, readable without the lock.
    unwritten: AtomicU64,
    limits: Limits,
    counters: LogCounters,
    /// When the writer was started: the origin of `State::progress_at`.
    started: Instant,
    /// Where lines go; the writer thread holds it while writing, a logger
    /// only after closing.
    output: Mutex<Output>,
}

#[derive(Default)]
struct State {
    pending: Vec<u8>,
    /// Bytes ever queued and ever written: a flush waits for `written` to
    /// reach what was queued when it started.
    queued: u64,
    written: u64,
    /// When bytes last went out, or started waiting with none before them
    /// (since `Shared::started`).
    progress_at: Duration,
    /// Why the last write failed, until one succeeds.
    failing: Option<std::io::ErrorKind>,
    /// The writer waits for the first line (a logger must wake it).
    writer_idle: bool,
    /// Someone waits for the writer (a flush or closing): no lingering.
    waiting: usize,
    /// Closing was asked for: the writer writes what is queued, then stops.
    closed: bool,
    /// The writer has stopped: loggers write directly.
    finished: bool,
}

/// Whether the output keeps up, for `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogHealth {
    /// Bytes queued and not yet written.
    pub unwritten: u64,
    /// How long nothing has been written while bytes wait.
    pub stalled_for: Option<Duration>,
    /// Why the last write failed, if it did.
    pub failing: Option<std::io::ErrorKind>,
    /// Whether requests find no room (they wait, then are refused).
    pub full: bool,
}

impl LogHealth {
    /// Whether lines reach the output as they should.
    pub fn is_healthy(&self) -> bool {
        self.stalled_for.is_none() && self.failing.is_none() && !self.full
    }
}

impl std::fmt::Display for LogHealth {
    /// One sentence for an operator: what is wrong and what it does.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_healthy() {
            return write!(f, "log output keeps up");
        }
        match (self.failing, self.stalled_for) {
            (Some(kind), _) => write!(
                f,
                "log output failing ({kind}): {} bytes not written, kept for retry",
                self.unwritten
            )?,
            (None, Some(stalled)) => write!(
                f,
                "log output stalled: {} bytes not written, nothing written for {} s",
                self.unwritten,
                stalled.as_secs()
            )?,
            (None, None) => write!(f, "log output behind: {} bytes not written", self.unwritten)?,
        }
        if self.full {
            write!(
                f,
                "; the log buffer is full: token requests are refused until it drains"
            )?;
        }
        Ok(())
    }
}

impl LogWriter {
    /// Starts the writer thread (named `name`) writing to `output`,
    /// counting into `counters`.
    pub fn spawn(
        name: &str,
        output: Output,
        limits: Limits,
        counters: LogCounters,
    ) -> std::io::Result<(Self, WriterThread)> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            progress: Condvar::new(),
            room: tokio::sync::Notify::new(),
            unwritten: AtomicU64::new(0),
            limits,
            counters,
            started: Instant::now(),
            output: Mutex::new(output),
        });
        let thread = std::thread::Builder::new().name(name.to_owned()).spawn({
            let shared = shared.clone();
            move || {
                // Should writing ever panic, loggers must not wait for a
                // writer that is gone: they write directly from then on.
                let _finished = Finished(&shared);
                shared.run();
            }
        })?;
        Ok((
            Self {
                shared: shared.clone(),
            },
            WriterThread {
                shared,
                thread: Some(thread),
            },
        ))
    }

    /// Waits until every line queued before this call is written, or
    /// `timeout` has passed: true if they were written (or the writer has
    /// stopped, and later lines are written directly).
    pub fn wait_written(&self, timeout: Duration) -> bool {
        let shared = &self.shared;
        let mut state = shared.lock();
        let target = state.queued;
        if state.written >= target || state.finished {
            return true;
        }
        state.waiting += 1;
        shared.work.notify_one();
        let deadline = Instant::now() + timeout;
        while state.written < target && !state.finished {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = shared
                .progress
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        state.waiting -= 1;
        state.written >= target || state.finished
    }

    /// Whether a request's lines fit in the buffer now.
    fn has_room(&self) -> bool {
        self.shared.unwritten.load(Ordering::Relaxed) < self.shared.limits.capacity as u64
    }

    /// Waits (asynchronously, never blocking a thread) until the buffer has
    /// room for a request's lines, at most [`Limits::max_wait`]: false if it
    /// has none then, and the request must be refused rather than log a
    /// line there is no room for. Counted in [`LogCounters`].
    pub async fn wait_for_room(&self) -> bool {
        if self.has_room() {
            return true;
        }
        let counters = &self.shared.counters;
        counters.waits.inc();
        let deadline = tokio::time::Instant::now() + self.shared.limits.max_wait;
        loop {
            let notified = self.shared.room.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check, so a write in between wakes it.
            notified.as_mut().enable();
            if self.has_room() {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let room = self.has_room();
                if !room {
                    counters.wait_timeouts.inc();
                }
                return room;
            }
        }
    }

    /// How the output keeps up.
    pub fn health(&self) -> LogHealth {
        let shared = &self.shared;
        let state = shared.lock();
        let unwritten = state.queued - state.written;
        let since = shared.started.elapsed().saturating_sub(state.progress_at);
        LogHealth {
            unwritten,
            stalled_for: (unwritten > 0 && since >= shared.limits.stall_after).then_some(since),
            failing: state.failing,
            full: unwritten >= shared.limits.capacity as u64,
        }
    }

    /// Queues one formatted line (or event: whatever one `write` carries).
    /// Never waits: see the module documentation for why that loses nothing.
    fn queue(&self, line: &[u8]) {
        let shared = &self.shared;
        let mut state = shared.lock();
        if state.finished {
            drop(state);
            // The writer thread is gone (shutdown): write it ourselves.
            let mut output = shared.output.lock().unwrap_or_else(PoisonError::into_inner);
            if output.write_all(line).and_then(|()| output.flush()).is_err() {
                shared.counters.write_failures.inc();
            }
            return;
        }
        let unwritten = state.queued - state.written;
        // Only lines logged outside a request can get here with the buffer
        // this full (requests wait for room first): a line longer than the
        // whole limit still goes through, alone.
        if unwritten > 0 && unwritten + line.len() as u64 > 2 * shared.limits.capacity as u64 {
            shared.counters.dropped_lines.inc();
            return;
        }
        if unwritten == 0 {
            // The stall clock starts with the first byte waiting.
            state.progress_at = shared.started.elapsed();
        }
        state.pending.extend_from_slice(line);
        state.queued += line.len() as u64;
        shared.set_unwritten(&state);
        if state.writer_idle {
            state.writer_idle = false;
            shared.work.notify_one();
        } else if state.pending.len() >= shared.limits.batch {
            shared.work.notify_one();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a consistent buffer behind
        // (bytes are appended or swapped whole), so keep logging.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_unwritten(&self, state: &State) {
        let unwritten = state.queued - state.written;
        self.unwritten.store(unwritten, Ordering::Relaxed);
        self.counters
            .unwritten_bytes
            .set(i64::try_from(unwritten).unwrap_or(i64::MAX));
    }

    /// `n` more bytes are out.
    fn wrote(&self, n: usize) {
        let mut state = self.lock();
        state.written += n as u64;
        state.progress_at = self.started.elapsed();
        // Bytes went out: the output works again.
        state.failing = None;
        self.set_unwritten(&state);
        if state.waiting > 0 {
            self.progress.notify_all();
        }
        drop(state);
        self.room.notify_waiters();
    }

    /// Writes `batch` to `output`, reporting each chunk that goes out:
    /// how much went out, and the error that stopped it, if one did.
    fn write_out(&self, output: &mut Output, batch: &[u8]) -> (usize, Option<std::io::Error>) {
        let mut done = 0;
        while done < batch.len() {
            match output.write(&batch[done..]) {
                Ok(0) => return (done, Some(std::io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    done += n;
                    self.wrote(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return (done, Some(e)),
            }
        }
        (done, output.flush().err())
    }

    fn run(&self) {
        let mut batch = Vec::new();
        let mut pause = RETRY_FIRST;
        loop {
            let mut state = self.lock();
            while state.pending.is_empty() && !state.closed {
                state.writer_idle = true;
                state = self.work.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
            state.writer_idle = false;
            if !state.closed && state.waiting == 0 && state.pending.len() < self.limits.batch {
                state = self
                    .work
                    .wait_timeout_while(state, LINGER, |s| {
                        !s.closed && s.waiting == 0 && s.pending.len() < self.limits.batch
                    })
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            if state.pending.is_empty() && state.closed {
                return;
            }
            std::mem::swap(&mut batch, &mut state.pending);
            // The drained buffer keeps at most a batch's worth of capacity.
            state.pending.shrink_to(self.limits.batch);
            // Taken before the buffer is let go, so that nothing written
            // directly after closing can overtake this batch.
            let mut output = self.output.lock().unwrap_or_else(PoisonError::into_inner);
            drop(state);
            let (done, error) = self.write_out(&mut output, &batch);
            drop(output);
            let mut state = self.lock();
            match error {
                None => {
                    state.failing = None;
                    pause = RETRY_FIRST;
                }
                Some(error) => {
                    self.counters.write_failures.inc();
                    state.failing = Some(error.kind());
                    // Not written: kept, ahead of the lines queued since.
                    let mut kept = Vec::with_capacity(batch.len() - done + state.pending.len());
                    kept.extend_from_slice(&batch[done..]);
                    kept.extend_from_slice(&state.pending);
                    state.pending = kept;
                    if state.closed {
                        // Closing waits at most CLOSE_WAIT: whatever is
                        // still failing then cannot be written anywhere.
                        state = self
                            .progress
                            .wait_timeout(state, pause)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                    } else {
                        state = self
                            .work
                            .wait_timeout_while(state, pause, |s| !s.closed)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                    }
                    pause = (pause * 2).min(RETRY_MAX);
                }
            }
            drop(state);
            batch.clear();
        }
    }
}

/// Marks the writer as stopped when its thread ends, however it ends.
struct Finished<'a>(&'a Shared);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.lock().finished = true;
        self.0.progress.notify_all();
        self.0.room.notify_waiters();
    }
}

impl Drop for WriterThread {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closed = true;
        self.shared.work.notify_one();
        // Bounded: a stalled stderr must not keep the process alive.
        let deadline = Instant::now() + CLOSE_WAIT;
        while !state.finished {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            state = self
                .shared
                .progress
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        drop(state);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.queue(buf);
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.queue(buf);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // `tracing-subscriber` flushes nothing per event; waiting for the
        // writer is `LogWriter::wait_written`.
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriter").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for WriterThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterThread").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// An output the test reads back; `delay` slows every write down.
    #[derive(Clone, Default)]
    struct Sink {
        bytes: Arc<Mutex<Vec<u8>>>,
        writes: Arc<Mutex<usize>>,
        delay: Duration,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            std::thread::sleep(self.delay);
            *self.writes.lock().unwrap() += 1;
            self.bytes.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(self.bytes.lock().unwrap().clone()).unwrap()
        }
    }

    /// A writer over `sink`.
    fn start(sink: Sink, limits: Limits) -> (Sink, LogWriter, WriterThread) {
        let (writer, thread) = LogWriter::spawn(
            "test-log-writer",
            Box::new(sink.clone()),
            limits,
            LogCounters::default(),
        )
        .unwrap();
        (sink, writer, thread)
    }

    /// Long enough that only a hang reaches it.
    const HANG: Duration = Duration::from_secs(30);

    /// Limits with `capacity` bytes and short waits.
    fn small(capacity: usize) -> Limits {
        Limits {
            capacity,
            batch: capacity / 2,
            max_wait: Duration::from_millis(50),
            stall_after: Duration::from_millis(50),
        }
    }

    fn line(thread: usize, i: usize) -> String {
        format!("thread {thread} line {i}\n")
    }

    /// Loggers that wait for room first, as token requests do: every line
    /// is written, whole and in order, none dropped, however slow the sink.
    #[test]
    fn every_line_is_written_whole_and_in_order_under_backpressure() {
        let sink = Sink {
            delay: Duration::from_millis(1),
            ..Sink::default()
        };
        // Room for a few lines only: loggers keep waiting for the slow sink.
        let (sink, writer, thread) = start(sink, small(256));
        let counters = writer.shared.counters.clone();
        let loggers: Vec<_> = (0..4)
            .map(|t| {
                let mut writer = writer.clone();
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .build()
                        .unwrap();
                    for i in 0..200 {
                        while !runtime.block_on(writer.wait_for_room()) {}
                        writer.write_all(line(t, i).as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for logger in loggers {
            logger.join().unwrap();
        }
        drop(thread);
        let text = sink.text();
        for t in 0..4 {
            let mine: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with(&format!("thread {t} ")))
                .collect();
            let expected: Vec<String> = (0..200).map(|i| line(t, i).trim_end().to_owned()).collect();
            assert_eq!(mine, expected, "thread {t}: lost, torn or reordered lines");
        }
        assert_eq!(text.lines().count(), 800);
        assert_eq!(counters.dropped_lines.get(), 0);
        assert!(counters.waits.get() > 0, "the loggers never had to wait");
    }

    #[test]
    fn lines_are_batched_into_few_writes() {
        let (sink, mut writer, thread) = start(Sink::default(), Limits::default());
        for i in 0..1000 {
            writer.write_all(line(0, i).as_bytes()).unwrap();
        }
        assert!(writer.wait_written(HANG));
        let writes = *sink.writes.lock().unwrap();
        assert!(writes < 100, "{writes} writes for 1000 lines");
        assert_eq!(sink.text().lines().count(), 1000);
        drop(thread);
    }

    #[test]
    fn flush_returns_once_earlier_lines_are_written() {
        let (sink, mut writer, _thread) = start(Sink::default(), Limits::default());
        writer.write_all(b"one\n").unwrap();
        assert!(writer.wait_written(HANG));
        assert_eq!(sink.text(), "one\n");
        // Nothing queued: returns at once.
        let started = Instant::now();
        assert!(writer.wait_written(HANG));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_line_reaches_the_output_without_a_flush() {
        let (sink, mut writer, _thread) = start(Sink::default(), Limits::default());
        writer.write_all(b"soon\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while sink.text().is_empty() {
            assert!(Instant::now() < deadline, "the line was never written");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(sink.text(), "soon\n");
    }

    #[test]
    fn lines_after_closing_are_written_directly() {
        let (sink, mut writer, thread) = start(Sink::default(), Limits::default());
        writer.write_all(b"before\n").unwrap();
        drop(thread);
        assert_eq!(sink.text(), "before\n");
        writer.write_all(b"after\n").unwrap();
        assert!(writer.wait_written(HANG));
        assert_eq!(sink.text(), "before\nafter\n");
    }

    /// An output whose first write panics.
    struct PanicsOnce {
        sink: Sink,
        panicked: bool,
    }

    impl Write for PanicsOnce {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if !self.panicked {
                self.panicked = true;
                panic!("the output failed");
            }
            self.sink.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn loggers_never_wait_for_a_writer_that_died() {
        let sink = Sink::default();
        let output = PanicsOnce {
            sink: sink.clone(),
            panicked: false,
        };
        let (mut writer, _thread) = LogWriter::spawn(
            "test-log-writer",
            Box::new(output),
            small(16),
            LogCounters::default(),
        )
        .unwrap();
        writer.write_all(b"lost with the writer\n").unwrap();
        assert!(writer.wait_written(HANG));
        // The buffer is far smaller than what follows: with no writer left,
        // a logger waiting for room would wait forever.
        for i in 0..20 {
            writer.write_all(line(0, i).as_bytes()).unwrap();
        }
        assert_eq!(sink.text().lines().count(), 20);
    }

    #[test]
    fn a_line_longer_than_the_capacity_goes_through() {
        let (sink, mut writer, thread) = start(Sink::default(), small(24));
        writer.write_all(b"a line of more than eight bytes\n").unwrap();
        writer.write_all(b"next\n").unwrap();
        drop(thread);
        assert_eq!(sink.text(), "a line of more than eight bytes\nnext\n");
    }

    /// An output that fails every write until `heal` is set, then works.
    #[derive(Clone, Default)]
    struct Failing {
        sink: Sink,
        healed: Arc<Mutex<bool>>,
        attempts: Arc<Mutex<usize>>,
    }

    impl Write for Failing {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            *self.attempts.lock().unwrap() += 1;
            if !*self.healed.lock().unwrap() {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            self.sink.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_write_is_counted_kept_and_written_again() {
        let output = Failing::default();
        let counters = LogCounters::default();
        let (mut writer, thread) = LogWriter::spawn(
            "test-log-writer",
            Box::new(output.clone()),
            Limits::default(),
            counters.clone(),
        )
        .unwrap();
        writer.write_all(b"audit one\n").unwrap();
        writer.write_all(b"audit two\n").unwrap();
        // Not written: a flush says so instead of counting them as written.
        assert!(!writer.wait_written(Duration::from_millis(300)));
        assert!(counters.write_failures.get() >= 1);
        assert_eq!(counters.unwritten_bytes.get(), 20);
        let health = writer.health();
        assert_eq!(health.failing, Some(std::io::ErrorKind::BrokenPipe));
        assert!(!health.is_healthy());
        assert!(health.to_string().contains("log output failing"), "{health}");
        // Lines logged meanwhile go after the kept ones.
        writer.write_all(b"audit three\n").unwrap();
        *output.healed.lock().unwrap() = true;
        assert!(writer.wait_written(HANG));
        assert_eq!(output.sink.text(), "audit one\naudit two\naudit three\n");
        assert!(writer.health().is_healthy());
        assert_eq!(counters.unwritten_bytes.get(), 0);
        assert_eq!(counters.dropped_lines.get(), 0);
        drop(thread);
    }

    /// An output whose writes block until its valve opens (a pipe nobody reads).
    #[derive(Clone, Default)]
    struct Valve {
        sink: Sink,
        open: Arc<(Mutex<bool>, Condvar)>,
    }

    impl Valve {
        fn open(&self) {
            *self.open.0.lock().unwrap() = true;
            self.open.1.notify_all();
        }
    }

    impl Write for Valve {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (open, opened) = &*self.open;
            let mut open = open.lock().unwrap();
            while !*open {
                open = opened.wait(open).unwrap();
            }
            self.sink.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_output_blocks_no_logger_refuses_requests_room_and_says_so() {
        let output = Valve::default();
        let counters = LogCounters::default();
        let limits = small(1024);
        let (writer, thread) = LogWriter::spawn(
            "test-log-writer",
            Box::new(output.clone()),
            limits,
            counters.clone(),
        )
        .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        assert!(runtime.block_on(writer.wait_for_room()));
        // Far more than the buffer holds, from another thread: it must
        // return (the old writer waited for room here, for ever).
        let (done, finished) = std::sync::mpsc::channel();
        let logger = std::thread::spawn({
            let mut writer = writer.clone();
            move || {
                for i in 0..500 {
                    writer.write_all(line(0, i).as_bytes()).unwrap();
                }
                done.send(()).unwrap();
            }
        });
        finished
            .recv_timeout(HANG)
            .expect("a logger waited on the stalled output");
        logger.join().unwrap();
        // Past twice the capacity, lines logged outside requests are dropped, counted.
        let dropped = counters.dropped_lines.get();
        assert!(dropped > 0);
        // Requests get no room: they wait (bounded), then are refused.
        assert!(!runtime.block_on(writer.wait_for_room()));
        assert_eq!((counters.waits.get(), counters.wait_timeouts.get()), (1, 1));
        // Reported once nothing has been written for `stall_after`.
        let deadline = Instant::now() + HANG;
        let health = loop {
            let health = writer.health();
            if health.stalled_for.is_some() {
                break health;
            }
            assert!(Instant::now() < deadline, "never reported stalled: {health:?}");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(health.full && !health.is_healthy(), "{health:?}");
        let text = health.to_string();
        assert!(
            text.contains("log output stalled") && text.contains("token requests are refused"),
            "{text}"
        );

        // The output takes lines again: everything kept is written, in order.
        output.open();
        assert!(writer.wait_written(HANG));
        assert!(runtime.block_on(writer.wait_for_room()));
        assert!(writer.health().is_healthy());
        let written = output.sink.text();
        let kept = 500 - usize::try_from(dropped).unwrap();
        let expected: Vec<String> = (0..kept).map(|i| line(0, i).trim_end().to_owned()).collect();
        assert_eq!(written.lines().collect::<Vec<_>>(), expected);
        drop(thread);
    }
}
