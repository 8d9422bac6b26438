//! Compact JWS (RFC 7515 §7.1), strict: the one encoder and decoder used for
//! access tokens, client assertions and anything else that is signed here.
//!
//! Decoding checks, in this order and before any signature work: the size cap,
//! the serialization (compact only, never JSON or JWE), exactly three parts,
//! strict base64url in each, a header that is a strict JSON object (no
//! duplicate members, bounded nesting) with a supported `alg` and none of the
//! parameters that would let the token choose its own key or processing rules
//! (`crit`, `jku`, `x5u`, `x5c`, `jwk`, `b64`). The signature is then checked over
//! the exact bytes received.

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::base64url::{self, Base64Error};
use crate::json::{self, JsonError};
use crate::keys::{PublicKey, SignError, SignatureError, Signer, VerifyingKey};
use crate::text;
use crate::{Algorithm, AlgorithmError};

/// Largest compact JWS accepted by default (8 KiB), checked before decoding.
pub const DEFAULT_MAX_LEN: usize = 8 * 1024;

/// Header parameters that are refused wherever they appear: each lets the
/// sender pick the key (`jku`, `x5u`, `x5c`, `jwk`) or change how the token is
/// processed (`crit`, `b64`).
pub const FORBIDDEN_HEADER_PARAMETERS: [&str; 6] = ["crit", "jku", "x5u", "x5c", "jwk", "b64"];

/// The three parts of a compact JWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The protected header.
    Header,
    /// The payload.
    Payload,
    /// The signature.
    Signature,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Header => "header",
            Part::Payload => "payload",
            Part::Signature => "signature",
        })
    }
}

/// Why a compact JWS was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwsError {
    /// Longer than the cap; nothing was decoded.
    #[error("token is {len} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// Length received.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// JWS JSON serialization; only the compact form is accepted.
    #[error("JSON serialization is not accepted; use the compact form")]
    JsonSerialization,
    /// Five parts: an encrypted JWT (JWE), which is not accepted.
    #[error("token has five parts (JWE); encrypted tokens are not accepted")]
    Jwe,
    /// Not three parts.
    #[error("token has {0} parts, expected 3")]
    PartCount(usize),
    /// A part is not strict base64url.
    #[error("{part} is not valid base64url: {error}")]
    Base64 {
        /// Which part.
        part: Part,
        /// The problem.
        error: Base64Error,
    },
    /// The header or payload is not strict JSON (or not an object).
    #[error("{part} is not a valid JSON object: {error}")]
    Json {
        /// Which part.
        part: Part,
        /// The problem.
        error: JsonError,
    },
    /// The header has no `alg`.
    #[error("header has no \"alg\"")]
    MissingAlg,
    /// `alg` names no accepted algorithm (`none`, HMAC, unsupported).
    #[error("header alg: {0}")]
    Algorithm(AlgorithmError),
    /// A header member with the wrong JSON type.
    #[error("header member {member:?} must be {expected}")]
    HeaderMemberType {
        /// The member.
        member: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// One of [`FORBIDDEN_HEADER_PARAMETERS`].
    #[error("header parameter {0:?} is not accepted")]
    ForbiddenHeader(&'static str),
    /// The signature does not verify with the key.
    #[error("{0}")]
    Signature(SignatureError),
    /// `kid` is present but not a string (the JSON text, shortened). Key ids
    /// are strings (RFC 7517 §4.5), so no key can match it; a verifier treats
    /// it as an unknown key.
    #[error("header kid {0} is not a string, so it names no key")]
    KidNotString(String),
    /// A JWS that must carry its own public key in `jwk` (a DPoP proof,
    /// RFC 9449 §4.2) has none, or one that is not a JSON object.
    #[error("header has no \"jwk\" object")]
    MissingJwk,
}

/// The header members this crate acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Signature algorithm.
    pub alg: Algorithm,
    /// Key id, if present.
    pub kid: Option<String>,
    /// Media type of the whole token, if present.
    pub typ: Option<String>,
}

impl Header {
    /// Encodes a header of exactly `alg`, `typ` and `kid` as base64url JSON.
    /// The result is fixed per key, so signers compute it once.
    pub fn encode(alg: Algorithm, typ: &str, kid: &str) -> String {
        let mut map = Map::new();
        map.insert("alg".into(), Value::String(alg.name().into()));
        map.insert("typ".into(), Value::String(typ.into()));
        map.insert("kid".into(), Value::String(kid.into()));
        base64url::encode(Value::Object(map).to_string())
    }

