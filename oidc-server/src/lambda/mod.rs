//! AWS Lambda mode: the same router as the standalone server, served through
//! `lambda_http` for function URL and API Gateway HTTP API (payload 2.0) events.
//!
//! Configuration is the standalone server's (`OIDC_SERVER_CONFIG_TOML` or a
//! bundled file, plus `OIDC_SERVER__...` overrides). The issuer comes from
//! that configuration or, when `OIDC_SERVER_ISSUER_PARAMETER` names an SSM
//! parameter (the CloudFormation template stores the function URL there), from
//! that parameter at cold start: never from request headers.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use lambda_http::request::{LambdaRequest, RequestContext};
use lambda_http::{Context, LambdaEvent, RequestExt, Service};

use crate::state::AppState;

pub mod emf;
pub mod rotation;
pub mod runtime_api;

pub use emf::EmfWriter;

/// Names the SSM parameter that holds the issuer URL.
pub const ISSUER_PARAMETER_ENV: &str = "OIDC_SERVER_ISSUER_PARAMETER";

/// Lambda mode could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum LambdaError {
    /// The issuer parameter could not be read.
    #[error("cannot read the issuer from SSM parameter {name}: {reason}")]
    IssuerParameter {
        /// The parameter.
        name: String,
        /// Why.
        reason: String,
    },
    /// An event is not a function URL or API Gateway HTTP API event.
    #[error("not a supported Lambda HTTP event: {0}")]
    Event(String),
}

/// How long the first invocation after a freeze may wait for the key set:
/// past it, the last set read answers (its tokens under their cap).
pub const THAW_REFRESH_TIMEOUT: Duration = Duration::from_millis(1500);

/// The router for Lambda: the standalone router, with the caller's address
/// taken from the event's request context (for per-peer throttling), and a
/// shared key set read again first when the environment was frozen for
/// longer than its poll interval.
pub fn router(state: AppState) -> Router {
    with_fresh_keys(crate::app(state.clone()), &state).layer(middleware::from_fn(peer_from_request_context))
}

/// [`router`], writing its metrics as CloudWatch EMF lines with `emf` at the
/// end of invocations (nothing scrapes `/metrics` in Lambda), and the log
/// lines of an invocation (its audit event) out before it answers: once it
/// has answered, the environment may be frozen or shut down.
pub fn router_with_metrics(state: AppState, emf: Arc<EmfWriter>) -> Router {
    with_fresh_keys(crate::app(state.clone()), &state)
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            let emf = emf.clone();
            async move {
                let response = next.run(request).await;
                emf.after_invocation();
                crate::telemetry::flush();
                response
            }
        }))
        .layer(middleware::from_fn(peer_from_request_context))
}

/// An environment runs only during invocations, so its poller does too: a
/// thawed one reads the set in force before answering.
fn with_fresh_keys(router: Router, state: &AppState) -> Router {
    let Some(poller) = state.key_poller().cloned() else {
        return router;
    };
    router.layer(middleware::from_fn(move |request: Request, next: Next| {
        let poller = poller.clone();
        async move {
            poller.refresh_if_stale(THAW_REFRESH_TIMEOUT).await;
            next.run(request).await
        }
    }))
}

async fn peer_from_request_context(mut request: Request, next: Next) -> Response {
    let source_ip = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx
            .http
            .source_ip
            .as_deref()
            .and_then(|ip| ip.parse::<IpAddr>().ok()),
        _ => None,
    };
    if let Some(ip) = source_ip {
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(ip, 0)));
    }
    next.run(request).await
}

/// Serves `state` to the Lambda runtime until it stops the process, its
/// metrics as EMF lines on stdout under `Service` = the function's name.
pub async fn serve(state: AppState) -> Result<(), lambda_http::Error> {
    let service = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "oidc-server".into());
    let emf = EmfWriter::new(
        state.metrics().clone(),
        service,
        emf::DEFAULT_INTERVAL,
        Box::new(std::io::stdout()),
    );
    lambda_http::run(router_with_metrics(state, Arc::new(emf))).await
}

/// Handles one event (its JSON text) the way the Lambda runtime would and
/// returns the response JSON; for tests and local replay of recorded events.
pub async fn invoke(router: Router, event: &str) -> Result<serde_json::Value, LambdaError> {
    let request: LambdaRequest =
        serde_json::from_str(event).map_err(|e| LambdaError::Event(e.to_string()))?;
    // `Adapter` is what `lambda_http::run` wraps the router in (public but
    // undocumented); using it keeps this path identical to the runtime's.
    let mut adapter = lambda_http::Adapter::from(router);
    let response = adapter
        .call(LambdaEvent::new(request, Context::default()))
        .await
        .map_err(|e| match e {})?;
    serde_json::to_value(response).map_err(|e| LambdaError::Event(e.to_string()))
}

/// Reads the issuer URL from the SSM parameter `name` (a function URL's
/// trailing `/` removed, since an issuer has none).
pub async fn issuer_from_parameter(name: &str) -> Result<String, LambdaError> {
    let error = |reason: String| LambdaError::IssuerParameter {
        name: name.to_owned(),
        reason,
    };
    let config = oidc_core::aws::load_sdk_config().await;
    let client = aws_sdk_ssm::Client::new(&config);
    let output = client
        .get_parameter()
        .name(name)
        .send()
        .await
        .map_err(|e| error(aws_sdk_ssm::error::DisplayErrorContext(e).to_string()))?;
    let value = output
        .parameter()
        .and_then(|p| p.value())
        .ok_or_else(|| error("the parameter has no value".into()))?;
    Ok(value.trim().trim_end_matches('/').to_owned())
}
