//! Builds the issuer's key set from the `[signing]` configuration (a local
//! key, one KMS key, or a rotating key set in Secrets Manager whose poller it
//! starts), with AWS calls reported as metrics.

use std::sync::Arc;
use std::time::Duration;

use oidc_core::aws::SdkConfig;
use oidc_core::keys::{KeyError, KmsOptions, KmsSigner, Signer};
use oidc_core::keyset::aws::{KeySetError, KeySetPoller, KeySetSecret};
use oidc_core::keyset::rotation::RotationTimings;
use oidc_core::{ActiveKey, KeySet, KeySetState};

use crate::config::{Config, KeySetConfig, KmsKey, SigningConfig};
use crate::state::ServiceContext;

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

/// The key set for `config`, with metrics of its own.
pub async fn key_set(config: &Config) -> Result<Arc<KeySet>, SigningSetupError> {
    key_set_with(config, &ServiceContext::default()).await
}

/// The key set for `config`. For a KMS key or a key set, a service that is
/// unreachable at start is not fatal: the server starts without an active
/// key (503, not ready, JWKS served) and keeps trying in the background;
/// a key or secret that does not exist or cannot be used is.
pub async fn key_set_with(
    config: &Config,
    context: &ServiceContext,
) -> Result<Arc<KeySet>, SigningSetupError> {
    match &config.signing {
        SigningConfig::Local(key) => {
            let signer: Arc<dyn Signer> = Arc::new(key.signer()?);
            Ok(Arc::new(KeySet::single(signer)))
        }
        SigningConfig::Kms(kms) => {
            let sdk = context.sdk_config().await;
            let mut options = kms_options(kms.call_timeout, context);
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
    context: &ServiceContext,
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
