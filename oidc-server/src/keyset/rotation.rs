//! Secrets Manager's rotation protocol for the key set, implemented once for
//! the Lambda rotation handler and for `oidc-server keys rotate`.
//!
//! | step | does | retried |
//! |---|---|---|
//! | `createSecret` | builds the next document (`{previous ← current, current ← next, next ← a new key}`, or for a set with no keys yet its first document) and stores it as version `ClientRequestToken` labelled `AWSPENDING`; then checks the rules against that version's `CreatedDate` (Secrets Manager's clock) and, when they refuse, takes the label off again and says when the rotation would be allowed | a version already written for the token is kept while it is still pending, made from the version in force and within the rotation window (the same check as `finishSecret`); a KMS key already made for it is found by its tag |
//! | `setSecret` | nothing to configure elsewhere: checks the pending version is there and still pending | yes |
//! | `testSecret` | checks the version is still pending, signs a probe with the pending document's current key and verifies it with the document's published keys | yes |
//! | `finishSecret` | checks again that the pending version was made from the version in force and that it is within the rotation window of its creation (otherwise abandons it: takes `AWSPENDING` off, schedules the deletion of the KMS keys made for it, and fails, so that a new rotation starts from the set in force); moves `AWSCURRENT` to it from the version read as current (Secrets Manager moves `AWSPREVIOUS` itself), takes `AWSPENDING` off, and schedules the deletion of a KMS key that left the set | a version already current is finished |

use std::str::FromStr;

use ring::rand::SecureRandom;
use serde_json::Value;

use super::{KeyMaker, KeySetError, KeySetSecret, Stored, StoredValue};
use oidc_core::clock::{SystemClock, WallClock};
use oidc_core::jwks::JwkSet;
use oidc_core::jws::{self, Header, UnverifiedJws};
use oidc_core::keys::KmsOptions;

use super::document::{KeyMaterial, KeyRef, KeySetDocument, KeySetTemplate, KeySetValue, SetKind};

/// A step of the rotation protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationStep {
    /// Store the pending document.
    CreateSecret,
    /// Configure it elsewhere (nothing here).
    SetSecret,
    /// Check it works.
    TestSecret,
    /// Put it in force.
    FinishSecret,
}

impl RotationStep {
    /// The four steps in order.
    pub const ALL: [RotationStep; 4] = [
        RotationStep::CreateSecret,
        RotationStep::SetSecret,
        RotationStep::TestSecret,
        RotationStep::FinishSecret,
    ];

    /// The name Secrets Manager sends (`createSecret`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::CreateSecret => "createSecret",
            Self::SetSecret => "setSecret",
            Self::TestSecret => "testSecret",
            Self::FinishSecret => "finishSecret",
        }
    }
}

impl FromStr for RotationStep {
    type Err = String;

    /// Both spellings found in AWS's documentation and templates:
    /// `createSecret` and `create_secret`.
    fn from_str(text: &str) -> Result<Self, String> {
        let folded: String = text
            .chars()
            .filter(|c| *c != '_')
            .collect::<String>()
            .to_ascii_lowercase();
        match folded.as_str() {
            "createsecret" => Ok(Self::CreateSecret),
            "setsecret" => Ok(Self::SetSecret),
            "testsecret" => Ok(Self::TestSecret),
            "finishsecret" => Ok(Self::FinishSecret),
            _ => Err(format!(
                "unknown rotation step {:?}",
                oidc_core::text::excerpt(text)
            )),
        }
    }
}

/// A rotation event as Secrets Manager invokes the rotation function with:
/// `{"Step": ..., "SecretId": ..., "ClientRequestToken": ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationEvent {
    /// The step.
    pub step: RotationStep,
    /// The secret (name or ARN).
    pub secret_id: String,
    /// The rotation's token: the pending version's id.
    pub token: String,
}

impl RotationEvent {
    /// Reads an event, or says why it is not one (other members, such as
    /// `RotationToken`, are ignored).
    pub fn from_json(event: &Value) -> Result<Self, String> {
        let text = |name: &str| {
            event
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| format!("a rotation event needs a string {name:?}"))
        };
        let token = text("ClientRequestToken")?;
        if !(32..=64).contains(&token.len()) || !token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("ClientRequestToken must be 32 to 64 letters, digits and dashes".into());
        }
        Ok(Self {
            step: text("Step")?.parse()?,
            secret_id: text("SecretId")?.to_owned(),
            token: token.to_owned(),
        })
    }

    /// Whether `event` looks like a rotation event at all (it has a `Step`).
    pub fn is_rotation(event: &Value) -> bool {
        event.get("Step").is_some() && event.get("ClientRequestToken").is_some()
    }
}

