//! The token service for connector identity tokens.
//!
//! An OAuth 2.0 token endpoint (`client_credentials`, and the RFC 8693
//! token exchange of an upstream identity token: AWS STS, Kubernetes,
//! SPIFFE) that issues short-lived RFC 9068 JWT access tokens, with the
//! discovery document and JWKS that verifiers need, health, readiness and
//! Prometheus metrics.
//!
//! [`app`] builds the axum router from an [`AppState`], so tests drive it
//! without a socket; [`run`] serves it until a shutdown signal; the binary's
//! `main` only parses the command line and calls into [`cli`].
//!
//! # Public interface
//!
//! What the binaries (`oidc-server`, `bootstrap`), the tests and an
//! embedder use; everything else is private to the crate.
//!
//! | item | job |
//! |---|---|
//! | [`app`], [`metrics_app`], [`run`], [`run_metrics`], [`shutdown_signal`] | the routers, and serving them on a listener until a shutdown signal |
//! | [`AppState`] ([`AppStateBuilder`]), [`AppState::start`] ([`StartError`]), [`ServiceContext`], [`KeySetPolling`] | a running service's state, and its start from a [`Config`] |
//! | [`config`] | layered configuration, validated once |
//! | [`proxies`] | the trusted proxies and how a request's client is found behind them |
//! | [`connectors`] | the registry of connectors, secret digests |
//! | [`keyset`] | the key set: built from `[signing]`; the shared set in Secrets Manager (document, rules, rotation, poller, KMS keys) |
//! | [`replay`] | one-time use across the fleet: the DynamoDB (or in-memory) replay store |
//! | [`throttle`] | 429 after repeated authentication failures |
//! | [`metrics`], [`telemetry`] | Prometheus metrics; logging through a bounded writer |
//! | [`cli`] | the `oidc-server` command line |
//! | `lambda` | the Lambda front and the rotation function (feature `lambda`) |
//!
//! # Inside
//!
//! Each top-level module imports only the ones before it here (the e2e
//! test `boundaries::crate_modules_have_no_cycle` checks that none import
//! each other around a cycle): `proxies`; `config`; `telemetry`, `metrics`,
//! `audit`; `context` (`ServiceContext`); `keyset` and `replay`, started
//! with it; `throttle`; `readiness` (backend health for `/readyz`);
//! `connectors`, `form`, `auth` (client authentication, and upstream
//! identity tokens in `auth::federated`); `state`
//! (`AppState`); `start` (`AppState::start`); `routes` (the handlers;
//! `routes::token` holds the token endpoint's RFC 6749 refusals and the
//! token exchange grant) and
//! `serve` (the listener and its limits); `lambda` and `cli`.

mod audit;
mod auth;
pub mod cli;
pub mod config;
pub mod connectors;
mod context;
mod form;
// The fuzz targets' entry points: only in the fuzz build (fuzz/run.sh and
// fuzz/.cargo/config.toml pass `--cfg fuzzing`), never in a release binary.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
pub mod keyset;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod metrics;
pub mod proxies;
mod readiness;
pub mod replay;
mod routes;
mod serve;
mod start;
mod state;
pub mod telemetry;
pub mod throttle;

use std::future::Future;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tower_http::timeout::TimeoutLayer;

pub use config::Config;
pub use context::{KeySetPolling, ServiceContext};
pub use start::StartError;
pub use state::{AppState, AppStateBuilder};

/// The router with every public endpoint (discovery, JWKS, token, health).
/// `/metrics` is not among them: it has a listener of its own ([`metrics_app`]).
pub fn app(state: AppState) -> Router {
    let timeout = state.config.http.request_timeout;
    Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(routes::discovery::configuration),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(routes::discovery::configuration),
        )
        .route("/.well-known/jwks.json", get(routes::discovery::jwks))
        .route("/token", post(routes::token::token))
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .layer(metrics::HttpMetricsLayer::new(state.metrics.clone()))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .with_state(state)
}

/// The router of the metrics listener (`[metrics] listen`): `GET /metrics`.
pub fn metrics_app(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(routes::health::metrics))
        .with_state(state)
}

/// The listener limits of `state`'s configuration.
fn limits(state: &AppState) -> serve::Limits {
    let http = &state.config.http;
    serve::Limits {
        header_read_timeout: http.header_read_timeout,
        max_connections: http.max_connections,
        max_connections_per_peer: http.max_connections_per_peer,
        max_connection_lifetime: http.max_connection_lifetime,
        trusted_proxies: http.trusted_proxies.clone(),
        drain: http.request_timeout + Duration::from_secs(1),
    }
}

/// Serves `state` on `listener` until `shutdown` completes, then finishes the
/// requests in flight, under the listener limits of `[http]` (header read
/// timeout, connection caps and lifetime).
pub async fn run(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = limits(&state);
    serve::serve(app(state), listener, limits, shutdown).await
}

/// Serves `GET /metrics` on `listener` until `shutdown` completes.
pub async fn run_metrics(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = serve::Limits {
        max_connections: 64,
        ..limits(&state)
    };
    serve::serve(metrics_app(state), listener, limits, shutdown).await
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutdown signal received; finishing requests in flight");
}
