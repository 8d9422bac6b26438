//! The key-set document: one whole key set per version of the key-set
//! secret. `previous`, `current` and `next` are references to keys (a KMS key
//! id, or an envelope key sealed under KMS); all three are published, only
//! `current` signs. The document also carries what makes the set rotate by
//! itself: how new keys are made ([`SetKind`]) and the timings the rules use
//! ([`Timings`]), so that the rules run on the deployed values, never on the
//! values of whoever runs a command.
//!
//! A rotation makes the next document `{previous ← current, current ← next,
//! next ← a new key}` (see [`KeySetDocument::rotated`]).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use oidc_core::keys::VerifyingKey;
use oidc_core::Algorithm;
use oidc_core::{base64url, json, text};

/// The `format` of the documents this code reads and writes.
pub const FORMAT: &str = "connector-identity key set v2";

/// How the set's keys are made and held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetKind {
    /// Asymmetric KMS keys: every token is one KMS `Sign`; new keys are made
    /// with `CreateKey`, and a key that leaves the set is scheduled for deletion.
    Kms {
        /// `ECC_NIST_P256` (ES256) or an RSA spec (`RSA_2048`, ... for RS256/PS256).
        key_spec: String,
        /// The JWS algorithm its keys sign with.
        alg: Algorithm,
        /// Principals (role ARNs) the key policy lets `kms:Sign` and `kms:GetPublicKey`.
        signers: Vec<String>,
        /// Principals the key policy lets administer the key (the rotation role).
        administrators: Vec<String>,
        /// Waiting period of a leaving key's deletion (7 to 30 days).
        deletion_window_days: u32,
    },
    /// Local keys kept encrypted under a symmetric KMS key: zero KMS calls per token.
    KmsEnvelope {
        /// The symmetric KMS key new keys are sealed under.
        kms_key_id: String,
        /// ES256 or EdDSA.
        alg: Algorithm,
    },
}

impl SetKind {
    /// `kms` or `kms-envelope`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Kms { .. } => "kms",
            Self::KmsEnvelope { .. } => "kms-envelope",
        }
    }

    /// The algorithm new keys sign with.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Self::Kms { alg, .. } | Self::KmsEnvelope { alg, .. } => *alg,
        }
    }
}

/// Where one key's private half is.
#[derive(Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// An asymmetric KMS key (its ARN).
    Kms {
        /// Key ARN.
        key_id: String,
    },
    /// A PKCS#8 key encrypted under a symmetric KMS key (context: issuer and kid).
    KmsEnvelope {
        /// The symmetric key.
        kms_key_id: String,
        /// The ciphertext.
        ciphertext: Vec<u8>,
    },
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kms { key_id } => write!(f, "Kms({key_id})"),
            Self::KmsEnvelope {
                kms_key_id,
                ciphertext,
            } => write!(f, "KmsEnvelope({kms_key_id}, {} bytes)", ciphertext.len()),
        }
    }
}

/// One key of the set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRef {
    /// Where its private half is.
    pub material: KeyMaterial,
    /// The public key, its algorithm and `kid` (the RFC 7638 thumbprint).
    pub verifying_key: VerifyingKey,
    /// When it entered the set (Unix seconds, from Secrets Manager's
    /// `CreatedDate` of the version it entered with); `None` in the document
    /// that adds it: that version's own `CreatedDate`.
    pub entered_at: Option<u64>,
}

impl KeyRef {
    /// Its `kid`.
    pub fn kid(&self) -> &str {
        self.verifying_key.kid()
    }

    /// When it entered the set, given `created_at`, the `CreatedDate` of the
    /// version holding this document.
    pub fn entered(&self, created_at: u64) -> u64 {
        self.entered_at.unwrap_or(created_at)
    }
}

/// The times the rotation rules are made of (the deployed values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// The longest lifetime of a token signed with a key of this set.
    pub max_token_lifetime: Duration,
    /// The longest a verifier may cache the JWKS (`Cache-Control: max-age`).
    pub jwks_max_age: Duration,
    /// How often every replica reads the key set.
    pub poll_interval: Duration,
    /// Clock leeway of the verifiers.
    pub leeway: Duration,
    /// The longest a rotation may take from `createSecret` to `finishSecret`
    /// (a later `finishSecret` is refused and the rotation starts over): it
    /// bounds when a document comes into force after its creation, which
    /// the rules and the signing cap count on.
    pub rotation_window: Duration,
}

