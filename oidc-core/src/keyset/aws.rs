//! A key set shared by replicas through one Secrets Manager secret (feature
//! `aws`): each version's value is one [`KeyRecord`], its version stage is the
//! key's [`Stage`]. [`KeySetSecret`] reads it and applies the rotation steps
//! (stage, promote, retire) under the rules of [`super::rotation`];
//! [`KeySetPoller`] keeps a [`KeySet`] in step with it, swapping the state
//! atomically.
//!
//! Promotion writes a new version of the next key's record with
//! `activated_at` set and the `AWSCURRENT` label (Secrets Manager moves the
//! old `AWSCURRENT` to `AWSPREVIOUS` and unlabels the old `AWSPREVIOUS`), then
//! removes `AWSPENDING` from the old version: Secrets Manager does not record
//! when a label moved, and the rules need to know.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use aws_sdk_secretsmanager::Client as SecretsClient;
use ring::rand::SecureRandom;

use super::rotation::{
    KeyBackend, KeyRecord, Promotion, RotationError, RotationTimings, Stage, StagedKey, StagedKeys,
};
use super::{ActiveKey, KeySet, KeySetState};
use crate::aws::{self, CallFailure, CallOutcome};
use crate::keys::kms::KmsOptions;
use crate::keys::kms_envelope::{self, SealedKey};
use crate::keys::{KmsSigner, Signer};
use crate::time::WallClock;

/// Why the key set could not be read or changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeySetError {
    /// Secrets Manager could not be reached or kept failing.
    #[error("Secrets Manager unavailable: {0}")]
    Unavailable(String),
    /// Secrets Manager refused (no such secret, access denied, ...).
    #[error("Secrets Manager refused: {0}")]
    Refused(String),
    /// The secret does not exist.
    #[error("key-set secret {0:?} does not exist; stage a key to create it")]
    NoSuchSecret(String),
    /// A version's value is not a key record.
    #[error("key-set secret version {version_id}: {reason}")]
    BadRecord {
        /// The version.
        version_id: String,
        /// Why.
        reason: String,
    },
    /// The rotation rules refuse the step.
    #[error(transparent)]
    Rotation(#[from] RotationError),
}

impl KeySetError {
    /// Whether retrying later may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    fn from_failure(failure: CallFailure, secret_id: &str) -> Self {
        match (failure.outcome, failure.code.as_deref()) {
            (CallOutcome::Refused, Some("ResourceNotFoundException")) => {
                Self::NoSuchSecret(secret_id.to_owned())
            }
            (CallOutcome::Refused, _) => Self::Refused(failure.reason),
            _ => Self::Unavailable(failure.reason),
        }
    }
}

/// What a successful `stage` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageOutcome {
    /// The key is next (`AWSPENDING`).
    Staged {
        /// The new version.
        version_id: String,
    },
    /// No key was active, so the key is active at once (`AWSCURRENT`).
    ActivatedAtOnce {
        /// The new version.
        version_id: String,
    },
}

/// The key-set secret.
#[derive(Debug, Clone)]
pub struct KeySetSecret {
    client: SecretsClient,
    secret_id: String,
    options: KmsOptions,
}

impl KeySetSecret {
    /// The secret `secret_id` (name or ARN). `options` supplies the timeout,
    /// throttling retries and observer for Secrets Manager calls too. The
    /// client's own retries are turned off: retries happen here, in budget.
    pub fn new(client: &SecretsClient, secret_id: impl Into<String>, options: KmsOptions) -> Self {
        let client = SecretsClient::from_conf(
            client
                .config()
                .to_builder()
                .retry_config(aws_sdk_secretsmanager::config::retry::RetryConfig::disabled())
                .build(),
        );
        Self {
            client,
            secret_id: secret_id.into(),
            options,
        }
    }

    /// The secret's name or ARN.
    pub fn secret_id(&self) -> &str {
        &self.secret_id
    }

    async fn call<T, E, F, Fut>(&self, operation: &'static str, call: F) -> Result<T, KeySetError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, aws_sdk_secretsmanager::error::SdkError<E>>>,
        E: aws_sdk_secretsmanager::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        aws::call(&self.options.calls, operation, call)
            .await
            .map_err(|failure| KeySetError::from_failure(failure, &self.secret_id))
    }

