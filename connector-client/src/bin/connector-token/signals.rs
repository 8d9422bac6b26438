//! The signals the agent acts on, received through Tokio.

use std::future::poll_fn;
use std::task::Poll;

use rustix::process::Signal;
use tokio::signal::unix::{signal, SignalKind};

/// Signals that stop the agent.
pub(crate) const STOP: [Signal; 2] = [Signal::TERM, Signal::INT];

/// Signals `exec` passes on to its command: the stopping ones, and those a
/// program may use for its own purposes (reload, dump state).
pub(crate) const FORWARDED: [Signal; 6] = [
    Signal::TERM,
    Signal::INT,
    Signal::QUIT,
    Signal::HUP,
    Signal::USR1,
    Signal::USR2,
];

/// Handlers for a set of signals; registered when made, so none is missed
/// from then on.
pub(crate) struct Signals(Vec<(Signal, tokio::signal::unix::Signal)>);

impl Signals {
    pub(crate) fn new(signals: &[Signal]) -> std::io::Result<Self> {
        signals
            .iter()
            .map(|&s| Ok((s, signal(SignalKind::from_raw(s.as_raw()))?)))
            .collect::<std::io::Result<_>>()
            .map(Self)
    }

    /// The next signal received.
    pub(crate) async fn recv(&mut self) -> Signal {
        poll_fn(|cx| {
            for (which, stream) in &mut self.0 {
                if stream.poll_recv(cx).is_ready() {
                    return Poll::Ready(*which);
                }
            }
            Poll::Pending
        })
        .await
    }
}

/// `SIGTERM`, `SIGINT`, ...
pub(crate) fn name(signal: Signal) -> &'static str {
    match signal {
        Signal::TERM => "SIGTERM",
        Signal::INT => "SIGINT",
        Signal::QUIT => "SIGQUIT",
        Signal::HUP => "SIGHUP",
        Signal::USR1 => "SIGUSR1",
        Signal::USR2 => "SIGUSR2",
        _ => "signal",
    }
}

/// The exit status of a process that ends because of `signal`: 128 + its number.
pub(crate) fn exit_status(signal: i32) -> u8 {
    u8::try_from(128 + signal).unwrap_or(u8::MAX)
}
