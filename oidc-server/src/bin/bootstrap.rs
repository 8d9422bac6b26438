//! `bootstrap`: oidc-server in AWS Lambda (custom runtime `provided.al2023`).
//! Build with `cargo build --release -p oidc-server --features lambda --bin bootstrap`;
//! run locally under `cargo lambda watch` (docs/deploy.md, "Run the Lambda locally").

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use oidc_server::config::{Config, Overrides};
use oidc_server::lambda::rotation::RotationFunction;
use oidc_server::telemetry::LogGuard;
use oidc_server::KeySetPolling;
use oidc_server::{lambda, AppState, ServiceContext};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let started = Instant::now();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(started)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What this environment serves: the token service, or the key set's
/// rotation function (`OIDC_SERVER_HANDLER=rotation`).
enum Function {
    Http(AppState),
    Rotation(Box<RotationFunction>),
}

async fn run(started: Instant) -> Result<(), BoxError> {
    let mut logs = None;
    // An error before the first invocation is the environment's init
    // error: Lambda hears of it, the waiting invocation fails at once.
    let function = match init(&mut logs).await {
        Ok(function) => function,
        Err(e) => {
            lambda::runtime_api::report_init_error(e.as_ref()).await;
            return Err(e);
        }
    };
    // What Lambda reports as the init duration, as the environment saw it.
    tracing::info!(
        init_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "environment initialized"
    );
    match function {
        Function::Http(state) => lambda::serve(state).await,
        Function::Rotation(function) => lambda::rotation::serve(*function).await,
    }
}

/// Everything before the first invocation; `logs` keeps the log writer
/// (flushed when it drops).
async fn init(logs: &mut Option<LogGuard>) -> Result<Function, BoxError> {
    match std::env::var(lambda::rotation::HANDLER_ENV).as_deref() {
        Ok("rotation") => {
            // JSON logs, like the service's.
            let log = oidc_server::config::LogConfig {
                format: oidc_server::config::LogFormat::Json,
                ..Default::default()
            };
            *logs = Some(oidc_server::telemetry::init(&log));
            return Ok(Function::Rotation(Box::new(lambda::rotation::init().await?)));
        }
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
    *logs = Some(oidc_server::telemetry::init(&config.log));
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
    Ok(Function::Http(AppState::start(config, &context).await?))
}
