//! What a test's code wrote, kept in memory: a writer whose clones share one
//! buffer, and the tracing events written while a future ran.
//!
//! Like `fixture.rs`, this one file serves two test suites: oidc-server's own
//! tests compile it as `support::capture`, the end-to-end package (`e2e`)
//! compiles it with `#[path]` as `e2e::capture`. It may only use what both
//! packages depend on (tracing).

use std::future::Future;
use std::sync::{Arc, Mutex};

/// An in-memory writer; its clones write into one buffer.
#[derive(Clone, Debug, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// What was written so far, as text.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().expect("a writer panicked").clone();
        String::from_utf8(bytes).expect("UTF-8 output")
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("a writer panicked").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `f` run with the subscriber that `subscriber` builds over a [`Captured`]
/// writer as this thread's default, and the text it wrote. Only this
/// thread's events are caught: a server under test must run its tasks on
/// the test's current-thread runtime.
pub async fn traced<S, F>(subscriber: impl FnOnce(Captured) -> S, f: F) -> (F::Output, String)
where
    S: tracing::Subscriber + Send + Sync + 'static,
    F: Future,
{
    let captured = Captured::default();
    let guard = tracing::subscriber::set_default(subscriber(captured.clone()));
    let output = f.await;
    drop(guard);
    (output, captured.text())
}
