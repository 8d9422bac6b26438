//! Signing keys held in this process: PKCS#8 PEM files or freshly generated keys,
//! signing with ring.

use std::fmt;

use async_trait::async_trait;
use ring::rand::SystemRandom;
use ring::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use zeroize::Zeroizing;

use super::{KeyError, PublicKey, SignError, Signer, VerifyingKey};
use crate::Algorithm;

/// A private key in memory that signs locally.
///
/// `Debug` shows the algorithm and `kid` only. ring owns the parsed key; every
/// buffer this crate fills with key material (PEM text, PKCS#8 DER) is zeroized
/// when dropped.
///
/// ```
/// use oidc_core::keys::{LocalSigner, Signer};
/// use oidc_core::Algorithm;
///
/// let (signer, pem) = LocalSigner::generate(Algorithm::ES256).unwrap();
/// let again = LocalSigner::from_pem(pem.as_str()).unwrap();
/// assert_eq!(signer.kid(), again.kid());
/// ```
pub struct LocalSigner {
    verifying_key: VerifyingKey,
    key: LocalKey,
    rng: SystemRandom,
}

enum LocalKey {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair, &'static dyn sig::RsaEncoding),
}

impl fmt::Debug for LocalSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalSigner")
            .field("alg", &self.verifying_key.algorithm())
            .field("kid", &self.verifying_key.kid())
            .field("private_key", &"[redacted]")
            .finish()
    }
}

/// A PKCS#8 private key as PEM text, zeroized on drop. Its `Debug` is redacted
/// and it has no `Display`: write it out deliberately with [`Pkcs8Pem::as_str`].
#[derive(Clone)]
pub struct Pkcs8Pem(Zeroizing<String>);

impl Pkcs8Pem {
    /// The PEM text (`-----BEGIN PRIVATE KEY-----` ...).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Pkcs8Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pkcs8Pem([redacted])")
    }
}

impl LocalSigner {
    /// Generates a new ES256 or EdDSA key; returns the signer and its PKCS#8 PEM.
    /// (ring cannot generate RSA keys: create those with a tool such as OpenSSL, or in KMS.)
    pub fn generate(alg: Algorithm) -> Result<(Self, Pkcs8Pem), KeyError> {
        let rng = SystemRandom::new();
        let document = match alg {
            Algorithm::ES256 => EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng),
            Algorithm::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng),
            Algorithm::RS256 | Algorithm::PS256 => return Err(KeyError::CannotGenerate(alg)),
        }
        .map_err(|_| KeyError::Unavailable("random number generator failed"))?;
        let der = Zeroizing::new(document.as_ref().to_vec());
        let pem = Pkcs8Pem(Zeroizing::new(pem::encode(&pem::Pem::new(
            "PRIVATE KEY",
            der.to_vec(),
        ))));
        let signer = Self::from_pkcs8_der(&der, Some(alg))?;
        Ok((signer, pem))
    }

    /// Loads a PKCS#8 PEM key; the algorithm follows from the key (RSA keys sign RS256).
    pub fn from_pem(pem_text: &str) -> Result<Self, KeyError> {
        Self::from_pem_with_algorithm(pem_text, None)
    }

    /// Loads a PKCS#8 PEM key for `alg` (needed to choose PS256 for an RSA key).
    pub fn from_pem_with_algorithm(pem_text: &str, alg: Option<Algorithm>) -> Result<Self, KeyError> {
        let parsed = pem::parse(pem_text).map_err(|e| KeyError::Pem(e.to_string()))?;
        match parsed.tag() {
            "PRIVATE KEY" => {}
            "EC PRIVATE KEY" | "RSA PRIVATE KEY" => {
                return Err(KeyError::Pem(format!(
                    "{:?} is a legacy format; convert it with `openssl pkcs8 -topk8 -nocrypt`",
                    parsed.tag()
                )))
            }
            "ENCRYPTED PRIVATE KEY" => {
                return Err(KeyError::Pem(
                    "encrypted PKCS#8 is not supported; decrypt it first".into(),
                ))
            }
            other => {
                return Err(KeyError::Pem(format!(
                    "found a {:?} block, expected PRIVATE KEY",
                    other
                )))
            }
        }
        let der = Zeroizing::new(parsed.into_contents());
        Self::from_pkcs8_der(&der, alg)
    }

    /// Loads a PKCS#8 DER key. With `alg` = `None` the algorithm follows from
    /// the key: P-256 → ES256, Ed25519 → EdDSA, RSA → RS256.
    pub fn from_pkcs8_der(der: &[u8], alg: Option<Algorithm>) -> Result<Self, KeyError> {
        let candidates: &[Algorithm] = match alg {
            Some(ref alg) => std::slice::from_ref(alg),
            None => &[Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256],
        };
        let rng = SystemRandom::new();
        let mut last_reason = String::from("unrecognised key");
        for &alg in candidates {
            let attempt = match alg {
                Algorithm::ES256 => {
                    EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
                        .map(LocalKey::Ecdsa)
                }
                Algorithm::EdDSA => Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map(LocalKey::Ed25519),
                Algorithm::RS256 => {
                    RsaKeyPair::from_pkcs8(der).map(|k| LocalKey::Rsa(k, &sig::RSA_PKCS1_SHA256))
                }
                Algorithm::PS256 => {
                    RsaKeyPair::from_pkcs8(der).map(|k| LocalKey::Rsa(k, &sig::RSA_PSS_SHA256))
                }
            };
            match attempt {
                Ok(key) => return Self::from_key(alg, key, rng),
                Err(rejected) => {
                    let reason = rejected.to_string();
                    if reason != "WrongAlgorithm" {
                        last_reason = reason;
                    }
                }
            }
        }
        Err(KeyError::Pkcs8(match alg {
            Some(alg) => format!("not a usable {alg} key ({last_reason})"),
            None => format!("not a P-256, Ed25519 or RSA key ({last_reason})"),
        }))
    }

    fn from_key(alg: Algorithm, key: LocalKey, rng: SystemRandom) -> Result<Self, KeyError> {
        let public = match &key {
            LocalKey::Ecdsa(k) => PublicKey::p256_uncompressed(k.public_key().as_ref())?,
            LocalKey::Ed25519(k) => PublicKey::ed25519(k.public_key().as_ref())?,
            LocalKey::Rsa(k, _) => {
                let components: sig::RsaPublicKeyComponents<Vec<u8>> = k.public().into();
                PublicKey::rsa(&components.n, &components.e)?
            }
        };
        Ok(Self {
            verifying_key: VerifyingKey::with_thumbprint(alg, public)?,
            key,
            rng,
        })
    }

    /// Signs synchronously (local signing never waits on I/O).
    pub fn sign_now(&self, signing_input: &[u8]) -> Result<Vec<u8>, SignError> {
        let failed = |_| SignError::Refused("local signing failed".into());
        match &self.key {
            LocalKey::Ecdsa(k) => k
                .sign(&self.rng, signing_input)
                .map(|s| s.as_ref().to_vec())
                .map_err(failed),
            LocalKey::Ed25519(k) => Ok(k.sign(signing_input).as_ref().to_vec()),
            LocalKey::Rsa(k, encoding) => {
                let mut out = vec![0u8; k.public().modulus_len()];
                k.sign(*encoding, &self.rng, signing_input, &mut out)
                    .map_err(failed)?;
                Ok(out)
            }
        }
    }
}

#[async_trait]
impl Signer for LocalSigner {
    fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying_key
    }

    async fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, SignError> {
        self.sign_now(signing_input)
    }
}
