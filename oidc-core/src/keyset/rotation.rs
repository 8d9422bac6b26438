//! Key rotation rules, independent of where the key set is stored.
//!
//! Three stages (stored as Secrets Manager version stages by
//! [`super::aws`]):
//!
//! | stage | label | published | signs |
//! |---|---|---|---|
//! | next | `AWSPENDING` | yes | no |
//! | active | `AWSCURRENT` | yes | once mature (or when nothing else can) |
//! | retiring | `AWSPREVIOUS` | yes | only while the active key is not mature, capped |
//!
//! With `M` = poll interval + JWKS cache lifetime (the *maturity window*: every
//! replica has polled and published a key, and every verifier's cached JWKS
//! has had time to expire), `T` = the longest token lifetime and `L` = the
//! verifiers' leeway:
//!
//! - a key signs only once `published_at + M` has passed. If the active key is
//!   promoted earlier, replicas keep signing with the retiring key, every
//!   token of which expires by `activated_at + M + T`;
//! - a next key may be promoted only at `published_at + M` (unless no key is
//!   active at all: then there is nothing to rotate from);
//! - the retiring key may be removed only at `activated_at + M + T + L` of the
//!   active key: by then every replica has stopped signing with it (the last
//!   at `activated_at + M` at the latest) and its last token has expired
//!   beyond any verifier's leeway; a promotion, which would silently drop the
//!   retiring key, is refused before that time too;
//! - a replica that cannot read the key set caps its tokens at
//!   `last_sync + M + T`: a rotation it has not seen cannot remove its key
//!   before then.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::keys::VerifyingKey;
use crate::{base64url, json, Algorithm};

/// A key's stage in the key set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Published, not signing (`AWSPENDING`).
    Next,
    /// Signing (`AWSCURRENT`).
    Active,
    /// Published until its last token has expired (`AWSPREVIOUS`).
    Retiring,
}

impl Stage {
    /// The Secrets Manager version stage label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Next => "AWSPENDING",
            Self::Active => "AWSCURRENT",
            Self::Retiring => "AWSPREVIOUS",
        }
    }

    /// The stage of a label, if it is one of the three.
    pub fn from_label(label: &str) -> Option<Self> {
        match label {
            "AWSPENDING" => Some(Self::Next),
            "AWSCURRENT" => Some(Self::Active),
            "AWSPREVIOUS" => Some(Self::Retiring),
            _ => None,
        }
    }

    /// `next`, `active` or `retiring`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Next => "next",
            Self::Active => "active",
            Self::Retiring => "retiring",
        }
    }
}

/// Where a key's private half lives.
#[derive(Clone, PartialEq, Eq)]
pub enum KeyBackend {
    /// An asymmetric KMS key; every token is one KMS `Sign`.
    Kms {
        /// Key id, ARN or alias.
        key_id: String,
    },
    /// A local key encrypted under a symmetric KMS key.
    KmsEnvelope {
        /// The symmetric KMS key.
        kms_key_id: String,
        /// KMS ciphertext of the PKCS#8 DER key.
        ciphertext: Vec<u8>,
    },
}

impl fmt::Debug for KeyBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kms { key_id } => write!(f, "Kms({key_id})"),
            Self::KmsEnvelope {
                kms_key_id,
                ciphertext,
            } => {
                write!(f, "KmsEnvelope({kms_key_id}, {} bytes)", ciphertext.len())
            }
        }
    }
}

impl KeyBackend {
    /// `kms` or `kms-envelope`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Kms { .. } => "kms",
            Self::KmsEnvelope { .. } => "kms-envelope",
        }
    }
}

/// One key of the key set: one Secrets Manager version's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// Where the private key is.
    pub backend: KeyBackend,
    /// The public key, its algorithm and `kid` (the RFC 7638 thumbprint).
    pub verifying_key: VerifyingKey,
    /// When it was first published (Unix seconds).
    pub published_at: u64,
    /// When it was made active (Unix seconds); set by promotion.
    pub activated_at: Option<u64>,
}

/// A key record that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key record is not valid: {0}")]
pub struct RecordError(pub String);

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecord {
    kind: String,
    alg: String,
    kid: String,
    jwk: Map<String, Value>,
    published_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    activated_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kms_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ciphertext: Option<String>,
}

