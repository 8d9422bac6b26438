//! Prometheus metrics: tokens issued and refused (by reason), signing latency,
//! HTTP latency by route and status, AWS calls by operation and outcome, and
//! how the log output keeps up (waits for room, failed writes).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::response::Response;

use oidc_core::aws::{AwsObserver, CallOutcome};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: &'static str,
    method: &'static str,
    status: u16,
}

/// The route label of a request that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// The routes there are: a matched route's template is one of these.
const ROUTES: [&str; 7] = [
    "/.well-known/openid-configuration",
    "/.well-known/oauth-authorization-server",
    "/.well-known/jwks.json",
    "/token",
    "/healthz",
    "/readyz",
    "/metrics",
];

/// The route label of a matched route's template (from a fixed set).
pub fn route_label(template: &str) -> &'static str {
    ROUTES
        .iter()
        .find(|r| **r == template)
        .copied()
        .unwrap_or(UNMATCHED)
}

/// The method label: `GET`, `POST`, `HEAD` or `OTHER`, never the request's text.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    match *method {
        axum::http::Method::GET => "GET",
        axum::http::Method::POST => "POST",
        axum::http::Method::HEAD => "HEAD",
        _ => "OTHER",
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AwsCallLabels {
    operation: &'static str,
    outcome: &'static str,
}

/// AWS calls as Prometheus metrics: `oidc_server_aws_call_duration_seconds`
/// by operation and outcome (its `_count` counts calls and errors).
#[derive(Debug)]
struct AwsMetrics {
    calls: Family<AwsCallLabels, Histogram>,
}

impl AwsObserver for AwsMetrics {
    fn observe(&self, operation: &'static str, outcome: CallOutcome, took: Duration) {
        self.calls
            .get_or_create(&AwsCallLabels {
                operation,
                outcome: outcome.as_str(),
            })
            .observe(took.as_secs_f64());
    }
}

/// Token counts so far, for writers other than Prometheus (CloudWatch EMF).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenCounts {
    /// Tokens issued.
    pub issued: u64,
    /// Refused requests by reason (a fixed set of codes).
    pub refused: Vec<(&'static str, u64)>,
}

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    /// Refusals by reason again, readable without the registry (refusals are
    /// rare; the lock is on their path only).
    refused_counts: Mutex<BTreeMap<&'static str, u64>>,
    registry: Mutex<Registry>,
    aws: Arc<AwsMetrics>,
    issued: Counter,
    refused: Family<ReasonLabels, Counter>,
    signing: Histogram,
    http: Family<HttpLabels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set of metrics, registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("oidc_server");
        let issued = Counter::default();
        registry.register("tokens_issued", "Access tokens issued", issued.clone());
        let refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "tokens_refused",
            "Token requests refused, by reason",
            refused.clone(),
        );
        // 50 µs .. ~1.6 s: local signing is tens of microseconds, KMS tens of milliseconds.
        let signing = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        registry.register(
            "signing_duration_seconds",
            "Time to sign one token",
            signing.clone(),
        );
        let http = Family::<HttpLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
        });
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            http.clone(),
        );
        let aws = Arc::new(AwsMetrics {
            calls: Family::<AwsCallLabels, Histogram>::new_with_constructor(|| {
                // 0.5 ms .. ~16 s: an emulator answers in a millisecond, KMS in tens.
                Histogram::new(exponential_buckets(0.000_5, 2.0, 16))
            }),
        });
        registry.register(
            "aws_call_duration_seconds",
            "AWS calls (KMS, Secrets Manager, DynamoDB) by operation and outcome",
            aws.calls.clone(),
        );
        // The process's log writer (one per process, whatever the registry).
        let log = crate::telemetry::counters();
        registry.register(
            "log_waits",
            "Token requests that waited for room in a full log buffer",
            log.waits.clone(),
        );
        registry.register(
            "log_wait_timeouts",
            "Token requests refused (503 log_unavailable): no room in the log buffer within log.max_wait_ms",
            log.wait_timeouts.clone(),
        );
        registry.register(
            "log_write_failures",
            "Writes to the log output that failed; their lines are kept and written again",
            log.write_failures.clone(),
        );
        registry.register(
            "log_dropped_lines",
            "Lines logged outside any request and dropped: twice the log buffer was waiting",
            log.dropped_lines.clone(),
        );
        registry.register(
            "log_unwritten_bytes",
            "Log bytes queued and not yet written",
            log.unwritten_bytes.clone(),
        );
        Self {
            refused_counts: Mutex::default(),
            registry: Mutex::new(registry),
            aws,
            issued,
            refused,
            signing,
            http,
        }
    }

    /// The observer that turns every AWS call into
    /// `oidc_server_aws_call_duration_seconds{operation,outcome}`.
    pub fn aws_observer(&self) -> Arc<dyn AwsObserver> {
        self.aws.clone()
    }

    /// Counts an issued token.
    pub fn token_issued(&self) {
        self.issued.inc();
    }

    /// Counts a refused token request.
    pub fn token_refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabels { reason }).inc();
        *self
            .refused_counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_default() += 1;
    }

    /// The token counts so far.
    pub fn token_counts(&self) -> TokenCounts {
        let refused = self.refused_counts.lock().unwrap_or_else(|e| e.into_inner());
        TokenCounts {
            issued: self.issued.get(),
            refused: refused.iter().map(|(reason, n)| (*reason, *n)).collect(),
        }
    }

    /// Records the time one signature took.
    pub fn signed(&self, took: Duration) {
        self.signing.observe(took.as_secs_f64());
    }

    /// Records an HTTP request: `route` and `method` from a fixed set
    /// ([`route_label`], [`method_label`]); `status` is one of a few hundred.
    pub fn http_request(&self, route: &'static str, method: &'static str, status: u16, took: Duration) {
        self.http
            .get_or_create(&HttpLabels {
                route,
                method,
                status,
            })
            .observe(took.as_secs_f64());
    }

    /// Registers more metrics (e.g. of a KMS signer) under this registry.
    pub fn with_registry<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut registry)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            let _ = writeln!(out, "# metrics encoding failed");
        }
        out
    }
}

/// The layer that records every request in `oidc_server_http_request_duration_seconds`
/// under labels from a fixed set: a stranger's method or path must never
/// become a time series of its own.
///
/// A layer of its own rather than `axum::middleware::from_fn`, which copies
/// the route's boxed service and boxes twice on every request.
#[derive(Debug, Clone)]
pub struct HttpMetricsLayer {
    metrics: Arc<Metrics>,
}

impl HttpMetricsLayer {
    /// Records into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> tower::Layer<S> for HttpMetricsLayer {
    type Service = HttpMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpMetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// See [`HttpMetricsLayer`].
#[derive(Debug, Clone)]
pub struct HttpMetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> tower::Service<Request> for HttpMetricsService<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let started = Instant::now();
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map_or(UNMATCHED, |p| route_label(p.as_str()));
        let method = method_label(request.method());
        let response = self.inner.call(request);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let response = response.await?;
            metrics.http_request(route, method, response.status().as_u16(), started.elapsed());
            Ok(response)
        })
    }
}
