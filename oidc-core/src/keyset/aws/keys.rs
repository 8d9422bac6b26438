//! Making the keys a rotation adds, and retiring the KMS keys that leave.
//!
//! - an envelope set gets a fresh local key, sealed with KMS `Encrypt` under
//!   the set's symmetric key (encryption context: issuer and kid);
//! - a `kms` set gets a new asymmetric KMS key from `CreateKey` (its key
//!   spec, `SIGN_VERIFY`), tagged with the key set's name
//!   ([`KEY_SET_TAG`]) and the rotation's token ([`ROTATION_TAG`]), under a
//!   key policy that lets the set's signers `kms:Sign` and
//!   `kms:GetPublicKey` and its administrators manage it. A retried step
//!   finds the key already tagged with its token instead of making another;
//!   a key that left the set is scheduled for deletion.

use std::sync::Arc;

use aws_sdk_kms::types::{KeySpec, KeyState, KeyUsageType, Tag};
use serde_json::json;

use super::KeySetError;
use crate::aws::{self, CallFailure};
use crate::keys::kms_envelope;
use crate::keys::{KmsOptions, KmsSigner, Signer};
use crate::keyset::document::{KeyMaterial, KeyRef, SetKind};

/// The tag naming the key set a KMS key belongs to.
pub const KEY_SET_TAG: &str = "oidc-server:key-set";
/// The tag naming the rotation (its `ClientRequestToken`) that made a KMS key.
pub const ROTATION_TAG: &str = "oidc-server:rotation";

/// A KMS key of the set waiting for its deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDeletion {
    /// Its ARN.
    pub key_id: String,
    /// When KMS deletes it (Unix seconds).
    pub deletion_at: Option<u64>,
}

/// Makes and retires the keys of one key set.
#[derive(Debug, Clone)]
pub struct KeyMaker {
    kms: aws_sdk_kms::Client,
    options: KmsOptions,
    set_name: String,
}

impl KeyMaker {
    /// Keys for the set named `set_name` (the secret's name: the value of
    /// [`KEY_SET_TAG`]), through `kms` under `options`.
    pub fn new(kms: aws_sdk_kms::Client, options: KmsOptions, set_name: impl Into<String>) -> Self {
        Self {
            kms,
            options,
            set_name: set_name.into(),
        }
    }

    fn failure(failure: CallFailure) -> KeySetError {
        KeySetError::from_failure(failure, "")
    }

    /// A new key for `kind`, made for the rotation `token` (`slot` tells the
    /// keys of one rotation apart: the first document makes two).
    pub async fn new_key(
        &self,
        kind: &SetKind,
        issuer: &str,
        token: &str,
        slot: &str,
    ) -> Result<KeyRef, KeySetError> {
        match kind {
            SetKind::KmsEnvelope { kms_key_id, alg } => {
                let sealed = kms_envelope::create(&self.kms, kms_key_id, issuer, *alg, &self.options)
                    .await
                    .map_err(|e| match e.is_transient() {
                        true => KeySetError::Unavailable(e.to_string()),
                        false => KeySetError::Refused(e.to_string()),
                    })?;
                Ok(KeyRef {
                    material: KeyMaterial::KmsEnvelope {
                        kms_key_id: sealed.kms_key_id,
                        ciphertext: sealed.ciphertext,
                    },
                    verifying_key: sealed.verifying_key,
                    entered_at: None,
                })
            }
            SetKind::Kms {
                key_spec,
                signers,
                administrators,
                ..
            } => {
                let tag = format!("{token}#{slot}");
                let key_id = match self.tagged(&tag).await? {
                    Some(key_id) => key_id,
                    None => {
                        self.create(key_spec, &key_policy(signers, administrators), &tag)
                            .await?
                    }
                };
                self.existing_key(kind, &key_id).await
            }
        }
    }

    /// The reference to KMS key `key_id` (an operator's own key: `keys
    /// rotate --next-key-id`), its public key read with `GetPublicKey`.
    pub async fn existing_key(&self, kind: &SetKind, key_id: &str) -> Result<KeyRef, KeySetError> {
        let mut options = self.options.clone();
        options.algorithm = Some(kind.algorithm());
        let signer = KmsSigner::connect(&self.kms, key_id, options)
            .await
            .map_err(|e| KeySetError::Key {
                kid: key_id.to_owned(),
                reason: e.to_string(),
                transient: e.is_transient(),
            })?;
        Ok(KeyRef {
            material: KeyMaterial::Kms {
                key_id: signer.key_arn().to_owned(),
            },
            verifying_key: signer.verifying_key().clone(),
            entered_at: None,
        })
    }

