//! DPoP (RFC 9449): tokens bound to a key the client holds, and the proofs
//! that show the key on every request.
//!
//! A client holds a [`DpopKey`] (ES256 by default, generated in memory or
//! loaded from PKCS#8 PEM). With each request it sends a fresh proof, a JWT
//! signed with that key and carrying the public half in its header, naming
//! the request's method and URL ([`DpopProof::builder`]). The token endpoint
//! binds the token it issues to the key's RFC 7638 thumbprint
//! (`cnf: {"jkt": ...}`, see
//! [`Issuer::issue_with_confirmation`](crate::Issuer::issue_with_confirmation));
//! a resource server then accepts the token only with a proof signed by
//! that key ([`verify::dpop`](crate::verify::dpop)). A copied token without
//! the key is worth nothing.
//!
//! | type | job |
//! |---|---|
//! | [`DpopKey`], [`DpopProof`] | the client's key (zeroized on drop) and the proofs it signs |
//! | [`DpopVerifier`] | checks a proof: strict JWS ([`UnverifiedJws::decode_with_embedded_jwk`](crate::jws::UnverifiedJws::decode_with_embedded_jwk)), `typ`, algorithm, a public `jwk`, the signature, `htm`, `htu`, `iat` window, `jti`, `ath`, `nonce`; then the `jti` once ([`ProofReplayStore`]) |
//! | [`DpopNonces`] | stateless server nonces (RFC 9449 §8): a MAC of a time step, so replicas sharing the key agree without sharing state |
//! | [`MemoryProofReplayStore`] | the per-process `jti` store (bounded; see its docs for what a flood does) |
//! | [`DpopMode`] | per issuer (or per connector): DPoP `required` or `allowed` |
//!
//! ```
//! use oidc_core::dpop::{DpopKey, DpopProof, DpopVerifier, ProofTarget};
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let key = DpopKey::generate()?;
//! let proof = DpopProof::builder(&key, "GET", "https://api.example.com/poll?wait=20")
//!     .access_token("eyJ...the access token")
//!     .sign()?;
//!
//! let verifier = DpopVerifier::builder().build()?;
//! let target = ProofTarget::new("GET", "https://API.example.com:443/poll")
//!     .with_access_token("eyJ...the access token");
//! let verified = verifier.verify(proof.as_str(), &target).await?;
//! assert_eq!(verified.jkt(), key.thumbprint());
//! // The same proof again is a replay.
//! assert!(verifier.verify(proof.as_str(), &target).await.is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Replays across replicas
//!
//! A proof's `jti` is remembered by the [`ProofReplayStore`] the verifier
//! is given: by default a [`MemoryProofReplayStore`], which knows only this
//! process. A proof captured in transit can then be replayed once at each
//! *other* replica, for the same method and URL, within the `iat` window
//! (60 s by default), and only with the token it was made for (`ath`).
//! Server nonces bound that further: with [`DpopNonces`] on, a proof must
//! carry a nonce no older than two nonce steps, whatever its `iat`. A
//! deployment that needs no replay at all shares a store across the fleet
//! (implement [`ProofReplayStore`] over it, as the token endpoint does).

mod error;
mod htu;
mod key;
mod nonce;
mod proof;
mod replay;
mod verifier;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use error::{DpopError, NonceError, ReplayError};
pub use htu::{HtuError, NormalizedUrl};
pub use key::DpopKey;
pub use nonce::{DpopNonces, NonceSetupError, DEFAULT_NONCE_STEP, MIN_NONCE_KEY_LEN};
pub use proof::{DpopProof, DpopProofBuilder};
pub use replay::{
    FirstUse, MemoryProofReplayStore, ProofId, ProofReplayStore, ReplayStats, DEFAULT_MAX_PER_KEY,
    DEFAULT_REPLAY_CAPACITY,
};
pub use verifier::{
    CheckedProof, DpopConfigError, DpopVerifier, DpopVerifierBuilder, ProofTarget, VerifiedProof,
    DEFAULT_MAX_AGE, DEFAULT_MAX_FUTURE_SKEW, DEFAULT_MAX_PROOF_LEN, MAX_JTI_LEN,
};

/// The `typ` of a DPoP proof (RFC 9449 §4.2).
pub const DPOP_TYP: &str = "dpop+jwt";

/// The `Authorization` scheme and the request header of DPoP (RFC 9449 §7.1, §4.1).
pub const DPOP_SCHEME: &str = "DPoP";

/// Whether tokens must be DPoP-bound, for one issuer (a control plane's
/// trust entry) or one connector (the token endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DpopMode {
    /// Bearer tokens and DPoP-bound tokens are both accepted, each only in
    /// its own scheme (a bound token presented as `Bearer` is refused,
    /// RFC 9449 §7.2). The default.
    #[default]
    Allowed,
    /// Only DPoP-bound tokens, each with a proof of its key.
    Required,
}

impl DpopMode {
    /// `"allowed"` or `"required"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Required => "required",
        }
    }
}

impl fmt::Display for DpopMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A DPoP mode name that is neither `required` nor `allowed`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dpop mode {0:?} is neither \"required\" nor \"allowed\"")]
pub struct DpopModeError(pub String);

impl FromStr for DpopMode {
    type Err = DpopModeError;

    fn from_str(name: &str) -> Result<Self, DpopModeError> {
        match name {
            "allowed" => Ok(Self::Allowed),
            "required" => Ok(Self::Required),
            other => Err(DpopModeError(crate::text::excerpt(other))),
        }
    }
}