    /// The header, and its `jwk` when `rule` asks for one (the one member of
    /// [`FORBIDDEN_HEADER_PARAMETERS`] that a DPoP proof must carry).
    fn from_json_with(bytes: &[u8], rule: KeyRule) -> Result<(Self, Option<Map<String, Value>>), JwsError> {
        let mut map = json::parse_object(bytes).map_err(|error| JwsError::Json {
            part: Part::Header,
            error,
        })?;
        let jwk = match rule {
            KeyRule::NoJwk => None,
            KeyRule::EmbeddedJwk => match map.remove("jwk") {
                Some(Value::Object(jwk)) => Some(jwk),
                _ => return Err(JwsError::MissingJwk),
            },
        };
        for name in FORBIDDEN_HEADER_PARAMETERS {
            if map.contains_key(name) {
                return Err(JwsError::ForbiddenHeader(name));
            }
        }
        let alg = match map.get("alg") {
            None => return Err(JwsError::MissingAlg),
            Some(Value::String(name)) => name.parse::<Algorithm>().map_err(JwsError::Algorithm)?,
            Some(_) => {
                return Err(JwsError::HeaderMemberType {
                    member: "alg",
                    expected: "a string",
                })
            }
        };
        let kid = match map.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(other) => return Err(JwsError::KidNotString(text::excerpt(&other.to_string()))),
        };
        let header = Self {
            alg,
            kid,
            typ: optional_string(&map, "typ")?,
        };
        Ok((header, jwk))
    }
}

/// Whether a header must carry its signer's public key in `jwk`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyRule {
    /// `jwk` is refused, as every other key-choosing parameter.
    NoJwk,
    /// `jwk` must be a JSON object (a DPoP proof).
    EmbeddedJwk,
}

fn optional_string(map: &Map<String, Value>, member: &'static str) -> Result<Option<String>, JwsError> {
    match map.get(member) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(JwsError::HeaderMemberType {
            member,
            expected: "a string",
        }),
    }
}

/// A compact JWS whose form and header passed every check but whose signature
/// has not been checked yet. Its payload is reachable only through [`verify`](Self::verify).
#[derive(Debug)]
pub struct UnverifiedJws<'a> {
    header: Arc<Header>,
    header_text: &'a str,
    reused_header: bool,
    signing_input: &'a str,
    payload: Vec<u8>,
    signature: Vec<u8>,
    /// The header's `jwk`, only ever present after
    /// [`decode_with_embedded_jwk`](Self::decode_with_embedded_jwk).
    jwk: Option<Map<String, Value>>,
}

/// A header that passed every check, with its exact base64url text: a
/// verifier keeps the last few it accepted, since every token of one key
/// carries the same header byte for byte.
#[derive(Debug)]
pub(crate) struct KnownHeader {
    pub(crate) text: Box<str>,
    header: Arc<Header>,
}

impl<'a> UnverifiedJws<'a> {
    /// Decodes `token` strictly, refusing anything longer than `max_len` before decoding.
    pub fn decode(token: &'a str, max_len: usize) -> Result<Self, JwsError> {
        Self::decode_reusing(token, max_len, &[])
    }

    /// Decodes a JWS that carries the public key it is signed with in its
    /// header's `jwk` (a DPoP proof, RFC 9449 §4.2): every rule of
    /// [`decode`](Self::decode), in the same order, except that `jwk` must
    /// be present, as a JSON object ([`JwsError::MissingJwk`] otherwise).
    /// `crit`, `jku`, `x5u`, `x5c` and `b64` stay refused. The key is
    /// [`embedded_jwk`](Self::embedded_jwk), not checked here: whoever
    /// reads it parses it as a public key and decides whether to trust it.
    pub fn decode_with_embedded_jwk(token: &'a str, max_len: usize) -> Result<Self, JwsError> {
        Self::decode_inner(token, max_len, &[], KeyRule::EmbeddedJwk)
    }

    /// [`decode`](Self::decode), reusing one of `known` when the token's
    /// header text is byte for byte the one it was decoded from: the same
    /// input, so the same result, without decoding and parsing it again. Every
    /// other check runs as in `decode`, in the same order.
    pub(crate) fn decode_reusing(
        token: &'a str,
        max_len: usize,
        known: &[Arc<KnownHeader>],
    ) -> Result<Self, JwsError> {
        Self::decode_inner(token, max_len, known, KeyRule::NoJwk)
    }

