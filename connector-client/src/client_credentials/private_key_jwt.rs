//! `private_key_jwt` (RFC 7523): a short-lived JWT signed with the client's
//! key through oidc-core's JWS layer.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use oidc_core::keys::{LocalSigner, Signer};
use zeroize::Zeroizing;

use super::{ASSERTION_LIFETIME, ASSERTION_TYP};
use crate::error::ConfigError;
use crate::Error;

/// A key for `private_key_jwt` client authentication.
///
/// Any [`Signer`] works (a local key, or a KMS key); its `kid` goes in the
/// assertion header.
#[derive(Clone)]
pub struct PrivateKeyJwt {
    signer: Arc<dyn Signer>,
    // `Header::encode` depends only on the key, so it is computed once.
    header: String,
}

impl PrivateKeyJwt {
    /// Signs assertions with `signer`.
    pub fn new(signer: Arc<dyn Signer>) -> Self {
        let header = oidc_core::jws::Header::encode(signer.algorithm(), ASSERTION_TYP, signer.kid());
        Self { signer, header }
    }

    /// Loads a PKCS#8 PEM private key (P-256 → ES256, Ed25519 → EdDSA, RSA → RS256).
    pub fn from_pem(pem: &str) -> Result<Self, ConfigError> {
        let signer = LocalSigner::from_pem(pem).map_err(ConfigError::Key)?;
        Ok(Self::new(Arc::new(signer)))
    }

    /// Reads a PKCS#8 PEM private key file.
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let pem = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| ConfigError::ReadFile {
            what: "private key",
            path: path.display().to_string(),
            reason: e.to_string(),
        })?);
        Self::from_pem(&pem)
    }

    /// The signer.
    pub fn signer(&self) -> &Arc<dyn Signer> {
        &self.signer
    }

    pub(super) async fn assertion(&self, client_id: &str, audience: &str) -> Result<String, Error> {
        let iat = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let jti = oidc_core::Jti::random().map_err(|e| {
            Error::Assertion(oidc_core::keys::SignError::Unavailable {
                reason: e.to_string(),
                retry_after: None,
            })
        })?;
        let claims = serde_json::json!({
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "jti": jti.as_str(),
            "iat": iat,
            "exp": iat + ASSERTION_LIFETIME.as_secs(),
        });
        let payload = claims.to_string();
        Ok(oidc_core::jws::sign(&self.header, payload.as_bytes(), &*self.signer).await?)
    }
}

impl fmt::Debug for PrivateKeyJwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKeyJwt")
            .field("alg", &self.signer.algorithm())
            .field("kid", &self.signer.kid())
            .finish()
    }
}
