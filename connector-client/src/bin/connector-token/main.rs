//! `connector-token`: a fresh connector identity token for programs in any
//! language.
//!
//! - `connector-token get ...` prints one token as JSON;
//! - `connector-token agent --out PATH ...` keeps PATH holding a fresh token
//!   until SIGTERM or SIGINT;
//! - `connector-token exec [--out PATH] ... -- COMMAND ARGS...` does the same
//!   while COMMAND runs with `CONNECTOR_TOKEN_FILE` set, forwards signals to
//!   it and exits with its status;
//! - `connector-token proof --htm GET --htu URL --dpop-key PATH ...` prints
//!   one DPoP proof.
//!
//! Every flag can also come from an environment variable (see `--help`).
//! Exit status 2 is a usage or configuration error, reported on one line
//! before anything is written. See `docs/connector-token.md`.
//!
//! Run: `cargo run -p connector-client --bin connector-token -- agent --help`

mod agent;
mod exec;
mod proof;
mod signals;

use std::process::ExitCode;

use connector_client::cli;
// The flags are defined in the library, where the documentation tests
// parse documented command lines with them.
use connector_client::cli::connector_token::{Cli, Command, LogFormat, PROGRAM};
use tracing_subscriber::EnvFilter;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Cli = cli::parse_args(PROGRAM);
    init_logging(args.log_format);
    match args.command {
        Command::Get(get) => cli::get(PROGRAM, &get.credentials).await,
        Command::Agent(agent) => agent::run(agent).await,
        Command::Exec(exec) => exec::run(exec).await,
        Command::Proof(proof) => proof::run(&proof),
    }
}

/// Logs to stderr (stdout is `get`'s output, and the command's under `exec`).
/// The cache's own "refreshed" line is left out by default: the token file's
/// line says the same and more, so each refresh is one line.
fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,connector_client::cache=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
