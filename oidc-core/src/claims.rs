//! The claims of a connector access token (RFC 9068 profile) and the names a
//! connector attribute may not take.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The `typ` header of an access token (RFC 9068 §2.1). Verifiers require it,
/// so a client assertion or an ID token is never taken for an access token.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// Claim names with a registered or profile meaning; connector attributes may
/// not use them (RFC 7519 §4.1, RFC 9068 §2.2, RFC 8693 §4, OIDC Core §2).
pub const RESERVED_CLAIMS: [&str; 22] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "client_id",
    "scope",
    "auth_time",
    "acr",
    "amr",
    "azp",
    "nonce",
    "cnf",
    "act",
    "may_act",
    "groups",
    "roles",
    "entitlements",
    "at_hash",
    "sid",
];

/// The claims of a verified connector access token.
///
/// Connector attributes configured at the token service (`org_id`, ...) land in
/// [`attributes`](Self::attributes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    /// Issuer URL.
    pub iss: String,
    /// Subject: the connector id.
    pub sub: String,
    /// Audience: the resource the token is for.
    pub aud: Audience,
    /// The OAuth client that asked for the token.
    pub client_id: String,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Not before (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Expiry (Unix seconds).
    pub exp: u64,
    /// Unique token id.
    pub jti: String,
    /// Space-separated scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Every other claim.
    #[serde(flatten)]
    pub attributes: Map<String, Value>,
}

/// An `aud` claim: one audience or several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

impl Audience {
    /// Whether `audience` is among them.
    pub fn contains(&self, audience: &str) -> bool {
        match self {
            Self::One(one) => one == audience,
            Self::Many(many) => many.iter().any(|a| a == audience),
        }
    }
}

/// Connector attributes to put in a token as private claims. Names are checked
/// on insertion: a registered claim name is refused.
///
/// ```
/// use oidc_core::claims::Attributes;
/// let mut attrs = Attributes::default();
/// attrs.insert("org_id", "org-42".into()).unwrap();
/// assert!(attrs.insert("sub", "admin".into()).is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attributes(Map<String, Value>);

/// An attribute name that would shadow a registered claim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("attribute {0:?} would shadow a registered claim")]
pub struct ReservedClaim(pub String);

impl Attributes {
    /// Adds an attribute.
    pub fn insert(&mut self, name: impl Into<String>, value: Value) -> Result<(), ReservedClaim> {
        let name = name.into();
        if is_reserved(&name) {
            return Err(ReservedClaim(name));
        }
        self.0.insert(name, value);
        Ok(())
    }

    /// The attributes as a JSON map.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TryFrom<Map<String, Value>> for Attributes {
    type Error = ReservedClaim;

    fn try_from(map: Map<String, Value>) -> Result<Self, ReservedClaim> {
        match map.keys().find(|k| is_reserved(k)) {
            Some(name) => Err(ReservedClaim(name.clone())),
            None => Ok(Self(map)),
        }
    }
}

/// Whether `name` is a registered claim name.
pub fn is_reserved(name: &str) -> bool {
    RESERVED_CLAIMS.contains(&name)
}

/// A token string, redacted in `Debug`: it is a bearer credential.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    /// Wraps a token.
    pub fn new(token: String) -> Self {
        Self(token)
    }

    /// The token text, to put in an `Authorization` header or a response body.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The token text.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BearerToken([redacted, {} bytes])", self.0.len())
    }
}
