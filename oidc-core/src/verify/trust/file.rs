//! The trust file: a TOML list of issuer entries, read strictly (an unknown
//! key is an error, so a typo never loosens a policy).
//!
//! ```toml
//! [[issuers]]
//! name = "acme"                                  # the tenant; label-safe characters
//! issuer = "https://tokens.acme.example"         # the exact iss
//! audiences = ["https://api.example.com"]
//! # Optional:
//! algorithms = ["ES256"]                         # default: what each key is pinned to
//! required_claims = { org_id = "acme" }          # strings, integers or booleans
//! leeway_secs = 30
//! max_lifetime_secs = 900
//! dpop = "required"                              # default "allowed"; see below
//! # Keys: discovery by default, or one of
//! # jwks_uri = "https://tokens.acme.example/keys"
//! # jwks_file = "acme.jwks.json"                 # pinned, relative to this file
//! # jwks = { keys = [ { kty = "EC", crv = "P-256", x = "...", y = "...", kid = "..." } ] }
//! ```
//!
//! An upstream identity provider's tokens (what a workload's platform hands
//! it, for a token exchange) are not this project's access tokens, and an
//! entry for them names what differs. For AWS STS web identity tokens (IAM
//! outbound identity federation; one issuer per AWS account):
//!
//! ```toml
//! [[issuers]]
//! name = "acme-aws"
//! issuer = "https://0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0.tokens.sts.global.api.aws"
//! audiences = ["https://api.example.com"]        # a token's aud may be an array: one must match
//! typ = ["JWT"]                                  # default ["at+jwt"]; "" accepts no typ at all
//! algorithms = ["RS256", "ES384"]                # required: AWS's RSA key has no alg
//! max_lifetime_secs = 3600                       # AWS allows 60 to 3600 s (DurationSeconds)
//! max_token_age_secs = 600                       # optional: refuse tokens issued longer ago
//! # max_token_bytes = 24576                      # default 8192, or 24576 with a typ other than at+jwt
//! required_claims = { "/https:~1~1sts.amazonaws.com~1/aws_account" = "123456789012" }
//! claim_patterns = { sub = "arn:aws:iam::123456789012:role/connectors/*" }
//! ```
//!
//! - `typ`: the accepted `typ` header values (any letter case, with or
//!   without `application/`); `""` stands for a token without `typ`. A
//!   token of type `at+jwt` must carry `client_id` and `jti`; others need
//!   not (a SPIFFE JWT-SVID has no `jti`), but a `jti` present must be a
//!   non-empty string.
//! - `algorithms`: a key published without `alg` (AWS's `RSA_0`) verifies
//!   only with the one listed algorithm its key type fits (`RS256` for RSA,
//!   `ES384` for P-384); without the list, its tokens are refused.
//! - `required_claims` and `claim_patterns`: a name starting with `/` is an
//!   RFC 6901 JSON Pointer into nested claims (`~1` for `/`, `~0` for `~`;
//!   quote it as a TOML key). A required value matches an equal claim or an
//!   array holding it (`ou_path`); a pattern matches a string (or an array
//!   holding one) whole, `*` standing for any run of characters and `?` for
//!   one. Bind to what the issuer vouches for (`sub`, `aws_account`,
//!   `principal_tags`), never to AWS's `request_tags`: the caller of
//!   `GetWebIdentityToken` chooses those.
//! - `max_token_bytes`: the size cap, checked before decoding (8 KiB for
//!   this project's tokens; 24 KiB by default for an entry with another
//!   `typ`, since AWS's tokens reach about 20 KB; at most 64 KiB).
//! - `max_token_age_secs`: tokens whose `iat` is older are refused, even
//!   before their `exp`.
//! - `dpop`: `"required"`: the issuer's tokens are accepted only DPoP-bound
//!   (`cnf.jkt`) and presented with a proof of their key (RFC 9449);
//!   `"allowed"` (the default): bearer tokens too. A bound token is never
//!   accepted as `Bearer`, whatever this says. It applies where a request
//!   is verified (`TrustedIssuers::verify_request`, the axum extractors).
//!
//! ```
//! use oidc_core::verify::trust::file;
//! let entries = file::parse(r#"
//!     [[issuers]]
//!     name = "acme"
//!     issuer = "https://tokens.acme.example"
//!     audiences = ["https://api.example.com"]
//!     required_claims = { org_id = "acme" }
//! "#, std::path::Path::new(".")).unwrap();
//! assert_eq!(entries[0].name(), "acme");
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::{EntryError, IssuerEntry};
use crate::dpop::DpopMode;
use crate::jwks::{JwkSet, JwkSetError};
use crate::Algorithm;

