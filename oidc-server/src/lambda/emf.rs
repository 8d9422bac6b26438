//! Metrics in Lambda mode, where nothing scrapes `/metrics`: CloudWatch
//! Embedded Metric Format lines on stdout, which the Lambda runtime sends to
//! CloudWatch Logs and CloudWatch turns into metrics, with no agent.
//!
//! One JSON line per flush, at most once per interval, written at the end of
//! an invocation (a frozen environment runs nothing in between: counts since
//! the last line go with the next one). Each line carries what changed since
//! the last one, under one fixed dimension (`Service`): `TokensIssued`,
//! `TokensRefused`, and `TokensRefused.<reason>` for each refusal reason that
//! occurred (reasons are a fixed set of codes, never request text).

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::metrics::{Metrics, TokenCounts};

/// The CloudWatch namespace of the metrics.
pub const NAMESPACE: &str = "ConnectorTokenService";
/// Default least time between two lines.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// Writes EMF lines from a server's [`Metrics`].
pub struct EmfWriter {
    metrics: Arc<Metrics>,
    service: String,
    interval: Duration,
    state: Mutex<Flushed>,
    out: Mutex<Box<dyn Write + Send>>,
}

struct Flushed {
    at: Option<Instant>,
    counts: TokenCounts,
}

impl std::fmt::Debug for EmfWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmfWriter")
            .field("service", &self.service)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl EmfWriter {
    /// Lines for `metrics` under the dimension `Service=service` to `out`,
    /// at most once per `interval`.
    pub fn new(
        metrics: Arc<Metrics>,
        service: impl Into<String>,
        interval: Duration,
        out: Box<dyn Write + Send>,
    ) -> Self {
        Self {
            metrics,
            service: service.into(),
            interval,
            state: Mutex::new(Flushed {
                at: None,
                counts: TokenCounts::default(),
            }),
            out: Mutex::new(out),
        }
    }

    /// Called at the end of an invocation: writes a line if the interval has
    /// passed since the last one and something changed.
    pub fn after_invocation(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.at.is_some_and(|at| at.elapsed() < self.interval) {
            return;
        }
        let now = self.metrics.token_counts();
        let Some(line) = line(&self.service, &state.counts, &now, epoch_ms()) else {
            return;
        };
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        // One write per line, so lines never interleave with log output.
        if let Err(error) = out
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| out.flush())
        {
            tracing::warn!(%error, "cannot write the metrics line");
            return;
        }
        state.at = Some(Instant::now());
        state.counts = now;
    }
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The EMF document for what changed from `before` to `now`, if anything did.
pub fn line(service: &str, before: &TokenCounts, now: &TokenCounts, timestamp_ms: u64) -> Option<Value> {
    let issued = now.issued.saturating_sub(before.issued);
    let refused: Vec<(&str, u64)> = now
        .refused
        .iter()
        .map(|(reason, n)| {
            let was = before
                .refused
                .iter()
                .find(|(r, _)| r == reason)
                .map_or(0, |(_, n)| *n);
            (*reason, n.saturating_sub(was))
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    if issued == 0 && refused.is_empty() {
        return None;
    }
    let mut root = Map::new();
    let mut metrics = vec![
        json!({"Name": "TokensIssued", "Unit": "Count"}),
        json!({"Name": "TokensRefused", "Unit": "Count"}),
    ];
    root.insert("Service".into(), service.into());
    root.insert("TokensIssued".into(), issued.into());
    root.insert(
        "TokensRefused".into(),
        refused.iter().map(|(_, n)| n).sum::<u64>().into(),
    );
    for (reason, n) in &refused {
        let name = format!("TokensRefused.{reason}");
        metrics.push(json!({"Name": name, "Unit": "Count"}));
        root.insert(name, (*n).into());
    }
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Service"]],
                "Metrics": metrics,
            }],
        }),
    );
    Some(Value::Object(root))
}
