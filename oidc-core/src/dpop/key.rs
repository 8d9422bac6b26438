//! The client's DPoP key.

use std::fmt;

use serde_json::{Map, Value};

use super::DPOP_TYP;
use crate::base64url;
use crate::keys::{KeyError, LocalSigner, Pkcs8Pem, PublicKey, SignError, Signer};
use crate::Algorithm;

/// A DPoP key held in memory: the private key that signs proofs, and its
/// public half as a JWK with its RFC 7638 thumbprint (the `jkt` a token is
/// bound to).
///
/// ES256 by default ([`generate`](Self::generate)); ES384 and EdDSA can be
/// generated too, and any key [`LocalSigner`] reads can be loaded from
/// PKCS#8 PEM ([`from_pem`](Self::from_pem)), so that a restart keeps the
/// key (and the token bound to it). The PEM text kept for
/// [`pem`](Self::pem) is zeroized on drop; ring holds the parsed key, as
/// for every [`LocalSigner`]. `Debug` shows the algorithm and thumbprint only.
///
/// ```
/// use oidc_core::dpop::DpopKey;
/// let key = DpopKey::generate().unwrap();
/// let again = DpopKey::from_pem(key.pem().as_str()).unwrap();
/// assert_eq!(key.thumbprint(), again.thumbprint());
/// ```
pub struct DpopKey {
    signer: LocalSigner,
    pem: Pkcs8Pem,
    thumbprint: String,
    /// The proof header, base64url: `typ`, `alg` and the public `jwk`,
    /// the same for every proof of this key.
    encoded_header: String,
}

impl DpopKey {
    /// A fresh ES256 (P-256) key.
    pub fn generate() -> Result<Self, KeyError> {
        Self::generate_with(Algorithm::ES256)
    }

    /// A fresh key for `alg` (ES256, ES384 or EdDSA; ring generates no RSA keys).
    pub fn generate_with(alg: Algorithm) -> Result<Self, KeyError> {
        let (signer, pem) = LocalSigner::generate(alg)?;
        Ok(Self::from_parts(signer, pem))
    }

    /// Loads a PKCS#8 PEM private key; the algorithm follows from the key
    /// (P-256: ES256, P-384: ES384, Ed25519: EdDSA, RSA: RS256).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        Self::from_pem_with_algorithm(pem, None)
    }

    /// Loads a PKCS#8 PEM private key for `alg` (to sign PS256 with an RSA key).
    pub fn from_pem_with_algorithm(pem: &str, alg: Option<Algorithm>) -> Result<Self, KeyError> {
        let signer = LocalSigner::from_pem_with_algorithm(pem, alg)?;
        Ok(Self::from_parts(signer, Pkcs8Pem::from_string(pem.to_owned())))
    }

    fn from_parts(signer: LocalSigner, pem: Pkcs8Pem) -> Self {
        let public = signer.verifying_key().public_key();
        let mut header = Map::new();
        header.insert("typ".into(), Value::String(DPOP_TYP.into()));
        header.insert("alg".into(), Value::String(signer.algorithm().name().into()));
        header.insert("jwk".into(), Value::Object(public.to_jwk()));
        Self {
            thumbprint: public.thumbprint(),
            encoded_header: base64url::encode(Value::Object(header).to_string()),
            signer,
            pem,
        }
    }

    /// The private key as PKCS#8 PEM, to keep it across restarts (write it
    /// with care: mode 0600, never to a log).
    pub fn pem(&self) -> &Pkcs8Pem {
        &self.pem
    }

    /// The signing algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.signer.algorithm()
    }

    /// The RFC 7638 SHA-256 thumbprint of the public key: a bound token's `cnf.jkt`.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// The public key.
    pub fn public_key(&self) -> &PublicKey {
        self.signer.verifying_key().public_key()
    }

    /// The public JWK a proof carries (key members only).
    pub fn public_jwk(&self) -> Map<String, Value> {
        self.public_key().to_jwk()
    }

    pub(super) fn encoded_header(&self) -> &str {
        &self.encoded_header
    }

    pub(super) fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, SignError> {
        self.signer.sign_now(signing_input)
    }
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopKey")
            .field("alg", &self.algorithm())
            .field("jkt", &self.thumbprint)
            .field("private_key", &"[redacted]")
            .finish()
    }
}