    /// The versions that carry one of the three stages, with their stages:
    /// one `DescribeSecret` (its `VersionIdsToStages` lists exactly the
    /// labelled versions; moto 5.2 also answers a missing secret there with
    /// `ResourceNotFoundException`, where `ListSecretVersionIds` fails with a 500).
    pub async fn versions(&self) -> Result<Vec<(String, Vec<Stage>)>, KeySetError> {
        let output = self
            .call("secretsmanager:DescribeSecret", || {
                self.client.describe_secret().secret_id(&self.secret_id).send()
            })
            .await?;
        let mut out: Vec<(String, Vec<Stage>)> = output
            .version_ids_to_stages()
            .map(|map| {
                map.iter()
                    .map(|(id, labels)| {
                        (
                            id.clone(),
                            labels
                                .iter()
                                .filter_map(|l| Stage::from_label(l))
                                .collect::<Vec<_>>(),
                        )
                    })
                    .filter(|(_, stages)| !stages.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The record stored in `version_id`.
    pub async fn record(&self, version_id: &str) -> Result<KeyRecord, KeySetError> {
        let output = self
            .call("secretsmanager:GetSecretValue", || {
                self.client
                    .get_secret_value()
                    .secret_id(&self.secret_id)
                    .version_id(version_id)
                    .send()
            })
            .await?;
        let bad = |reason: String| KeySetError::BadRecord {
            version_id: version_id.to_owned(),
            reason,
        };
        let text = output
            .secret_string()
            .ok_or_else(|| bad("the value is not a string".into()))?;
        KeyRecord::from_json(text).map_err(|e| bad(e.to_string()))
    }

    /// Reads the whole key set (one list call and one read per staged version).
    pub async fn read(&self) -> Result<StagedKeys, KeySetError> {
        let mut cache = HashMap::new();
        self.read_cached(&mut cache).await
    }

    /// Reads the key set, reading only versions not in `cache` (versions are
    /// immutable) and leaving in `cache` only the versions still staged.
    pub async fn read_cached(
        &self,
        cache: &mut HashMap<String, KeyRecord>,
    ) -> Result<StagedKeys, KeySetError> {
        let versions = self.versions().await?;
        cache.retain(|id, _| versions.iter().any(|(v, _)| v == id));
        let mut keys = StagedKeys::default();
        for (version_id, stages) in versions {
            let record = match cache.get(&version_id) {
                Some(record) => record.clone(),
                None => {
                    let record = self.record(&version_id).await?;
                    cache.insert(version_id.clone(), record.clone());
                    record
                }
            };
            for stage in stages {
                let slot = match stage {
                    Stage::Next => &mut keys.next,
                    Stage::Active => &mut keys.active,
                    Stage::Retiring => &mut keys.retiring,
                };
                *slot = Some(StagedKey {
                    version_id: version_id.clone(),
                    record: record.clone(),
                });
            }
        }
        Ok(keys)
    }

    async fn put(&self, record: &KeyRecord, stage: Stage) -> Result<String, KeySetError> {
        // One idempotency token for every attempt, so a retried write whose
        // first answer was lost does not create a second version.
        let token = request_token()?;
        let text = record.to_json();
        let output = self
            .call("secretsmanager:PutSecretValue", || {
                self.client
                    .put_secret_value()
                    .secret_id(&self.secret_id)
                    .client_request_token(&token)
                    .secret_string(&text)
                    .version_stages(stage.label())
                    .send()
            })
            .await?;
        Ok(output.version_id().unwrap_or_default().to_owned())
    }

    /// Stages `record` as next at `now` (its `published_at`). With no key
    /// active (or no secret yet) it becomes active at once: nothing signs yet,
    /// so there is nothing to rotate from.
    pub async fn stage(&self, mut record: KeyRecord, now: u64) -> Result<StageOutcome, KeySetError> {
        record.published_at = now;
        record.activated_at = None;
        let keys = match self.read().await {
            Ok(keys) => keys,
            Err(KeySetError::NoSuchSecret(_)) => {
                record.activated_at = Some(now);
                let token = request_token()?;
                let text = record.to_json();
                let output = self
                    .call("secretsmanager:CreateSecret", || {
                        self.client
                            .create_secret()
                            .name(&self.secret_id)
                            .client_request_token(&token)
                            .description("oidc-server signing key set: one key record per version; stages are key states")
                            .secret_string(&text)
                            .send()
                    })
                    .await?;
                return Ok(StageOutcome::ActivatedAtOnce {
                    version_id: output.version_id().unwrap_or_default().to_owned(),
                });
            }
            Err(e) => return Err(e),
        };
        keys.check_stage(record.kid())?;
        if keys.active.is_none() {
            record.activated_at = Some(now);
            let version_id = self.put(&record, Stage::Active).await?;
            return Ok(StageOutcome::ActivatedAtOnce { version_id });
        }
        let version_id = self.put(&record, Stage::Next).await?;
        Ok(StageOutcome::Staged { version_id })
    }

    /// Promotes the next key to active at `now`, if the rules allow. Returns
    /// the state before the promotion.
    pub async fn promote(&self, timings: &RotationTimings, now: u64) -> Result<StagedKeys, KeySetError> {
        let keys = self.read().await?;
        let promotion = keys.check_promote(timings, now)?;
        let Some(next) = &keys.next else {
            return Err(RotationError::NothingStaged.into());
        };
        if promotion == Promotion::Activate {
            let mut record = next.record.clone();
            record.activated_at = Some(now);
            self.put(&record, Stage::Active).await?;
        }
        self.remove_stage(Stage::Next, &next.version_id).await?;
        Ok(keys)
    }

    /// Removes the retiring key at `now`, if the rules allow. Returns the state before.
    pub async fn retire(&self, timings: &RotationTimings, now: u64) -> Result<StagedKeys, KeySetError> {
        let keys = self.read().await?;
        keys.check_retire(timings, now)?;
        let Some(retiring) = &keys.retiring else {
            return Err(RotationError::NothingRetiring.into());
        };
        self.remove_stage(Stage::Retiring, &retiring.version_id).await?;
        Ok(keys)
    }

    async fn remove_stage(&self, stage: Stage, version_id: &str) -> Result<(), KeySetError> {
        self.call("secretsmanager:UpdateSecretVersionStage", || {
            self.client
                .update_secret_version_stage()
                .secret_id(&self.secret_id)
                .version_stage(stage.label())
                .remove_from_version_id(version_id)
                .send()
        })
        .await
        .map(|_| ())
    }
}

fn request_token() -> Result<String, KeySetError> {
    let mut bytes = [0u8; 24];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| KeySetError::Unavailable("random number generator failed".into()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Builds the signer a record names: `GetPublicKey` for a KMS key, `Decrypt`
/// for an envelope key. The signer's kid must be the record's.
pub async fn load_signer(
    kms: &aws_sdk_kms::Client,
    record: &KeyRecord,
    issuer: &str,
    options: &KmsOptions,
) -> Result<Arc<dyn Signer>, LoadError> {
    let signer: Arc<dyn Signer> = match &record.backend {
        KeyBackend::Kms { key_id } => {
            let mut options = options.clone();
            options.algorithm = Some(record.algorithm());
            let signer = KmsSigner::connect(kms, key_id, options)
                .await
                .map_err(|e| LoadError {
                    transient: e.is_transient(),
                    reason: e.to_string(),
                })?;
            Arc::new(signer)
        }
        KeyBackend::KmsEnvelope {
            kms_key_id,
            ciphertext,
        } => {
            let sealed = SealedKey {
                kms_key_id: kms_key_id.clone(),
                verifying_key: record.verifying_key.clone(),
                ciphertext: ciphertext.clone(),
            };
            let signer = kms_envelope::open(kms, &sealed, issuer, options)
                .await
                .map_err(|e| LoadError {
                    transient: e.is_transient(),
                    reason: e.to_string(),
                })?;
            Arc::new(signer)
        }
    };
    if signer.kid() != record.kid() || signer.algorithm() != record.algorithm() {
        return Err(LoadError {
            transient: false,
            reason: format!(
                "the key behind record {} is {} {}, not the published key",
                record.kid(),
                signer.algorithm(),
                signer.kid()
            ),
        });
    }
    Ok(signer)
}

/// A signer could not be built from its record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct LoadError {
    /// Whether retrying later may help.
    pub transient: bool,
    /// Why.
    pub reason: String,
}

/// What one poll found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollSummary {
    /// The key that signs, if any, and its stage.
    pub signing: Option<(String, Stage)>,
    /// The published kids.
    pub published: Vec<String>,
}

/// Keeps a [`KeySet`] in step with the key-set secret.
#[derive(Debug)]
pub struct KeySetPoller {
    secret: KeySetSecret,
    kms: aws_sdk_kms::Client,
    issuer: String,
    timings: RotationTimings,
    options: KmsOptions,
    clock: Arc<dyn WallClock>,
    records: HashMap<String, KeyRecord>,
    signers: HashMap<String, Arc<dyn Signer>>,
    last: Option<PollSummary>,
}

impl KeySetPoller {
    /// A poller for `secret`, building signers with `kms` for `issuer`.
    pub fn new(
        secret: KeySetSecret,
        kms: aws_sdk_kms::Client,
        issuer: impl Into<String>,
        timings: RotationTimings,
        options: KmsOptions,
        clock: Arc<dyn WallClock>,
    ) -> Self {
        Self {
            secret,
            kms,
            issuer: issuer.into(),
            timings,
            options,
            clock,
            records: HashMap::new(),
            signers: HashMap::new(),
            last: None,
        }
    }

    /// Reads the secret, builds the signers it needs, and swaps the new state
    /// into `keys`. On error `keys` is left as it was: the published keys
    /// stay served and the active key's tokens are capped by the time of the
    /// last successful poll.
    pub async fn poll(&mut self, keys: &KeySet) -> Result<PollSummary, KeySetError> {
        let staged = self.secret.read_cached(&mut self.records).await?;
        let now = self.clock.now();
        // Drop signers of keys no longer in the set (an envelope key's
        // plaintext is zeroized with its signer).
        self.signers
            .retain(|kid, _| staged.iter().any(|(_, k)| k.record.kid() == kid));
        // The signers that may be needed: the candidates, and the next key
        // (built ahead, so that its promotion swaps without waiting on KMS).
        let candidates = staged.signing_candidates(&self.timings, now);
        let wanted = candidates
            .iter()
            .map(|c| c.key)
            .chain(staged.next.as_ref())
            .cloned()
            .collect::<Vec<_>>();
        for key in &wanted {
            if self.signers.contains_key(key.record.kid()) {
                continue;
            }
            match load_signer(&self.kms, &key.record, &self.issuer, &self.options).await {
                Ok(signer) => {
                    self.signers.insert(key.record.kid().to_owned(), signer);
                }
                Err(e) => {
                    tracing::warn!(kid = key.record.kid(), transient = e.transient, error = %e, "cannot load signing key");
                }
            }
        }
        let stale_cap = self.timings.stale_expires_by(now);
        let active = candidates.iter().find_map(|c| {
            self.signers.get(c.key.record.kid()).map(|signer| {
                let cap = c.expires_by.map_or(stale_cap, |cap| cap.min(stale_cap));
                (
                    ActiveKey::new(signer.clone(), Some(cap)),
                    c.key.record.kid().to_owned(),
                    c.stage,
                )
            })
        });
        let published = staged.published();
        let summary = PollSummary {
            signing: active.as_ref().map(|(_, kid, stage)| (kid.clone(), *stage)),
            published: published.iter().map(|k| k.kid().to_owned()).collect(),
        };
        let state = KeySetState::new(active.map(|(key, _, _)| key), published).map_err(|e| {
            KeySetError::BadRecord {
                version_id: String::new(),
                reason: e.to_string(),
            }
        })?;
        keys.replace(state);
        if self.last.as_ref() != Some(&summary) {
            tracing::info!(
                signing = ?summary.signing.as_ref().map(|(kid, stage)| format!("{kid} ({})", stage.name())),
                published = ?summary.published,
                "key set changed"
            );
            self.last = Some(summary.clone());
        }
        Ok(summary)
    }

    /// Polls every poll interval until `keys` is
    /// dropped. Must be called inside a tokio runtime.
    pub fn spawn(mut self, keys: &Arc<KeySet>) -> tokio::task::JoinHandle<()> {
        let weak: Weak<KeySet> = Arc::downgrade(keys);
        let interval = self.timings.poll_interval.max(Duration::from_millis(100));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(keys) = weak.upgrade() else { return };
                if let Err(e) = self.poll(&keys).await {
                    tracing::warn!(secret = self.secret.secret_id(), error = %e, "cannot read the key set; keeping the last one");
                }
            }
        })
    }
}