impl KeyRecord {
    /// The key id.
    pub fn kid(&self) -> &str {
        self.verifying_key.kid()
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.verifying_key.algorithm()
    }

    /// When it became (or becomes) the active key: `activated_at`, else `published_at`.
    pub fn active_since(&self) -> u64 {
        self.activated_at.unwrap_or(self.published_at)
    }

    /// The JSON document stored for this key (no private material: an
    /// envelope key appears only as KMS ciphertext).
    pub fn to_json(&self) -> String {
        let (key_id, kms_key_id, ciphertext) = match &self.backend {
            KeyBackend::Kms { key_id } => (Some(key_id.clone()), None, None),
            KeyBackend::KmsEnvelope {
                kms_key_id,
                ciphertext,
            } => (
                None,
                Some(kms_key_id.clone()),
                Some(base64url::encode(ciphertext)),
            ),
        };
        let raw = RawRecord {
            kind: self.backend.kind().to_owned(),
            alg: self.algorithm().name().to_owned(),
            kid: self.kid().to_owned(),
            jwk: self.verifying_key.to_jwk(),
            published_at: self.published_at,
            activated_at: self.activated_at,
            key_id,
            kms_key_id,
            ciphertext,
        };
        serde_json::to_string(&raw)
            .unwrap_or_else(|_| unreachable!("a record of strings and numbers serializes"))
    }

    /// Parses a stored document strictly: no duplicate or unknown members,
    /// the JWK valid and public, its `kid` its thumbprint.
    pub fn from_json(text: &str) -> Result<Self, RecordError> {
        let map = json::parse_object(text.as_bytes()).map_err(|e| RecordError(e.to_string()))?;
        let raw: RawRecord =
            serde_json::from_value(Value::Object(map)).map_err(|e| RecordError(e.to_string()))?;
        let verifying_key = VerifyingKey::from_jwk(&raw.jwk).map_err(|e| RecordError(format!("jwk: {e}")))?;
        if verifying_key.kid() != raw.kid || verifying_key.algorithm().name() != raw.alg {
            return Err(RecordError("kid or alg differ from the JWK's".into()));
        }
        if verifying_key.public_key().thumbprint() != raw.kid {
            return Err(RecordError(format!(
                "kid {} is not the key's RFC 7638 thumbprint",
                raw.kid
            )));
        }
        if raw.activated_at.is_some_and(|at| at < raw.published_at) {
            return Err(RecordError("activated_at is before published_at".into()));
        }
        let backend = match (raw.kind.as_str(), raw.key_id, raw.kms_key_id, raw.ciphertext) {
            ("kms", Some(key_id), None, None) if !key_id.is_empty() => KeyBackend::Kms { key_id },
            ("kms-envelope", None, Some(kms_key_id), Some(ciphertext)) if !kms_key_id.is_empty() => {
                KeyBackend::KmsEnvelope {
                    kms_key_id,
                    ciphertext: base64url::decode(&ciphertext)
                        .map_err(|e| RecordError(format!("ciphertext: {e}")))?,
                }
            }
            ("kms", ..) => return Err(RecordError("kind \"kms\" needs key_id (and nothing else)".into())),
            ("kms-envelope", ..) => {
                return Err(RecordError(
                    "kind \"kms-envelope\" needs kms_key_id and ciphertext (and not key_id)".into(),
                ))
            }
            (other, ..) => return Err(RecordError(format!("unknown kind {other:?}"))),
        };
        Ok(Self {
            backend,
            verifying_key,
            published_at: raw.published_at,
            activated_at: raw.activated_at,
        })
    }
}

/// The times that the rotation rules are built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationTimings {
    /// How often every replica reads the key set.
    pub poll_interval: Duration,
    /// The JWKS `Cache-Control: max-age` verifiers cache it for.
    pub jwks_max_age: Duration,
    /// The longest token lifetime.
    pub max_ttl: Duration,
    /// Clock leeway of the verifiers.
    pub leeway: Duration,
}