/// Largest trust file read: 16 MiB (about 50,000 entries).
pub const MAX_FILE_LEN: u64 = 16 * 1024 * 1024;

/// Why a trust file was refused. Entries are numbered from 1, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustFileError {
    /// The file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Not TOML of the expected shape (the parser's message names the line).
    #[error("trust file is not valid: {0}")]
    Toml(String),
    /// An entry is refused.
    #[error("issuer entry {index}: {error}")]
    Entry {
        /// Its position.
        index: usize,
        /// Why.
        error: EntryError,
    },
    /// An entry names an unknown algorithm.
    #[error("issuer entry {index}: unknown algorithm {alg:?}")]
    Algorithm {
        /// Its position.
        index: usize,
        /// The name.
        alg: String,
    },
    /// A required claim value that is not a string, integer or boolean.
    #[error("issuer entry {index}: required claim {claim:?} must be a string, an integer or a boolean")]
    ClaimValue {
        /// Its position.
        index: usize,
        /// The claim.
        claim: String,
    },
    /// More than one of `jwks_uri`, `jwks_file` and `jwks`.
    #[error("issuer entry {0}: give at most one of jwks_uri, jwks_file and jwks")]
    KeySources(usize),
    /// A pinned key set is not a valid JWKS.
    #[error("issuer entry {index}: pinned JWKS: {reason}")]
    Jwks {
        /// Its position.
        index: usize,
        /// Why.
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    issuers: Vec<EntryFields>,
}

/// One entry's fields, as a trust file writes them under `[[issuers]]`
/// (the keys in the [module docs](self)), read strictly. Another file
/// format that embeds entries (oidc-server's `[[upstream_issuers]]`)
/// deserializes its tables into this and [`build`](Self::build)s them, so
/// there is one reader of these fields.
///
/// ```
/// use oidc_core::verify::trust::file::EntryFields;
/// let fields: EntryFields = toml::from_str(r#"
///     name = "acme"
///     issuer = "https://tokens.acme.example"
///     audiences = ["https://api.example.com"]
/// "#).unwrap();
/// let entry = fields.build(std::path::Path::new(".")).unwrap();
/// assert_eq!(entry.name(), "acme");
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryFields {
    name: String,
    issuer: String,
    audiences: Vec<String>,
    #[serde(default)]
    algorithms: Option<Vec<String>>,
    #[serde(default)]
    required_claims: BTreeMap<String, toml::Value>,
    #[serde(default)]
    leeway_secs: Option<u64>,
    #[serde(default)]
    max_lifetime_secs: Option<u64>,
    #[serde(default)]
    typ: Option<Vec<String>>,
    #[serde(default)]
    claim_patterns: BTreeMap<String, String>,
    #[serde(default)]
    max_token_age_secs: Option<u64>,
    #[serde(default)]
    max_token_bytes: Option<usize>,
    #[serde(default)]
    jwks_uri: Option<String>,
    #[serde(default)]
    jwks_file: Option<PathBuf>,
    #[serde(default)]
    jwks: Option<toml::Table>,
    #[serde(default)]
    dpop: Option<DpopMode>,
}

/// Why one entry's fields were refused; [`field`](Self::field) names the
/// key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FieldError {
    /// `algorithms` names an unknown algorithm.
    #[error("unknown algorithm {0:?}")]
    Algorithm(String),
    /// A `required_claims` value that is not a string, integer or boolean.
    #[error("required claim {0:?} must be a string, an integer or a boolean")]
    ClaimValue(String),
    /// More than one of `jwks_uri`, `jwks_file` and `jwks`.
    #[error("give at most one of jwks_uri, jwks_file and jwks")]
    KeySources,
    /// A pinned key set (`jwks` or `jwks_file`) that is not a valid JWKS.
    #[error("pinned JWKS: {0}")]
    Jwks(String),
    /// The entry the fields make is refused (name, URLs, policy).
    #[error(transparent)]
    Entry(#[from] EntryError),
}

