//! One trusted issuer: the name it goes by, its exact `iss`, where its keys
//! come from, and the policy its tokens must meet.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::dpop::DpopMode;
use crate::jwks::JwkSet;
use crate::text;
use crate::verify::remote::{RemoteJwksError, Target};
use crate::verify::{Policy, PolicyBuilder, PolicyError};
use crate::Algorithm;

/// Longest entry name.
pub const MAX_NAME_LEN: usize = 128;

/// A trusted issuer. Its name (a tenant or customer id) is what results,
/// logs and the status view call it; its issuer is compared byte for byte
/// with the `iss` of tokens; only its own keys, algorithms, audiences and
/// required claims apply to the tokens that name it.
///
/// ```
/// use oidc_core::verify::trust::IssuerEntry;
/// let entry = IssuerEntry::builder("acme", "https://tokens.acme.example", ["https://api.example.com"])
///     .require_claim("org_id", "acme")
///     .build()
///     .unwrap();
/// assert_eq!(entry.name(), "acme");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct IssuerEntry {
    name: Arc<str>,
    issuer: Arc<str>,
    keys: IssuerKeys,
    policy: Arc<Policy>,
}

/// Where an issuer's verification keys come from.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum IssuerKeys {
    /// The `jwks_uri` of the issuer's OpenID Connect discovery document
    /// (`{issuer}/.well-known/openid-configuration`), fetched on the first
    /// token. The default.
    Discovery,
    /// This JWKS URL, without discovery.
    JwksUri(String),
    /// A key set uploaded for an issuer the control plane cannot reach:
    /// nothing is ever fetched.
    Pinned(Arc<JwkSet>),
}

/// Builds an [`IssuerEntry`]; start with [`IssuerEntry::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct IssuerEntryBuilder {
    name: String,
    keys: IssuerKeys,
    policy: PolicyBuilder,
}

/// Why an issuer entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// The name is empty, too long, or has characters other than ASCII
    /// letters, digits and `.` `_` `-` `:` `@` `/` (it becomes a metric label).
    #[error("issuer entry name {0:?} must be 1 to {MAX_NAME_LEN} characters of A-Z a-z 0-9 . _ - : @ /")]
    Name(String),
    /// The policy is inconsistent (no audience, bad leeway, ...).
    #[error("issuer entry {name:?}: {error}")]
    Policy {
        /// The entry.
        name: String,
        /// The problem.
        error: PolicyError,
    },
    /// The issuer or JWKS URL breaks the URL rules (https, or http to loopback).
    #[error("issuer entry {name:?}: {error}")]
    Url {
        /// The entry.
        name: String,
        /// The problem.
        error: RemoteJwksError,
    },
    /// A pinned key set with no usable key.
    #[error("issuer entry {0:?}: the pinned JWKS has no usable key")]
    EmptyPinned(String),
}

impl IssuerEntry {
    /// Starts an entry named `name` for tokens whose `iss` is exactly
    /// `issuer`, for any of `audiences`. Keys come from discovery unless
    /// [`jwks_uri`](IssuerEntryBuilder::jwks_uri) or
    /// [`pinned_jwks`](IssuerEntryBuilder::pinned_jwks) says otherwise.
    pub fn builder<A: Into<String>>(
        name: impl Into<String>,
        issuer: impl Into<String>,
        audiences: impl IntoIterator<Item = A>,
    ) -> IssuerEntryBuilder {
        IssuerEntryBuilder {
            name: name.into(),
            keys: IssuerKeys::Discovery,
            policy: Policy::builder(issuer, audiences),
        }
    }

    /// The entry's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The issuer (the exact `iss`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Where its keys come from.
    pub fn keys(&self) -> &IssuerKeys {
        &self.keys
    }

    /// The policy its tokens are verified against.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub(super) fn shared_name(&self) -> &Arc<str> {
        &self.name
    }

    pub(super) fn shared_issuer(&self) -> &Arc<str> {
        &self.issuer
    }

    pub(super) fn shared_policy(&self) -> &Arc<Policy> {
        &self.policy
    }
}

impl IssuerEntryBuilder {
    /// Fetches keys from this JWKS URL instead of through discovery.
    pub fn jwks_uri(mut self, url: impl Into<String>) -> Self {
        self.keys = IssuerKeys::JwksUri(url.into());
        self
    }

    /// Verifies with this key set and never fetches anything.
    pub fn pinned_jwks(mut self, jwks: JwkSet) -> Self {
        self.keys = IssuerKeys::Pinned(Arc::new(jwks));
        self
    }