/// What a whole rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    /// The version now in force.
    pub version_id: String,
    /// The key that signs now.
    pub current: String,
    /// The key published to sign after the next rotation.
    pub next: String,
    /// The KMS key that left the set and is scheduled for deletion, if any.
    pub deleted: Option<String>,
}

/// The rotation of one key set.
#[derive(Debug, Clone)]
pub struct Rotation {
    secret: KeySetSecret,
    keys: KeyMaker,
    next_key_id: Option<String>,
    template: Option<KeySetTemplate>,
}

const PENDING: &str = "AWSPENDING";
const CURRENT: &str = "AWSCURRENT";

/// A fresh `ClientRequestToken` (32 hex digits).
pub(crate) fn new_token() -> Result<String, KeySetError> {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| KeySetError::Unavailable("the random number generator failed".into()))?;
    Ok(hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Rotation {
    /// The rotation of `secret`, making keys with `keys`.
    pub fn new(secret: KeySetSecret, keys: KeyMaker) -> Self {
        Self {
            secret,
            keys,
            next_key_id: None,
            template: None,
        }
    }

    /// The rotation of the secret `secret_id` (name or ARN) through the
    /// clients of `sdk`, each call made under `options`; its KMS keys are
    /// tagged with the secret's name.
    pub fn connect(sdk: &oidc_core::aws::SdkConfig, secret_id: &str, options: KmsOptions) -> Self {
        let secret = KeySetSecret::new(
            &aws_sdk_secretsmanager::Client::new(sdk),
            secret_id,
            options.calls.clone(),
        );
        let keys = KeyMaker::new(aws_sdk_kms::Client::new(sdk), options, secret.name());
        Self::new(secret, keys)
    }

    /// The maker of the set's keys.
    pub fn keys(&self) -> &KeyMaker {
        &self.keys
    }

    /// Uses the KMS key `key_id` as the new next key instead of creating one
    /// (`keys rotate --next-key-id`, for operators who create keys themselves).
    pub fn with_next_key(mut self, key_id: impl Into<String>) -> Self {
        self.next_key_id = Some(key_id.into());
        self
    }

    /// Makes the first document of an empty secret from `template`, and
    /// applies its settings (timings, key policy principals, deletion
    /// window, key spec) to every next document: how a stack's parameters
    /// reach its key set without rewriting the secret (the rotation
    /// function's `OIDC_SERVER_KEY_SET_TEMPLATE`). A template for another
    /// issuer or kind than the set in force is refused.
    pub fn with_template(mut self, template: KeySetTemplate) -> Self {
        self.template = Some(template);
        self
    }

    /// The secret.
    pub fn secret(&self) -> &KeySetSecret {
        &self.secret
    }

    /// Runs one step for rotation `token`.
    pub async fn step(&self, step: RotationStep, token: &str) -> Result<(), KeySetError> {
        match step {
            RotationStep::CreateSecret => self.create_secret(token).await,
            RotationStep::SetSecret => self.set_secret(token).await,
            RotationStep::TestSecret => self.test_secret(token).await,
            RotationStep::FinishSecret => self.finish_secret(token).await.map(|_| ()),
        }
    }

    /// Runs the four steps with a fresh token (what Secrets Manager does,
    /// driven from here).
    pub async fn rotate(&self) -> Result<Rotated, KeySetError> {
        let token = new_token()?;
        for step in [
            RotationStep::CreateSecret,
            RotationStep::SetSecret,
            RotationStep::TestSecret,
        ] {
            self.step(step, &token).await?;
        }
        let deleted = self.finish_secret(&token).await?;
        let document = self.pending_or_current(&token).await?;
        Ok(Rotated {
            version_id: token,
            current: document.current.kid().to_owned(),
            next: document.next.kid().to_owned(),
            deleted,
        })
    }

    fn failed(token: &str, reason: impl Into<String>) -> KeySetError {
        KeySetError::Rotation {
            token: token.to_owned(),
            reason: reason.into(),
        }
    }

    async fn pending_or_current(&self, token: &str) -> Result<KeySetDocument, KeySetError> {
        let stored = self
            .secret
            .version(token)
            .await?
            .ok_or_else(|| Self::failed(token, "no version was written for this rotation"))?;
        match stored.value {
            KeySetValue::Document(document) => Ok(*document),
            KeySetValue::Template(_) => Err(Self::failed(token, "the version holds no keys")),
        }
    }

    async fn create_secret(&self, token: &str) -> Result<(), KeySetError> {
        // Written already (a retried step): kept only while it can still
        // come into force.
        if let Some(pending) = self.secret.version(token).await? {
            let (stages, now) = self.secret.stages_now().await?;
            let labels = stages.get(token).map(Vec::as_slice).unwrap_or_default();
            if labels.iter().any(|l| l == CURRENT) {
                return Ok(());
            }
            if !labels.iter().any(|l| l == PENDING) {
                return Err(Self::failed(
                    token,
                    "its version exists but is not pending (the rules refused it, or it came too late): start \
                     another rotation",
                ));
            }
            let current = self.secret.current().await?;
            return self.still_in_time(token, &pending, current.as_ref(), now).await;
        }
        let current = self.secret.current().await?;
        let pending = match current.as_ref().map(|c| &c.value) {
            // An empty secret (what a stack creates): the template given
            // to the rotation makes the first document.
            None => {
                let template = self.template.as_ref().ok_or_else(|| {
                    Self::failed(
                        token,
                        "the secret holds no key set and the rotation has no template to make one from                          (create it with `oidc-server keys init`)",
                    )
                })?;
                self.first_document(template, token).await?
            }
            Some(KeySetValue::Template(stored)) => {
                let template = self.template.as_ref().unwrap_or(stored);
                self.first_document(template, token).await?
            }
            Some(KeySetValue::Document(document)) => {
                let document = match &self.template {
                    Some(template) => document
                        .with_settings(template)
                        .map_err(|e| Self::failed(token, e.to_string()))?,
                    None => (**document).clone(),
                };
                let created_at = current.as_ref().map_or(0, |c| c.created_at);
                let next = self.new_next(&document.kind, &document.issuer, token).await?;
                document.rotated(created_at, next)
            }
        };
        self.secret.put_pending(token, &pending.to_json()).await?;
        // The rules, on Secrets Manager's clock: the pending version's
        // CreatedDate is now. They are the rules of the set in force.
        if let Some(Stored {
            created_at,
            value: KeySetValue::Document(document),
            ..
        }) = &current
        {
            let now = self.secret.version(token).await?.map_or(0, |v| v.created_at);
            if let Err(too_early) = document.timings.check_rotation(*created_at, now) {
                self.abandon(token, &pending, current.as_ref()).await?;
                return Err(too_early.into());
            }
        }
        tracing::info!(
            secret = self.secret.secret_id(),
            token,
            current = pending.current.kid(),
            next = pending.next.kid(),
            "rotation: pending key set written"
        );
        Ok(())
    }

    async fn first_document(
        &self,
        template: &KeySetTemplate,
        token: &str,
    ) -> Result<KeySetDocument, KeySetError> {
        let first = match &template.first_key_id {
            Some(key_id) => self.keys.existing_key(&template.kind, key_id).await?,
            None => {
                self.keys
                    .new_key(&template.kind, &template.issuer, token, "current")
                    .await?
            }
        };
        let next = self.new_next(&template.kind, &template.issuer, token).await?;
        Ok(KeySetDocument::first(template, first, next))
    }

    async fn new_next(
        &self,
        kind: &SetKind,
        issuer: &str,
        token: &str,
    ) -> Result<super::document::KeyRef, KeySetError> {
        match (&self.next_key_id, kind) {
            (Some(key_id), SetKind::Kms { .. }) => self.keys.existing_key(kind, key_id).await,
            (Some(_), SetKind::KmsEnvelope { .. }) => Err(KeySetError::Refused(
                "--next-key-id names a KMS key: it applies to kms sets only".into(),
            )),
            (None, _) => self.keys.new_key(kind, issuer, token, "next").await,
        }
    }

    /// `Ok` if the pending version `pending` may still come into force on
    /// top of `current`: it was built from it (its previous and current keys
    /// are the current and next keys in force, or it is a first document
    /// and no key set is in force), and `now` is within the rotation window
    /// of its creation (both on Secrets Manager's clock; this process's
    /// clock only if an answer had no `Date`). Otherwise the rotation is
    /// abandoned: a new one starts from the set in force.
    async fn still_in_time(
        &self,
        token: &str,
        pending: &StoredValue,
        current: Option<&StoredValue>,
        now: Option<u64>,
    ) -> Result<(), KeySetError> {
        let KeySetValue::Document(document) = &pending.value else {
            return Err(Self::failed(token, "the pending version holds no keys"));
        };
        let in_force = match current.map(|c| &c.value) {
            Some(KeySetValue::Document(d)) => Some(d),
            None | Some(KeySetValue::Template(_)) => None,
        };
        let built_from_it = match (in_force, &document.previous) {
            (Some(d), Some(previous)) => {
                previous.kid() == d.current.kid() && document.current.kid() == d.next.kid()
            }
            (None, None) => true,
            _ => false,
        };
        if !built_from_it {
            self.abandon(token, document, current).await?;
            return Err(Self::failed(
                token,
                "the key set in force changed since the pending one was made from it: start another rotation",
            ));
        }
        // The shorter window of both documents: the set in force caps its
        // tokens by its own, the pending one's rules count on its own.
        let mut timings = document.timings;
        if let Some(d) = in_force {
            timings.rotation_window = timings.rotation_window.min(d.timings.rotation_window);
        }
        let now = now.unwrap_or_else(|| SystemClock.now());
        if let Err(too_late) = timings.check_finish(pending.created_at, now) {
            self.abandon(token, document, current).await?;
            return Err(too_late.into());
        }
        Ok(())
    }

    /// Takes `AWSPENDING` off version `token`, whose `pending` document will
    /// never come into force, and schedules the deletion of the KMS keys
    /// made for it (an operator's own keys stay theirs).
    async fn abandon(
        &self,
        token: &str,
        pending: &KeySetDocument,
        current: Option<&StoredValue>,
    ) -> Result<(), KeySetError> {
        self.secret.clear_pending(token).await?;
        if !matches!(pending.kind, SetKind::Kms { .. }) {
            return Ok(());
        }
        let first_key_id = match current.map(|c| &c.value) {
            Some(KeySetValue::Template(stored)) => {
                self.template.as_ref().unwrap_or(stored).first_key_id.clone()
            }
            _ => None,
        };
        let in_force: Vec<&str> = match current.map(|c| &c.value) {
            Some(KeySetValue::Document(d)) => d.keys().map(KeyRef::kid).collect(),
            _ => Vec::new(),
        };
        for key in pending.keys().filter(|k| !in_force.contains(&k.kid())) {
            let KeyMaterial::Kms { key_id } = &key.material else {
                continue;
            };
            let theirs = [self.next_key_id.as_deref(), first_key_id.as_deref()]
                .into_iter()
                .flatten()
                .any(|own| own == key_id || key_id.ends_with(&format!("/{own}")));
            if !theirs {
                self.keys.schedule_deletion(key_id, 7).await?;
            }
        }
        Ok(())
    }

    /// The document of version `token`, which must still be pending (or
    /// already in force: a retried step).
    async fn still_pending(&self, token: &str) -> Result<KeySetDocument, KeySetError> {
        let stages = self.secret.stages().await?;
        let labels = stages.get(token).map(Vec::as_slice).unwrap_or_default();
        if !labels.iter().any(|l| l == PENDING || l == CURRENT) {
            return Err(Self::failed(
                token,
                "its version is not pending (the rules refused it, or it came too late): start another rotation",
            ));
        }
        self.pending_or_current(token).await
    }

    async fn set_secret(&self, token: &str) -> Result<(), KeySetError> {
        // Nothing outside the secret holds the keys: the servers poll it.
        self.still_pending(token).await.map(|_| ())
    }

    async fn test_secret(&self, token: &str) -> Result<(), KeySetError> {
        let document = self.still_pending(token).await?;
        let signer = self.keys.signer(&document.current, &document.issuer).await?;
        let header = Header::encode(signer.algorithm(), "JWT", signer.kid());
        let probe = format!("{{\"rotation\":\"{token}\"}}");
        let signed = jws::sign(&header, probe.as_bytes(), signer.as_ref())
            .await
            .map_err(|e| Self::failed(token, format!("the new current key cannot sign: {e}")))?;
        let published = JwkSet::from_keys(document.published())
            .map_err(|e| Self::failed(token, format!("the published keys: {e}")))?;
        let verified = UnverifiedJws::decode(&signed, 16 * 1024).ok().and_then(|jws| {
            let key = published.get(jws.header().kid.as_deref()?)?.clone();
            jws.verify(&key).ok()
        });
        if verified.as_deref() != Some(probe.as_bytes()) {
            return Err(Self::failed(
                token,
                "a probe signed with the new current key does not verify with the published keys",
            ));
        }
        Ok(())
    }

    /// Returns the KMS key scheduled for deletion, if one left the set.
    async fn finish_secret(&self, token: &str) -> Result<Option<String>, KeySetError> {
        let (stages, now) = self.secret.stages_now().await?;
        let labels = stages
            .get(token)
            .ok_or_else(|| Self::failed(token, "no version was written for this rotation"))?;
        let before = stages
            .iter()
            .find(|(id, labels)| *id != token && labels.iter().any(|l| l == CURRENT))
            .map(|(id, _)| id.clone());
        if !labels.iter().any(|l| l == CURRENT) {
            if !labels.iter().any(|l| l == PENDING) {
                return Err(Self::failed(
                    token,
                    "its version is not pending (the rules refused it, or it came too late): start another rotation",
                ));
            }
            // The rules were checked when the version was created; it comes
            // into force only now, so they are checked again.
            let pending = self
                .secret
                .version(token)
                .await?
                .ok_or_else(|| Self::failed(token, "no version was written for this rotation"))?;
            let current = self.secret.current().await?;
            self.still_in_time(token, &pending, current.as_ref(), now).await?;
            // Moved from the version read as current: if another rotation
            // moved the label since, Secrets Manager refuses the move.
            let from = current
                .map(|c| c.version_id)
                .or_else(|| before.clone())
                .ok_or_else(|| Self::failed(token, "no version is current"))?;
            self.secret.make_current(token, &from).await?;
        }
        if labels.iter().any(|l| l == PENDING) {
            self.secret.clear_pending(token).await?;
        }
        // The key the rotation removed: in the document it replaced, not in
        // this one. Its last token has expired: the rules made sure.
        let now = self.pending_or_current(token).await?;
        let previous_id = match before {
            Some(id) => Some(id),
            // Finished already: the replaced version is the one labelled previous.
            None => stages
                .iter()
                .find(|(id, labels)| *id != token && labels.iter().any(|l| l == "AWSPREVIOUS"))
                .map(|(id, _)| id.clone()),
        };
        let Some(previous_id) = previous_id else {
            return Ok(None);
        };
        let Some(replaced) = self.secret.version(&previous_id).await? else {
            return Ok(None);
        };
        let KeySetValue::Document(replaced) = replaced.value else {
            return Ok(None);
        };
        let (
            Some(leaving),
            SetKind::Kms {
                deletion_window_days, ..
            },
        ) = (replaced.leaving(), &now.kind)
        else {
            return Ok(None);
        };
        if now.keys().any(|k| k.kid() == leaving.kid()) {
            return Ok(None);
        }
        let KeyMaterial::Kms { key_id } = &leaving.material else {
            return Ok(None);
        };
        self.keys.schedule_deletion(key_id, *deletion_window_days).await?;
        tracing::info!(
            key = key_id.as_str(),
            days = deletion_window_days,
            "rotation: key left the set, deletion scheduled"
        );
        Ok(Some(key_id.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn steps_in_both_spellings() {
        for (text, step) in [
            ("createSecret", RotationStep::CreateSecret),
            ("create_secret", RotationStep::CreateSecret),
            ("setSecret", RotationStep::SetSecret),
            ("set_secret", RotationStep::SetSecret),
            ("testSecret", RotationStep::TestSecret),
            ("test_secret", RotationStep::TestSecret),
            ("finishSecret", RotationStep::FinishSecret),
            ("finish_secret", RotationStep::FinishSecret),
        ] {
            assert_eq!(text.parse::<RotationStep>(), Ok(step), "{text}");
        }
        assert!("deleteSecret".parse::<RotationStep>().is_err());
    }

    #[test]
    fn events() {
        let token = "0123456789abcdef0123456789abcdef";
        let event = json!({"Step": "createSecret", "SecretId": "arn:aws:secretsmanager:x", "ClientRequestToken": token, "RotationToken": "r"});
        assert!(RotationEvent::is_rotation(&event));
        let parsed = RotationEvent::from_json(&event).unwrap();
        assert_eq!(
            (parsed.step, parsed.token.as_str()),
            (RotationStep::CreateSecret, token)
        );
        assert!(RotationEvent::from_json(&json!({"Step": "createSecret", "SecretId": "s"})).is_err());
        assert!(RotationEvent::from_json(
            &json!({"Step": "createSecret", "SecretId": "s", "ClientRequestToken": "short"})
        )
        .is_err());
        assert!(!RotationEvent::is_rotation(
            &json!({"version": "2.0", "rawPath": "/token"})
        ));
        assert_eq!(new_token().unwrap().len(), 32);
    }
}
