//! Gets one access token with the client_credentials grant and prints it as
//! JSON on stdout; on failure prints one line on stderr and exits non-zero.
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
//! `--token-url`.

mod common;

use std::process::ExitCode;

use clap::Parser;
use connector_client::TokenSource;

/// Gets one access token and prints {"access_token": ..., "expires_in": ...}.
#[derive(Debug, Parser)]
#[command(name = "get-token")]
struct Args {
    #[command(flatten)]
    credentials: common::Credentials,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Args = common::parse_args("get-token");
    let token = match args.credentials.source().await {
        Ok(source) => source.token().await,
        Err(e) => Err(e),
    };
    match token {
        Ok(token) => {
            let out = serde_json::json!({
                "access_token": token.secret().as_str(),
                "expires_in": token.expires_in().as_secs(),
            });
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("get-token: {}", common::one_line(&e));
            ExitCode::FAILURE
        }
    }
}
