//! Signing with an asymmetric AWS KMS key (feature `aws`): every signature is
//! one KMS `Sign` call with `MessageType = RAW`.
//!
//! | JWS | KMS key spec | KMS signing algorithm | answer |
//! |---|---|---|---|
//! | ES256 | `ECC_NIST_P256` | `ECDSA_SHA_256` | DER, converted to 64-byte `r‖s` |
//! | RS256 | `RSA_2048`.. | `RSASSA_PKCS1_V1_5_SHA_256` | as is |
//! | PS256 | `RSA_2048`.. | `RSASSA_PSS_SHA_256` | as is |
//! | EdDSA | `ECC_NIST_EDWARDS25519` | `ED25519_SHA_512` | as is |
//!
//! The public key is fetched once with `GetPublicKey` when the signer is
//! built, its `kid` is the RFC 7638 thumbprint, and the signer then signs with
//! the key's ARN (so re-pointing an alias later cannot make it sign with a key
//! it does not publish). Calls toward KMS are bounded by a semaphore,
//! throttling is retried with jittered exponential backoff, every attempt has
//! a timeout, and every call is reported to an
//! [`AwsObserver`](crate::aws::AwsObserver).
//!
//! Each signature is checked against the cached public key before it leaves
//! the signer (tens of microseconds beside a KMS round trip), so a signer that
//! answers with something verifiers would refuse yields an error, not a token.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kms::config::retry::RetryConfig;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeyUsageType, MessageType, SigningAlgorithmSpec};
use tokio::sync::Semaphore;

use super::{der, PublicKey, SignError, Signer, VerifyingKey};
use crate::aws::{self, CallOutcome, CallPolicy};
use crate::Algorithm;

/// KMS signs at most this many bytes with `MessageType = RAW`.
pub const MAX_RAW_MESSAGE: usize = 4096;

/// How a [`KmsSigner`] talks to KMS.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct KmsOptions {
    /// The JWS algorithm for an RSA key: RS256 (the default) or PS256. For
    /// other keys it must be `None` or the key's algorithm.
    pub algorithm: Option<Algorithm>,
    /// Most KMS calls in flight at once from this signer (KMS request quotas
    /// are per account and region; queueing here beats being throttled).
    pub max_concurrency: usize,
    /// How each KMS call is made (timeout, throttling retries, observer).
    pub calls: CallPolicy,
    /// Check each signature against the public key before returning it; only
    /// [`danger_skip_signature_checks`](Self::danger_skip_signature_checks) turns it off.
    verify_signatures: bool,
}

impl Default for KmsOptions {
    fn default() -> Self {
        Self {
            algorithm: None,
            max_concurrency: 64,
            calls: CallPolicy::default(),
            verify_signatures: true,
        }
    }
}

impl KmsOptions {
    /// Returns each KMS signature without first checking it against the
    /// public key. The check costs tens of microseconds beside a KMS round
    /// trip and is what keeps a misbehaving signer's answer from becoming a
    /// token that verifiers refuse; skip it only to measure KMS alone.
    pub fn danger_skip_signature_checks(mut self) -> Self {
        self.verify_signatures = false;
        self
    }
}

/// Why a KMS signer could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KmsError {
    /// KMS could not be reached or kept failing; trying again later may work.
    #[error("KMS unavailable: {0}")]
    Unavailable(String),
    /// KMS refused (no such key, access denied, disabled, ...).
    #[error("KMS refused: {0}")]
    Refused(String),
    /// The key is not an asymmetric signing key this crate can use.
    #[error("KMS key {key_id} cannot sign JWTs: {reason}")]
    UnusableKey {
        /// The key as configured.
        key_id: String,
        /// Why.
        reason: String,
    },
    /// `GetPublicKey` answered with a key that is not valid.
    #[error("KMS key {key_id}: public key refused: {error}")]
    PublicKey {
        /// The key as configured.
        key_id: String,
        /// Why.
        error: der::DerError,
    },
}

