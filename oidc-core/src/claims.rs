//! The claims of a connector access token (RFC 9068 profile) and the names a
//! connector attribute may not take.

use std::fmt;
use std::sync::Arc;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::json::Key;

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
///
/// `Deserialize` is written out rather than derived: the same fields and
/// rules as the derive with `#[serde(flatten)]` would give (unknown members
/// into `attributes`, a duplicate field refused), without buffering every
/// member first, which is what `flatten` costs on each verification.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    /// The key the token is bound to (RFC 7800 `cnf`; `jkt` for DPoP,
    /// RFC 9449 §6.1), if it is sender-constrained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    /// Every other claim.
    #[serde(flatten)]
    pub attributes: Map<String, Value>,
}

impl<'de> Deserialize<'de> for AccessTokenClaims {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ClaimsVisitor)
    }
}

struct ClaimsVisitor;

/// Stores a field's value, refusing a second one.
fn once<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
    slot: &mut Option<T>,
    name: &'static str,
    access: &mut A,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(de::Error::duplicate_field(name));
    }
    *slot = Some(access.next_value()?);
    Ok(())
}

impl<'de> Visitor<'de> for ClaimsVisitor {
    type Value = AccessTokenClaims;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the claims of an access token")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<AccessTokenClaims, A::Error> {
        let (mut iss, mut sub, mut aud, mut client_id, mut iat) = (None, None, None, None, None);
        let (mut nbf, mut exp, mut jti, mut scope) =
            (None::<Option<u64>>, None, None, None::<Option<String>>);
        let mut cnf = None::<Option<Confirmation>>;
        let mut attributes = Map::new();
        while let Some(Key(key)) = access.next_key::<Key<'de>>()? {
            match &*key {
                "iss" => once(&mut iss, "iss", &mut access)?,
                "sub" => once(&mut sub, "sub", &mut access)?,
                "aud" => once(&mut aud, "aud", &mut access)?,
                "client_id" => once(&mut client_id, "client_id", &mut access)?,
                "iat" => once(&mut iat, "iat", &mut access)?,
                "nbf" => once(&mut nbf, "nbf", &mut access)?,
                "exp" => once(&mut exp, "exp", &mut access)?,
                "jti" => once(&mut jti, "jti", &mut access)?,
                "scope" => once(&mut scope, "scope", &mut access)?,
                "cnf" => once(&mut cnf, "cnf", &mut access)?,
                _ => {
                    attributes.insert(key.into_owned(), access.next_value::<Value>()?);
                }
            }
        }
        let missing = de::Error::missing_field;
        Ok(AccessTokenClaims {
            iss: iss.ok_or_else(|| missing("iss"))?,
            sub: sub.ok_or_else(|| missing("sub"))?,
            aud: aud.ok_or_else(|| missing("aud"))?,
            client_id: client_id.ok_or_else(|| missing("client_id"))?,
            iat: iat.ok_or_else(|| missing("iat"))?,
            nbf: nbf.flatten(),
            exp: exp.ok_or_else(|| missing("exp"))?,
            jti: jti.ok_or_else(|| missing("jti"))?,
            scope: scope.flatten(),
            cnf: cnf.flatten(),
            attributes,
        })
    }
}

/// The `cnf` (confirmation) claim of a sender-constrained token (RFC 7800
/// §3.1): the key whose holder alone may present the token.
///
/// ```
/// use oidc_core::claims::Confirmation;
/// let cnf = Confirmation::jkt("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");
/// assert_eq!(
///     serde_json::to_string(&cnf).unwrap(),
///     r#"{"jkt":"0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// The RFC 7638 SHA-256 thumbprint of the DPoP key (RFC 9449 §6.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jkt: Option<String>,
    /// Any other confirmation method (`x5t#S256` of mutual TLS, `jwk`, ...):
    /// kept so that a token bound in a way this crate cannot check is still
    /// known to be bound, and never taken for a bearer token.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl Confirmation {
    /// A confirmation by DPoP key thumbprint.
    pub fn jkt(thumbprint: impl Into<String>) -> Self {
        Self {
            jkt: Some(thumbprint.into()),
            other: Map::new(),
        }
    }
}