impl FieldError {
    /// The key at fault (`algorithms`, `required_claims`, `jwks`, ...), as
    /// near as the error says.
    pub fn field(&self) -> &'static str {
        use crate::verify::PolicyError as P;
        match self {
            Self::Algorithm(_) => "algorithms",
            Self::ClaimValue(_) => "required_claims",
            Self::KeySources | Self::Jwks(_) => "jwks",
            Self::Entry(EntryError::Name(_)) => "name",
            Self::Entry(EntryError::EmptyPinned(_)) => "jwks",
            Self::Entry(EntryError::Url { error, .. }) => {
                use crate::verify::RemoteJwksError as R;
                match error {
                    R::InvalidUrl { what, .. } | R::Insecure { what, .. } | R::Credentials { what }
                        if *what != "issuer" =>
                    {
                        "jwks_uri"
                    }
                    _ => "issuer",
                }
            }
            Self::Entry(EntryError::Policy { error, .. }) => match error {
                P::EmptyIssuer => "issuer",
                P::NoAudience => "audiences",
                P::EmptyType => "typ",
                P::LeewayTooLarge(_) => "leeway_secs",
                P::ZeroLifetime => "max_lifetime_secs",
                P::ZeroTokenLen | P::TokenLenTooLarge(_) => "max_token_bytes",
                P::ZeroTokenAge => "max_token_age_secs",
                P::NoAlgorithm => "algorithms",
                P::RequiredClaim(_) => "required_claims",
                P::ClaimPointer(_) | P::ClaimPattern(_) => "claim_patterns",
            },
        }
    }
}