impl KmsError {
    /// Whether retrying later may help (the service was unreachable or failing).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// A [`Signer`] backed by an asymmetric KMS key.
///
/// `Debug` shows the key ARN, algorithm and `kid`; there is no private
/// material here to leak.
pub struct KmsSigner {
    client: aws_sdk_kms::Client,
    key_arn: String,
    spec: SigningAlgorithmSpec,
    verifying_key: VerifyingKey,
    modulus_len: usize,
    permits: Semaphore,
    options: KmsOptions,
}

impl fmt::Debug for KmsSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsSigner")
            .field("key_arn", &self.key_arn)
            .field("alg", &self.verifying_key.algorithm())
            .field("kid", &self.verifying_key.kid())
            .finish()
    }
}

impl KmsSigner {
    /// Builds a signer for `key_id` (key id, key ARN, alias name or alias
    /// ARN): one `GetPublicKey` call, retried while KMS throttles.
    ///
    /// `client`'s own retries are turned off for this signer: it retries
    /// throttling itself, within its own budget, so that one token never
    /// waits on retries it cannot see.
    pub async fn connect(
        client: &aws_sdk_kms::Client,
        key_id: &str,
        options: KmsOptions,
    ) -> Result<Self, KmsError> {
        let client = aws_sdk_kms::Client::from_conf(
            client
                .config()
                .to_builder()
                .retry_config(RetryConfig::disabled())
                .build(),
        );
        let output = aws::call(&options.calls, "kms:GetPublicKey", || {
            client.get_public_key().key_id(key_id).send()
        })
        .await
        .map_err(|failure| match failure.outcome {
            CallOutcome::Refused => KmsError::Refused(failure.reason),
            _ => KmsError::Unavailable(failure.reason),
        })?;

        let unusable = |reason: String| KmsError::UnusableKey {
            key_id: key_id.to_owned(),
            reason,
        };
        if let Some(usage) = output.key_usage() {
            if *usage != KeyUsageType::SignVerify {
                return Err(unusable(format!(
                    "its key usage is {}, not SIGN_VERIFY",
                    usage.as_str()
                )));
            }
        }
        let spki = output
            .public_key()
            .ok_or_else(|| unusable("GetPublicKey returned no public key".into()))?;
        let public = der::spki_public_key(spki.as_ref()).map_err(|error| KmsError::PublicKey {
            key_id: key_id.to_owned(),
            error,
        })?;
        let alg = match (&public, options.algorithm) {
            (PublicKey::P256(_), None | Some(Algorithm::ES256)) => Algorithm::ES256,
            (PublicKey::Ed25519(_), None | Some(Algorithm::EdDSA)) => Algorithm::EdDSA,
            (PublicKey::Rsa { .. }, None | Some(Algorithm::RS256)) => Algorithm::RS256,
            (PublicKey::Rsa { .. }, Some(Algorithm::PS256)) => Algorithm::PS256,
            // The SPKI reader refuses P-384 already: KMS ECC_NIST_P384 keys
            // are not supported here.
            (PublicKey::P384(_), _) => {
                return Err(unusable("P-384 keys are not supported".into()));
            }
            (_, Some(other)) => {
                return Err(unusable(format!("{other} does not fit its {public:?}")));
            }
        };
        let spec = signing_algorithm(alg);
        // KMS lists what the key can do; moto and older answers may omit it.
        let offered = output.signing_algorithms();
        if !offered.is_empty() && !offered.contains(&spec) {
            return Err(unusable(format!(
                "it does not offer {} (it offers {})",
                spec.as_str(),
                offered.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        let modulus_len = match &public {
            PublicKey::Rsa { n, .. } => n.len(),
            _ => 0,
        };
        let verifying_key =
            VerifyingKey::with_thumbprint(alg, public).map_err(|e| unusable(e.to_string()))?;
        let key_arn = output.key_id().unwrap_or(key_id).to_owned();
        let permits = Semaphore::new(options.max_concurrency.max(1));
        Ok(Self {
            client,
            key_arn,
            spec,
            verifying_key,
            modulus_len,
            permits,
            options,
        })
    }

    /// The key ARN signatures are requested with (from `GetPublicKey`).
    pub fn key_arn(&self) -> &str {
        &self.key_arn
    }

    /// The KMS signing algorithm used.
    pub fn signing_algorithm(&self) -> &SigningAlgorithmSpec {
        &self.spec
    }

    /// Turns KMS's answer into a JWS signature.
    fn to_jws(&self, signature: &[u8]) -> Result<Vec<u8>, SignError> {
        let refused = |what: String| SignError::Refused(format!("KMS key {}: {what}", self.key_arn));
        match self.verifying_key.algorithm() {
            Algorithm::ES256 => der::ecdsa_p256_signature(signature)
                .map(|rs| rs.to_vec())
                .map_err(|e| refused(format!("ECDSA signature is not strict DER: {e}"))),
            Algorithm::RS256 | Algorithm::PS256 if signature.len() == self.modulus_len => {
                Ok(signature.to_vec())
            }
            Algorithm::EdDSA if signature.len() == 64 => Ok(signature.to_vec()),
            alg => Err(refused(format!("{alg} signature of {} bytes", signature.len()))),
        }
    }
}

/// The KMS signing algorithm for a JWS algorithm.
pub fn signing_algorithm(alg: Algorithm) -> SigningAlgorithmSpec {
    match alg {
        Algorithm::ES256 => SigningAlgorithmSpec::EcdsaSha256,
        Algorithm::RS256 => SigningAlgorithmSpec::RsassaPkcs1V15Sha256,
        Algorithm::PS256 => SigningAlgorithmSpec::RsassaPssSha256,
        Algorithm::EdDSA => SigningAlgorithmSpec::Ed25519Sha512,
        Algorithm::ES384 => SigningAlgorithmSpec::EcdsaSha384,
    }
}

#[async_trait]
impl Signer for KmsSigner {
    fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying_key
    }

    async fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, SignError> {
        // RAW is what every emulator and every key spec supports; beyond
        // KMS's 4 KiB limit, hash here and send the digest (not for Ed25519,
        // whose JWS form signs the message itself).
        let (message, message_type) = if signing_input.len() <= MAX_RAW_MESSAGE {
            (Blob::new(signing_input), MessageType::Raw)
        } else if self.verifying_key.algorithm() == Algorithm::EdDSA {
            return Err(SignError::Refused(format!(
                "signing input of {} bytes is over KMS's {MAX_RAW_MESSAGE}-byte limit for Ed25519",
                signing_input.len()
            )));
        } else {
            let digest = ring::digest::digest(&ring::digest::SHA256, signing_input);
            (Blob::new(digest.as_ref()), MessageType::Digest)
        };
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| SignError::Refused("KMS signer is shut down".into()))?;
        let output = aws::call(&self.options.calls, "kms:Sign", || {
            self.client
                .sign()
                .key_id(&self.key_arn)
                .message(message.clone())
                .message_type(message_type.clone())
                .signing_algorithm(self.spec.clone())
                .send()
        })
        .await
        .map_err(|failure| match failure.outcome {
            CallOutcome::Refused => SignError::Refused(failure.reason),
            CallOutcome::Throttled => SignError::Unavailable {
                reason: failure.reason,
                retry_after: Some(Duration::from_secs(1)),
            },
            _ => SignError::Unavailable {
                reason: failure.reason,
                retry_after: None,
            },
        })?;
        let signature = output.signature().ok_or_else(|| {
            SignError::Refused(format!("KMS key {}: Sign returned no signature", self.key_arn))
        })?;
        let jws = self.to_jws(signature.as_ref())?;
        if self.options.verify_signatures {
            self.verifying_key
                .verify(self.verifying_key.algorithm(), signing_input, &jws)
                .map_err(|e| {
                    SignError::Refused(format!(
                        "KMS key {} returned a signature that does not verify with its public key ({e})",
                        self.key_arn
                    ))
                })?;
        }
        Ok(jws)
    }
}
