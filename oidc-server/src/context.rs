//! What starting the server's services needs besides the configuration:
//! where metrics go, how to reach AWS, the clocks, and how a shared key set
//! is kept current. Low in the crate: the key set and the replay store are
//! built with it, and [`AppState::start`](crate::AppState::start) hands it
//! to both.

use std::sync::Arc;

use oidc_core::aws::{AwsObserver, SdkConfig};
use oidc_core::clock::{MonotonicClock, SystemClock, SystemMonotonicClock, WallClock};

use crate::metrics::Metrics;

/// What building the server's services needs besides the configuration:
/// where metrics go, how to reach AWS, and the clock.
#[derive(Debug, Clone)]
pub struct ServiceContext {
    /// Metrics to report AWS calls to (they become the
    /// [`AppState`](crate::AppState)'s).
    pub metrics: Arc<Metrics>,
    /// The AWS SDK configuration; `None` loads it from the standard chain
    /// (`AWS_REGION`, `AWS_ENDPOINT_URL`, credentials, ...).
    pub sdk_config: Option<SdkConfig>,
    /// The clock of tokens and assertions.
    pub clock: Arc<dyn WallClock>,
    /// The clock the age of a shared key set's state is measured with (it
    /// lowers the JWKS `max-age`); the system's, unless a host drives time
    /// itself (a simulation, with [`clock`](Self::clock) on the same time).
    pub monotonic_clock: Arc<dyn MonotonicClock>,
    /// How a shared key set is kept current.
    pub key_set_polling: KeySetPolling,
}

impl Default for ServiceContext {
    fn default() -> Self {
        Self {
            metrics: Arc::new(Metrics::new()),
            sdk_config: None,
            clock: Arc::new(SystemClock),
            monotonic_clock: Arc::new(SystemMonotonicClock::new()),
            key_set_polling: KeySetPolling::Background,
        }
    }
}

impl ServiceContext {
    /// The SDK configuration: the one given, else the standard chain's.
    pub async fn sdk_config(&self) -> SdkConfig {
        match &self.sdk_config {
            Some(config) => config.clone(),
            None => oidc_core::aws::load_sdk_config().await,
        }
    }

    /// The observer of AWS calls, into [`ServiceContext::metrics`].
    pub fn aws_observer(&self) -> Arc<dyn AwsObserver> {
        self.metrics.aws_observer()
    }
}

/// How a server keeps a shared key set current.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KeySetPolling {
    /// Every poll interval, in the background (a long-running server).
    #[default]
    Background,
    /// At the start of an invocation, when the set was read longer ago than
    /// the poll interval (AWS Lambda: an environment runs only during
    /// invocations and may be frozen for hours).
    OnInvocation,
}
