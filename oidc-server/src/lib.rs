//! The token service for connector identity tokens.
//!
//! An OAuth 2.0 token endpoint (`client_credentials`) that issues short-lived
//! RFC 9068 JWT access tokens, with the discovery document and JWKS that
//! verifiers need, health, readiness and Prometheus metrics.
//!
//! [`app`] builds the axum router from an [`AppState`], so tests drive it
//! without a socket; [`run`] serves it until a shutdown signal; the binary's
//! `main` only parses the command line and calls into [`cli`].
//!
//! | module | job |
//! |---|---|
//! | [`config`] | layered configuration, validated once |
//! | [`connectors`] | the registry of connectors, secret digests |
//! | [`auth`] | client authentication (secret, `private_key_jwt`, `aws_iam`) |
//! | [`replay`] | one-time use across the fleet: the DynamoDB (or in-memory) replay store |
//! | [`throttle`] | 429 after repeated authentication failures |
//! | [`routes`] | the HTTP handlers |
//! | [`signing`] | builds the key set from `[signing]` |
//! | [`health`] | whether the signer and the replay store work, for `/readyz` |
//! | [`audit`], [`metrics`], [`telemetry`] | what operators see |

pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod connectors;
pub mod error;
pub mod form;
pub mod health;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod metrics;
pub mod replay;
pub mod routes;
pub mod signing;
pub mod state;
pub mod telemetry;
pub mod throttle;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tower_http::timeout::TimeoutLayer;

pub use config::Config;
pub use state::{AppState, ServiceContext, StartError};

/// The router with every endpoint.
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
        .route("/metrics", get(routes::health::metrics))
        .layer(middleware::from_fn_with_state(state.clone(), track_latency))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .with_state(state)
}

async fn track_latency(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    state
        .metrics
        .http_request(&route, &method, response.status().as_u16(), started.elapsed());
    response
}

/// Serves `state` on `listener` until `shutdown` completes, then finishes the
/// requests in flight.
pub async fn run(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let service = app(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .await
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