impl Timings {
    /// The rotation window of a document that does not name one (documents
    /// written before it existed): room for Secrets Manager's retries of a
    /// step, far below any rotation period.
    pub const DEFAULT_ROTATION_WINDOW: Duration = Duration::from_secs(300);
}

/// A key set before its first keys: what the stack (or `keys init`) writes
/// into a new secret, from which the first rotation makes the first
/// document. Its JSON is a document's without `previous`, `current`, `next`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySetTemplate {
    /// The issuer the set signs for.
    pub issuer: String,
    /// How its keys are made.
    pub kind: SetKind,
    /// The rules' timings.
    pub timings: Timings,
    /// A `kms` set's existing KMS key to make the first current key (a
    /// stack's key from before the set rotated by itself: it keeps signing,
    /// so no verifier sees a new kid before it is published).
    pub first_key_id: Option<String>,
}

/// What one version of the key-set secret holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySetValue {
    /// No keys yet.
    Template(KeySetTemplate),
    /// A key set.
    Document(Box<KeySetDocument>),
}

/// The key set in force in one version of the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySetDocument {
    /// The issuer the set signs for (bound into envelope keys' encryption context).
    pub issuer: String,
    /// How its keys are made.
    pub kind: SetKind,
    /// The rules' timings.
    pub timings: Timings,
    /// The key that signed before `current`: published until its tokens are gone.
    pub previous: Option<KeyRef>,
    /// The key that signs.
    pub current: KeyRef,
    /// The key that signs after the next rotation: published already.
    pub next: KeyRef,
}

/// A document that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key-set document is not valid: {0}")]
pub struct DocumentError(pub String);

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocument {
    format: String,
    issuer: String,
    kind: String,
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kms_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_spec: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    signers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    administrators: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deletion_window_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    first_key_id: Option<String>,
    max_token_lifetime_secs: u64,
    jwks_max_age_secs: u64,
    poll_interval_secs: u64,
    leeway_secs: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rotation_window_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous: Option<RawKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    current: Option<RawKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next: Option<RawKey>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    kid: String,
    jwk: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    entered_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kms_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ciphertext: Option<String>,
}

impl KeyRef {
    fn to_raw(&self) -> RawKey {
        let (key_id, kms_key_id, ciphertext) = match &self.material {
            KeyMaterial::Kms { key_id } => (Some(key_id.clone()), None, None),
            KeyMaterial::KmsEnvelope {
                kms_key_id,
                ciphertext,
            } => (
                None,
                Some(kms_key_id.clone()),
                Some(base64url::encode(ciphertext)),
            ),
        };
        RawKey {
            kid: self.kid().to_owned(),
            jwk: self.verifying_key.to_jwk(),
            entered_at: self.entered_at,
            key_id,
            kms_key_id,
            ciphertext,
        }
    }

    fn from_raw(raw: RawKey, kind: &SetKind, slot: &str) -> Result<Self, DocumentError> {
        let bad = |what: String| DocumentError(format!("{slot}: {what}"));
        let verifying_key = VerifyingKey::from_jwk(&raw.jwk).map_err(|e| bad(format!("jwk: {e}")))?;
        if verifying_key.kid() != raw.kid || verifying_key.public_key().thumbprint() != raw.kid {
            return Err(bad(format!(
                "kid {} is not the key's RFC 7638 thumbprint",
                raw.kid
            )));
        }
        let material = match (kind, raw.key_id, raw.kms_key_id, raw.ciphertext) {
            (SetKind::Kms { .. }, Some(key_id), None, None) if !key_id.is_empty() => {
                KeyMaterial::Kms { key_id }
            }
            (SetKind::KmsEnvelope { .. }, None, Some(kms_key_id), Some(ciphertext))
                if !kms_key_id.is_empty() =>
            {
                KeyMaterial::KmsEnvelope {
                    kms_key_id,
                    ciphertext: base64url::decode(&ciphertext)
                        .map_err(|e| bad(format!("ciphertext: {e}")))?,
                }
            }
            (SetKind::Kms { .. }, ..) => {
                return Err(bad("a kms set's key needs key_id (and nothing else)".into()))
            }
            (SetKind::KmsEnvelope { .. }, ..) => {
                return Err(bad(
                    "an envelope key needs kms_key_id and ciphertext (and not key_id)".into(),
                ))
            }
        };
        Ok(Self {
            material,
            verifying_key,
            entered_at: raw.entered_at,
        })
    }
}

