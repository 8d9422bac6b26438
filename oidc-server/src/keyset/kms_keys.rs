//! Making the keys a rotation adds, and retiring the KMS keys that leave.
//!
//! - an envelope set gets a fresh local key, sealed with KMS `Encrypt` under
//!   the set's symmetric key (encryption context: issuer and kid);
//! - a `kms` set gets a new asymmetric KMS key from `CreateKey` (its key
//!   spec, `SIGN_VERIFY`), tagged with the key set's name
//!   ([`KEY_SET_TAG`]) and the rotation's token ([`ROTATION_TAG`]), under a
//!   key policy that names the roles (`key_policy`): the set's signers
//!   may `kms:Sign` and `kms:GetPublicKey`, its administrators (the
//!   rotation, an operator) exactly the calls a rotation and `keys show`
//!   make. A retried step finds the key already tagged with its token
//!   instead of making another; a key that left the set is scheduled for
//!   deletion.
//!
//! The tags find the set's keys; they grant nothing. Access comes from each
//! key's own policy, which names its principals by ARN, so no IAM policy
//! needs a grant conditioned on `aws:ResourceTag` (a role that can tag a key
//! could then give itself that grant on any key whose policy defers to IAM).

use std::sync::Arc;

use aws_sdk_kms::types::{KeySpec, KeyState, KeyUsageType, Tag};
use serde_json::json;

use super::KeySetError;
use oidc_core::aws::{self, CallFailure};
use oidc_core::keys::kms_envelope;
use oidc_core::keys::{KmsOptions, KmsSigner, Signer};

use super::document::{KeyMaterial, KeyRef, SetKind};

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
                        self.create(key_spec, key_policy(signers, administrators).as_ref(), &tag)
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
        policy: Option<&KeyPolicy>,
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
        // `bypass`: KMS refuses a policy that does not let the caller
        // `PutKeyPolicy` later, unless told to skip that check. The rotation
        // must never rewrite a key's policy (it could grant `Sign` to
        // anyone), and the key stays manageable: the account administers it
        // through IAM (`AccountAdministers`), which is what the check is for.
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
            if let Some(policy) = policy {
                // See `bypass` above.
                request = request
                    .policy(&policy.text)
                    .bypass_policy_lockout_safety_check(policy.account_administers);
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

/// What an administrator of the set's keys calls on each of them (the
/// rotation role, and an operator running `oidc-server keys ...`):
///
/// | action | called by |
/// |---|---|
/// | `kms:GetPublicKey` | a rotation reading the key it made or adopted, and the probe signer of `testSecret` |
/// | `kms:Sign` | `testSecret`'s probe: the new current key must sign |
/// | `kms:ListResourceTags` | a retried `createSecret` finding the key it made (its rotation tag); `keys show` finding the set's keys |
/// | `kms:ScheduleKeyDeletion` | `finishSecret` retiring the key that left the set; a refused rotation retiring the key it made |
/// | `kms:DescribeKey` | `keys show`: the set's keys pending deletion |
///
/// Nothing else: no `PutKeyPolicy` (whoever can rewrite the policy can give
/// `Sign` to anyone), no `TagResource`/`UntagResource` (a key's tags are
/// set once, at `CreateKey`), no `CancelKeyDeletion`.
pub(crate) const ADMINISTRATOR_ACTIONS: [&str; 5] = [
    "kms:DescribeKey",
    "kms:GetPublicKey",
    "kms:ListResourceTags",
    "kms:ScheduleKeyDeletion",
    "kms:Sign",
];

/// What a signer of the set (the token service) calls: `GetPublicKey` to
/// publish and check the key, `Sign` for every token.
pub(crate) const SIGNER_ACTIONS: [&str; 2] = ["kms:GetPublicKey", "kms:Sign"];

/// What the account may do on the key through its IAM policies: administer
/// it (so the key is never locked out, whatever happens to the roles
/// named), never use it.
pub(crate) const ACCOUNT_ACTIONS: [&str; 12] = [
    "kms:Describe*",
    "kms:Get*",
    "kms:List*",
    "kms:Put*",
    "kms:Update*",
    "kms:Enable*",
    "kms:Disable*",
    "kms:Revoke*",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
];

/// A key policy for `CreateKey`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyPolicy {
    /// The policy document.
    pub(crate) text: String,
    /// Whether the account administers the key (through IAM): only then may
    /// KMS's lockout check be skipped.
    pub(crate) account_administers: bool,
}

