//! AWS Lambda mode: the same router as the standalone server, served through
//! `lambda_http` for function URL, API Gateway HTTP API (payload 2.0), API
//! Gateway REST API (proxy integration) and Application Load Balancer events.
//!
//! Configuration is the standalone server's (`OIDC_SERVER_CONFIG_TOML` or a
//! bundled file, plus `OIDC_SERVER__...` overrides). The issuer comes from
//! that configuration or, when `OIDC_SERVER_ISSUER_PARAMETER` names an SSM
//! parameter (the CloudFormation template stores the function URL there), from
//! that parameter at cold start: never from request headers.
//!
//! The caller's address, for per-peer limits, is the one the event's source
//! recorded: `requestContext.http.sourceIp` (function URL, HTTP API),
//! `requestContext.identity.sourceIp` (REST API), or the right-most
//! `X-Forwarded-For` entry (ALB, which appends the address it saw: its
//! `routing.http.xff_header_processing.mode` must stay `append`). A token
//! request whose event carries no readable address is refused (503,
//! `peer_unknown`) rather than served with no per-peer limit. A REST API
//! event is routed by its `path`, below the stage.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use lambda_http::request::{LambdaRequest, RequestContext};
use lambda_http::{Context, LambdaEvent, RequestExt, Service};

use crate::routes::token::TokenError;
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
    /// An event is not a function URL, API Gateway or ALB event.
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
    from_events(with_fresh_keys(crate::app(state.clone()), &state), state)
}

/// [`router`], writing its metrics as CloudWatch EMF lines with `emf` at the
/// end of invocations (nothing scrapes `/metrics` in Lambda), and the log
/// lines of an invocation (its audit event) out before it answers: once it
/// has answered, the environment may be frozen or shut down.
pub fn router_with_metrics(state: AppState, emf: Arc<EmfWriter>) -> Router {
    let inner = with_fresh_keys(crate::app(state.clone()), &state).layer(middleware::from_fn(
        move |request: Request, next: Next| {
            let emf = emf.clone();
            async move {
                let response = next.run(request).await;
                emf.after_invocation();
                crate::telemetry::flush();
                response
            }
        },
    ));
    from_events(inner, state)
}

/// `inner` behind [`from_event`], which runs before `inner` routes the
/// request (a layer on `inner` itself would run after its routing: too
/// late to give a REST API request the path its routes match).
fn from_events(inner: Router, state: AppState) -> Router {
    Router::new()
        .fallback_service(inner)
        .layer(middleware::from_fn_with_state(state, from_event))
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

/// The reason a token request without a readable caller address is refused.
const PEER_UNKNOWN: &str = "peer_unknown";

/// The caller's address as the event's source recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventPeer {
    /// The address.
    Known(IpAddr),
    /// A Lambda event without a readable address: the field that was read.
    Unreadable(&'static str),
    /// Not from a Lambda event: the router was called some other way.
    NotAnEvent,
}

fn event_peer(request: &Request) -> EventPeer {
    let (address, field) = match request.request_context_ref() {
        None => return EventPeer::NotAnEvent,
        Some(RequestContext::ApiGatewayV2(ctx)) => {
            (ctx.http.source_ip.as_deref(), "requestContext.http.sourceIp")
        }
        Some(RequestContext::ApiGatewayV1(ctx)) => (
            ctx.identity.source_ip.as_deref(),
            "requestContext.identity.sourceIp",
        ),
        Some(RequestContext::Alb(_)) => (appended_forwarded_for(request.headers()), "X-Forwarded-For"),
        // Other sources are not deserialized (their features are off).
        Some(_) => (None, "the event's request context"),
    };
    match address.and_then(parse_address) {
        Some(ip) => EventPeer::Known(ip),
        None => EventPeer::Unreadable(field),
    }
}

/// The entry an ALB appended to `X-Forwarded-For` (the right-most one: every
/// entry left of it is whatever the client sent).
fn appended_forwarded_for(headers: &HeaderMap) -> Option<&str> {
    let last = headers.get_all("x-forwarded-for").iter().next_back()?;
    last.to_str().ok()?.rsplit(',').next().map(str::trim)
}

/// An address, with the port an ALB adds when `routing.http.xff_client_port.enabled`
/// is on (`203.0.113.7:51234`, `[2001:db8::7]:51234`).
fn parse_address(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// What the event says about the request: a REST API request's path below
/// its stage, and the caller's address.
async fn from_event(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    // A REST API event's URI starts with its stage (`/prod/token`); its
    // `path` is the one below the stage, which the routes match.
    if matches!(
        request.request_context_ref(),
        Some(RequestContext::ApiGatewayV1(_))
    ) {
        if let Some(uri) = below_stage(&request) {
            *request.uri_mut() = uri;
        }
    }
    match event_peer(&request) {
        EventPeer::Known(ip) => {
            request
                .extensions_mut()
                .insert(ConnectInfo(SocketAddr::new(ip, 0)));
        }
        // Health checks (an ALB's carry no X-Forwarded-For), discovery and
        // the JWKS need no peer; a token request is not served without its
        // per-peer limit.
        EventPeer::Unreadable(field) if request.uri().path() == "/token" => {
            tracing::error!(
                field,
                "a token request's event carries no readable caller address, so per-peer limits \
                 cannot apply: refused (behind an ALB, keep X-Forwarded-For processing on `append`)"
            );
            crate::audit::refused(None, None, PEER_UNKNOWN, crate::audit::Upstream::default(), None);
            state.metrics.token_refused(PEER_UNKNOWN);
            return TokenError::TemporarilyUnavailable {
                retry_after: PEER_UNKNOWN_RETRY_AFTER,
            }
            .into_response();
        }
        EventPeer::Unreadable(_) | EventPeer::NotAnEvent => {}
    }
    next.run(request).await
}

/// A retry hint for a refusal that retrying will not cure soon: the
/// deployment needs a change.
const PEER_UNKNOWN_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The request's URI with the event's `path` (below the stage) and its query.
fn below_stage(request: &Request) -> Option<Uri> {
    let path = request.raw_http_path();
    if path.is_empty() {
        return None;
    }
    let path_and_query = match request.uri().query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut parts = request.uri().clone().into_parts();
    parts.path_and_query = Some(path_and_query.parse().ok()?);
    Uri::from_parts(parts).ok()
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
