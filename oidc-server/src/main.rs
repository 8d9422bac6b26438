//! `oidc-server`: parse the command line and hand over to the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(oidc_server::cli::run(oidc_server::cli::Cli::parse_args()))
}
