//! Liveness, readiness and metrics.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

/// The shortest token worth issuing (as the issuer's own limit).
const MIN_USEFUL_TTL_SECS: u64 = 10;

/// `GET /healthz`: the process is up, and its log output keeps up. A
/// stalled or failing log (stderr not taking lines) answers 503 with a
/// sentence saying so: token requests are refused once its buffer is full.
pub(crate) async fn healthz() -> Response {
    match crate::telemetry::health() {
        Some(log) if !log.is_healthy() => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("{log}\n")).into_response()
        }
        _ => "ok\n".into_response(),
    }
}

/// `GET /readyz`: a key is active, signing works, and one-time uses can be
/// recorded. After a failure the backend is probed again (at most every
/// couple of seconds), so readiness comes back by itself when it does.
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let keys = state.issuer.keys().current();
    let Some(active) = keys.active() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no active signing key\n").into_response();
    };
    // A key whose publication is about to end (a retiring key, or a replica
    // that has not been able to read its key set for a long time) cannot sign
    // a useful token: not ready, like the token endpoint's 503.
    if let Some(limit) = active.expires_by() {
        if limit < state.clock.now().saturating_add(MIN_USEFUL_TTL_SECS) {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "signing key publication ending\n",
            )
                .into_response();
        }
    }
    if !state.health.is_healthy() && state.health.probe_due() {
        let probe = active.signer().sign(b"readiness-probe").await;
        if let Err(error) = &probe {
            tracing::warn!(%error, "readiness: the signing probe failed");
        }
        state.health.record(probe.is_ok());
    }
    // The bodies name the check that failed and nothing more: anyone can
    // read them, and a backend's error text carries account ids and ARNs
    // (the replay store logs it where it fails).
    if !state.health.is_healthy() {
        return (StatusCode::SERVICE_UNAVAILABLE, "signer unavailable\n").into_response();
    }
    // One-time credentials cannot be accepted while their uses cannot be recorded.
    if state.authenticator.replay_ready().await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "replay store unavailable\n").into_response();
    }
    (StatusCode::OK, "ready\n").into_response()
}

/// `GET /metrics`: Prometheus text format.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        state.metrics.render(),
    )
        .into_response()
}
