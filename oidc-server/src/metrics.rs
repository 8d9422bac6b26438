//! Prometheus metrics: tokens issued and refused (by reason), signing latency,
//! HTTP latency by route and status.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

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
    route: String,
    method: String,
    status: u16,
}

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
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
        Self {
            registry: Mutex::new(registry),
            issued,
            refused,
            signing,
            http,
        }
    }

    /// Counts an issued token.
    pub fn token_issued(&self) {
        self.issued.inc();
    }

    /// Counts a refused token request.
    pub fn token_refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Records the time one signature took.
    pub fn signed(&self, took: Duration) {
        self.signing.observe(took.as_secs_f64());
    }

    /// Records an HTTP request.
    pub fn http_request(&self, route: &str, method: &str, status: u16, took: Duration) {
        self.http
            .get_or_create(&HttpLabels {
                route: route.to_owned(),
                method: method.to_owned(),
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
