//! Making proofs: [`DpopProof::builder`].

use std::fmt;

use serde::Serialize;

use super::DpopKey;
use crate::claims::Jti;
use crate::clock::{SystemClock, WallClock};
use crate::keys::SignError;
use crate::{base64url, jws};

/// A signed DPoP proof (RFC 9449 §4.2): the value of a request's `DPoP`
/// header. Good for one request: the verifier remembers its `jti`.
#[derive(Clone, PartialEq, Eq)]
pub struct DpopProof {
    token: String,
    jti: String,
    iat: u64,
}

/// Builds and signs one proof; start with [`DpopProof::builder`].
#[must_use]
pub struct DpopProofBuilder<'a> {
    key: &'a DpopKey,
    htm: &'a str,
    htu: &'a str,
    access_token: Option<&'a str>,
    nonce: Option<&'a str>,
    iat: Option<u64>,
}

#[derive(Serialize)]
struct Claims<'a> {
    jti: &'a str,
    htm: &'a str,
    htu: &'a str,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ath: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
}

impl DpopProof {
    /// A proof signed by `key` for a request with method `htm` (`GET`,
    /// `POST`, ...) to `htu`; a query or fragment in `htu` is left out
    /// (RFC 9449 §4.2).
    pub fn builder<'a>(key: &'a DpopKey, htm: &'a str, htu: &'a str) -> DpopProofBuilder<'a> {
        DpopProofBuilder {
            key,
            htm,
            htu,
            access_token: None,
            nonce: None,
            iat: None,
        }
    }

    /// The compact JWS: the `DPoP` header's value.
    pub fn as_str(&self) -> &str {
        &self.token
    }

    /// The compact JWS, by value.
    pub fn into_string(self) -> String {
        self.token
    }

    /// Its `jti`: 128 random bits, base64url.
    pub fn jti(&self) -> &str {
        &self.jti
    }

    /// Its `iat`.
    pub fn issued_at(&self) -> u64 {
        self.iat
    }
}

impl fmt::Debug for DpopProof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopProof")
            .field("jti", &self.jti)
            .field("iat", &self.iat)
            .finish_non_exhaustive()
    }
}

impl<'a> DpopProofBuilder<'a> {
    /// Binds the proof to `access_token` (`ath` = base64url(SHA-256(token)),
    /// RFC 9449 §4.2): required with every request that presents a token.
    pub fn access_token(mut self, access_token: &'a str) -> Self {
        self.access_token = Some(access_token);
        self
    }

    /// The server's nonce (from its last `DPoP-Nonce` header).
    pub fn nonce(mut self, nonce: &'a str) -> Self {
        self.nonce = Some(nonce);
        self
    }

    /// `iat` (Unix seconds) instead of the system clock's time.
    pub fn issued_at(mut self, iat: u64) -> Self {
        self.iat = Some(iat);
        self
    }

    /// Signs the proof (locally, without waiting on anything).
    pub fn sign(self) -> Result<DpopProof, SignError> {
        let jti = Jti::random()
            .map_err(|e| SignError::Unavailable {
                reason: e.to_string(),
                retry_after: None,
            })?
            .into_string();
        let iat = self.iat.unwrap_or_else(|| SystemClock.now());
        let htu = match self.htu.find(['?', '#']) {
            Some(end) => &self.htu[..end],
            None => self.htu,
        };
        let claims = Claims {
            jti: &jti,
            htm: self.htm,
            htu,
            iat,
            ath: self.access_token.map(access_token_hash),
            nonce: self.nonce,
        };
        let payload =
            serde_json::to_vec(&claims).map_err(|e| SignError::Refused(format!("proof claims: {e}")))?;
        let token = jws::sign_with(self.key.encoded_header(), &payload, |input| self.key.sign(input))?;
        Ok(DpopProof { token, jti, iat })
    }
}

/// `ath`: base64url(SHA-256(access token)) (RFC 9449 §4.2).
pub(super) fn access_token_hash(access_token: &str) -> String {
    base64url::encode(ring::digest::digest(
        &ring::digest::SHA256,
        access_token.as_bytes(),
    ))
}
