//! KMS-envelope keys (feature `aws`): a private key generated here, encrypted
//! with a symmetric KMS key and kept (by the caller, e.g. in Secrets Manager)
//! only as ciphertext. At start it is decrypted once and signs locally: zero
//! KMS calls per token.
//!
//! The KMS encryption context is `{"issuer": ISSUER, "kid": KID}`, so a
//! ciphertext only decrypts for the issuer and key id it was made for (and
//! CloudTrail shows which key of which issuer was opened).
//!
//! Key material: the PKCS#8 plaintext passes through this crate only in
//! [`Zeroizing`] buffers, and the signer is a [`LocalSigner`]. Copies inside
//! the AWS SDK's request and response buffers and inside ring are outside
//! this crate's reach.

use std::collections::HashMap;
use std::fmt;

use aws_sdk_kms::primitives::Blob;
use zeroize::Zeroizing;

use super::kms::KmsOptions;
use super::{KeyError, LocalSigner, Pkcs8Pem, Signer, VerifyingKey};
use crate::aws;
use crate::aws::CallOutcome;
use crate::Algorithm;

/// A private key encrypted under a KMS key: what is stored, never the plaintext.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedKey {
    /// The symmetric KMS key that encrypted it (id, ARN or alias).
    pub kms_key_id: String,
    /// The public half, pinned to its algorithm, `kid` = thumbprint.
    pub verifying_key: VerifyingKey,
    /// KMS ciphertext of the PKCS#8 DER private key.
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for SealedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedKey")
            .field("kms_key_id", &self.kms_key_id)
            .field("alg", &self.verifying_key.algorithm())
            .field("kid", &self.verifying_key.kid())
            .field("ciphertext", &format_args!("{} bytes", self.ciphertext.len()))
            .finish()
    }
}

/// Why an envelope key could not be made or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// KMS could not be reached or kept failing; trying again later may work.
    #[error("KMS unavailable: {0}")]
    Unavailable(String),
    /// KMS refused the call.
    #[error("KMS refused: {0}")]
    Refused(String),
    /// KMS would not decrypt: the ciphertext was not made for this issuer and
    /// kid (the encryption context differs), or under another KMS key, or it
    /// was altered.
    #[error(
        "KMS refused to decrypt key {kid} for issuer {issuer:?}: the ciphertext was made for another encryption context \
         (issuer or kid), under another KMS key, or altered ({reason})"
    )]
    WrongContext {
        /// The issuer asked for.
        issuer: String,
        /// The kid asked for.
        kid: String,
        /// KMS's answer.
        reason: String,
    },
    /// The decrypted key is not a usable key.
    #[error("decrypted key refused: {0}")]
    Key(KeyError),
    /// The decrypted key is not the key its record names.
    #[error("decrypted key has kid {found}, but its record says {expected}")]
    KidMismatch {
        /// The kid recorded with the ciphertext.
        expected: String,
        /// The kid of the decrypted key.
        found: String,
    },
}

impl EnvelopeError {
    /// Whether retrying later may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// The encryption context binding a ciphertext to an issuer and key id.
pub fn encryption_context(issuer: &str, kid: &str) -> HashMap<String, String> {
    HashMap::from([
        ("issuer".to_owned(), issuer.to_owned()),
        ("kid".to_owned(), kid.to_owned()),
    ])
}

/// Generates a new ES256 or EdDSA key and encrypts it under `kms_key_id`
/// for `issuer`. One KMS `Encrypt` call.
pub async fn create(
    client: &aws_sdk_kms::Client,
    kms_key_id: &str,
    issuer: &str,
    alg: Algorithm,
    options: &KmsOptions,
) -> Result<SealedKey, EnvelopeError> {
    let (_signer, pem) = LocalSigner::generate(alg).map_err(EnvelopeError::Key)?;
    seal(client, kms_key_id, issuer, &pem, Some(alg), options).await
}

/// Encrypts an existing PKCS#8 key (e.g. an RSA key made with OpenSSL) under
/// `kms_key_id` for `issuer`. One KMS `Encrypt` call.
pub async fn seal(
    client: &aws_sdk_kms::Client,
    kms_key_id: &str,
    issuer: &str,
    pem: &Pkcs8Pem,
    alg: Option<Algorithm>,
    options: &KmsOptions,
) -> Result<SealedKey, EnvelopeError> {
    let signer = LocalSigner::from_pem_with_algorithm(pem.as_str(), alg).map_err(EnvelopeError::Key)?;
    let parsed = pem::parse(pem.as_str()).map_err(|e| EnvelopeError::Key(KeyError::Pem(e.to_string())))?;
    let der = Zeroizing::new(parsed.into_contents());
    let verifying_key = signer.verifying_key().clone();
    let context = encryption_context(issuer, verifying_key.kid());
    let output = aws::call(&options.calls, "kms:Encrypt", || {
        client
            .encrypt()
            .key_id(kms_key_id)
            .plaintext(Blob::new(der.as_slice()))
            .set_encryption_context(Some(context.clone()))
            .send()
    })
    .await
    .map_err(|failure| match failure.outcome {
        CallOutcome::Refused => EnvelopeError::Refused(failure.reason),
        _ => EnvelopeError::Unavailable(failure.reason),
    })?;
    let ciphertext = output
        .ciphertext_blob()
        .ok_or_else(|| EnvelopeError::Refused("kms:Encrypt returned no ciphertext".into()))?
        .as_ref()
        .to_vec();
    Ok(SealedKey {
        kms_key_id: kms_key_id.to_owned(),
        verifying_key,
        ciphertext,
    })
}

/// Decrypts `sealed` for `issuer` and returns the local signer. One KMS
/// `Decrypt` call; the plaintext is zeroized once ring has parsed it.
pub async fn open(
    client: &aws_sdk_kms::Client,
    sealed: &SealedKey,
    issuer: &str,
    options: &KmsOptions,
) -> Result<LocalSigner, EnvelopeError> {
    let kid = sealed.verifying_key.kid();
    let context = encryption_context(issuer, kid);
    let output = aws::call(&options.calls, "kms:Decrypt", || {
        client
            .decrypt()
            .key_id(&sealed.kms_key_id)
            .ciphertext_blob(Blob::new(sealed.ciphertext.as_slice()))
            .set_encryption_context(Some(context.clone()))
            .send()
    })
    .await
    .map_err(|failure| match (failure.outcome, failure.code.as_deref()) {
        (CallOutcome::Refused, Some("InvalidCiphertextException" | "IncorrectKeyException")) => {
            EnvelopeError::WrongContext {
                issuer: issuer.to_owned(),
                kid: kid.to_owned(),
                reason: failure.reason,
            }
        }
        (CallOutcome::Refused, _) => EnvelopeError::Refused(failure.reason),
        _ => EnvelopeError::Unavailable(failure.reason),
    })?;
    let plaintext = Zeroizing::new(
        output
            .plaintext
            .ok_or_else(|| EnvelopeError::Refused("kms:Decrypt returned no plaintext".into()))?
            .into_inner(),
    );
    let signer = LocalSigner::from_pkcs8_der(&plaintext, Some(sealed.verifying_key.algorithm()))
        .map_err(EnvelopeError::Key)?;
    if signer.kid() != kid {
        return Err(EnvelopeError::KidMismatch {
            expected: kid.to_owned(),
            found: signer.kid().to_owned(),
        });
    }
    Ok(signer)
}
