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
//! Never lossy: when [`Limits::capacity`] bytes are waiting (stderr is
//! slower than the requests), a request waits for room (backpressure)
//! instead of a line being dropped. [`LogWriter::wait_written`] waits until
//! everything queued before it is written (Lambda calls it at the end of
//! each invocation, before the environment may be frozen), and closing
//! writes everything out; a line logged after closing is written directly.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the writer lets lines gather after the first one arrives.
pub const LINGER: Duration = Duration::from_millis(5);

/// What the buffer holds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes waiting at most; beyond, loggers wait for room.
    pub capacity: usize,
    /// Bytes waiting that make the writer start before its linger is over.
    pub batch: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            capacity: 8 << 20,
            batch: 256 << 10,
        }
    }
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
    /// Loggers wait here for room, flushes for their lines to be written.
    progress: Condvar,
    limits: Limits,
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
    /// The writer waits for the first line (a logger must wake it).
    writer_idle: bool,
    /// Someone waits for the writer (room or a flush): no lingering.
    waiting: usize,
    /// Closing was asked for: the writer writes what is queued, then stops.
    closed: bool,
    /// The writer has stopped: loggers write directly.
    finished: bool,
}

impl LogWriter {
    /// Starts the writer thread (named `name`) writing to `output`.
    pub fn spawn(name: &str, output: Output, limits: Limits) -> std::io::Result<(Self, WriterThread)> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            progress: Condvar::new(),
            limits,
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

    /// Waits until every line queued before this call is written.
    pub fn wait_written(&self) {
        let shared = &self.shared;
        let mut state = shared.lock();
        let target = state.queued;
        if state.written >= target || state.finished {
            return;
        }
        state.waiting += 1;
        shared.work.notify_one();
        while state.written < target && !state.finished {
            state = shared
                .progress
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.waiting -= 1;
    }

    /// Queues one formatted line (or event: whatever one `write` carries).
    fn queue(&self, line: &[u8]) {
        let shared = &self.shared;
        let mut state = shared.lock();
        // Room is waited for only when something is waiting to be written:
        // a line longer than the whole capacity still goes through, alone.
        while !state.finished
            && !state.pending.is_empty()
            && state.pending.len() + line.len() > shared.limits.capacity
        {
            state.waiting += 1;
            shared.work.notify_one();
            state = shared
                .progress
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.waiting -= 1;
        }
        if state.finished {
            drop(state);
            // The writer thread is gone (shutdown): write it ourselves.
            let mut output = shared.output.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = output.write_all(line);
            let _ = output.flush();
            return;
        }
        state.pending.extend_from_slice(line);
        state.queued += line.len() as u64;
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

    fn run(&self) {
        let mut batch = Vec::new();
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
                state.finished = true;
                self.progress.notify_all();
                return;
            }
            std::mem::swap(&mut batch, &mut state.pending);
            // The drained buffer keeps at most a batch's worth of capacity.
            state.pending.shrink_to(self.limits.batch);
            // Taken before the buffer is let go, so that nothing written
            // directly after closing can overtake this batch.
            let mut output = self.output.lock().unwrap_or_else(PoisonError::into_inner);
            drop(state);
            // A failing stderr cannot be reported anywhere: the bytes count
            // as written so that nobody waits for them forever.
            let _ = output.write_all(&batch);
            let _ = output.flush();
            drop(output);
            let mut state = self.lock();
            state.written += batch.len() as u64;
            if state.waiting > 0 {
                self.progress.notify_all();
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
    }
}

impl Drop for WriterThread {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.work.notify_one();
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

    /// A writer over a fresh `Sink` (or `sink`, when given one).
    fn start(sink: Sink, limits: Limits) -> (Sink, LogWriter, WriterThread) {
        let (writer, thread) = LogWriter::spawn("test-log-writer", Box::new(sink.clone()), limits).unwrap();
        (sink, writer, thread)
    }

    fn line(thread: usize, i: usize) -> String {
        format!("thread {thread} line {i}\n")
    }

    #[test]
    fn every_line_is_written_whole_and_in_order_under_backpressure() {
        let sink = Sink {
            delay: Duration::from_millis(1),
            ..Sink::default()
        };
        // Room for a few lines only: loggers keep waiting for the slow sink.
        let limits = Limits {
            capacity: 64,
            batch: 32,
        };
        let (sink, writer, thread) = start(sink, limits);
        let loggers: Vec<_> = (0..4)
            .map(|t| {
                let mut writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..200 {
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
    }

    #[test]
    fn lines_are_batched_into_few_writes() {
        let (sink, mut writer, thread) = start(Sink::default(), Limits::default());
        for i in 0..1000 {
            writer.write_all(line(0, i).as_bytes()).unwrap();
        }
        writer.wait_written();
        let writes = *sink.writes.lock().unwrap();
        assert!(writes < 100, "{writes} writes for 1000 lines");
        assert_eq!(sink.text().lines().count(), 1000);
        drop(thread);
    }

    #[test]
    fn flush_returns_once_earlier_lines_are_written() {
        let (sink, mut writer, _thread) = start(Sink::default(), Limits::default());
        writer.write_all(b"one\n").unwrap();
        writer.wait_written();
        assert_eq!(sink.text(), "one\n");
        // Nothing queued: returns at once.
        let started = Instant::now();
        writer.wait_written();
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
        writer.wait_written();
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
        let limits = Limits {
            capacity: 16,
            batch: 8,
        };
        let (mut writer, _thread) = LogWriter::spawn("test-log-writer", Box::new(output), limits).unwrap();
        writer.write_all(b"lost with the writer\n").unwrap();
        writer.wait_written();
        // The buffer is far smaller than what follows: with no writer left,
        // a logger waiting for room would wait forever.
        for i in 0..20 {
            writer.write_all(line(0, i).as_bytes()).unwrap();
        }
        assert_eq!(sink.text().lines().count(), 20);
    }

    #[test]
    fn a_line_longer_than_the_capacity_goes_through() {
        let limits = Limits {
            capacity: 8,
            batch: 4,
        };
        let (sink, mut writer, thread) = start(Sink::default(), limits);
        writer.write_all(b"a line of more than eight bytes\n").unwrap();
        writer.write_all(b"next\n").unwrap();
        drop(thread);
        assert_eq!(sink.text(), "a line of more than eight bytes\nnext\n");
    }
}
