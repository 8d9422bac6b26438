//! Builds the issuer's key set from the `[signing]` configuration (a local
//! key, one KMS key, or a rotating key set in Secrets Manager whose poller it
//! starts), with AWS calls reported as metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::document::Timings;
use super::{KeyMaker, KeySetError, KeySetPoller, KeySetSecret, PollerHandle};
use oidc_core::aws::SdkConfig;
use oidc_core::keys::{KeyError, KmsOptions, KmsSigner, Signer};
use oidc_core::{ActiveKey, KeySet, KeySetState};

use crate::config::{Config, KeySetConfig, KmsKey, SigningConfig};
use crate::context::{KeySetPolling, ServiceContext};

/// The target of this module's log lines: the one they had before the
/// module moved here (`RUST_LOG` directives and log queries name it).
const LOG_TARGET: &str = "oidc_server::signing";

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
    /// The configuration asks for more than the key set's rules allow.
    #[error(
        "key set {secret}: {}; lower these settings, or make the key set allow them (`oidc-server keys init`)",
        problems.join("; ")
    )]
    Timings {
        /// The secret.
        secret: String,
        /// Each setting above the set's value.
        problems: Vec<String>,
    },
}

/// The key set tokens are signed with, and for a shared key set the poller
/// that keeps it on the set in force.
#[derive(Debug)]
pub struct SigningKeys {
    /// The key set.
    pub keys: Arc<KeySet>,
    /// Refreshes a shared key set (a Lambda invocation asks it first).
    pub poller: Option<PollerHandle>,
}

impl SigningKeys {
    fn local(keys: KeySet) -> Self {
        Self {
            keys: Arc::new(keys),
            poller: None,
        }
    }
}

/// The key set for `config`, with metrics of its own.
pub async fn key_set(config: &Config) -> Result<Arc<KeySet>, SigningSetupError> {
    key_set_with(config, &ServiceContext::default()).await
}

/// The key set for `config` (see [`signing_keys`]; a shared set's poller
/// keeps running in the background).
pub async fn key_set_with(
    config: &Config,
    context: &ServiceContext,
) -> Result<Arc<KeySet>, SigningSetupError> {
    signing_keys(config, context).await.map(|k| k.keys)
}

/// The key set for `config`. For a KMS key or a key set, a service that is
/// unreachable at start is not fatal: the server starts without an active
/// key (503, not ready, JWKS served) and keeps trying in the background;
/// a key or secret that does not exist or cannot be used is, and so is a
/// key set whose rules the configuration exceeds.
pub async fn signing_keys(
    config: &Config,
    context: &ServiceContext,
) -> Result<SigningKeys, SigningSetupError> {
    match &config.signing {
        SigningConfig::Local(key) => {
            let signer: Arc<dyn Signer> = Arc::new(key.signer()?);
            Ok(SigningKeys::local(KeySet::single(signer)))
        }
        SigningConfig::Kms(kms) => {
            let sdk = context.sdk_config().await;
            let mut options = kms_options(kms.call_timeout, context);
            options.max_concurrency = kms.max_concurrency;
            match &kms.key {
                KmsKey::Fixed { key_id, algorithm } => {
                    options.algorithm = *algorithm;
                    fixed_kms_key(&sdk, key_id, options)
                        .await
                        .map(|keys| SigningKeys { keys, poller: None })
                }
                KmsKey::Rotating(set) => rotating(config, set, &sdk, options, context).await,
            }
        }
        SigningConfig::KmsEnvelope(set) => {
            let sdk = context.sdk_config().await;
            let options = kms_options(set.call_timeout, context);
            rotating(config, set, &sdk, options, context).await
        }
    }
}

fn kms_options(call_timeout: Duration, context: &ServiceContext) -> KmsOptions {
    let mut options = KmsOptions::default();
    options.calls.call_timeout = call_timeout;
    options.calls.observer = context.aws_observer();
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
            tracing::info!(target: LOG_TARGET, key = signer.key_arn(), kid = signer.kid(), alg = %signer.algorithm(), "signing with KMS");
            Ok(Arc::new(KeySet::single(Arc::new(signer))))
        }
        Err(e) if e.is_transient() => {
            tracing::warn!(target: LOG_TARGET, key = key_id, error = %e, "KMS unreachable at start; retrying in the background");
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
                                target: LOG_TARGET,
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
                            tracing::warn!(target: LOG_TARGET, key = %key_id, error = %e, "KMS signing key still unavailable");
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
    context: &ServiceContext,
) -> Result<SigningKeys, SigningSetupError> {
    let secrets = aws_sdk_secretsmanager::Client::new(sdk);
    let secret = KeySetSecret::new(&secrets, set.secret.clone(), options.calls.clone());
    let maker = KeyMaker::new(aws_sdk_kms::Client::new(sdk), options, secret.name());
    let mut poller = KeySetPoller::new(secret, maker, config.issuer.clone())
        .with_clock(context.clock.clone())
        .with_monotonic_clock(context.monotonic_clock.clone());
    let keys = Arc::new(empty_key_set());
    let started = Instant::now();
    let read = match poller.poll(&keys).await {
        Ok(summary) => {
            match &summary.timings {
                Some(timings) => fits(config, set, timings)?,
                None => tracing::warn!(
                    target: LOG_TARGET,
                    secret = %set.secret,
                    "the key-set secret holds no key set yet (its first rotation has not run) or does not exist; \
                     serving no keys until it does"
                ),
            }
            true
        }
        Err(e) if e.is_transient() => {
            tracing::warn!(target: LOG_TARGET, secret = %set.secret, error = %e, "key set unreachable at start; retrying in the background");
            false
        }
        Err(e) => return Err(e.into()),
    };
    let poller = match context.key_set_polling {
        KeySetPolling::Background => poller.spawn(&keys, set.poll_interval),
        KeySetPolling::OnInvocation => poller.on_demand(&keys, set.poll_interval),
    };
    if read {
        poller.mark_read(started);
    }
    Ok(SigningKeys {
        keys,
        poller: Some(poller),
    })
}

/// The key set's rules assume every replica polls at least every poll
/// interval, issues no token longer than the longest lifetime and serves
/// no JWKS cached longer than the max-age it names: a server configured
/// beyond them would break a rotation for the whole fleet, so it refuses
/// to start (the set's values are the deployed ones; the config follows).
fn fits(config: &Config, set: &KeySetConfig, timings: &Timings) -> Result<(), SigningSetupError> {
    let mut problems = Vec::new();
    let mut over = |what: &str, key: &str, ours: Duration, theirs: Duration, field: &str| {
        if ours > theirs {
            problems.push(format!(
                "{what} {} s ({key}) is above the key set's {} s ({field})",
                ours.as_secs(),
                theirs.as_secs()
            ));
        }
    };
    over(
        "the longest token lifetime",
        "tokens.max_ttl_secs",
        config.lifetime.max_ttl(),
        timings.max_token_lifetime,
        "max_token_lifetime_secs",
    );
    over(
        "the JWKS max-age",
        "http.jwks_max_age_secs",
        config.http.jwks_max_age,
        timings.jwks_max_age,
        "jwks_max_age_secs",
    );
    over(
        "the poll interval",
        "signing.poll_interval_secs",
        set.poll_interval,
        timings.poll_interval,
        "poll_interval_secs",
    );
    if problems.is_empty() {
        return Ok(());
    }
    Err(SigningSetupError::Timings {
        secret: set.secret.clone(),
        problems,
    })
}
