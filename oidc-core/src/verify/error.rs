//! Why a token was refused: [`VerifyError`], one variant per reason, each
//! with a stable reason code.

use super::KeyLookupError;
use crate::json::JsonError;
use crate::jws::JwsError;
use crate::keys::SignatureError;
use crate::Algorithm;

/// Why a token was refused. Each variant is one reason; [`reason`](Self::reason)
/// gives a stable short code for metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The token is not a well-formed compact JWS with an acceptable header.
    #[error("malformed token: {0}")]
    Malformed(JwsError),
    /// The header has no `kid`.
    #[error("token header has no kid")]
    MissingKid,
    /// No key could be found for the `kid`.
    #[error("{0}")]
    Key(KeyLookupError),
    /// `typ` is absent or not the required type.
    #[error("token type is {found:?}, expected {expected:?}")]
    WrongType {
        /// The `typ` found.
        found: Option<String>,
        /// The `typ` required.
        expected: String,
    },
    /// The signature does not verify with the key.
    #[error("{0}")]
    Signature(SignatureError),
    /// The payload is not a strict JSON object.
    #[error("claims are not a valid JSON object: {0}")]
    Claims(JsonError),
    /// A required claim is absent.
    #[error("required claim {0:?} is missing")]
    MissingClaim(&'static str),
    /// A claim has the wrong JSON type.
    #[error("claim {claim:?} must be {expected}")]
    ClaimType {
        /// The claim.
        claim: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// `iss` is not byte-equal to the expected issuer.
    #[error("issuer {found:?} is not the expected issuer")]
    WrongIssuer {
        /// The issuer found (shortened).
        found: String,
    },
    /// No `aud` value is an accepted audience.
    #[error("audience {found:?} is not accepted")]
    WrongAudience {
        /// The audiences found (shortened).
        found: Vec<String>,
    },
    /// `exp` has passed (beyond the leeway).
    #[error("token expired {} s ago (exp {exp}, now {now}, leeway {leeway} s)", now.saturating_sub(*exp))]
    Expired {
        /// `exp`.
        exp: u64,
        /// The verifier's time.
        now: u64,
        /// The leeway applied.
        leeway: u64,
    },
    /// `nbf` is in the future (beyond the leeway).
    #[error("token is not valid for another {} s (nbf {nbf}, now {now}, leeway {leeway} s)", nbf.saturating_sub(*now))]
    NotYetValid {
        /// `nbf`.
        nbf: u64,
        /// The verifier's time.
        now: u64,
        /// The leeway applied.
        leeway: u64,
    },
    /// `iat` is in the future (beyond the leeway).
    #[error("token was issued {} s in the future (iat {iat}, now {now}, leeway {leeway} s)", iat.saturating_sub(*now))]
    IssuedInFuture {
        /// `iat`.
        iat: u64,
        /// The verifier's time.
        now: u64,
        /// The leeway applied.
        leeway: u64,
    },
    /// `now - iat` exceeds the policy's maximum token age (beyond the leeway).
    #[error("token was issued {} s ago, more than the maximum age of {max_age} s (iat {iat}, now {now}, leeway {leeway} s)", now.saturating_sub(*iat))]
    TooOld {
        /// `iat`.
        iat: u64,
        /// The verifier's time.
        now: u64,
        /// The maximum age.
        max_age: u64,
        /// The leeway applied.
        leeway: u64,
    },
    /// The key was published without `alg`, and the policy does not pin
    /// exactly one algorithm its key type fits, so no algorithm can be
    /// chosen for it (the token's header never chooses).
    #[error("key {kid:?} was published without \"alg\" and the policy does not pin one algorithm its key type fits (allow exactly one, e.g. RS256 for an RSA key)")]
    KeyAlgorithm {
        /// The key's `kid` (shortened).
        kid: String,
    },
    /// `exp - iat` exceeds the policy's maximum lifetime.
    #[error("token lifetime of {lifetime} s exceeds the maximum of {max} s")]
    LifetimeTooLong {
        /// `exp - iat`.
        lifetime: u64,
        /// The maximum.
        max: u64,
    },
    /// The claims passed every check but do not fit the caller's claims type.
    #[error("claims do not fit the expected type: {0}")]
    ClaimsShape(String),
    /// The header's `alg` is not one the policy allows (checked before any
    /// key is looked up).
    #[error("algorithm {} is not allowed for this issuer", .0.name())]
    AlgorithmNotAllowed(Algorithm),
    /// A claim the policy requires a value for is absent or has another value.
    #[error("claim {claim:?} {}", if *present { "does not have the required value" } else { "is required and missing" })]
    RequiredClaim {
        /// The claim (from the policy, not the token).
        claim: String,
        /// Whether the token has the claim at all.
        present: bool,
    },
    /// The token's `iss` is not a trusted issuer (see
    /// [`TrustedIssuers`](crate::verify::trust::TrustedIssuers)); nothing was
    /// fetched for it.
    #[error("issuer {issuer:?} is not trusted")]
    UnknownIssuer {
        /// The `iss` found (shortened).
        issuer: String,
    },
    /// The trusted-issuer lookup failed, so whether the issuer is trusted is
    /// not known (the control plane's own store is down, for example).
    #[error("trusted-issuer lookup failed: {0}")]
    IssuerLookup(String),
}

impl VerifyError {
    /// A stable, short reason code (`expired`, `bad_signature`, ...).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(JwsError::TooLarge { .. }) => "too_large",
            Self::Malformed(JwsError::Algorithm(_)) => "bad_algorithm",
            Self::Malformed(JwsError::ForbiddenHeader(_)) => "forbidden_header",
            Self::Malformed(_) => "malformed",
            Self::MissingKid => "missing_kid",
            Self::Key(KeyLookupError::UnknownKid(_)) => "unknown_kid",
            Self::Key(_) => "keys_unavailable",
            Self::WrongType { .. } => "wrong_typ",
            Self::Signature(SignatureError::AlgorithmMismatch { .. }) => "algorithm_mismatch",
            Self::Signature(_) => "bad_signature",
            Self::Claims(_) | Self::ClaimType { .. } | Self::ClaimsShape(_) => "malformed_claims",
            Self::MissingClaim(_) => "missing_claim",
            Self::WrongIssuer { .. } => "wrong_issuer",
            Self::WrongAudience { .. } => "wrong_audience",
            Self::Expired { .. } => "expired",
            Self::NotYetValid { .. } => "not_yet_valid",
            Self::IssuedInFuture { .. } => "issued_in_future",
            Self::LifetimeTooLong { .. } => "lifetime_too_long",
            Self::TooOld { .. } => "too_old",
            Self::KeyAlgorithm { .. } => "key_algorithm_unknown",
            Self::AlgorithmNotAllowed(_) => "algorithm_not_allowed",
            Self::RequiredClaim { .. } => "required_claim",
            Self::UnknownIssuer { .. } => "unknown_issuer",
            Self::IssuerLookup(_) => "issuer_lookup_failed",
        }
    }
}

impl From<JwsError> for VerifyError {
    fn from(error: JwsError) -> Self {
        match error {
            JwsError::Signature(e) => Self::Signature(e),
            // An odd kid is just an unknown key, whatever its JSON type.
            JwsError::KidNotString(kid) => Self::Key(KeyLookupError::UnknownKid(kid)),
            other => Self::Malformed(other),
        }
    }
}
