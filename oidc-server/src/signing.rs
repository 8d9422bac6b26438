//! Builds the issuer's key set from the `[signing]` configuration (a local
//! key, one KMS key, or a rotating key set in Secrets Manager whose poller it
//! starts), reports AWS calls as metrics, and tracks whether the signer is
//! usable (for `/readyz` and 503 answers).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oidc_core::aws::{AwsObserver, CallOutcome, SdkConfig};
use oidc_core::internal::{SystemClock, WallClock};
use oidc_core::keys::{KeyError, KmsOptions, KmsSigner, Signer};
use oidc_core::keyset::aws::{KeySetError, KeySetPoller, KeySetSecret};
use oidc_core::keyset::rotation::RotationTimings;
use oidc_core::{ActiveKey, KeySet, KeySetState};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use crate::config::{Config, KeySetConfig, KmsKey, SigningConfig};
use crate::metrics::Metrics;

/// The signer could not be set up at start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SigningSetupError {
    /// The local key was refused.
    #[error("signing key: {0}")]
    Key(#[from] KeyError),
    /// The KMS key cannot be used (not found, not a signing key, access denied).
    #[error("KMS signing key: {0}")]
    Kms(#[from] oidc_core::keys::kms::KmsError),
    /// The key-set secret cannot be used (not found, not a key set, access denied).
    #[error("key set: {0}")]
    KeySet(#[from] KeySetError),
}

/// What building a key set may need besides the configuration.
#[derive(Debug, Clone)]
pub struct SigningContext {
    /// Metrics to report AWS calls to (share them with the [`crate::AppState`]).
    pub metrics: Arc<Metrics>,
    /// The AWS SDK configuration; `None` loads it from the standard chain
    /// (`AWS_REGION`, `AWS_ENDPOINT_URL`, credentials, ...).
    pub sdk_config: Option<SdkConfig>,
    /// The clock of the rotation rules.
    pub clock: Arc<dyn WallClock>,
}

impl Default for SigningContext {
    fn default() -> Self {
        Self {
            metrics: Arc::new(Metrics::new()),
            sdk_config: None,
            clock: Arc::new(SystemClock),
        }
    }
}

impl SigningContext {
    async fn sdk_config(&self) -> SdkConfig {
        match &self.sdk_config {
            Some(config) => config.clone(),
            None => oidc_core::aws::load_sdk_config().await,
        }
    }
}

/// The key set for `config`, with metrics of its own.
pub async fn key_set(config: &Config) -> Result<Arc<KeySet>, SigningSetupError> {
    key_set_with(config, &SigningContext::default()).await
}

/// The key set for `config`. For a KMS key or a key set, a service that is
/// unreachable at start is not fatal: the server starts without an active
/// key (503, not ready, JWKS served) and keeps trying in the background;
/// a key or secret that does not exist or cannot be used is.
pub async fn key_set_with(
    config: &Config,
    context: &SigningContext,
) -> Result<Arc<KeySet>, SigningSetupError> {
    match &config.signing {
        SigningConfig::Local(key) => {
            let signer: Arc<dyn Signer> = Arc::new(key.signer()?);
            Ok(Arc::new(KeySet::single(signer)))
        }
        SigningConfig::Kms(kms) => {
            let sdk = context.sdk_config().await;
            let mut options = kms_options(kms.call_timeout, &context.metrics);
            options.max_concurrency = kms.max_concurrency;
            match &kms.key {
                KmsKey::Fixed { key_id, algorithm } => {
                    options.algorithm = *algorithm;
                    fixed_kms_key(&sdk, key_id, options).await
                }
                KmsKey::Rotating(set) => rotating(config, set, &sdk, options, context).await,
            }
        }
        SigningConfig::KmsEnvelope(set) => {
            let sdk = context.sdk_config().await;
            let options = kms_options(set.call_timeout, &context.metrics);
            rotating(config, set, &sdk, options, context).await
        }
    }
}

fn kms_options(call_timeout: Duration, metrics: &Metrics) -> KmsOptions {
    let mut options = KmsOptions::default();
    options.calls.call_timeout = call_timeout;
    options.calls.observer = aws_observer(metrics);
    options
}

/// An empty key set: nothing signs, nothing is published (yet).
fn empty_key_set() -> KeySet {
    KeySet::new(
        KeySetState::new(None, Vec::new())
            .unwrap_or_else(|_| unreachable!("an empty set has no duplicate kid")),
    )
}

async fn fixed_kms_key(
    sdk: &SdkConfig,
    key_id: &str,
    options: KmsOptions,
) -> Result<Arc<KeySet>, SigningSetupError> {
    let client = aws_sdk_kms::Client::new(sdk);
    match KmsSigner::connect(&client, key_id, options.clone()).await {
        Ok(signer) => {
            tracing::info!(key = signer.key_arn(), kid = signer.kid(), alg = %signer.algorithm(), "signing with KMS");
            Ok(Arc::new(KeySet::single(Arc::new(signer))))
        }
        Err(e) if e.is_transient() => {
            tracing::warn!(key = key_id, error = %e, "KMS unreachable at start; retrying in the background");
            let keys = Arc::new(empty_key_set());
            let weak = Arc::downgrade(&keys);
            let key_id = key_id.to_owned();
            tokio::spawn(async move {
                let mut wait = Duration::from_millis(500);
                loop {
                    tokio::time::sleep(wait).await;
                    let Some(keys) = weak.upgrade() else { return };
                    match KmsSigner::connect(&client, &key_id, options.clone()).await {
                        Ok(signer) => {
                            tracing::info!(
                                key = signer.key_arn(),
                                kid = signer.kid(),
                                "KMS reachable; signing"
                            );
                            let signer: Arc<dyn Signer> = Arc::new(signer);
                            match KeySetState::new(Some(ActiveKey::new(signer, None)), Vec::new()) {
                                Ok(state) => keys.replace(state),
                                Err(_) => unreachable!("a set of one key has no duplicate kid"),
                            }
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(key = %key_id, error = %e, "KMS signing key still unavailable");
                            wait = (wait * 2).min(Duration::from_secs(10));
                        }
                    }
                }
            });
            Ok(keys)
        }
        Err(e) => Err(e.into()),
    }
}

async fn rotating(
    config: &Config,
    set: &KeySetConfig,
    sdk: &SdkConfig,
    options: KmsOptions,
    context: &SigningContext,
) -> Result<Arc<KeySet>, SigningSetupError> {
    let secrets = aws_sdk_secretsmanager::Client::new(sdk);
    let secret = KeySetSecret::new(&secrets, set.secret.clone(), options.clone());
    let mut poller = KeySetPoller::new(
        secret,
        aws_sdk_kms::Client::new(sdk),
        config.issuer.clone(),
        rotation_timings(config, set),
        options,
        context.clock.clone(),
    );
    let keys = Arc::new(empty_key_set());
    match poller.poll(&keys).await {
        Ok(_) => {}
        Err(e) if e.is_transient() => {
            tracing::warn!(secret = %set.secret, error = %e, "key set unreachable at start; retrying in the background");
        }
        Err(e) => return Err(e.into()),
    }
    poller.spawn(&keys);
    Ok(keys)
}

/// The rotation rules' times for `config` (the CLI's `keys` commands use the same).
pub fn rotation_timings(config: &Config, set: &KeySetConfig) -> RotationTimings {
    RotationTimings {
        poll_interval: set.poll_interval,
        jwks_max_age: config.http.jwks_max_age,
        max_ttl: config.lifetime.max_ttl(),
        leeway: set.leeway,
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

/// Registers the AWS call metrics under `metrics` and returns their observer.
pub fn aws_observer(metrics: &Metrics) -> Arc<dyn AwsObserver> {
    let calls = Family::<AwsCallLabels, Histogram>::new_with_constructor(|| {
        // 0.5 ms .. ~16 s: an emulator answers in a millisecond, KMS in tens.
        Histogram::new(exponential_buckets(0.000_5, 2.0, 16))
    });
    metrics.with_registry(|registry| {
        registry.register(
            "aws_call_duration_seconds",
            "AWS calls (KMS, Secrets Manager) by operation and outcome",
            calls.clone(),
        );
    });
    Arc::new(AwsMetrics { calls })
}

/// Whether signing works, learned from real signing attempts and, when it
/// failed, from a probe at most every [`SignerHealth::PROBE_INTERVAL`].
#[derive(Debug)]
pub struct SignerHealth {
    healthy: AtomicBool,
    last_probe_ms: AtomicU64,
    started: Instant,
}

impl Default for SignerHealth {
    fn default() -> Self {
        Self {
            healthy: AtomicBool::new(true),
            last_probe_ms: AtomicU64::new(0),
            started: Instant::now(),
        }
    }
}

impl SignerHealth {
    /// How often `/readyz` may retry a failed signer.
    pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);

    /// Records the outcome of a signature.
    pub fn record(&self, ok: bool) {
        self.healthy.store(ok, Ordering::Relaxed);
    }

    /// Whether the last signature worked.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Whether a failed signer is due for another probe (and claims the slot).
    pub fn probe_due(&self) -> bool {
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.last_probe_ms.load(Ordering::Relaxed);
        now.saturating_sub(last) >= Self::PROBE_INTERVAL.as_millis() as u64
            && self
                .last_probe_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}