    async fn create(
        &self,
        key_spec: &str,
        policy: &Option<String>,
        rotation: &str,
    ) -> Result<String, KeySetError> {
        let tag = |key: &str, value: &str| {
            Tag::builder()
                .tag_key(key)
                .tag_value(value)
                .build()
                .map_err(|e| KeySetError::Refused(e.to_string()))
        };
        let tags = [tag(KEY_SET_TAG, &self.set_name)?, tag(ROTATION_TAG, rotation)?];
        let output = aws::call(&self.options.calls, "kms:CreateKey", || {
            let mut request = self
                .kms
                .create_key()
                .key_spec(KeySpec::from(key_spec))
                .key_usage(KeyUsageType::SignVerify)
                .description(format!(
                    "connector token signing key of key set {}",
                    self.set_name
                ))
                .set_tags(Some(tags.to_vec()));
            if let Some(policy) = &policy {
                request = request.policy(policy);
            }
            request.send()
        })
        .await
        .map_err(Self::failure)?;
        let metadata = output
            .key_metadata()
            .ok_or_else(|| KeySetError::Refused("kms:CreateKey answered without key metadata".into()))?;
        Ok(metadata.arn().unwrap_or(metadata.key_id()).to_owned())
    }

    /// The keys of this set (by [`KEY_SET_TAG`]) with their tags and state.
    async fn set_keys(&self) -> Result<Vec<(String, Vec<(String, String)>)>, KeySetError> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = aws::call(&self.options.calls, "kms:ListKeys", || {
                self.kms.list_keys().set_marker(marker.clone()).send()
            })
            .await
            .map_err(Self::failure)?;
            for key in page.keys() {
                let Some(key_id) = key.key_arn().or(key.key_id()) else {
                    continue;
                };
                let tags = aws::call(&self.options.calls, "kms:ListResourceTags", || {
                    self.kms.list_resource_tags().key_id(key_id).send()
                })
                .await;
                // Keys of other owners may refuse: they are not ours.
                let Ok(tags) = tags else { continue };
                let tags: Vec<(String, String)> = tags
                    .tags()
                    .iter()
                    .map(|t| (t.tag_key().to_owned(), t.tag_value().to_owned()))
                    .collect();
                if tags.iter().any(|(k, v)| k == KEY_SET_TAG && *v == self.set_name) {
                    out.push((key_id.to_owned(), tags));
                }
            }
            match page.next_marker() {
                Some(next) if page.truncated() => marker = Some(next.to_owned()),
                _ => return Ok(out),
            }
        }
    }

    async fn tagged(&self, rotation: &str) -> Result<Option<String>, KeySetError> {
        Ok(self
            .set_keys()
            .await?
            .into_iter()
            .find(|(_, tags)| tags.iter().any(|(k, v)| k == ROTATION_TAG && v == rotation))
            .map(|(key_id, _)| key_id))
    }

    /// The signer of `key` (GetPublicKey for a KMS key, Decrypt for an
    /// envelope key, whose encryption context names `issuer`); its kid and
    /// algorithm must be the reference's.
    pub async fn signer(&self, key: &KeyRef, issuer: &str) -> Result<Arc<dyn Signer>, KeySetError> {
        let refused = |reason: String, transient: bool| KeySetError::Key {
            kid: key.kid().to_owned(),
            reason,
            transient,
        };
        let signer: Arc<dyn Signer> = match &key.material {
            KeyMaterial::Kms { key_id } => {
                let mut options = self.options.clone();
                options.algorithm = Some(key.verifying_key.algorithm());
                let signer = KmsSigner::connect(&self.kms, key_id, options)
                    .await
                    .map_err(|e| refused(e.to_string(), e.is_transient()))?;
                Arc::new(signer)
            }
            KeyMaterial::KmsEnvelope {
                kms_key_id,
                ciphertext,
            } => {
                let sealed = kms_envelope::SealedKey {
                    kms_key_id: kms_key_id.clone(),
                    verifying_key: key.verifying_key.clone(),
                    ciphertext: ciphertext.clone(),
                };
                let signer = kms_envelope::open(&self.kms, &sealed, issuer, &self.options)
                    .await
                    .map_err(|e| refused(e.to_string(), e.is_transient()))?;
                Arc::new(signer)
            }
        };
        if signer.kid() != key.kid() || signer.algorithm() != key.verifying_key.algorithm() {
            return Err(refused(
                format!(
                    "the key behind it is {} {}, not the published key",
                    signer.algorithm(),
                    signer.kid()
                ),
                false,
            ));
        }
        Ok(signer)
    }

    /// Schedules `key_id`'s deletion after `days` days; a key already
    /// pending deletion is left as it is.
    pub async fn schedule_deletion(&self, key_id: &str, days: u32) -> Result<(), KeySetError> {
        let days = i32::try_from(days).unwrap_or(30);
        let result = aws::call(&self.options.calls, "kms:ScheduleKeyDeletion", || {
            self.kms
                .schedule_key_deletion()
                .key_id(key_id)
                .pending_window_in_days(days)
                .send()
        })
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(failure) if failure.code.as_deref() == Some("KMSInvalidStateException") => Ok(()),
            Err(failure) => Err(Self::failure(failure)),
        }
    }

    /// The set's KMS keys pending deletion (for `keys show`).
    pub async fn pending_deletion(&self) -> Result<Vec<PendingDeletion>, KeySetError> {
        let mut out = Vec::new();
        for (key_id, _) in self.set_keys().await? {
            let described = aws::call(&self.options.calls, "kms:DescribeKey", || {
                self.kms.describe_key().key_id(&key_id).send()
            })
            .await
            .map_err(Self::failure)?;
            let Some(metadata) = described.key_metadata() else {
                continue;
            };
            if metadata.key_state() == Some(&KeyState::PendingDeletion) {
                out.push(PendingDeletion {
                    key_id,
                    deletion_at: metadata
                        .deletion_date()
                        .and_then(|d| u64::try_from(d.secs()).ok()),
                });
            }
        }
        Ok(out)
    }
}