impl RotationTimings {
    /// `M`: how long a key is published before it may sign.
    pub fn maturity_secs(&self) -> u64 {
        ceil_secs(self.poll_interval).saturating_add(ceil_secs(self.jwks_max_age))
    }

    /// When `record` may start signing.
    pub fn signs_from(&self, record: &KeyRecord) -> u64 {
        record.published_at.saturating_add(self.maturity_secs())
    }

    /// Every token of the key retiring in favour of `active` expires by then.
    pub fn retiring_expires_by(&self, active: &KeyRecord) -> u64 {
        active
            .active_since()
            .saturating_add(self.maturity_secs())
            .saturating_add(ceil_secs(self.max_ttl))
    }

    /// When the key retiring in favour of `active` may be removed.
    pub fn retirable_at(&self, active: &KeyRecord) -> u64 {
        self.retiring_expires_by(active)
            .saturating_add(ceil_secs(self.leeway))
    }

    /// The cap on tokens of a replica whose last successful read was at `last_sync`.
    pub fn stale_expires_by(&self, last_sync: u64) -> u64 {
        last_sync
            .saturating_add(self.maturity_secs())
            .saturating_add(ceil_secs(self.max_ttl))
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// A key record with the secret version that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedKey {
    /// The Secrets Manager version id.
    pub version_id: String,
    /// The record.
    pub record: KeyRecord,
}

/// The key set as stored: at most one key per stage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StagedKeys {
    /// `AWSPENDING`.
    pub next: Option<StagedKey>,
    /// `AWSCURRENT`.
    pub active: Option<StagedKey>,
    /// `AWSPREVIOUS`.
    pub retiring: Option<StagedKey>,
}

/// A key that may sign now, and the cap its publication puts on its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigningCandidate<'a> {
    /// The key.
    pub key: &'a StagedKey,
    /// Its stage.
    pub stage: Stage,
    /// No token it signs may expire after this (Unix seconds).
    pub expires_by: Option<u64>,
}

/// What a promotion that the rules allow has left to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Promotion {
    /// Write the next key as the active one, then remove its next label.
    Activate,
    /// A promotion interrupted half-way: the next key is already active and
    /// only its next label remains to be removed.
    Finish,
}

/// Why a rotation step was refused, and when it will be allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RotationError {
    /// Promote needs a next key.
    #[error("no key is staged as next (AWSPENDING); stage one first")]
    NothingStaged,
    /// Retire needs a retiring key.
    #[error("no key is retiring (AWSPREVIOUS); nothing to retire")]
    NothingRetiring,
    /// Stage refuses to replace a next key.
    #[error("key {kid} is already staged as next; promote it first")]
    AlreadyStaged {
        /// The staged key.
        kid: String,
    },
    /// The key is already in the set.
    #[error("key {kid} is already in the key set (as {stage})")]
    AlreadyPresent {
        /// The key.
        kid: String,
        /// Its stage.
        stage: &'static str,
    },
    /// The next key has not been published long enough.
    #[error(
        "key {kid} was published at {published_at}; it may be promoted at {at} (in {} s), once every replica \
         and every verifier's JWKS cache has it",
        at.saturating_sub(*now)
    )]
    NotMature {
        /// The next key.
        kid: String,
        /// When it was published.
        published_at: u64,
        /// When it may be promoted.
        at: u64,
        /// Now.
        now: u64,
    },
    /// The retiring key may still have live tokens.
    #[error(
        "retiring key {kid} may still have live tokens until {at} (in {} s); {action} is possible then",
        at.saturating_sub(*now)
    )]
    RetiringStillLive {
        /// The retiring key.
        kid: String,
        /// When it may be removed.
        at: u64,
        /// Now.
        now: u64,
        /// What was refused (`retire` or `promote`).
        action: &'static str,
    },
}

impl StagedKeys {
    /// The key in `stage`.
    pub fn get(&self, stage: Stage) -> Option<&StagedKey> {
        match stage {
            Stage::Next => self.next.as_ref(),
            Stage::Active => self.active.as_ref(),
            Stage::Retiring => self.retiring.as_ref(),
        }
    }

