//! `bootstrap`: oidc-server in AWS Lambda (custom runtime `provided.al2023`).
//! Build with `cargo build --release -p oidc-server --features lambda --bin bootstrap`.

use std::process::ExitCode;
use std::sync::Arc;

use oidc_server::config::{Config, Overrides};
use oidc_server::signing::KeySetPolling;
use oidc_server::{lambda, AppState, ServiceContext};

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    match std::env::var(lambda::rotation::HANDLER_ENV).as_deref() {
        Ok("rotation") => return Box::pin(rotate()).await,
        Ok("http") | Err(_) => {}
        Ok(other) => {
            return Err(format!(
                "{}={other:?}: use \"rotation\" or \"http\"",
                lambda::rotation::HANDLER_ENV
            )
            .into())
        }
    }
    let issuer = match std::env::var(lambda::ISSUER_PARAMETER_ENV) {
        Ok(name) => Some(lambda::issuer_from_parameter(&name).await?),
        Err(_) => None,
    };
    let overrides = Overrides { listen: None, issuer };
    let path = std::env::var_os(oidc_server::config::CONFIG_ENV).map(std::path::PathBuf::from);
    let config = Arc::new(Config::load(path.as_deref(), std::env::vars(), &overrides)?);
    let _logs = oidc_server::telemetry::init(&config.log);
    // Every execution environment would have a memory of its own.
    if let Some(problem) = config.fleet_replay_problem() {
        return Err(format!("Lambda mode cannot start: {problem}").into());
    }
    // An environment runs only during invocations: the key set is read at
    // the start of one when the last read is older than the poll interval.
    let context = ServiceContext {
        key_set_polling: KeySetPolling::OnInvocation,
        ..ServiceContext::default()
    };
    let state = AppState::start(config, &context).await?;
    lambda::serve(state).await
}

/// The key set's rotation function (JSON logs, like the service's).
async fn rotate() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let log = oidc_server::config::LogConfig {
        format: oidc_server::config::LogFormat::Json,
        ..Default::default()
    };
    let _logs = oidc_server::telemetry::init(&log);
    lambda::rotation::serve().await
}
