//! Why a DPoP proof was refused: [`DpopError`], one variant per reason.

use crate::json::JsonError;
use crate::jws::JwsError;
use crate::keys::{KeyError, SignatureError};
use crate::Algorithm;

/// Why a DPoP proof was refused. [`reason`](Self::reason) is a stable code
/// for logs; [`metric_reason`](Self::metric_reason) is its name among a
/// server's refusal reasons (`dpop_*`, one of
/// [`METRIC_REASONS`](Self::METRIC_REASONS)); [`error_code`](Self::error_code)
/// is what RFC 9449 says to answer (`invalid_dpop_proof` or
/// `use_dpop_nonce`). Texts a client chose appear shortened
/// ([`crate::text::excerpt`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpopError {
    /// Not a well-formed compact JWS with an acceptable header (size,
    /// parts, base64url, duplicate members, `crit`, `alg` `none` or HMAC,
    /// no `jwk`, ...).
    #[error("malformed DPoP proof: {0}")]
    Malformed(JwsError),
    /// `typ` is not `dpop+jwt`.
    #[error("DPoP proof typ is {0:?}, expected \"dpop+jwt\"")]
    WrongType(Option<String>),
    /// An algorithm this verifier does not allow for proofs.
    #[error("DPoP proof algorithm {} is not allowed", .0.name())]
    AlgorithmNotAllowed(Algorithm),
    /// The header's `jwk` is not a public key fit for the algorithm (a
    /// private member, a symmetric key, a bad point, ...).
    #[error("DPoP proof jwk refused: {0}")]
    Key(KeyError),
    /// The signature does not verify with the header's key.
    #[error("DPoP proof signature: {0}")]
    Signature(SignatureError),
    /// The payload is not a strict JSON object.
    #[error("DPoP proof claims are not a valid JSON object: {0}")]
    Claims(JsonError),
    /// A required claim is absent.
    #[error("DPoP proof has no {0:?} claim")]
    MissingClaim(&'static str),
    /// A claim has the wrong JSON type (or is empty).
    #[error("DPoP proof claim {claim:?} must be {expected}")]
    ClaimType {
        /// The claim.
        claim: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// `jti` longer than [`MAX_JTI_LEN`](super::MAX_JTI_LEN).
    #[error("DPoP proof jti is {0} bytes, more than {max}", max = super::MAX_JTI_LEN)]
    JtiTooLong(usize),
    /// `htm` is not the request's method.
    #[error("DPoP proof is for method {found:?}, not {expected:?}")]
    WrongMethod {
        /// The request's method.
        expected: String,
        /// The proof's `htm` (shortened).
        found: String,
    },
    /// `htu` is not the request's URL (RFC 9449 §4.3: scheme and host
    /// without regard to case, default port, no query or fragment).
    #[error("DPoP proof is for URL {found:?}, not this one")]
    WrongUrl {
        /// The proof's `htu` (shortened).
        found: String,
    },
    /// `iat` is further in the future than the allowed skew.
    #[error("DPoP proof was issued {} s in the future (iat {iat}, now {now}, allowed skew {skew} s)", iat.saturating_sub(*now))]
    IssuedInFuture {
        /// `iat`.
        iat: u64,
        /// The verifier's time.
        now: u64,
        /// The allowed skew.
        skew: u64,
    },
    /// `iat` is older than the window.
    #[error("DPoP proof was issued {} s ago, more than {max_age} s (iat {iat}, now {now})", now.saturating_sub(*iat))]
    TooOld {
        /// `iat`.
        iat: u64,
        /// The verifier's time.
        now: u64,
        /// The window.
        max_age: u64,
    },
    /// `ath` is absent while an access token is presented with the proof.
    #[error("DPoP proof has no \"ath\" but an access token is presented with it")]
    MissingAth,
    /// `ath` is not base64url(SHA-256) of the presented access token.
    #[error("DPoP proof \"ath\" is not the hash of the presented access token")]
    WrongAth,
    /// The server requires a nonce and the proof has none, or one that is
    /// not (or no longer) valid: the client retries with the `DPoP-Nonce`
    /// answered.
    #[error("DPoP proof nonce: {0}")]
    Nonce(NonceError),
    /// The proof (its key and `jti`) was seen before within its window.
    #[error("DPoP proof was used before")]
    Replayed,
    /// The proof could not be recorded, so it is refused for now.
    #[error("{0}")]
    ReplayStore(ReplayError),
}

impl DpopError {
    /// Every [`metric_reason`](Self::metric_reason), a closed set: label
    /// values of a server's refusal metrics and the `reason` of its audit
    /// events (docs/deploy.md lists them, without the `dpop_` prefix, under
    /// "Refusals"). An interface: names are added, never renamed.
    pub const METRIC_REASONS: &'static [&'static str] = &[
        "dpop_malformed",
        "dpop_too_large",
        "dpop_bad_algorithm",
        "dpop_forbidden_header",
        "dpop_missing_jwk",
        "dpop_wrong_typ",
        "dpop_algorithm_not_allowed",
        "dpop_private_jwk",
        "dpop_symmetric_jwk",
        "dpop_bad_jwk",
        "dpop_bad_signature",
        "dpop_malformed_claims",
        "dpop_missing_claim",
        "dpop_wrong_method",
        "dpop_wrong_url",
        "dpop_issued_in_future",
        "dpop_too_old",
        "dpop_ath",
        "dpop_nonce",
        "dpop_replayed",
        "dpop_replay_store_unavailable",
    ];

    /// The refusal's name in a server's metrics and audit events: one of
    /// [`METRIC_REASONS`](Self::METRIC_REASONS), `dpop_` and
    /// [`reason`](Self::reason), except that a missing and a wrong `ath`
    /// are both `dpop_ath`.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            Self::Malformed(JwsError::TooLarge { .. }) => "dpop_too_large",
            Self::Malformed(JwsError::Algorithm(_)) => "dpop_bad_algorithm",
            Self::Malformed(JwsError::ForbiddenHeader(_)) => "dpop_forbidden_header",
            Self::Malformed(JwsError::MissingJwk) => "dpop_missing_jwk",
            Self::Malformed(_) => "dpop_malformed",
            Self::WrongType(_) => "dpop_wrong_typ",
            Self::AlgorithmNotAllowed(_) => "dpop_algorithm_not_allowed",
            Self::Key(KeyError::PrivateMember(_)) => "dpop_private_jwk",
            Self::Key(KeyError::Symmetric) => "dpop_symmetric_jwk",
            Self::Key(_) => "dpop_bad_jwk",
            Self::Signature(_) => "dpop_bad_signature",
            Self::Claims(_) | Self::ClaimType { .. } | Self::JtiTooLong(_) => "dpop_malformed_claims",
            Self::MissingClaim(_) => "dpop_missing_claim",
            Self::WrongMethod { .. } => "dpop_wrong_method",
            Self::WrongUrl { .. } => "dpop_wrong_url",
            Self::IssuedInFuture { .. } => "dpop_issued_in_future",
            Self::TooOld { .. } => "dpop_too_old",
            Self::MissingAth | Self::WrongAth => "dpop_ath",
            Self::Nonce(_) => "dpop_nonce",
            Self::Replayed => "dpop_replayed",
            Self::ReplayStore(_) => "dpop_replay_store_unavailable",
        }
    }

    /// A stable, short reason code (`replayed`, `wrong_url`, ...).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(JwsError::TooLarge { .. }) => "too_large",
            Self::Malformed(JwsError::Algorithm(_)) => "bad_algorithm",
            Self::Malformed(JwsError::ForbiddenHeader(_)) => "forbidden_header",
            Self::Malformed(JwsError::MissingJwk) => "missing_jwk",
            Self::Malformed(_) => "malformed",
            Self::WrongType(_) => "wrong_typ",
            Self::AlgorithmNotAllowed(_) => "algorithm_not_allowed",
            Self::Key(KeyError::PrivateMember(_)) => "private_jwk",
            Self::Key(KeyError::Symmetric) => "symmetric_jwk",
            Self::Key(_) => "bad_jwk",
            Self::Signature(_) => "bad_signature",
            Self::Claims(_) | Self::ClaimType { .. } | Self::JtiTooLong(_) => "malformed_claims",
            Self::MissingClaim(_) => "missing_claim",
            Self::WrongMethod { .. } => "wrong_method",
            Self::WrongUrl { .. } => "wrong_url",
            Self::IssuedInFuture { .. } => "issued_in_future",
            Self::TooOld { .. } => "too_old",
            Self::MissingAth => "missing_ath",
            Self::WrongAth => "wrong_ath",
            Self::Nonce(_) => "nonce",
            Self::Replayed => "replayed",
            Self::ReplayStore(_) => "replay_store_unavailable",
        }
    }

    /// The RFC 9449 error code to answer with: `use_dpop_nonce` when the
    /// client should retry with the server's nonce, `invalid_dpop_proof`
    /// otherwise.
    pub fn error_code(&self) -> &'static str {
        match self {
            Self::Nonce(_) => "use_dpop_nonce",
            _ => "invalid_dpop_proof",
        }
    }

    /// Whether the refusal is the server's (the replay store is down), not
    /// the proof's: answer "try again later" (503), not 401.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::ReplayStore(ReplayError::Unavailable(_)))
    }
}