/// What a verified token is bound to, read from its `cnf` claim whatever
/// claims type the caller verifies it as (see
/// [`Verified::binding`](crate::Verified::binding)).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TokenBinding {
    /// No `cnf`: a bearer token.
    #[default]
    Unbound,
    /// `cnf.jkt`: a DPoP key, by its RFC 7638 thumbprint.
    Jkt(Arc<str>),
    /// A `cnf` without `jkt` (mutual TLS's `x5t#S256`, ...): bound to
    /// something this crate cannot check, so never usable here.
    Other,
}

impl TokenBinding {
    /// Reads `cnf` from verified claims: absent is [`Unbound`](Self::Unbound);
    /// present, it must be an object whose `jkt`, if any, is a non-empty
    /// string.
    pub fn of(claims: &Map<String, Value>) -> Result<Self, &'static str> {
        const SHAPE: &str = "an object whose jkt is a non-empty string";
        match claims.get("cnf") {
            None => Ok(Self::Unbound),
            Some(Value::Object(cnf)) => match cnf.get("jkt") {
                None => Ok(Self::Other),
                Some(Value::String(jkt)) if !jkt.is_empty() => Ok(Self::Jkt(Arc::from(jkt.as_str()))),
                Some(_) => Err(SHAPE),
            },
            Some(_) => Err(SHAPE),
        }
    }

    /// Whether the token is bound to a key at all.
    pub fn is_bound(&self) -> bool {
        !matches!(self, Self::Unbound)
    }

    /// The DPoP key thumbprint, for a token bound by `jkt`.
    pub fn jkt(&self) -> Option<&str> {
        match self {
            Self::Jkt(jkt) => Some(jkt),
            _ => None,
        }
    }
}

