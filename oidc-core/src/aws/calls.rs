//! How every AWS call of the signers (and of their users) is made: a timeout
//! per attempt, throttling retried with backoff, SDK errors classified as
//! "try later" or "refused", every attempt reported to an [`AwsObserver`].

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// How one AWS call ended, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CallOutcome {
    /// It worked.
    Ok,
    /// The service throttled it.
    Throttled,
    /// Unreachable, timed out, or a server-side failure: retrying may work.
    Unavailable,
    /// The service refused it (key disabled, not found, access denied, ...).
    Refused,
}

impl CallOutcome {
    /// A stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Throttled => "throttled",
            Self::Unavailable => "unavailable",
            Self::Refused => "refused",
        }
    }
}

/// Sees every AWS call made by the signers and the key-set poller; a server
/// turns these into metrics (latency histogram, error counters).
pub trait AwsObserver: Send + Sync + fmt::Debug {
    /// `operation` is `service:Operation` (`kms:Sign`, `secretsmanager:GetSecretValue`).
    fn observe(&self, operation: &'static str, outcome: CallOutcome, took: Duration);
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;

impl AwsObserver for NoObserver {
    fn observe(&self, _operation: &'static str, _outcome: CallOutcome, _took: Duration) {}
}

/// How every AWS call here is made: each attempt bounded by a timeout,
/// throttling retried with jittered exponential backoff, every attempt
/// reported to an observer. The SDK clients' own retries are turned off so
/// that all of it happens in one place, in budget.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CallPolicy {
    /// Attempts per call when the service throttles (the first included).
    pub max_attempts: u32,
    /// First backoff after throttling; doubled per attempt, with jitter.
    pub base_backoff: Duration,
    /// Longest backoff.
    pub max_backoff: Duration,
    /// Longest one attempt may take.
    pub call_timeout: Duration,
    /// Sees every attempt.
    pub observer: Arc<dyn AwsObserver>,
}

impl Default for CallPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_backoff: Duration::from_millis(25),
            max_backoff: Duration::from_millis(800),
            call_timeout: Duration::from_secs(3),
            observer: Arc::new(NoObserver),
        }
    }
}

/// Runs `call` (one SDK operation of any service) under `policy`.
/// `operation` names it for the observer: `service:Operation`.
pub async fn call<T, E, F, Fut>(
    policy: &CallPolicy,
    operation: &'static str,
    call: F,
) -> Result<T, CallFailure>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, SdkError<E>>>,
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let mut attempt: u32 = 1;
    loop {
        let started = Instant::now();
        let failure = match tokio::time::timeout(policy.call_timeout, call()).await {
            Ok(Ok(value)) => {
                policy
                    .observer
                    .observe(operation, CallOutcome::Ok, started.elapsed());
                return Ok(value);
            }
            Ok(Err(error)) => classify(operation, &error),
            Err(_elapsed) => CallFailure::timed_out(operation, policy.call_timeout),
        };
        policy
            .observer
            .observe(operation, failure.outcome, started.elapsed());
        if failure.outcome != CallOutcome::Throttled || attempt >= policy.max_attempts {
            return Err(failure);
        }
        tokio::time::sleep(backoff(attempt, policy.base_backoff, policy.max_backoff)).await;
        attempt += 1;
    }
}

/// Full jitter: a random wait up to `base · 2^(attempt-1)`, capped.
fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    use ring::rand::SecureRandom;
    let ceiling = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(max);
    let mut bytes = [0u8; 4];
    // Without randomness the wait is the ceiling: slower, never wrong.
    let fraction = match ring::rand::SystemRandom::new().fill(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX),
        Err(_) => 1.0,
    };
    ceiling.mul_f64(0.5 + fraction / 2.0)
}

/// An AWS call that failed, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailure {
    /// What kind of failure.
    pub outcome: CallOutcome,
    /// The operation, error code and message (AWS error messages name
    /// resources, never key material or credentials).
    pub reason: String,
    /// The service's error code, if it answered.
    pub code: Option<String>,
}

impl CallFailure {
    pub(crate) fn timed_out(operation: &str, after: Duration) -> Self {
        Self {
            outcome: CallOutcome::Unavailable,
            reason: format!("{operation} timed out after {} ms", after.as_millis()),
            code: None,
        }
    }
}

/// Error codes that mean "slow down".
const THROTTLING: [&str; 6] = [
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "LimitExceededException",
];

/// Error codes that mean "the service is having trouble; retry later".
const TRANSIENT: [&str; 6] = [
    "KMSInternalException",
    "KMSInternal",
    "DependencyTimeoutException",
    "KeyUnavailableException",
    "InternalServiceError",
    "ServiceUnavailable",
];

/// Longest reason kept from an SDK error (the rest is noise in a log line).
const MAX_REASON: usize = 300;

/// Classifies an SDK error of any operation of any service.
pub(crate) fn classify<E>(operation: &str, error: &SdkError<E>) -> CallFailure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let (outcome, code) = match error {
        SdkError::ServiceError(context) => {
            let code = context.err().code().map(str::to_owned);
            let outcome = match code.as_deref() {
                Some(c) if THROTTLING.contains(&c) => CallOutcome::Throttled,
                Some(c) if TRANSIENT.contains(&c) => CallOutcome::Unavailable,
                _ if context.raw().status().is_server_error() => CallOutcome::Unavailable,
                _ => CallOutcome::Refused,
            };
            (outcome, code)
        }
        // Timeouts, connection failures, unreadable answers and anything the
        // SDK adds later: the service may be back soon.
        _ => (CallOutcome::Unavailable, None),
    };
    let detail = match error {
        SdkError::ServiceError(context) => format!(
            "{}: {}",
            code.as_deref().unwrap_or("error"),
            context.err().message().unwrap_or("no message")
        ),
        SdkError::TimeoutError(_) => "timed out".to_owned(),
        SdkError::DispatchFailure(_) => format!("cannot reach the service ({})", DisplayErrorContext(error)),
        _ => DisplayErrorContext(error).to_string(),
    };
    let mut reason = format!("{operation}: {detail}");
    if reason.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push('…');
    }
    CallFailure {
        outcome,
        reason,
        code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(10);
        let max = Duration::from_millis(100);
        assert!(backoff(1, base, max) <= base);
        assert!(backoff(3, base, max) >= Duration::from_millis(20));
        assert!(backoff(30, base, max) <= max);
    }
}
