//! `oidc-server`: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    ExitCode::from(oidc_server::cli::run(oidc_server::cli::Cli::parse()))
}