    /// Every key with its stage, active first.
    pub fn iter(&self) -> impl Iterator<Item = (Stage, &StagedKey)> {
        [Stage::Active, Stage::Next, Stage::Retiring]
            .into_iter()
            .filter_map(|stage| self.get(stage).map(|key| (stage, key)))
    }

    /// The public keys to publish (each kid once).
    pub fn published(&self) -> Vec<VerifyingKey> {
        let mut keys: Vec<VerifyingKey> = Vec::new();
        for (_, staged) in self.iter() {
            if !keys.iter().any(|k| k.kid() == staged.record.kid()) {
                keys.push(staged.record.verifying_key.clone());
            }
        }
        keys
    }

    /// The keys that may sign at `now`, best first: the active key once
    /// mature (or when there is no retiring key to fall back on), then the
    /// retiring key, capped so that its tokens expire before it may be removed.
    pub fn signing_candidates(&self, timings: &RotationTimings, now: u64) -> Vec<SigningCandidate<'_>> {
        let mut out = Vec::new();
        let Some(active) = &self.active else {
            return out;
        };
        let retiring = self
            .retiring
            .as_ref()
            .filter(|r| r.record.kid() != active.record.kid());
        if now >= timings.signs_from(&active.record) || retiring.is_none() {
            out.push(SigningCandidate {
                key: active,
                stage: Stage::Active,
                expires_by: None,
            });
        }
        if let Some(retiring) = retiring {
            out.push(SigningCandidate {
                key: retiring,
                stage: Stage::Retiring,
                expires_by: Some(timings.retiring_expires_by(&active.record)),
            });
        }
        out
    }

    /// Whether `kid` may be staged as next.
    pub fn check_stage(&self, kid: &str) -> Result<(), RotationError> {
        if let Some(next) = &self.next {
            return Err(RotationError::AlreadyStaged {
                kid: next.record.kid().to_owned(),
            });
        }
        if let Some((stage, _)) = self.iter().find(|(_, k)| k.record.kid() == kid) {
            return Err(RotationError::AlreadyPresent {
                kid: kid.to_owned(),
                stage: stage.name(),
            });
        }
        Ok(())
    }

    /// Whether the next key may be promoted at `now`, and what is left to do.
    pub fn check_promote(&self, timings: &RotationTimings, now: u64) -> Result<Promotion, RotationError> {
        let next = self.next.as_ref().ok_or(RotationError::NothingStaged)?;
        let Some(active) = &self.active else {
            // Nothing is active: nothing to rotate from, nobody to break.
            return Ok(Promotion::Activate);
        };
        if active.record.kid() == next.record.kid() {
            return Ok(Promotion::Finish);
        }
        let at = timings.signs_from(&next.record);
        if now < at {
            return Err(RotationError::NotMature {
                kid: next.record.kid().to_owned(),
                published_at: next.record.published_at,
                at,
                now,
            });
        }
        if let Some(retiring) = &self.retiring {
            let at = timings.retirable_at(&active.record);
            if retiring.record.kid() != active.record.kid() && now < at {
                return Err(RotationError::RetiringStillLive {
                    kid: retiring.record.kid().to_owned(),
                    at,
                    now,
                    action: "promote",
                });
            }
        }
        Ok(Promotion::Activate)
    }

    /// Whether the retiring key may be removed at `now`.
    pub fn check_retire(&self, timings: &RotationTimings, now: u64) -> Result<(), RotationError> {
        let retiring = self.retiring.as_ref().ok_or(RotationError::NothingRetiring)?;
        if let Some(active) = &self.active {
            let at = timings.retirable_at(&active.record);
            if now < at && retiring.record.kid() != active.record.kid() {
                return Err(RotationError::RetiringStillLive {
                    kid: retiring.record.kid().to_owned(),
                    at,
                    now,
                    action: "retire",
                });
            }
        }
        Ok(())
    }

    /// What may happen next and when, one line each (for `keys show`).
    pub fn next_steps(&self, timings: &RotationTimings, now: u64) -> Vec<String> {
        let mut steps = Vec::new();
        let when = |at: u64| {
            if at <= now {
                "now".to_owned()
            } else {
                format!("at {at} (in {} s)", at - now)
            }
        };
        match (&self.active, &self.next) {
            (None, None) => steps.push("stage a key: with nothing active it becomes active at once".into()),
            (None, Some(next)) => {
                steps.push(format!("promote {}: now (no key is active)", next.record.kid()))
            }
            (Some(_), None) => steps.push("stage a new key as next: now".into()),
            (Some(active), Some(next)) => {
                let mut at = timings.signs_from(&next.record);
                if self.retiring.is_some() {
                    at = at.max(timings.retirable_at(&active.record));
                }
                steps.push(format!("promote {}: {}", next.record.kid(), when(at)));
            }
        }
        if let (Some(retiring), Some(active)) = (&self.retiring, &self.active) {
            steps.push(format!(
                "retire {}: {}",
                retiring.record.kid(),
                when(timings.retirable_at(&active.record))
            ));
        }
        if let Some(active) = &self.active {
            let from = timings.signs_from(&active.record);
            if now < from && self.retiring.is_some() {
                steps.push(format!(
                    "active key {} signs from {} (until then the retiring key signs)",
                    active.record.kid(),
                    when(from)
                ));
            }
        }
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{LocalSigner, Signer};

    // M = 30 + 300 = 330 s, T = 900 s, L = 30 s.
    const TIMINGS: RotationTimings = RotationTimings {
        poll_interval: Duration::from_secs(30),
        jwks_max_age: Duration::from_secs(300),
        max_ttl: Duration::from_secs(900),
        leeway: Duration::from_secs(30),
    };

    fn record(published_at: u64, activated_at: Option<u64>) -> KeyRecord {
        let (signer, _pem) = LocalSigner::generate(Algorithm::ES256).unwrap();
        KeyRecord {
            backend: KeyBackend::Kms {
                key_id: "alias/k".into(),
            },
            verifying_key: signer.verifying_key().clone(),
            published_at,
            activated_at,
        }
    }

    fn staged(record: KeyRecord) -> StagedKey {
        StagedKey {
            version_id: format!("v-{}", record.kid()),
            record,
        }
    }

    /// Old key active since 0, new key published at 1000 and promoted at `promoted`.
    fn rotated(promoted: u64) -> StagedKeys {
        let new = record(1000, Some(promoted));
        StagedKeys {
            next: None,
            active: Some(staged(new)),
            retiring: Some(staged(record(0, Some(0)))),
        }
    }

    #[test]
    fn timings() {
        assert_eq!(TIMINGS.maturity_secs(), 330);
        let active = record(1000, Some(1400));
        assert_eq!(TIMINGS.signs_from(&active), 1330);
        assert_eq!(TIMINGS.retiring_expires_by(&active), 1400 + 330 + 900);
        assert_eq!(TIMINGS.retirable_at(&active), 1400 + 330 + 900 + 30);
        assert_eq!(TIMINGS.stale_expires_by(5000), 5000 + 330 + 900);
    }

    #[test]
    fn promote_waits_for_publication_and_for_the_retiring_key() {
        let keys = StagedKeys {
            next: Some(staged(record(1000, None))),
            active: Some(staged(record(0, Some(0)))),
            retiring: None,
        };
        assert!(matches!(
            keys.check_promote(&TIMINGS, 1329),
            Err(RotationError::NotMature { at: 1330, .. })
        ));
        assert_eq!(keys.check_promote(&TIMINGS, 1330), Ok(Promotion::Activate));

        // With a retiring key whose tokens may still live, promoting would unpublish it.
        let mut keys = rotated(1400);
        keys.next = Some(staged(record(2000, None)));
        assert!(matches!(
            keys.check_promote(&TIMINGS, 2500),
            Err(RotationError::RetiringStillLive {
                action: "promote",
                ..
            })
        ));
        assert_eq!(
            keys.check_promote(&TIMINGS, 1400 + 330 + 900 + 30),
            Ok(Promotion::Activate)
        );

        // Nothing staged; nothing active (first key).
        assert_eq!(
            StagedKeys::default().check_promote(&TIMINGS, 0),
            Err(RotationError::NothingStaged)
        );
        let first = StagedKeys {
            next: Some(staged(record(10, None))),
            ..StagedKeys::default()
        };
        assert_eq!(first.check_promote(&TIMINGS, 10), Ok(Promotion::Activate));
    }

    #[test]
    fn a_half_done_promotion_is_recognised() {
        let key = record(1000, None);
        let mut activated = key.clone();
        activated.activated_at = Some(1400);
        let keys = StagedKeys {
            next: Some(staged(key)),
            active: Some(staged(activated)),
            retiring: Some(staged(record(0, Some(0)))),
        };
        assert_eq!(keys.check_promote(&TIMINGS, 1400), Ok(Promotion::Finish));
    }

    #[test]
    fn retire_waits_for_the_last_token_plus_leeway() {
        let keys = rotated(1400);
        let at = 1400 + 330 + 900 + 30;
        assert!(matches!(
            keys.check_retire(&TIMINGS, at - 1),
            Err(RotationError::RetiringStillLive { action: "retire", .. })
        ));
        assert_eq!(keys.check_retire(&TIMINGS, at), Ok(()));
        assert_eq!(
            StagedKeys::default().check_retire(&TIMINGS, at),
            Err(RotationError::NothingRetiring)
        );
    }

    #[test]
    fn an_early_promotion_keeps_the_retiring_key_signing_with_a_cap() {
        // Promoted at 1100, before the new key is mature (1330).
        let keys = rotated(1100);
        let before = keys.signing_candidates(&TIMINGS, 1200);
        assert_eq!(before.len(), 1);
        assert_eq!(before[0].stage, Stage::Retiring);
        assert_eq!(before[0].expires_by, Some(1100 + 330 + 900));

        let after = keys.signing_candidates(&TIMINGS, 1330);
        assert_eq!(after[0].stage, Stage::Active);
        assert_eq!(after[0].expires_by, None);
        assert_eq!(after[1].stage, Stage::Retiring);

        // With no retiring key to fall back on, the active key signs at once.
        let only = StagedKeys {
            active: Some(staged(record(1000, Some(1000)))),
            ..StagedKeys::default()
        };
        assert_eq!(only.signing_candidates(&TIMINGS, 1000)[0].stage, Stage::Active);
        assert!(StagedKeys::default().signing_candidates(&TIMINGS, 0).is_empty());
    }

    #[test]
    fn staging_refuses_a_second_next_key_or_a_known_kid() {
        let mut keys = rotated(1400);
        let active_kid = keys.active.as_ref().unwrap().record.kid().to_owned();
        assert!(matches!(
            keys.check_stage(&active_kid),
            Err(RotationError::AlreadyPresent { .. })
        ));
        assert_eq!(keys.check_stage("new-kid"), Ok(()));
        keys.next = Some(staged(record(2000, None)));
        assert!(matches!(
            keys.check_stage("new-kid"),
            Err(RotationError::AlreadyStaged { .. })
        ));
        assert_eq!(keys.published().len(), 3);
    }

    #[test]
    fn records_round_trip_and_are_strict() {
        let key = record(1000, Some(1400));
        let text = key.to_json();
        assert_eq!(KeyRecord::from_json(&text).unwrap(), key);

        let mut doc: Value = serde_json::from_str(&text).unwrap();
        doc["kid"] = Value::String("not-the-thumbprint".into());
        assert!(KeyRecord::from_json(&doc.to_string()).is_err());

        let mut doc: Value = serde_json::from_str(&text).unwrap();
        doc["extra"] = Value::Bool(true);
        assert!(
            KeyRecord::from_json(&doc.to_string()).is_err(),
            "unknown members are refused"
        );

        let mut doc: Value = serde_json::from_str(&text).unwrap();
        doc["activated_at"] = Value::from(999);
        assert!(
            KeyRecord::from_json(&doc.to_string()).is_err(),
            "activated before published"
        );

        let mut doc: Value = serde_json::from_str(&text).unwrap();
        doc["jwk"]["d"] = Value::String("AAAA".into());
        assert!(
            KeyRecord::from_json(&doc.to_string()).is_err(),
            "private members are refused"
        );

        let duplicate = text.replacen('{', "{\"published_at\":1,", 1);
        assert!(
            KeyRecord::from_json(&duplicate).is_err(),
            "duplicate members are refused"
        );
    }
}