    /// Accepts only these algorithms for this issuer; a key its JWKS
    /// publishes without `alg` verifies with the one of them its key type
    /// fits (see [`PolicyBuilder::algorithms`]).
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.policy = self.policy.algorithms(algorithms);
        self
    }

    /// Requires claim `name` to have exactly `value`, or to be an array
    /// holding it (for example `org_id` equal to this tenant's id); a name
    /// starting with `/` is a JSON Pointer into nested claims (see
    /// [`PolicyBuilder::require_claim`]).
    pub fn require_claim(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.policy = self.policy.require_claim(name, value);
        self
    }

    /// Requires claim `name` to match the glob `pattern` (see
    /// [`PolicyBuilder::require_claim_pattern`]).
    pub fn require_claim_pattern(mut self, name: impl Into<String>, pattern: impl Into<String>) -> Self {
        self.policy = self.policy.require_claim_pattern(name, pattern);
        self
    }

    /// The accepted `typ` values (default `["at+jwt"]`; `""`: none); see
    /// [`PolicyBuilder::types`].
    pub fn types<T: Into<String>>(mut self, types: impl IntoIterator<Item = T>) -> Self {
        self.policy = self.policy.types(types);
        self
    }

    /// The token size cap (default 8 KiB, or 24 KiB for an entry accepting
    /// a `typ` other than `at+jwt`); see [`PolicyBuilder::max_token_len`].
    pub fn max_token_len(mut self, len: usize) -> Self {
        self.policy = self.policy.max_token_len(len);
        self
    }

    /// The greatest accepted `now - iat` (default: no limit).
    pub fn max_token_age(mut self, max: Duration) -> Self {
        self.policy = self.policy.max_token_age(max);
        self
    }

    /// Clock leeway (default 30 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.policy = self.policy.leeway(leeway);
        self
    }

    /// Longest accepted `exp - iat` (default 900 s).
    pub fn max_lifetime(mut self, max: Duration) -> Self {
        self.policy = self.policy.max_lifetime(max);
        self
    }

    /// Whether this issuer's tokens must be DPoP-bound (default
    /// [`DpopMode::Allowed`]); see [`PolicyBuilder::dpop`].
    pub fn dpop(mut self, mode: DpopMode) -> Self {
        self.policy = self.policy.dpop(mode);
        self
    }

    /// The required `typ` (default `at+jwt`).
    pub fn typ(mut self, typ: impl Into<String>) -> Self {
        self.policy = self.policy.typ(typ);
        self
    }

    /// Checks the name, the policy and the URLs, and builds the entry.
    pub fn build(self) -> Result<IssuerEntry, EntryError> {
        let name = self.name;
        if !valid_name(&name) {
            return Err(EntryError::Name(text::excerpt(&name)));
        }
        let policy = self.policy.build().map_err(|error| EntryError::Policy {
            name: name.clone(),
            error,
        })?;
        let target = match &self.keys {
            IssuerKeys::Discovery => Some(Target::Issuer(policy.issuer().to_owned())),
            IssuerKeys::JwksUri(url) => Some(Target::Jwks(url.clone())),
            IssuerKeys::Pinned(jwks) if jwks.is_empty() => return Err(EntryError::EmptyPinned(name)),
            IssuerKeys::Pinned(_) => None,
        };
        if let Some(target) = target {
            target.check().map_err(|error| EntryError::Url {
                name: name.clone(),
                error,
            })?;
        }
        Ok(IssuerEntry {
            name: name.into(),
            issuer: policy.issuer().into(),
            keys: self.keys,
            policy: Arc::new(policy),
        })
    }
}

/// Whether `name` can serve as a metric label and a log field as it is.
fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:@/".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUD: [&str; 1] = ["https://api.example.com"];

    #[test]
    fn names_are_label_safe() {
        for good in [
            "acme",
            "tenant-42",
            "org_1.eu:prod",
            "a@b/c",
            &"x".repeat(MAX_NAME_LEN),
        ] {
            IssuerEntry::builder(good, "https://t.example", AUD)
                .build()
                .unwrap();
        }
        for bad in [
            "",
            "has space",
            "quote\"",
            "new\nline",
            "émoji",
            &"x".repeat(MAX_NAME_LEN + 1),
        ] {
            assert!(matches!(
                IssuerEntry::builder(bad, "https://t.example", AUD).build(),
                Err(EntryError::Name(_))
            ));
        }
    }

    #[test]
    fn urls_and_policies_are_checked_at_build() {
        let err = |b: IssuerEntryBuilder| b.build().unwrap_err();
        assert!(matches!(
            err(IssuerEntry::builder("a", "http://t.example", AUD)),
            EntryError::Url { .. }
        ));
        assert!(matches!(
            err(IssuerEntry::builder("a", "https://t.example", AUD).jwks_uri("ftp://t.example/jwks")),
            EntryError::Url { .. }
        ));
        assert!(matches!(
            err(IssuerEntry::builder(
                "a",
                "https://t.example",
                Vec::<String>::new()
            )),
            EntryError::Policy { .. }
        ));
        assert!(matches!(
            err(IssuerEntry::builder("a", "https://t.example", AUD).pinned_jwks(JwkSet::default())),
            EntryError::EmptyPinned(_)
        ));
        // A pinned issuer is never fetched, so it need not be a URL.
        let (signer, _) = crate::keys::LocalSigner::generate(Algorithm::ES256).unwrap();
        let jwks = JwkSet::from_keys([crate::keys::Signer::verifying_key(&signer).clone()]).unwrap();
        IssuerEntry::builder("a", "spiffe://tenant.example", AUD)
            .pinned_jwks(jwks)
            .build()
            .unwrap();
    }
}