/// The key policy of a new key: the administrators and the signers get
/// exactly what the code calls ([`ADMINISTRATOR_ACTIONS`],
/// [`SIGNER_ACTIONS`]); the account administers it through IAM (so the key
/// is never locked out) and never signs. `None` (KMS's default policy) when
/// no principal is named.
pub(crate) fn key_policy(signers: &[String], administrators: &[String]) -> Option<KeyPolicy> {
    if signers.is_empty() && administrators.is_empty() {
        return None;
    }
    let mut statements = Vec::new();
    if !administrators.is_empty() {
        statements.push(json!({
            "Sid": "RotationManages",
            "Effect": "Allow",
            "Principal": {"AWS": administrators},
            "Action": ADMINISTRATOR_ACTIONS,
            "Resource": "*",
        }));
    }
    if !signers.is_empty() {
        statements.push(json!({
            "Sid": "ServiceSigns",
            "Effect": "Allow",
            "Principal": {"AWS": signers},
            "Action": SIGNER_ACTIONS,
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
    if let Some(account) = &account {
        statements.push(json!({
            "Sid": "AccountAdministers",
            "Effect": "Allow",
            "Principal": {"AWS": format!("arn:{partition}:iam::{account}:root")},
            "Action": ACCOUNT_ACTIONS,
            "Resource": "*",
        }));
    }
    Some(KeyPolicy {
        text: json!({"Version": "2012-10-17", "Statement": statements}).to_string(),
        account_administers: account.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const SERVICE: &str = "arn:aws:iam::123456789012:role/token-service";
    const ROTATION: &str = "arn:aws:iam::123456789012:role/key-rotation";
    const OPERATOR: &str = "arn:aws:iam::123456789012:user/key-operator";

    /// Every statement of the generated policy, one row per action granted,
    /// and why: a new grant, a missing one or a changed principal fails.
    const EXPECTED: [(&str, &[&str], &str, &str); 19] = [
        (
            "RotationManages",
            &[ROTATION, OPERATOR],
            "kms:DescribeKey",
            "keys show: which of the set's keys are pending deletion",
        ),
        (
            "RotationManages",
            &[ROTATION, OPERATOR],
            "kms:GetPublicKey",
            "a rotation reads the key it made (and the probe signer does)",
        ),
        (
            "RotationManages",
            &[ROTATION, OPERATOR],
            "kms:ListResourceTags",
            "a retried createSecret finds the key it made by its rotation tag",
        ),
        (
            "RotationManages",
            &[ROTATION, OPERATOR],
            "kms:ScheduleKeyDeletion",
            "finishSecret retires the key that left the set",
        ),
        (
            "RotationManages",
            &[ROTATION, OPERATOR],
            "kms:Sign",
            "testSecret signs a probe with the new current key",
        ),
        (
            "ServiceSigns",
            &[SERVICE],
            "kms:GetPublicKey",
            "the service publishes the key and checks it is the published one",
        ),
        (
            "ServiceSigns",
            &[SERVICE],
            "kms:Sign",
            "the service signs every token",
        ),
        (
            "AccountAdministers",
            &["arn:aws:iam::123456789012:root"],
            "kms:Describe*",
            "the account administers the key through IAM",
        ),
        (
            "AccountAdministers",
            &["arn:aws:iam::123456789012:root"],
            "kms:Get*",
            "idem (GetKeyPolicy: what the roles may do)",
        ),
        (
            "AccountAdministers",
            &["arn:aws:iam::123456789012:root"],
            "kms:List*",
            "idem",
        ),
        (
            "AccountAdministers",
            &["arn:aws:iam::123456789012:root"],
            "kms:Put*",
            "idem: only the account may rewrite the policy, so it is never locked out",
        ),
        (
            "AccountAdministers",
            &["arn:aws:iam::123456789012:root"],
            "kms:Update*",
            "idem",
        ),
        (
            "AccountAdministers",
            &["arn:aws:iam::123456789012:root"],
            "kms:Enable*",
            "idem",
        ),
        (
            "AccountAdministers",
            &["arn:aws:iam::123456789012:root"],
            "kms:Disable*",
            "idem: an incident disables a key",
        ),
        (
            "AccountAdministers",
            &["arn:aws:iam::123456789012:root"],
            "kms:Revoke*",
            "idem",
        ),
        (
            "AccountAdministers",
            &["arn:aws:iam::123456789012:root"],
            "kms:TagResource",
            "idem",
        ),
        (
            "AccountAdministers",
            &["arn:aws:iam::123456789012:root"],
            "kms:UntagResource",
            "idem",
        ),
        (
            "AccountAdministers",
            &["arn:aws:iam::123456789012:root"],
            "kms:ScheduleKeyDeletion",
            "idem",
        ),
        (
            "AccountAdministers",
            &["arn:aws:iam::123456789012:root"],
            "kms:CancelKeyDeletion",
            "idem: undo a deletion scheduled by mistake",
        ),
    ];

    /// (Sid, principals, action) of every grant of `policy`.
    fn grants(policy: &KeyPolicy) -> BTreeSet<(String, Vec<String>, String)> {
        let document: serde_json::Value = serde_json::from_str(&policy.text).expect("the policy is JSON");
        let mut out = BTreeSet::new();
        for statement in document["Statement"].as_array().expect("statements") {
            assert_eq!(statement["Effect"], "Allow", "{statement}");
            // In a key policy, "*" is the key itself.
            assert_eq!(statement["Resource"], "*", "{statement}");
            assert!(statement.get("Condition").is_none(), "{statement}");
            let principals: Vec<String> = match &statement["Principal"]["AWS"] {
                serde_json::Value::String(one) => vec![one.clone()],
                many => many
                    .as_array()
                    .expect("principals")
                    .iter()
                    .map(|p| p.as_str().expect("an ARN").to_owned())
                    .collect(),
            };
            for action in statement["Action"].as_array().expect("actions") {
                out.insert((
                    statement["Sid"].as_str().expect("a Sid").to_owned(),
                    principals.clone(),
                    action.as_str().expect("an action").to_owned(),
                ));
            }
        }
        out
    }

    #[test]
    fn the_key_policy_grants_each_principal_what_it_calls_and_nothing_else() {
        let policy = key_policy(&[SERVICE.into()], &[ROTATION.into(), OPERATOR.into()]).expect("a policy");
        let expected: BTreeSet<(String, Vec<String>, String)> = EXPECTED
            .iter()
            .map(|(sid, principals, action, reason)| {
                assert!(!reason.is_empty());
                (
                    (*sid).to_owned(),
                    principals.iter().map(|p| (*p).to_owned()).collect(),
                    (*action).to_owned(),
                )
            })
            .collect();
        assert_eq!(grants(&policy), expected);
        // The account administers it: the lockout check may be skipped.
        assert!(policy.account_administers);

        // Nobody named may rewrite the policy, re-tag the key or cancel its
        // deletion; the account never signs.
        for (sid, _, action) in grants(&policy) {
            let forbidden: &[&str] = match sid.as_str() {
                "AccountAdministers" => &["kms:Sign", "kms:*", "kms:Create*"],
                _ => &[
                    "kms:PutKeyPolicy",
                    "kms:TagResource",
                    "kms:UntagResource",
                    "kms:CancelKeyDeletion",
                    "kms:GetKeyPolicy",
                ],
            };
            assert!(!forbidden.contains(&action.as_str()), "{sid}: {action}");
        }
    }

    /// The principals' actions are the key-level calls the code makes
    /// (`aws::call(.., "kms:...", ..)` in the signer and here), no more, no
    /// fewer: the calls on the set's keys, not `CreateKey`/`ListKeys`
    /// (account-level: IAM) nor `Encrypt`/`Decrypt` (the envelope key).
    #[test]
    fn the_granted_actions_are_the_calls_the_code_makes_on_a_key() {
        let sources = [
            include_str!("kms_keys.rs"),
            // The KMS signer, in oidc-core.
            include_str!("../../../oidc-core/src/keys/kms.rs"),
            include_str!("rotation.rs"),
            include_str!("poller.rs"),
        ];
        let mut called = BTreeSet::new();
        for text in sources {
            // The code, not its tests (this very test names the pattern).
            let text = text.split("#[cfg(test)]").next().unwrap_or(text);
            for (at, _) in text.match_indices("aws::call(") {
                let rest = &text[at..];
                let Some(open) = rest.find("\"kms:") else { continue };
                // The operation is the call's second argument, on its first lines.
                if open > 120 {
                    continue;
                }
                let name = &rest[open + 1..];
                let name = &name[..name.find('"').expect("a closing quote")];
                called.insert(name.to_owned());
            }
        }
        let account_level = ["kms:CreateKey", "kms:ListKeys"];
        let on_keys: BTreeSet<&str> = called
            .iter()
            .map(String::as_str)
            .filter(|op| !account_level.contains(op))
            .collect();
        assert_eq!(
            on_keys,
            ADMINISTRATOR_ACTIONS.into_iter().collect::<BTreeSet<_>>(),
            "the calls made on the set's keys"
        );
        assert!(SIGNER_ACTIONS.iter().all(|a| on_keys.contains(a)));
        for op in account_level {
            assert!(
                called.contains(op),
                "{op} is no longer called: drop it from the roles' IAM policies"
            );
        }
    }

    #[test]
    fn no_account_no_lockout_bypass() {
        assert_eq!(key_policy(&[], &[]), None);
        // A principal without an account (not an ARN KMS accepts anyway):
        // no account statement, so KMS's lockout check stays on.
        let policy = key_policy(&["token-service".into()], &[]).expect("a policy");
        assert!(!policy.account_administers);
        assert!(grants(&policy).iter().all(|(sid, _, _)| sid == "ServiceSigns"));
    }
}
