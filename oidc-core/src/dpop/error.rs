//! Why a DPoP proof was refused: [`DpopError`], one variant per reason.

use crate::json::JsonError;
use crate::jws::JwsError;
use crate::keys::{KeyError, SignatureError};
use crate::Algorithm;

/// Why a DPoP proof was refused. [`reason`](Self::reason) is a stable code
/// for logs and metrics; [`error_code`](Self::error_code) is what RFC 9449
/// says to answer (`invalid_dpop_proof` or `use_dpop_nonce`). Texts a
/// client chose appear shortened ([`crate::text::excerpt`]).
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
