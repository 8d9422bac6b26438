//! Keys: public keys pinned to one algorithm, the [`Signer`] trait every signing
//! backend implements, and local (in-process) signing keys.
//!
//! One backend module per kind of key: [`local`] here; `kms` and `kms_envelope`
//! behind the `aws` feature. [`der`] reads the DER a remote signer answers
//! with (ECDSA signatures, `SubjectPublicKeyInfo`).

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::base64url::Base64Error;
use crate::json::JsonError;
use crate::{Algorithm, AlgorithmError};

pub mod der;
#[cfg(feature = "aws")]
pub mod kms;
#[cfg(feature = "aws")]
pub mod kms_envelope;
pub mod local;
mod public;
mod roca;

pub use der::DerError;
#[cfg(feature = "aws")]
pub use kms::{KmsOptions, KmsSigner};
pub use local::{LocalSigner, Pkcs8Pem};
pub use public::{PublicKey, SignatureError, VerifyingKey, MAX_KID_LEN, RSA_MIN_BITS};

/// Something that signs JWS signing inputs with one key: a local key, or a key
/// held by a remote service such as AWS KMS.
///
/// The signature is in JWS form (ECDSA as 64-byte `r‖s`), over exactly the bytes
/// given. Implementations report failures of the backend as [`SignError`]
/// so that callers can answer "try again later" rather than fail hard.
#[async_trait]
pub trait Signer: Send + Sync + fmt::Debug {
    /// The public half, pinned to the signing algorithm, `kid` = RFC 7638 thumbprint.
    fn verifying_key(&self) -> &VerifyingKey;

    /// Signs `signing_input` (`BASE64URL(header) '.' BASE64URL(payload)`).
    async fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, SignError>;

    /// The signing algorithm.
    fn algorithm(&self) -> Algorithm {
        self.verifying_key().algorithm()
    }

    /// The key id.
    fn kid(&self) -> &str {
        self.verifying_key().kid()
    }

    /// Whether signing is computation in this process that never waits on
    /// anything (a local key). [`Issuer`](crate::Issuer) bounds the other
    /// signers, which wait on a service, by its sign deadline, and spares
    /// these the timer. The default, `false`, is right for anything remote.
    fn signs_in_process(&self) -> bool {
        false
    }
}

/// A signer could not sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The backend is unreachable, throttling or failing; retrying later may work.
    #[error("signer unavailable: {reason}")]
    Unavailable {
        /// What went wrong (never key material).
        reason: String,
        /// When to retry, if the backend said.
        retry_after: Option<Duration>,
    },
    /// The backend refused for good (key disabled, wrong key usage, ...).
    #[error("signer refused: {0}")]
    Refused(String),
}

/// Why a key (a JWK, a PEM file, key material) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The JWK is not strict JSON.
    #[error("JWK is not valid: {0}")]
    Json(JsonError),
    /// A required JWK member is absent.
    #[error("JWK member {0:?} is missing")]
    MissingMember(&'static str),
    /// A JWK member has the wrong JSON type.
    #[error("JWK member {member:?} must be {expected}")]
    MemberType {
        /// The member.
        member: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// A JWK member is not strict base64url.
    #[error("JWK member {member:?}: {error}")]
    Base64 {
        /// The member.
        member: &'static str,
        /// The problem.
        error: Base64Error,
    },
    /// A key type this crate does not use (skipped inside a key set).
    #[error("unsupported key type {0:?}")]
    UnsupportedKeyType(String),
    /// A curve this crate does not use.
    #[error("unsupported curve {0:?}")]
    UnsupportedCurve(String),
    /// A symmetric (`oct`) key: never used for verification.
    #[error("symmetric keys (kty \"oct\") are never accepted")]
    Symmetric,
    /// A private key member in what should be a public key.
    #[error("JWK contains the private member {0:?}; a published key must be public only")]
    PrivateMember(&'static str),
    /// `use` is present and is not `sig`.
    #[error("JWK use is {0}, not \"sig\"")]
    WrongUse(String),
    /// `key_ops` is present and does not allow `verify`.
    #[error("JWK key_ops does not include \"verify\"")]
    KeyOpsWithoutVerify,
    /// `alg` names no algorithm this crate accepts.
    #[error("JWK alg: {0}")]
    Algorithm(AlgorithmError),
    /// `alg` does not fit the key type or curve.
    #[error("algorithm {alg} cannot be used with a {key} key")]
    AlgorithmMismatch {
        /// The algorithm.
        alg: String,
        /// The key type.
        key: &'static str,
    },
    /// A JWK without `kid` cannot be selected.
    #[error("JWK has no kid")]
    MissingKid,
    /// A `kid` longer than [`MAX_KID_LEN`].
    #[error("kid is {0} bytes long, more than {MAX_KID_LEN}")]
    KidTooLong(usize),
    /// A coordinate or key of the wrong size.
    #[error("{member} is {found} bytes, expected {expected}")]
    WrongLength {
        /// The member.
        member: &'static str,
        /// Bytes required.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// Not a point on the curve (or the point at infinity, or non-canonical).
    #[error("public key is not a valid curve point")]
    InvalidPoint,
    /// An Ed25519 point of small order.
    #[error("public key is a point of small order")]
    SmallOrder,
    /// An RSA integer with leading zero octets (RFC 7518 §6.3.1 forbids them).
    #[error("RSA member {member:?} has leading zero octets")]
    LeadingZero {
        /// The member.
        member: &'static str,
    },
    /// An RSA modulus under 2048 bits.
    #[error("RSA key of {bits} bits refused: at least {RSA_MIN_BITS} bits are required")]
    RsaTooSmall {
        /// Modulus size.
        bits: usize,
    },
    /// An RSA modulus over 8192 bits.
    #[error("RSA key of {bits} bits refused: at most 8192 bits are supported")]
    RsaTooLarge {
        /// Modulus size.
        bits: usize,
    },
    /// An even RSA modulus.
    #[error("RSA modulus is even")]
    RsaModulusEven,
    /// An RSA exponent that is even, below 3 or above 2^33.
    #[error("RSA public exponent must be odd and between 3 and 2^33")]
    RsaExponent,
    /// The modulus carries the ROCA fingerprint (CVE-2017-15361): it can be factored.
    #[error("RSA key has the ROCA weakness (CVE-2017-15361) and can be factored")]
    RsaRoca,
    /// A PEM document that is not one PKCS#8 `PRIVATE KEY`.
    #[error("not a PKCS#8 PEM private key: {0}")]
    Pem(String),
    /// PKCS#8 content this crate cannot use.
    #[error("PKCS#8 key refused: {0}")]
    Pkcs8(String),
    /// Key generation for this algorithm is not offered here.
    #[error("cannot generate {0} keys here")]
    CannotGenerate(Algorithm),
    /// The system random number generator failed.
    #[error("{0}")]
    Unavailable(&'static str),
}
