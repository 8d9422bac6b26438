//! Signing keys held in this process: PKCS#8 PEM files or freshly generated keys,
//! signing with ring.

use std::fmt;

use async_trait::async_trait;
use ring::rand::SystemRandom;
use ring::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use zeroize::Zeroizing;

use super::public::bit_len;
use super::{KeyError, PublicKey, SignError, Signer, VerifyingKey, RSA_MIN_BITS};
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
    /// Wraps PEM text read from a file or a secret store.
    pub fn from_string(pem: String) -> Self {
        Self(Zeroizing::new(pem))
    }

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
    /// Generates a new ES256, ES384 or EdDSA key; returns the signer and its PKCS#8 PEM.
    /// (ring cannot generate RSA keys: create those with a tool such as OpenSSL, or in KMS.)
    pub fn generate(alg: Algorithm) -> Result<(Self, Pkcs8Pem), KeyError> {
        let rng = SystemRandom::new();
        let document = match alg {
            Algorithm::ES256 => EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng),
            Algorithm::ES384 => EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P384_SHA384_FIXED_SIGNING, &rng),
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
    /// the key: P-256 → ES256, P-384 → ES384, Ed25519 → EdDSA, RSA → RS256.
    pub fn from_pkcs8_der(der: &[u8], alg: Option<Algorithm>) -> Result<Self, KeyError> {
        let candidates: &[Algorithm] = match alg {
            Some(ref alg) => std::slice::from_ref(alg),
            None => &[
                Algorithm::ES256,
                Algorithm::ES384,
                Algorithm::EdDSA,
                Algorithm::RS256,
            ],
        };
        let rng = SystemRandom::new();
        let mut last_reason = String::from("unrecognised key");
        for &alg in candidates {
            let attempt = match alg {
                Algorithm::ES256 => {
                    EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
                        .map(LocalKey::Ecdsa)
                }
                Algorithm::ES384 => {
                    EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P384_SHA384_FIXED_SIGNING, der, &rng)
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
        // ring only says "wrong algorithm" or "too small": name the actual
        // problem when the key's own AlgorithmIdentifier tells it.
        let kind = Pkcs8Kind::of(der);
        match kind {
            Pkcs8Kind::Rsa { bits } if bits < RSA_MIN_BITS => return Err(KeyError::RsaTooSmall { bits }),
            Pkcs8Kind::OtherCurve(curve) => return Err(KeyError::UnsupportedCurve(curve.to_owned())),
            _ => {}
        }
        if let (Some(alg), Some(key)) = (alg, kind.key_type()) {
            if !kind.fits(alg) {
                return Err(KeyError::AlgorithmMismatch {
                    alg: alg.name().to_owned(),
                    key,
                });
            }
        }
        Err(KeyError::Pkcs8(match alg {
            Some(alg) => format!("not a usable {alg} key ({last_reason})"),
            None => format!("not a P-256, P-384, Ed25519 or RSA key ({last_reason})"),
        }))
    }

    fn from_key(alg: Algorithm, key: LocalKey, rng: SystemRandom) -> Result<Self, KeyError> {
        let public = match &key {
            LocalKey::Ecdsa(k) if alg == Algorithm::ES384 => {
                PublicKey::p384_uncompressed(k.public_key().as_ref())?
            }
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

/// What a PKCS#8 document says it holds, from its AlgorithmIdentifier (and,
/// for RSA, the modulus size). Read only to explain a refusal: ring parses and
/// validates the key itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pkcs8Kind {
    P256,
    P384,
    OtherCurve(&'static str),
    Ed25519,
    Rsa { bits: usize },
    Unknown,
}

/// rsaEncryption (1.2.840.113549.1.1.1).
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// id-ecPublicKey (1.2.840.10045.2.1).
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// id-Ed25519 (1.3.101.112).
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
/// Named curves, by OID.
const CURVES: [(&[u8], &str); 4] = [
    (&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07], "P-256"),
    (&[0x2b, 0x81, 0x04, 0x00, 0x22], "P-384"),
    (&[0x2b, 0x81, 0x04, 0x00, 0x23], "P-521"),
    (&[0x2b, 0x81, 0x04, 0x00, 0x0a], "secp256k1"),
];

impl Pkcs8Kind {
    fn of(der: &[u8]) -> Self {
        Self::parse(der).unwrap_or(Self::Unknown)
    }

    fn parse(der: &[u8]) -> Option<Self> {
        // PrivateKeyInfo ::= SEQUENCE { version, AlgorithmIdentifier, OCTET STRING, ... }
        let (info, _) = der_read(der, 0x30)?;
        let (_version, rest) = der_read(info, 0x02)?;
        let (algorithm, rest) = der_read(rest, 0x30)?;
        let (oid, parameters) = der_read(algorithm, 0x06)?;
        if oid == OID_RSA {
            // RSAPrivateKey ::= SEQUENCE { version, modulus, ... }
            let (key, _) = der_read(rest, 0x04)?;
            let (key, _) = der_read(key, 0x30)?;
            let (_version, key) = der_read(key, 0x02)?;
            let (n, _) = der_read(key, 0x02)?;
            Some(Self::Rsa { bits: bit_len(n) })
        } else if oid == OID_EC {
            let (curve, _) = der_read(parameters, 0x06)?;
            Some(match CURVES.iter().find(|(known, _)| *known == curve) {
                Some((_, "P-256")) => Self::P256,
                Some((_, "P-384")) => Self::P384,
                Some((_, name)) => Self::OtherCurve(name),
                None => Self::OtherCurve("unrecognised named curve"),
            })
        } else if oid == OID_ED25519 {
            Some(Self::Ed25519)
        } else {
            None
        }
    }

    fn key_type(self) -> Option<&'static str> {
        match self {
            Self::P256 => Some("EC P-256"),
            Self::P384 => Some("EC P-384"),
            Self::Ed25519 => Some("OKP Ed25519"),
            Self::Rsa { .. } => Some("RSA"),
            Self::OtherCurve(_) | Self::Unknown => None,
        }
    }

    fn fits(self, alg: Algorithm) -> bool {
        matches!(
            (self, alg),
            (Self::P256, Algorithm::ES256)
                | (Self::P384, Algorithm::ES384)
                | (Self::Ed25519, Algorithm::EdDSA)
                | (Self::Rsa { .. }, Algorithm::RS256 | Algorithm::PS256)
        )
    }
}

/// Reads one DER element of type `tag`: its contents and what follows it.
fn der_read(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (len_bytes, rest) = rest.split_at(count);
        let len = len_bytes.iter().fold(0usize, |acc, b| acc << 8 | usize::from(*b));
        (len, rest)
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

#[async_trait]
impl Signer for LocalSigner {
    fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying_key
    }

    async fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, SignError> {
        self.sign_now(signing_input)
    }

    fn signs_in_process(&self) -> bool {
        true
    }
}
