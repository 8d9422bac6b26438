//! JSON Web Key Sets (RFC 7517 §5), parsed strictly for verification.
//!
//! Rules, the same for a static file and a fetched document:
//! - the document is a strict JSON object with a `keys` array of at most
//!   [`MAX_KEYS`] entries;
//! - a `kid` that appears twice makes the whole set invalid (a verifier could
//!   not know which key was meant);
//! - an entry that cannot serve for verification is left out and recorded with
//!   its reason: unknown `kty` or curve, `use` other than `sig`, `key_ops`
//!   without `verify`, private members, symmetric keys, weak or malformed keys,
//!   no `kid`. One bad entry does not take the other keys down.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::json::{self, JsonError};
use crate::keys::{KeyError, VerifyingKey};
use crate::text;

/// Most entries accepted in one key set.
pub const MAX_KEYS: usize = 100;

/// A parsed key set: the usable verification keys by `kid`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JwkSet {
    keys: HashMap<String, Arc<VerifyingKey>>,
    order: Vec<String>,
    refused: Vec<RefusedKey>,
}

/// An entry of a key set that was left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedKey {
    /// Position in the `keys` array.
    pub index: usize,
    /// Its `kid`, if it had a string one.
    pub kid: Option<String>,
    /// Why it cannot be used.
    pub reason: KeyError,
}

/// Why a whole key set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwkSetError {
    /// Not a strict JSON object.
    #[error("JWKS is not valid: {0}")]
    Json(JsonError),
    /// No `keys` array.
    #[error("JWKS has no \"keys\" array")]
    MissingKeys,
    /// More entries than [`MAX_KEYS`].
    #[error("JWKS has {0} keys, more than {MAX_KEYS}")]
    TooManyKeys(usize),
    /// Two entries share a `kid`.
    #[error("JWKS is ambiguous: kid {0:?} appears more than once")]
    DuplicateKid(String),
}

impl JwkSet {
    /// Parses a JWKS document.
    pub fn from_json(text: &[u8]) -> Result<Self, JwkSetError> {
        let doc = json::parse_object(text).map_err(JwkSetError::Json)?;
        let Some(Value::Array(entries)) = doc.get("keys") else {
            return Err(JwkSetError::MissingKeys);
        };
        if entries.len() > MAX_KEYS {
            return Err(JwkSetError::TooManyKeys(entries.len()));
        }
        let mut seen = std::collections::HashSet::new();
        for entry in entries {
            if let Some(kid) = entry.get("kid").and_then(Value::as_str) {
                if !seen.insert(kid) {
                    return Err(JwkSetError::DuplicateKid(text::excerpt(kid)));
                }
            }
        }
        let mut set = Self::default();
        for (index, entry) in entries.iter().enumerate() {
            let parsed = match entry {
                Value::Object(jwk) => VerifyingKey::from_jwk(jwk),
                _ => Err(KeyError::Json(JsonError::NotAnObject)),
            };
            match parsed {
                Ok(key) => set.push(key),
                Err(reason) => set.refused.push(RefusedKey {
                    index,
                    kid: entry.get("kid").and_then(Value::as_str).map(text::excerpt),
                    reason,
                }),
            }
        }
        Ok(set)
    }

    /// A set of the given keys.
    pub fn from_keys(keys: impl IntoIterator<Item = VerifyingKey>) -> Result<Self, JwkSetError> {
        let mut set = Self::default();
        for key in keys {
            if set.keys.contains_key(key.kid()) {
                return Err(JwkSetError::DuplicateKid(key.kid().to_owned()));
            }
            set.push(key);
        }
        if set.order.len() > MAX_KEYS {
            return Err(JwkSetError::TooManyKeys(set.order.len()));
        }
        Ok(set)
    }

    fn push(&mut self, key: VerifyingKey) {
        self.order.push(key.kid().to_owned());
        self.keys.insert(key.kid().to_owned(), Arc::new(key));
    }

    /// The key with this `kid`.
    pub fn get(&self, kid: &str) -> Option<&Arc<VerifyingKey>> {
        self.keys.get(kid)
    }

    /// Whether the set holds `key`: the same `kid` with the same algorithm
    /// and key material (the same `Arc`, the cheap case, or an equal key).
    pub fn holds(&self, key: &Arc<VerifyingKey>) -> bool {
        self.keys
            .get(key.kid())
            .is_some_and(|held| Arc::ptr_eq(held, key) || **held == **key)
    }

    /// The usable keys, in document order.
    pub fn keys(&self) -> impl Iterator<Item = &Arc<VerifyingKey>> {
        self.order.iter().filter_map(|kid| self.keys.get(kid))
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether no key is usable.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Entries that were left out, with reasons.
    pub fn refused(&self) -> &[RefusedKey] {
        &self.refused
    }

    /// The JWKS document of the usable keys.
    pub fn to_json(&self) -> String {
        let keys: Vec<Value> = self.keys().map(|k| Value::Object(k.to_jwk())).collect();
        serde_json::json!({ "keys": keys }).to_string()
    }
}
