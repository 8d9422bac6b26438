//! Throttling of failed client authentication. A correct credential is never
//! refused because of failures someone else caused for the same client id
//! (ids are not secret: they are `sub` and `client_id` in every token):
//!
//! - **per peer**, before authentication: a peer (an IPv4 address, an IPv6
//!   /64) with `limit` failures within `window` is answered 429 until the
//!   window has passed, whatever it presents: the hard limit against floods;
//! - **per claimed client**, after authentication: once a registered client
//!   id has `limit` failures within `window`, further *failures* for it are
//!   answered 429 instead of 401; a request that proves the client is served.
//!
//! Only registered client ids are tracked (an attacker cannot grow the table
//! with made-up ids), and the table is bounded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Most subjects tracked at once; beyond it, new ones are not tracked until
/// old windows expire (failing open on the throttle, never on authentication).
const MAX_SUBJECTS: usize = 100_000;

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

    fn windows(&self) -> MutexGuard<'_, HashMap<Subject, Window>> {
        // The counters are plain numbers; a panic elsewhere leaves them valid.
        self.windows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How long `subject` stays limited, if it is.
    fn limited(
        &self,
        windows: &HashMap<Subject, Window>,
        subject: &Subject,
        now: Instant,
    ) -> Option<Duration> {
        let w = windows.get(subject)?;
        let ends = w.started + self.window;
        (w.failures >= self.limit && ends > now).then(|| ends - now)
    }

    /// `Err(retry_after)` if the peer (its [`throttle key`](crate::peer::Peer::throttle_key))
    /// is over its limit: refuse before authenticating.
    pub fn check_peer(&self, peer: Option<IpAddr>) -> Result<(), Duration> {
        let Some(peer) = peer else { return Ok(()) };
        match self.limited(&self.windows(), &Subject::Peer(peer), Instant::now()) {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// Counts a failed authentication for the (registered) claimed client and
    /// the peer. `Err(retry_after)` when the client is now over its limit:
    /// answer this failure 429 rather than 401.
    pub fn failed(&self, client: Option<&str>, peer: Option<IpAddr>) -> Result<(), Duration> {
        let now = Instant::now();
        let mut windows = self.windows();
        if windows.len() >= MAX_SUBJECTS {
            windows.retain(|_, w| w.started + self.window > now);
        }
        let client = client.map(|c| Subject::Client(c.to_owned()));
        // Over the limit already: this failure is one too many.
        let over = client.as_ref().and_then(|c| self.limited(&windows, c, now));
        for subject in client.iter().cloned().chain(peer.map(Subject::Peer)) {
            if windows.len() >= MAX_SUBJECTS && !windows.contains_key(&subject) {
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
        match over {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_limit_the_peer_and_the_failures_of_a_client_never_its_success() {
        let t = Throttle::new(3, Duration::from_secs(60));
        let attacker = Some(IpAddr::from([10, 0, 0, 1]));
        for _ in 0..3 {
            assert!(t.failed(Some("c"), attacker).is_ok());
        }
        // The flooding peer is refused before it authenticates...
        assert!(t.check_peer(attacker).is_err());
        // ...another peer is not: whether it is served depends on its credential.
        let connector = Some(IpAddr::from([10, 0, 0, 2]));
        assert!(t.check_peer(connector).is_ok());
        assert!(t.check_peer(None).is_ok());
        // A failure for the over-limit client is answered 429, from anywhere.
        let wait = t
            .failed(Some("c"), Some(IpAddr::from([10, 0, 0, 3])))
            .unwrap_err();
        assert!(wait <= Duration::from_secs(60) && wait > Duration::from_secs(58));
        // Other clients are untouched.
        assert!(t.failed(Some("other"), Some(IpAddr::from([10, 0, 0, 4]))).is_ok());
    }
}