/// An `aud` claim: one audience or several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AudienceVisitor;
        impl<'de> Visitor<'de> for AudienceVisitor {
            type Value = Audience;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E>(self, v: &str) -> Result<Audience, E> {
                Ok(Audience::One(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Audience, E> {
                Ok(Audience::One(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Audience, A::Error> {
                let mut many = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(16));
                while let Some(one) = seq.next_element::<String>()? {
                    many.push(one);
                }
                Ok(Audience::Many(many))
            }
        }
        deserializer.deserialize_any(AudienceVisitor)
    }
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

/// The member under which AWS STS web identity tokens nest AWS's own claims.
pub const AWS_STS_NAMESPACE: &str = "https://sts.amazonaws.com/";

/// The claims of an AWS STS web identity token (IAM outbound identity
/// federation: what `sts:GetWebIdentityToken` returns), for
/// [`Verifier::verify`](crate::Verifier::verify) and `TrustedIssuers::verify`
/// under a policy for such tokens (`typ` `JWT`, algorithms `RS256` and
/// `ES384`: see the trust file's format, `verify::trust::file`).
///
/// Top-level claims other than these are not kept; verify as
/// `serde_json::Value` to read the token whole.
///
/// ```
/// use oidc_core::claims::AwsWebIdentityClaims;
/// let claims: AwsWebIdentityClaims = serde_json::from_value(serde_json::json!({
///     "iss": "https://0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0.tokens.sts.global.api.aws",
///     "sub": "arn:aws:iam::123456789012:role/connectors/poller",
///     "aud": ["https://api.example.com", "https://other.example.com"],
///     "iat": 1700000000, "exp": 1700000300, "jti": "5b6f0a1e-7c1d-4c1e-9d38-2f1e0c9a8b7d",
///     "https://sts.amazonaws.com/": {
///         "aws_account": "123456789012",
///         "ou_path": ["o-a1b2c3d4e5/r-ab12/ou-ab12-11111111/"],
///         "principal_tags": {"team": "data"},
///         "ec2_source_instance_arn": "arn:aws:ec2:us-east-1:123456789012:instance/i-0abc"
///     }
/// })).unwrap();
/// assert_eq!(claims.aws.aws_account, "123456789012");
/// assert_eq!(claims.aws.principal_tags["team"], "data");
/// assert!(claims.aws.session.contains_key("ec2_source_instance_arn"));
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct AwsWebIdentityClaims {
    /// Issuer: `https://<uuid>.tokens.sts.global.api.aws`, one per AWS account.
    pub iss: String,
    /// The principal's ARN: for a role, the role's ARN with its path
    /// (`arn:aws:iam::123456789012:role/connectors/poller`), not the session's.
    pub sub: String,
    /// Audience: one, or an array of up to ten.
    pub aud: Audience,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Expiry (Unix seconds).
    pub exp: u64,
    /// Unique token id (a UUID).
    pub jti: String,
    /// AWS's claims, under [`AWS_STS_NAMESPACE`].
    #[serde(rename = "https://sts.amazonaws.com/")]
    pub aws: AwsClaims,
}

/// AWS's own claims in an [`AwsWebIdentityClaims`]: those of the principal
/// AWS vouches for, the tags the caller chose (`request_tags`: never bind
/// an identity to those), and the session's context.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct AwsClaims {
    /// The AWS account id.
    pub aws_account: String,
    /// The region whose STS endpoint issued the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_region: Option<String>,
    /// The AWS Organizations id, for an account in an organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    /// The organizational unit paths (an array in tokens; one string is read as one path).
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ou_path: Vec<String>,
    /// The principal's unique id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_id: Option<String>,
    /// The principal's tags (set by the account's administrators).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub principal_tags: Map<String, Value>,
    /// Tags the caller of `GetWebIdentityToken` chose: anything the
    /// workload wants, so never evidence of who it is.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub request_tags: Map<String, Value>,
    /// Every other member: the session's context (`ec2_source_instance_arn`,
    /// `lambda_source_function_arn`, `source_identity`, ...).
    #[serde(flatten)]
    pub session: Map<String, Value>,
}

fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Ok(match Audience::deserialize(deserializer)? {
        Audience::One(one) => vec![one],
        Audience::Many(many) => many,
    })
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

/// A token id (`jti`): 128 random bits, base64url. Access tokens and client
/// assertions alike get a fresh one, so a replay store can tell each use apart.
///
/// ```
/// let a = oidc_core::Jti::random().unwrap();
/// let b = oidc_core::Jti::random().unwrap();
/// assert_eq!(a.as_str().len(), 22);
/// assert_ne!(a, b);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Jti(String);

/// The system's random number generator failed (no token id can be made).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct RandomError;

/// Token ids drawn from the system generator with one call.
const JTI_POOL: usize = 32;

thread_local! {
    static JTI_RANDOM: std::cell::RefCell<JtiPool> = const {
        std::cell::RefCell::new(JtiPool { bytes: [0; 16 * JTI_POOL], used: JTI_POOL })
    };
}

/// Random bytes for the next token ids of one thread. Each id is handed out
/// once and overwritten in place, so none is ever issued twice or stays
/// readable after use.
struct JtiPool {
    bytes: [u8; 16 * JTI_POOL],
    used: usize,
}

impl JtiPool {
    fn take(&mut self) -> Result<[u8; 16], RandomError> {
        use ring::rand::SecureRandom;
        if self.used == JTI_POOL {
            ring::rand::SystemRandom::new()
                .fill(&mut self.bytes)
                .map_err(|_| RandomError)?;
            self.used = 0;
        }
        let slot = &mut self.bytes[16 * self.used..16 * (self.used + 1)];
        let mut id = [0u8; 16];
        id.copy_from_slice(slot);
        slot.fill(0);
        self.used += 1;
        Ok(id)
    }
}

impl Jti {
    /// A fresh random token id.
    ///
    /// 128 bits from the operating system's generator, drawn for 32 ids
    /// at a time per thread: a system call per token costs more than the
    /// rest of the id.
    pub fn random() -> Result<Self, RandomError> {
        let bytes = JTI_RANDOM.with(|pool| pool.borrow_mut().take())?;
        Ok(Self(crate::base64url::encode(bytes)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as text, by value.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Jti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn token_ids_are_distinct_across_refills_and_not_kept() {
        let mut pool = JtiPool {
            bytes: [0; 16 * JTI_POOL],
            used: JTI_POOL,
        };
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3 * JTI_POOL + 5 {
            let id = pool.take().expect("random");
            assert!(seen.insert(id), "an id handed out twice");
            // What was handed out is no longer in the pool.
            assert!(pool.bytes[16 * (pool.used - 1)..16 * pool.used]
                .iter()
                .all(|b| *b == 0));
        }
        let ids: std::collections::HashSet<_> = (0..100).map(|_| Jti::random().expect("random").0).collect();
        assert_eq!(ids.len(), 100);
    }

    fn full() -> Value {
        json!({
            "iss": "https://i", "sub": "c-1", "aud": ["a", "b"], "client_id": "c-1",
            "iat": 10, "nbf": 10, "exp": 20, "jti": "j", "scope": "x y",
            "org_id": "org-42", "tier": {"n": [1, 2]}
        })
    }

    /// The written-out `Deserialize` reads what the derive did, from a
    /// `Value` and from text alike, and round-trips through `Serialize`.
    #[test]
    fn deserializes_like_the_derive() {
        let claims: AccessTokenClaims = serde_json::from_value(full()).unwrap();
        assert_eq!(claims.aud, Audience::Many(vec!["a".into(), "b".into()]));
        assert_eq!((claims.iat, claims.nbf, claims.exp), (10, Some(10), 20));
        assert_eq!(claims.scope.as_deref(), Some("x y"));
        assert_eq!(claims.attributes.len(), 2);
        assert_eq!(claims.attributes["tier"], json!({"n": [1, 2]}));
        let text = serde_json::to_string(&claims).unwrap();
        assert_eq!(serde_json::from_str::<AccessTokenClaims>(&text).unwrap(), claims);
        assert_eq!(serde_json::to_value(&claims).unwrap(), full());

        // Optional members absent or null.
        let mut minimal = full();
        let map = minimal.as_object_mut().unwrap();
        map.remove("nbf");
        map.insert("scope".into(), Value::Null);
        map.insert("aud".into(), json!("a"));
        let claims: AccessTokenClaims = serde_json::from_value(minimal).unwrap();
        assert_eq!(
            (claims.nbf, claims.scope, claims.aud),
            (None, None, Audience::One("a".into()))
        );
    }

    #[test]
    fn refuses_what_the_derive_refused() {
        for (member, value) in [
            ("iss", json!(1)),
            ("aud", json!(1)),
            ("aud", json!([1])),
            ("exp", json!("20")),
            ("exp", json!(-1)),
            ("nbf", json!("x")),
            ("scope", json!(["x"])),
        ] {
            let mut claims = full();
            claims[member] = value;
            assert!(
                serde_json::from_value::<AccessTokenClaims>(claims).is_err(),
                "{member}"
            );
        }
        for member in ["iss", "sub", "aud", "client_id", "iat", "exp", "jti"] {
            let mut claims = full();
            claims.as_object_mut().unwrap().remove(member);
            let error = serde_json::from_value::<AccessTokenClaims>(claims).unwrap_err();
            assert!(
                error.to_string().contains(&format!("missing field `{member}`")),
                "{error}"
            );
        }
        let error = serde_json::from_str::<AccessTokenClaims>(
            r#"{"iss":"a","iss":"b","sub":"s","aud":"a","client_id":"c","iat":1,"exp":2,"jti":"j"}"#,
        )
        .unwrap_err();
        assert!(error.to_string().contains("duplicate field `iss`"), "{error}");
        assert!(serde_json::from_str::<AccessTokenClaims>("[]").is_err());
    }
}