impl From<JwsError> for DpopError {
    fn from(error: JwsError) -> Self {
        match error {
            JwsError::Signature(e) => Self::Signature(e),
            other => Self::Malformed(other),
        }
    }
}

/// Why a proof's nonce was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NonceError {
    /// The server requires a nonce and the proof has none.
    #[error("the server requires a nonce and the proof has none")]
    Missing,
    /// Not a nonce this server (or a replica sharing its key) made.
    #[error("not a nonce of this server")]
    Invalid,
    /// A nonce of this server, older than the previous time step.
    #[error("the nonce has expired")]
    Expired,
}

/// A proof's `jti` could not be recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The store is unreachable or failing (a fleet-wide store); refuse
    /// for now (fail closed).
    #[error("DPoP replay store unavailable: {0}")]
    Unavailable(String),
    /// This key already has as many proofs remembered as one key may (see
    /// [`MemoryProofReplayStore`](super::MemoryProofReplayStore)): only
    /// that key's holder can cause it.
    #[error("this DPoP key has {0} proofs in the replay window, the most one key may have")]
    KeyQuota(usize),
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::alg::AlgorithmError;

    /// The variant's position, by an exhaustive match: a variant added to
    /// [`DpopError`] fails to compile here until it is given a position,
    /// and then fails [`every_variant_has_a_documented_metric_reason`]
    /// until an example of it is added below.
    fn variant(error: &DpopError) -> usize {
        match error {
            DpopError::Malformed(_) => 0,
            DpopError::WrongType(_) => 1,
            DpopError::AlgorithmNotAllowed(_) => 2,
            DpopError::Key(_) => 3,
            DpopError::Signature(_) => 4,
            DpopError::Claims(_) => 5,
            DpopError::MissingClaim(_) => 6,
            DpopError::ClaimType { .. } => 7,
            DpopError::JtiTooLong(_) => 8,
            DpopError::WrongMethod { .. } => 9,
            DpopError::WrongUrl { .. } => 10,
            DpopError::IssuedInFuture { .. } => 11,
            DpopError::TooOld { .. } => 12,
            DpopError::MissingAth => 13,
            DpopError::WrongAth => 14,
            DpopError::Nonce(_) => 15,
            DpopError::Replayed => 16,
            DpopError::ReplayStore(_) => 17,
        }
    }
    const VARIANTS: usize = 18;

    /// One example (or more, where the inner error picks the name) of
    /// every variant, with the metric reason it has had since DPoP shipped.
    fn examples() -> Vec<(DpopError, &'static str)> {
        vec![
            (DpopError::Malformed(JwsError::PartCount(2)), "dpop_malformed"),
            (DpopError::Malformed(JwsError::Jwe), "dpop_malformed"),
            (DpopError::Malformed(JwsError::MissingAlg), "dpop_malformed"),
            (
                DpopError::Malformed(JwsError::TooLarge { len: 9000, max: 8192 }),
                "dpop_too_large",
            ),
            (
                DpopError::Malformed(JwsError::Algorithm(AlgorithmError::None)),
                "dpop_bad_algorithm",
            ),
            (
                DpopError::Malformed(JwsError::ForbiddenHeader("jku")),
                "dpop_forbidden_header",
            ),
            (DpopError::Malformed(JwsError::MissingJwk), "dpop_missing_jwk"),
            (DpopError::WrongType(Some("JWT".into())), "dpop_wrong_typ"),
            (DpopError::WrongType(None), "dpop_wrong_typ"),
            (
                DpopError::AlgorithmNotAllowed(Algorithm::RS256),
                "dpop_algorithm_not_allowed",
            ),
            (DpopError::Key(KeyError::PrivateMember("d")), "dpop_private_jwk"),
            (DpopError::Key(KeyError::Symmetric), "dpop_symmetric_jwk"),
            (DpopError::Key(KeyError::MissingMember("x")), "dpop_bad_jwk"),
            (
                DpopError::Signature(SignatureError::Mismatch),
                "dpop_bad_signature",
            ),
            (DpopError::Claims(JsonError::NotAnObject), "dpop_malformed_claims"),
            (DpopError::MissingClaim("jti"), "dpop_missing_claim"),
            (
                DpopError::ClaimType {
                    claim: "iat",
                    expected: "an integer",
                },
                "dpop_malformed_claims",
            ),
            (DpopError::JtiTooLong(65), "dpop_malformed_claims"),
            (
                DpopError::WrongMethod {
                    expected: "POST".into(),
                    found: "GET".into(),
                },
                "dpop_wrong_method",
            ),
            (
                DpopError::WrongUrl {
                    found: "https://elsewhere.example/token".into(),
                },
                "dpop_wrong_url",
            ),
            (
                DpopError::IssuedInFuture {
                    iat: 200,
                    now: 100,
                    skew: 5,
                },
                "dpop_issued_in_future",
            ),
            (
                DpopError::TooOld {
                    iat: 100,
                    now: 200,
                    max_age: 60,
                },
                "dpop_too_old",
            ),
            (DpopError::MissingAth, "dpop_ath"),
            (DpopError::WrongAth, "dpop_ath"),
            (DpopError::Nonce(NonceError::Missing), "dpop_nonce"),
            (DpopError::Nonce(NonceError::Expired), "dpop_nonce"),
            (DpopError::Replayed, "dpop_replayed"),
            (
                DpopError::ReplayStore(ReplayError::Unavailable("timeout".into())),
                "dpop_replay_store_unavailable",
            ),
            (
                DpopError::ReplayStore(ReplayError::KeyQuota(4096)),
                "dpop_replay_store_unavailable",
            ),
        ]
    }

    #[test]
    fn every_variant_has_a_documented_metric_reason() {
        let documented: BTreeSet<&str> = DpopError::METRIC_REASONS.iter().copied().collect();
        assert_eq!(
            documented.len(),
            DpopError::METRIC_REASONS.len(),
            "METRIC_REASONS has a name twice"
        );
        let mut variants = BTreeSet::new();
        let mut produced = BTreeSet::new();
        for (error, name) in examples() {
            variants.insert(variant(&error));
            assert_eq!(error.metric_reason(), name, "{error:?}");
            assert!(
                documented.contains(name),
                "{name} ({error:?}) is not in METRIC_REASONS"
            );
            // The log's code and the metric's name say the same thing.
            let expected = match error {
                DpopError::MissingAth | DpopError::WrongAth => "dpop_ath".to_owned(),
                _ => format!("dpop_{}", error.reason()),
            };
            assert_eq!(name, expected, "{error:?}");
            produced.insert(name);
        }
        assert_eq!(variants, (0..VARIANTS).collect(), "an example of every variant");
        assert_eq!(produced, documented, "every documented name is some refusal's");
    }
}