impl KeySetDocument {
    /// The JSON stored in the secret (no private material: an envelope key
    /// appears only as KMS ciphertext).
    pub fn to_json(&self) -> String {
        self.template().raw(
            self.previous.as_ref().map(KeyRef::to_raw),
            Some(self.current.to_raw()),
            Some(self.next.to_raw()),
        )
    }

    /// The set without its keys.
    pub fn template(&self) -> KeySetTemplate {
        KeySetTemplate {
            issuer: self.issuer.clone(),
            kind: self.kind.clone(),
            timings: self.timings,
            first_key_id: None,
        }
    }

    /// The first document of `template`: `current` signs at once (no
    /// verifier can have cached anything yet), `next` is published.
    pub fn first(template: &KeySetTemplate, current: KeyRef, next: KeyRef) -> Self {
        Self {
            issuer: template.issuer.clone(),
            kind: template.kind.clone(),
            timings: template.timings,
            previous: None,
            current: KeyRef {
                entered_at: None,
                ..current
            },
            next: KeyRef {
                entered_at: None,
                ..next
            },
        }
    }

    /// Parses a stored document strictly (see [`KeySetValue::parse`]); a
    /// template is an error here.
    pub fn from_json(text: &str) -> Result<Self, DocumentError> {
        match KeySetValue::parse(text)? {
            KeySetValue::Document(document) => Ok(*document),
            KeySetValue::Template(_) => Err(DocumentError("the key set has no keys yet".into())),
        }
    }

    /// Every key, `current` first: all of them are published.
    pub fn keys(&self) -> impl Iterator<Item = &KeyRef> {
        [Some(&self.current), Some(&self.next), self.previous.as_ref()]
            .into_iter()
            .flatten()
    }

    /// The public keys to publish.
    pub fn published(&self) -> Vec<VerifyingKey> {
        self.keys().map(|k| k.verifying_key.clone()).collect()
    }

    /// The document after one rotation, `created_at` being the `CreatedDate`
    /// of the version holding `self`: the current key becomes previous, the
    /// next key current, `new` next; the key that was previous leaves.
    pub fn rotated(&self, created_at: u64, new: KeyRef) -> KeySetDocument {
        let settle = |key: &KeyRef| KeyRef {
            entered_at: Some(key.entered(created_at)),
            ..key.clone()
        };
        KeySetDocument {
            issuer: self.issuer.clone(),
            kind: self.kind.clone(),
            timings: self.timings,
            previous: Some(settle(&self.current)),
            current: settle(&self.next),
            next: KeyRef {
                entered_at: None,
                ..new
            },
        }
    }

    /// The set with `template`'s settings (timings, how new keys are made):
    /// a stack's parameters changed since the set was made. Its issuer, kind
    /// and algorithm must be the set's: a key set never changes those (its
    /// envelope keys are bound to its issuer, its keys share one algorithm).
    pub fn with_settings(&self, template: &KeySetTemplate) -> Result<KeySetDocument, DocumentError> {
        if template.issuer != self.issuer {
            return Err(DocumentError(format!(
                "the template is for issuer {}, the key set for {}: a key set keeps its issuer (make a new one)",
                template.issuer, self.issuer
            )));
        }
        if template.kind.name() != self.kind.name() || template.kind.algorithm() != self.kind.algorithm() {
            return Err(DocumentError(format!(
                "the template is a {} {} set, the key set a {} {} one: a key set keeps its kind and algorithm",
                template.kind.name(),
                template.kind.algorithm(),
                self.kind.name(),
                self.kind.algorithm()
            )));
        }
        Ok(KeySetDocument {
            kind: template.kind.clone(),
            timings: template.timings,
            ..self.clone()
        })
    }

