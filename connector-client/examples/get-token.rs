//! Gets one access token (client_credentials grant, or a token exchange) and prints it as
//! JSON on stdout; on failure prints one line on stderr and exits non-zero
//! (2 for a usage or configuration error, 1 when the request failed). The
//! same as `connector-token get`, on the same flags (`connector_client::cli`).
//!
//! Run:
//!
//! ```sh
//! cargo run -p connector-client --example get-token -- \
//!     --token-url http://127.0.0.1:8080/token --client-id demo-connector \
//!     --client-secret-file secret.txt [--auth-method basic|post] \
//!     [--audience https://api.example.com] [--scope poll]
//! ```
//!
//! `--private-key key.pem` authenticates with private_key_jwt instead of a
//! secret; `--aws-iam [--sts-region R]` with the IAM credentials of the
//! standard AWS chain (ECS task role, instance profile, environment); `--issuer URL` finds the token endpoint by discovery instead of
//! `--token-url`. `--subject-token aws-sts[:AUDIENCE]` or
//! `--subject-token-file PATH` exchange a platform's identity token for one
//! (RFC 8693 token exchange, no client id or secret). Every flag can come
//! from the environment instead (`--help`).

use std::process::ExitCode;

use clap::Parser;
use connector_client::cli;

/// Gets one access token and prints {"access_token": ..., "expires_in": ...}.
#[derive(Debug, Parser)]
#[command(name = "get-token")]
struct Args {
    #[command(flatten)]
    credentials: cli::Credentials,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Args = cli::parse_args("get-token");
    cli::get("get-token", &args.credentials).await
}