/// The key policy of a new key: the account administers it through IAM (so
/// the key is never locked out), the administrators manage it, the signers
/// sign with it. `None` (KMS's default policy) when no principal is named.
fn key_policy(signers: &[String], administrators: &[String]) -> Option<String> {
    if signers.is_empty() && administrators.is_empty() {
        return None;
    }
    let mut statements = Vec::new();
    if !administrators.is_empty() {
        statements.push(json!({
            "Sid": "RotationManages",
            "Effect": "Allow",
            "Principal": {"AWS": administrators},
            "Action": [
                "kms:DescribeKey", "kms:GetPublicKey", "kms:GetKeyPolicy", "kms:PutKeyPolicy",
                "kms:ListResourceTags", "kms:TagResource", "kms:UntagResource",
                "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion", "kms:Sign"
            ],
            "Resource": "*",
        }));
    }
    if !signers.is_empty() {
        statements.push(json!({
            "Sid": "ServiceSigns",
            "Effect": "Allow",
            "Principal": {"AWS": signers},
            "Action": ["kms:Sign", "kms:GetPublicKey"],
            "Resource": "*",
        }));
    }
    // The account root may administer (through IAM policies of its own),
    // never sign: tokens are signed by the service only.
    let account = signers
        .iter()
        .chain(administrators)
        .find_map(|arn| arn.split(':').nth(4).filter(|a| !a.is_empty()))
        .map(str::to_owned);
    let partition = signers
        .iter()
        .chain(administrators)
        .find_map(|arn| arn.split(':').nth(1))
        .unwrap_or("aws");
    if let Some(account) = account {
        statements.push(json!({
            "Sid": "AccountAdministers",
            "Effect": "Allow",
            "Principal": {"AWS": format!("arn:{partition}:iam::{account}:root")},
            "Action": [
                "kms:Describe*", "kms:Get*", "kms:List*", "kms:Put*", "kms:Update*", "kms:Enable*",
                "kms:Disable*", "kms:Revoke*", "kms:TagResource", "kms:UntagResource",
                "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion"
            ],
            "Resource": "*",
        }));
    }
    Some(json!({"Version": "2012-10-17", "Statement": statements}).to_string())
}