    fn decode_inner(
        token: &'a str,
        max_len: usize,
        known: &[Arc<KnownHeader>],
        rule: KeyRule,
    ) -> Result<Self, JwsError> {
        if token.len() > max_len {
            return Err(JwsError::TooLarge {
                len: token.len(),
                max: max_len,
            });
        }
        if token.trim_start().starts_with('{') {
            return Err(JwsError::JsonSerialization);
        }
        let mut parts = token.split('.');
        let (Some(header_text), Some(payload_text), Some(signature_text), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(match token.split('.').count() {
                5 => JwsError::Jwe,
                n => JwsError::PartCount(n),
            });
        };
        let decode =
            |part, text: &str| base64url::decode(text).map_err(|error| JwsError::Base64 { part, error });
        let reused = known.iter().find(|known| *known.text == *header_text);
        let header_bytes = match reused {
            Some(_) => Vec::new(),
            None => decode(Part::Header, header_text)?,
        };
        let payload = decode(Part::Payload, payload_text)?;
        let signature = decode(Part::Signature, signature_text)?;
        let (header, jwk) = match reused {
            // Known headers come from `decode_reusing` alone (no `jwk`).
            Some(known) => (known.header.clone(), None),
            None => {
                let (header, jwk) = Header::from_json_with(&header_bytes, rule)?;
                (Arc::new(header), jwk)
            }
        };
        Ok(Self {
            header,
            header_text,
            reused_header: reused.is_some(),
            signing_input: &token[..header_text.len() + 1 + payload_text.len()],
            payload,
            signature,
            jwk,
        })
    }

    /// Whether the header came from the `known` one given to `decode_reusing`.
    pub(crate) fn reused_header(&self) -> bool {
        self.reused_header
    }

    /// The header's base64url text, as received.
    pub(crate) fn header_text(&self) -> &str {
        self.header_text
    }

    /// The header with its text, to be given to later `decode_reusing` calls.
    pub(crate) fn known_header(&self) -> Arc<KnownHeader> {
        Arc::new(KnownHeader {
            text: self.header_text.into(),
            header: self.header.clone(),
        })
    }

    /// The decoded header (not yet authenticated).
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The header's `jwk` (not yet checked in any way), for a JWS decoded by
    /// [`decode_with_embedded_jwk`](Self::decode_with_embedded_jwk); `None`
    /// otherwise.
    pub fn embedded_jwk(&self) -> Option<&Map<String, Value>> {
        self.jwk.as_ref()
    }

    /// The payload before its signature is checked: only for choosing which
    /// key to verify with (e.g. the `sub` of a client assertion); never trust it.
    pub fn unverified_payload(&self) -> &[u8] {
        &self.payload
    }

    /// Checks the signature with `key` and returns the payload.
    pub fn verify(self, key: &VerifyingKey) -> Result<Vec<u8>, JwsError> {
        self.verify_as(key, key.algorithm())
    }

    /// Checks the signature with `key` under the header's `alg` (a DPoP
    /// proof, whose key comes with it and was checked to fit that `alg`),
    /// and returns the payload.
    pub(crate) fn verify_with_public_key(self, key: &PublicKey) -> Result<Vec<u8>, JwsError> {
        key.verify(self.header.alg, self.signing_input.as_bytes(), &self.signature)
            .map_err(JwsError::Signature)?;
        Ok(self.payload)
    }

    /// Checks the signature with `key` under `pinned`, the algorithm a
    /// policy chose for it (the header's `alg` must be it), and returns the
    /// payload.
    pub(crate) fn verify_as(self, key: &VerifyingKey, pinned: Algorithm) -> Result<Vec<u8>, JwsError> {
        key.verify_as(
            pinned,
            self.header.alg,
            self.signing_input.as_bytes(),
            &self.signature,
        )
        .map_err(JwsError::Signature)?;
        Ok(self.payload)
    }
}

/// Signs `payload` under a header already encoded with [`Header::encode`] and
/// returns the compact JWS.
pub async fn sign(encoded_header: &str, payload: &[u8], signer: &dyn Signer) -> Result<String, SignError> {
    let mut token = String::with_capacity(encoded_header.len() + 1 + payload.len() * 4 / 3 + 4 + 360);
    token.push_str(encoded_header);
    token.push('.');
    base64url::encode_into(payload, &mut token);
    let signature = signer.sign(token.as_bytes()).await?;
    token.push('.');
    base64url::encode_into(signature, &mut token);
    Ok(token)
}

/// [`sign`] for a signer that does not wait (a local key): signs `payload`
/// under `encoded_header` with `sign` over the signing input, and returns
/// the compact JWS.
pub fn sign_with(
    encoded_header: &str,
    payload: &[u8],
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, SignError>,
) -> Result<String, SignError> {
    let mut token = String::with_capacity(encoded_header.len() + 1 + payload.len() * 4 / 3 + 4 + 360);
    token.push_str(encoded_header);
    token.push('.');
    base64url::encode_into(payload, &mut token);
    let signature = sign(token.as_bytes())?;
    token.push('.');
    base64url::encode_into(signature, &mut token);
    Ok(token)
}
