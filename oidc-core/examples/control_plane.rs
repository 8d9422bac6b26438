//! An example control plane: connectors poll it for work, and every poll must
//! carry an access token that it verifies through the issuer's discovery
//! document and JWKS.
//!
//! Run:
//!
//! ```sh
//! cargo run -p oidc-core --example control_plane --features remote,axum -- \
//!     --issuer http://127.0.0.1:8080 --audience https://api.example.com [--listen 127.0.0.1:9090]
//! ```
//!
//! Then `GET /v1/actions` with `Authorization: Bearer <token>` answers
//! `200 {"connector": "<sub>", "actions": [{"id": "...", "kind": "..."}]}`, or
//! `401` with `WWW-Authenticate: Bearer error="invalid_token"` (or a bare
//! `Bearer` without credentials) and an empty body. Why a token was refused is
//! logged (`RUST_LOG=debug` for everything).

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use serde::Serialize;
use tracing_subscriber::EnvFilter;

use oidc_core::axum::{shared_verifier, SharedVerifier, VerifiedToken};
use oidc_core::verify::RemoteJwks;
use oidc_core::{AccessTokenClaims, Policy};

/// Verifies connector tokens and hands out pending actions.
#[derive(Debug, Parser)]
struct Args {
    /// The token issuer: the exact `iss` of accepted tokens, and where its
    /// OpenID Connect discovery document is found.
    #[arg(long, env = "CONTROL_PLANE_ISSUER")]
    issuer: String,
    /// An accepted audience (`aud`); repeat for several.
    #[arg(long = "audience", env = "CONTROL_PLANE_AUDIENCE", required = true)]
    audiences: Vec<String>,
    /// Address to listen on.
    #[arg(long, env = "CONTROL_PLANE_LISTEN", default_value = "127.0.0.1:9090")]
    listen: SocketAddr,
}

/// The answer to a poll.
#[derive(Debug, Serialize)]
struct Actions {
    /// The verified `sub`.
    connector: String,
    actions: Vec<Action>,
}

#[derive(Debug, Serialize)]
struct Action {
    id: String,
    kind: &'static str,
}

/// The service; public so that tests can drive it without a socket.
pub fn app(verifier: SharedVerifier) -> Router {
    Router::new()
        .route("/v1/actions", get(pending_actions))
        .with_state(verifier)
}

async fn pending_actions(VerifiedToken(token): VerifiedToken<AccessTokenClaims>) -> Json<Actions> {
    let claims = token.claims();
    tracing::info!(connector = %claims.sub, jti = %claims.jti, kid = token.kid(), "poll");
    // A real control plane would read a queue; a fixed list shows the shape.
    let actions = [("collect_inventory", 1), ("report_health", 2)]
        .into_iter()
        .map(|(kind, n)| Action {
            id: format!("{}-{n}", claims.sub),
            kind,
        })
        .collect();
    Json(Actions {
        connector: claims.sub.clone(),
        actions,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("control_plane: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let keys = RemoteJwks::discovery(args.issuer.clone()).build()?;
    // Warm the cache so that a wrong issuer shows up now; a token service that
    // is not up yet is not fatal: lookups fetch again (once per cooldown).
    match keys.refresh().await {
        Ok(()) => tracing::info!(keys = keys.status().keys, issuer = %args.issuer, "JWKS loaded"),
        Err(error) => tracing::warn!(%error, "JWKS not loaded yet"),
    }
    let policy = Policy::builder(args.issuer, args.audiences).build()?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(address = %listener.local_addr()?, "control plane listening");
    axum::serve(listener, app(shared_verifier(policy, keys)))
        .with_graceful_shutdown(shutdown())
        .await?;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