    /// The key that leaves the set when `self` rotates.
    pub fn leaving(&self) -> Option<&KeyRef> {
        self.previous.as_ref()
    }
}

impl KeySetTemplate {
    fn raw(&self, previous: Option<RawKey>, current: Option<RawKey>, next: Option<RawKey>) -> String {
        let (kind, kms_key_id, key_spec, signers, administrators, deletion_window_days) = match &self.kind {
            SetKind::Kms {
                key_spec,
                signers,
                administrators,
                deletion_window_days,
                ..
            } => (
                "kms",
                None,
                Some(key_spec.clone()),
                signers.clone(),
                administrators.clone(),
                Some(*deletion_window_days),
            ),
            SetKind::KmsEnvelope { kms_key_id, .. } => (
                "kms-envelope",
                Some(kms_key_id.clone()),
                None,
                Vec::new(),
                Vec::new(),
                None,
            ),
        };
        let t = &self.timings;
        let raw = RawDocument {
            format: FORMAT.to_owned(),
            issuer: self.issuer.clone(),
            kind: kind.to_owned(),
            alg: self.kind.algorithm().name().to_owned(),
            kms_key_id,
            key_spec,
            signers,
            administrators,
            deletion_window_days,
            first_key_id: self.first_key_id.clone(),
            max_token_lifetime_secs: t.max_token_lifetime.as_secs(),
            jwks_max_age_secs: t.jwks_max_age.as_secs(),
            poll_interval_secs: t.poll_interval.as_secs(),
            leeway_secs: t.leeway.as_secs(),
            rotation_window_secs: Some(t.rotation_window.as_secs()),
            previous,
            current,
            next,
        };
        serde_json::to_string(&raw).unwrap_or_else(|_| unreachable!("strings and numbers serialize"))
    }

    /// The template's JSON (what a new secret holds).
    pub fn to_json(&self) -> String {
        self.raw(None, None, None)
    }
}