/// Reads the trust file at `path` (at most [`MAX_FILE_LEN`] bytes).
pub fn read(path: &Path) -> Result<Vec<IssuerEntry>, TrustFileError> {
    let failed = |reason: String| TrustFileError::Read {
        path: path.to_owned(),
        reason,
    };
    let len = std::fs::metadata(path).map_err(|e| failed(e.to_string()))?.len();
    if len > MAX_FILE_LEN {
        return Err(failed(format!("larger than {MAX_FILE_LEN} bytes")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
    parse(&text, path.parent().unwrap_or(Path::new(".")))
}

/// Parses a trust file's text; `jwks_file` paths are relative to `base`.
pub fn parse(text: &str, base: &Path) -> Result<Vec<IssuerEntry>, TrustFileError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| TrustFileError::Toml(e.to_string()))?;
    raw.issuers
        .into_iter()
        .enumerate()
        .map(|(i, entry)| entry.build(base).map_err(|error| numbered(i + 1, error)))
        .collect()
}

/// A field error of entry `index` as a trust file error.
fn numbered(index: usize, error: FieldError) -> TrustFileError {
    match error {
        FieldError::Algorithm(alg) => TrustFileError::Algorithm { index, alg },
        FieldError::ClaimValue(claim) => TrustFileError::ClaimValue { index, claim },
        FieldError::KeySources => TrustFileError::KeySources(index),
        FieldError::Jwks(reason) => TrustFileError::Jwks { index, reason },
        FieldError::Entry(error) => TrustFileError::Entry { index, error },
    }
}

impl EntryFields {
    /// The entry's name, as written (not checked yet).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The entry's issuer, as written (not checked yet).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Checks the fields and builds the entry; a `jwks_file` is read
    /// relative to `base`.
    pub fn build(self, base: &Path) -> Result<IssuerEntry, FieldError> {
        let mut builder = IssuerEntry::builder(self.name, self.issuer, self.audiences);
        if let Some(names) = self.algorithms {
            let mut algorithms = Vec::with_capacity(names.len());
            for name in names {
                let alg = name
                    .parse::<Algorithm>()
                    .map_err(|_| FieldError::Algorithm(name.clone()))?;
                algorithms.push(alg);
            }
            builder = builder.algorithms(algorithms);
        }
        for (claim, value) in self.required_claims {
            let value = match value {
                toml::Value::String(s) => Value::String(s),
                toml::Value::Integer(n) => Value::from(n),
                toml::Value::Boolean(b) => Value::Bool(b),
                _ => return Err(FieldError::ClaimValue(claim)),
            };
            builder = builder.require_claim(claim, value);
        }
        if let Some(secs) = self.leeway_secs {
            builder = builder.leeway(Duration::from_secs(secs));
        }
        if let Some(secs) = self.max_lifetime_secs {
            builder = builder.max_lifetime(Duration::from_secs(secs));
        }
        if let Some(types) = self.typ {
            builder = builder.types(types);
        }
        for (claim, pattern) in self.claim_patterns {
            builder = builder.require_claim_pattern(claim, pattern);
        }
        if let Some(secs) = self.max_token_age_secs {
            builder = builder.max_token_age(Duration::from_secs(secs));
        }
        if let Some(bytes) = self.max_token_bytes {
            builder = builder.max_token_len(bytes);
        }
        if let Some(mode) = self.dpop {
            builder = builder.dpop(mode);
        }
        builder = match (self.jwks_uri, self.jwks_file, self.jwks) {
            (None, None, None) => builder,
            (Some(uri), None, None) => builder.jwks_uri(uri),
            (None, Some(file), None) => {
                let path = base.join(file);
                let failed = |e: &dyn std::fmt::Display| FieldError::Jwks(format!("{}: {e}", path.display()));
                let bytes = std::fs::read(&path).map_err(|e| failed(&e))?;
                builder.pinned_jwks(pinned(&bytes).map_err(|e| failed(&e))?)
            }
            (None, None, Some(table)) => {
                let json = serde_json::to_vec(&table).map_err(|e| FieldError::Jwks(e.to_string()))?;
                builder.pinned_jwks(pinned(&json).map_err(|e| FieldError::Jwks(e.to_string()))?)
            }
            _ => return Err(FieldError::KeySources),
        };
        Ok(builder.build()?)
    }
}

fn pinned(bytes: &[u8]) -> Result<JwkSet, JwkSetError> {
    let set = JwkSet::from_json(bytes)?;
    for refused in set.refused() {
        tracing::warn!(kid = ?refused.kid, reason = %refused.reason, "pinned JWKS entry refused");
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::trust::IssuerKeys;

    fn one(text: &str) -> Result<IssuerEntry, TrustFileError> {
        parse(text, Path::new(".")).map(|mut entries| entries.remove(0))
    }

    const BASE: &str = r#"
        [[issuers]]
        name = "acme"
        issuer = "https://tokens.acme.example"
        audiences = ["https://api.example.com"]
    "#;

    #[test]
    fn entries_read_every_field() {
        let entry = one(&format!(
            "{BASE}\nalgorithms = [\"ES256\", \"EdDSA\"]\nrequired_claims = {{ org_id = \"acme\", tier = 2, beta = true }}\n\
             leeway_secs = 10\nmax_lifetime_secs = 600\njwks_uri = \"https://tokens.acme.example/keys\"\n"
        ))
        .unwrap();
        assert_eq!(entry.issuer(), "https://tokens.acme.example");
        assert_eq!(
            entry.keys(),
            &IssuerKeys::JwksUri("https://tokens.acme.example/keys".into())
        );
        let policy = entry.policy();
        assert_eq!(
            policy.algorithms(),
            Some(&[Algorithm::ES256, Algorithm::EdDSA][..])
        );
        assert_eq!(policy.leeway_secs(), 10);
        assert_eq!(policy.required_claims().len(), 3);
        assert_eq!(policy.dpop(), DpopMode::Allowed);
        assert_eq!(one(BASE).unwrap().keys(), &IssuerKeys::Discovery);
        let required = one(&format!("{BASE}\ndpop = \"required\"")).unwrap();
        assert_eq!(required.policy().dpop(), DpopMode::Required);
        let allowed = one(&format!("{BASE}\ndpop = \"allowed\"")).unwrap();
        assert_eq!(allowed.policy().dpop(), DpopMode::Allowed);
    }

    #[test]
    fn mistakes_are_refused() {
        let cases = [
            (format!("{BASE}\naudience = \"x\""), "unknown field"),
            (format!("{BASE}\nalgorithms = [\"HS256\"]"), "unknown algorithm"),
            (format!("{BASE}\ndpop = \"Required\""), "unknown variant"),
            (format!("{BASE}\ndpop = true"), "wanted string"),
            (
                format!("{BASE}\nrequired_claims = {{ org = 1.5 }}"),
                "must be a string",
            ),
            (
                format!("{BASE}\njwks_uri = \"https://a.example/k\"\njwks_file = \"k.json\""),
                "at most one",
            ),
            (format!("{BASE}\njwks = {{ keys = [] }}"), "no usable key"),
            (
                format!("{BASE}\njwks_file = \"/nonexistent/k.json\""),
                "pinned JWKS",
            ),
            (BASE.replace("acme\"", "a c m e\""), "must be 1 to"),
            (BASE.replace("https://tokens", "http://tokens"), "must use https"),
        ];
        for (text, expected) in cases {
            let error = one(&text).unwrap_err().to_string();
            assert!(error.contains(expected), "{error:?} should contain {expected:?}");
        }
    }
}
