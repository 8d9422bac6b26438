//! Throttling of failed client authentication, per registered client and per
//! peer address: after `limit` failures within `window`, further attempts are
//! answered 429 until the window has passed.
//!
//! Only registered client ids are tracked (an attacker cannot grow the table
//! with made-up ids), and the peer table is bounded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most peers tracked at once; beyond it, new peers are not tracked until old
/// windows expire (failing open on the throttle, never on authentication).
const MAX_PEERS: usize = 100_000;

/// Who failed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    Client(String),
    Peer(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// Failed-authentication counters.
#[derive(Debug)]
pub struct Throttle {
    limit: u32,
    window: Duration,
    windows: Mutex<HashMap<Subject, Window>>,
}

impl Throttle {
    /// At most `limit` failures per `window`.
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            windows: Mutex::new(HashMap::new()),
        }
    }

    fn subjects(client: Option<&str>, peer: Option<IpAddr>) -> impl Iterator<Item = Subject> {
        client
            .map(|c| Subject::Client(c.to_owned()))
            .into_iter()
            .chain(peer.map(Subject::Peer))
    }

    /// `Err(retry_after)` if the (registered) client or the peer is throttled.
    pub fn check(&self, client: Option<&str>, peer: Option<IpAddr>) -> Result<(), Duration> {
        let now = Instant::now();
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let mut wait = Duration::ZERO;
        for subject in Self::subjects(client, peer) {
            if let Some(w) = windows.get(&subject) {
                let ends = w.started + self.window;
                if w.failures >= self.limit && ends > now {
                    wait = wait.max(ends - now);
                }
            }
        }
        if wait.is_zero() {
            Ok(())
        } else {
            Err(wait)
        }
    }

    /// Counts a failure for the (registered) client and the peer.
    pub fn failed(&self, client: Option<&str>, peer: Option<IpAddr>) {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= MAX_PEERS {
            windows.retain(|_, w| w.started + self.window > now);
        }
        for subject in Self::subjects(client, peer) {
            if windows.len() >= MAX_PEERS && !windows.contains_key(&subject) {
                continue;
            }
            let w = windows.entry(subject).or_insert(Window {
                started: now,
                failures: 0,
            });
            if w.started + self.window <= now {
                *w = Window {
                    started: now,
                    failures: 0,
                };
            }
            w.failures = w.failures.saturating_add(1);
        }
    }

    /// Clears the client's failures after a success (the peer's stay).
    pub fn succeeded(&self, client: &str) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        windows.remove(&Subject::Client(client.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttles_after_the_limit() {
        let t = Throttle::new(3, Duration::from_secs(60));
        let peer = Some(IpAddr::from([10, 0, 0, 1]));
        for _ in 0..3 {
            assert!(t.check(Some("c"), peer).is_ok());
            t.failed(Some("c"), peer);
        }
        let wait = t.check(Some("c"), None).unwrap_err();
        assert!(wait <= Duration::from_secs(60) && wait > Duration::from_secs(58));
        assert!(t.check(None, peer).is_err());
        assert!(t.check(Some("other"), Some(IpAddr::from([10, 0, 0, 2]))).is_ok());
        t.succeeded("c");
        assert!(t.check(Some("c"), None).is_ok());
        assert!(t.check(Some("c"), peer).is_err(), "the peer stays throttled");
    }
}
