//! The `oidc-server` binary run as a server process.

use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStdout, Command, Stdio};

/// A server process started by [`serve`].
pub(crate) struct Serving {
    /// The process; its stderr is piped, for the test to read or not.
    pub(crate) child: Child,
    /// Where it listens (`127.0.0.1:PORT`), from the first line it printed.
    pub(crate) addr: String,
    /// The rest of its stdout: dropping it closes the pipe.
    pub(crate) stdout: Lines<BufReader<ChildStdout>>,
}

/// Starts the binary with `toml` as its whole configuration
/// (`OIDC_SERVER_CONFIG_TOML`), the issuer `http://127.0.0.1:1`, a free
/// loopback port, `RUST_LOG=rust_log`, stdout and stderr piped, and reads
/// the address it listens on from its first line.
pub(crate) fn serve(toml: &str, rust_log: &str) -> Serving {
    let mut child = Command::new(env!("CARGO_BIN_EXE_oidc-server"))
        .env_remove("OIDC_SERVER_CONFIG")
        .env("OIDC_SERVER_CONFIG_TOML", toml)
        .env("OIDC_SERVER__ISSUER", "http://127.0.0.1:1")
        .env("OIDC_SERVER__LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", rust_log)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = stdout.next().and_then(Result::ok).unwrap_or_default();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned);
    match addr {
        Some(addr) => Serving { child, addr, stdout },
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no address in the server's first line {line:?}");
        }
    }
}
