//! A polling agent: asks the control plane for work every few seconds with
//! its access token, which a CachedTokenSource keeps fresh in the background.
//! Logs each poll and each token refresh.
//!
//! Run (with the token server's embedded default and the example control plane):
//!
//! ```sh
//! cargo run -p oidc-server
//! cargo run -p oidc-core --example control_plane --features remote,axum -- \
//!     --issuer http://127.0.0.1:8080 --audience https://api.example.com
//! cargo run -p connector-client --example poller -- \
//!     --control-plane http://127.0.0.1:9090 --token-url http://127.0.0.1:8080/token \
//!     --client-id demo-connector --client-secret-file secret.txt \
//!     --audience https://api.example.com [--interval 5]
//! ```
//!
//! `RUST_LOG=debug` shows the token requests and the 401 retries too.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use connector_client::{cli, http_client_builder, BearerAuth, CachedTokenSource};
use reqwest_middleware::ClientWithMiddleware;
use serde::Deserialize;
use tracing_subscriber::EnvFilter;

/// Polls a control plane for actions with a connector access token.
#[derive(Debug, Parser)]
#[command(name = "poller")]
struct Args {
    /// Base URL of the control plane (`/v1/actions` is appended).
    #[arg(long)]
    control_plane: String,
    /// Seconds between polls.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    interval: u64,
    #[command(flatten)]
    credentials: cli::Credentials,
}

/// The control plane's answer.
#[derive(Debug, Deserialize)]
struct Actions {
    connector: String,
    actions: Vec<Action>,
}

#[derive(Debug, Deserialize)]
struct Action {
    id: String,
    kind: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Args = cli::parse_args("poller");
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("poller: {}", cli::one_line(&*e));
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let tokens = CachedTokenSource::new(args.credentials.source().await?)?;
    let http = http_client_builder()?.timeout(Duration::from_secs(10)).build()?;
    let client = reqwest_middleware::ClientBuilder::new(http)
        .with(BearerAuth::new(tokens.clone()))
        .build();
    let url = format!("{}/v1/actions", args.control_plane.trim_end_matches('/'));
    tracing::info!(%url, interval_s = args.interval, "polling");

    let stop = shutdown();
    tokio::pin!(stop);
    let mut ticks = tokio::time::interval(Duration::from_secs(args.interval));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => poll(&client, &url).await,
            () = &mut stop => {
                tracing::info!("stopping");
                return Ok(());
            }
        }
    }
}

/// Completes on Ctrl-C, or on SIGTERM (how containers are stopped).
async fn shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn poll(client: &ClientWithMiddleware, url: &str) {
    let response = match client.get(url).send().await {
        Ok(response) => response,
        Err(e) => {
            // No token (the cause is in the message) or no connection.
            tracing::warn!(error = %cli::one_line(&e), "poll failed");
            return;
        }
    };
    let status = response.status();
    if !status.is_success() {
        let challenge = response
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        tracing::warn!(status = status.as_u16(), www_authenticate = %challenge, "poll refused");
        return;
    }
    match response.json::<Actions>().await {
        Ok(answer) => {
            tracing::info!(connector = %answer.connector, actions = answer.actions.len(), "poll ok");
            for action in answer.actions {
                tracing::info!(id = %action.id, kind = %action.kind, "action received");
            }
        }
        Err(e) => tracing::warn!(error = %e, "poll answer is not the expected JSON"),
    }
}