impl KeySetValue {
    /// Parses a version's value strictly: no duplicate or unknown members,
    /// every JWK valid and public with its thumbprint as `kid`, three
    /// distinct keys (or none: a template), timings that can rotate at all.
    pub fn parse(text: &str) -> Result<Self, DocumentError> {
        let map = json::parse_object(text.as_bytes()).map_err(|e| DocumentError(e.to_string()))?;
        let raw: RawDocument =
            serde_json::from_value(Value::Object(map)).map_err(|e| DocumentError(e.to_string()))?;
        if raw.format != FORMAT {
            return Err(DocumentError(format!(
                "format {:?} is not {FORMAT:?} (a key set of an earlier release: see docs/deploy.md, \
                 \"Moving to this release\")",
                text::excerpt(&raw.format)
            )));
        }
        let alg: Algorithm = raw.alg.parse().map_err(|e| DocumentError(format!("alg: {e}")))?;
        let kind = match raw.kind.as_str() {
            "kms" => {
                let deletion_window_days = raw.deletion_window_days.unwrap_or(30);
                if !(7..=30).contains(&deletion_window_days) {
                    return Err(DocumentError(
                        "deletion_window_days must be between 7 and 30".into(),
                    ));
                }
                SetKind::Kms {
                    key_spec: raw
                        .key_spec
                        .filter(|s| !s.is_empty())
                        .ok_or_else(|| DocumentError("a kms set needs key_spec".into()))?,
                    alg,
                    signers: raw.signers,
                    administrators: raw.administrators,
                    deletion_window_days,
                }
            }
            "kms-envelope" => SetKind::KmsEnvelope {
                kms_key_id: raw
                    .kms_key_id
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| DocumentError("a kms-envelope set needs kms_key_id".into()))?,
                alg,
            },
            other => return Err(DocumentError(format!("unknown kind {:?}", text::excerpt(other)))),
        };
        let timings = Timings {
            max_token_lifetime: Duration::from_secs(raw.max_token_lifetime_secs),
            jwks_max_age: Duration::from_secs(raw.jwks_max_age_secs),
            poll_interval: Duration::from_secs(raw.poll_interval_secs),
            leeway: Duration::from_secs(raw.leeway_secs),
            rotation_window: raw
                .rotation_window_secs
                .map_or(Timings::DEFAULT_ROTATION_WINDOW, Duration::from_secs),
        };
        timings.check().map_err(DocumentError)?;
        // A function URL ends with '/', which an issuer must not.
        let issuer = raw.issuer.trim_end_matches('/').to_owned();
        if issuer.is_empty() {
            return Err(DocumentError("issuer is empty".into()));
        }
        let first_key_id = raw.first_key_id.filter(|s| !s.is_empty());
        if first_key_id.is_some() && !matches!(kind, SetKind::Kms { .. }) {
            return Err(DocumentError(
                "first_key_id names a KMS key: kms sets only".into(),
            ));
        }
        let template = KeySetTemplate {
            issuer,
            kind,
            timings,
            first_key_id,
        };
        let (current, next) = match (raw.current, raw.next, &raw.previous) {
            (None, None, None) => return Ok(Self::Template(template)),
            _ if template.first_key_id.is_some() => {
                return Err(DocumentError(
                    "first_key_id belongs to a template (a set with no keys yet)".into(),
                ))
            }
            (Some(current), Some(next), _) => (current, next),
            _ => {
                return Err(DocumentError(
                    "a key set needs both current and next (or no keys at all)".into(),
                ))
            }
        };
        let kind = &template.kind;
        let previous = raw
            .previous
            .map(|k| KeyRef::from_raw(k, kind, "previous"))
            .transpose()?;
        let current = KeyRef::from_raw(current, kind, "current")?;
        let next = KeyRef::from_raw(next, kind, "next")?;
        for key in [Some(&current), Some(&next), previous.as_ref()]
            .into_iter()
            .flatten()
        {
            if key.verifying_key.algorithm() != kind.algorithm() {
                return Err(DocumentError(format!(
                    "key {} is {}, the set's algorithm is {}",
                    key.kid(),
                    key.verifying_key.algorithm(),
                    kind.algorithm()
                )));
            }
        }
        let document = KeySetDocument {
            issuer: template.issuer,
            kind: template.kind,
            timings: template.timings,
            previous,
            current,
            next,
        };
        let kids: Vec<&str> = document.keys().map(KeyRef::kid).collect();
        for (i, kid) in kids.iter().enumerate() {
            if kids[..i].contains(kid) {
                return Err(DocumentError(format!("key {kid} is in the set twice")));
            }
        }
        Ok(Self::Document(Box::new(document)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oidc_core::keys::{LocalSigner, Signer};

    fn key() -> KeyRef {
        let (signer, _) = LocalSigner::generate(Algorithm::ES256).unwrap();
        KeyRef {
            material: KeyMaterial::KmsEnvelope {
                kms_key_id: "arn:aws:kms:eu-west-1:1:key/k".into(),
                ciphertext: vec![1, 2, 3],
            },
            verifying_key: signer.verifying_key().clone(),
            entered_at: None,
        }
    }

    fn template() -> KeySetTemplate {
        KeySetTemplate {
            issuer: "https://issuer.test".into(),
            kind: SetKind::KmsEnvelope {
                kms_key_id: "arn:aws:kms:eu-west-1:1:key/k".into(),
                alg: Algorithm::ES256,
            },
            timings: Timings {
                max_token_lifetime: Duration::from_secs(900),
                jwks_max_age: Duration::from_secs(300),
                poll_interval: Duration::from_secs(30),
                leeway: Duration::from_secs(60),
                rotation_window: Duration::from_secs(120),
            },
            first_key_id: None,
        }
    }

    #[test]
    fn documents_written_before_the_rotation_window_get_the_default() {
        let doc = KeySetDocument::first(&template(), key(), key());
        let text = doc.to_json();
        assert!(text.contains("\"rotation_window_secs\":120"), "{text}");
        let older = text.replace(",\"rotation_window_secs\":120", "");
        assert_ne!(older, text);
        let parsed = KeySetDocument::from_json(&older).unwrap();
        assert_eq!(parsed.timings.rotation_window, Timings::DEFAULT_ROTATION_WINDOW);
    }

    #[test]
    fn documents_and_templates_round_trip_and_rotate() {
        let t = template();
        assert_eq!(
            KeySetValue::parse(&t.to_json()),
            Ok(KeySetValue::Template(t.clone()))
        );
        let first = KeySetDocument::first(&t, key(), key());
        let parsed = KeySetDocument::from_json(&first.to_json()).unwrap();
        assert_eq!(parsed, first);
        assert!(parsed.previous.is_none());
        let new = key();
        let second = first.rotated(1000, new.clone());
        assert_eq!(
            second.previous.as_ref().map(KeyRef::kid),
            Some(first.current.kid())
        );
        assert_eq!(second.previous.as_ref().and_then(|k| k.entered_at), Some(1000));
        assert_eq!(second.current.kid(), first.next.kid());
        assert_eq!(second.next.kid(), new.kid());
        assert_eq!(second.next.entered_at, None);
        assert_eq!(second.published().len(), 3);
        let third = second.rotated(2000, key());
        assert_eq!(
            third.previous.as_ref().and_then(|k| k.entered_at),
            Some(1000),
            "kept from when it entered"
        );
        assert_eq!(KeySetDocument::from_json(&third.to_json()).unwrap(), third);
        // New settings carry over; another issuer does not.
        let mut longer = t.clone();
        longer.timings.max_token_lifetime = Duration::from_secs(3600);
        assert_eq!(
            third.with_settings(&longer).unwrap().timings.max_token_lifetime,
            Duration::from_secs(3600)
        );
        let other = KeySetTemplate {
            issuer: "https://other.test".into(),
            ..t.clone()
        };
        assert!(third.with_settings(&other).is_err());
        // A trailing '/' (a function URL) is not part of an issuer.
        let slash = t.to_json().replace("https://issuer.test", "https://issuer.test/");
        let KeySetValue::Template(parsed) = KeySetValue::parse(&slash).unwrap() else {
            panic!()
        };
        assert_eq!(parsed.issuer, "https://issuer.test");
    }

    #[test]
    fn what_is_not_a_key_set_is_refused_with_the_reason() {
        let doc = KeySetDocument::first(&template(), key(), key()).to_json();
        let cases = [
            (doc.replace("key set v2", "key set v1"), "format"),
            (
                doc.replacen("\"issuer\"", "\"extra\":1,\"issuer\"", 1),
                "unknown field",
            ),
            (
                doc.replacen("\"issuer\"", "\"issuer\":\"x\",\"issuer\"", 1),
                "duplicate",
            ),
            (
                doc.replace("\"poll_interval_secs\":30", "\"poll_interval_secs\":0"),
                "poll_interval_secs",
            ),
            (
                doc.replace("\"kind\":\"kms-envelope\"", "\"kind\":\"hsm\""),
                "unknown kind",
            ),
            (
                template().to_json().replace("}", ",\"first_key_id\":\"k\"}"),
                "kms sets only",
            ),
        ];
        for (text, reason) in cases {
            let error = KeySetValue::parse(&text).unwrap_err();
            assert!(error.to_string().contains(reason), "{reason}: {error}");
        }
        // The same key twice.
        let k = key();
        let twice = KeySetDocument::first(&template(), k.clone(), k).to_json();
        assert!(KeySetValue::parse(&twice)
            .unwrap_err()
            .to_string()
            .contains("twice"));
        // A kid that is not the key's thumbprint.
        let first = KeySetDocument::first(&template(), key(), key());
        let wrong = first
            .to_json()
            .replacen(first.current.kid(), "not-the-thumbprint", 1);
        assert!(KeySetValue::parse(&wrong)
            .unwrap_err()
            .to_string()
            .contains("thumbprint"));
    }
}
