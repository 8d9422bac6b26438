//! What a verifier accepts: issuer, audiences, token type, clock leeway,
//! lifetime, allowed algorithms and required claim values.

use std::time::Duration;

use serde_json::{Map, Value};

use super::{numeric_date, VerifyError};
use crate::claims::ACCESS_TOKEN_TYP;
use crate::jws::DEFAULT_MAX_LEN;
use crate::text;
use crate::Algorithm;

/// Default clock leeway: 30 s.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// Largest leeway a policy may have: 5 min.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);
/// Default maximum token lifetime (`exp - iat`): 900 s, the issuer's default cap.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(900);

/// The acceptance rules of a verifier. Built with [`Policy::builder`], which
/// requires the issuer and the audiences up front: there is no policy that
/// forgets to check them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    issuer: String,
    audiences: Vec<String>,
    typ: String,
    leeway: u64,
    max_lifetime: u64,
    max_token_len: usize,
    /// `None`: every algorithm the key allows.
    algorithms: Option<Vec<Algorithm>>,
    /// Claims that must be present with exactly this JSON value.
    required_claims: Vec<(String, Value)>,
}

/// Builds a [`Policy`].
#[derive(Debug, Clone)]
#[must_use]
pub struct PolicyBuilder {
    policy: Policy,
    leeway: Duration,
    max_lifetime: Duration,
}

/// Why a policy could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The issuer is empty.
    #[error("the issuer is empty")]
    EmptyIssuer,
    /// No audience, or an empty one.
    #[error("at least one non-empty audience is required")]
    NoAudience,
    /// The required `typ` is empty.
    #[error("the required typ is empty")]
    EmptyType,
    /// More leeway than [`MAX_LEEWAY`].
    #[error("leeway of {0:?} is more than the maximum of 300 s")]
    LeewayTooLarge(Duration),
    /// A maximum lifetime of zero.
    #[error("the maximum lifetime must be at least 1 s")]
    ZeroLifetime,
    /// A token size cap of zero.
    #[error("the token size cap must be positive")]
    ZeroTokenLen,
    /// An empty list of allowed algorithms.
    #[error("the list of allowed algorithms is empty")]
    NoAlgorithm,
    /// A required claim with an empty name, or required twice.
    #[error("required claim {0:?} is empty or required twice")]
    RequiredClaim(String),
}

impl Policy {
    /// Starts a policy for tokens from `issuer` (compared byte for byte) for any
    /// of `audiences`. Defaults: `typ` `at+jwt`, leeway 30 s, maximum lifetime
    /// 900 s, tokens up to 8 KiB.
    pub fn builder<A: Into<String>>(
        issuer: impl Into<String>,
        audiences: impl IntoIterator<Item = A>,
    ) -> PolicyBuilder {
        PolicyBuilder {
            policy: Policy {
                issuer: issuer.into(),
                audiences: audiences.into_iter().map(Into::into).collect(),
                typ: ACCESS_TOKEN_TYP.to_owned(),
                leeway: 0,
                max_lifetime: 0,
                max_token_len: DEFAULT_MAX_LEN,
                algorithms: None,
                required_claims: Vec::new(),
            },
            leeway: DEFAULT_LEEWAY,
            max_lifetime: DEFAULT_MAX_LIFETIME,
        }
    }

    /// The issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The accepted audiences.
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// The leeway in seconds.
    pub fn leeway_secs(&self) -> u64 {
        self.leeway
    }

    /// The token size cap.
    pub fn max_token_len(&self) -> usize {
        self.max_token_len
    }

    /// The allowed algorithms; `None`: whatever each key is pinned to.
    pub fn algorithms(&self) -> Option<&[Algorithm]> {
        self.algorithms.as_deref()
    }

    /// The claims required to have exactly these values.
    pub fn required_claims(&self) -> &[(String, Value)] {
        &self.required_claims
    }

    /// The header's `alg` must be one of the allowed algorithms (checked
    /// before any key is looked up).
    pub(crate) fn check_algorithm(&self, alg: Algorithm) -> Result<(), VerifyError> {
        match &self.algorithms {
            Some(allowed) if !allowed.contains(&alg) => Err(VerifyError::AlgorithmNotAllowed(alg)),
            _ => Ok(()),
        }
    }

    /// `typ` must equal the required type, ignoring ASCII case and an
    /// `application/` prefix (RFC 7515 §4.1.9).
    pub(crate) fn check_type(&self, typ: Option<&str>) -> Result<(), VerifyError> {
        let matches = typ.is_some_and(|t| {
            let t = match t.get(..12) {
                Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &t[12..],
                _ => t,
            };
            t.eq_ignore_ascii_case(&self.typ)
        });
        if matches {
            Ok(())
        } else {
            Err(VerifyError::WrongType {
                found: typ.map(text::excerpt),
                expected: self.typ.clone(),
            })
        }
    }

    /// Checks the registered claims at time `now`.
    pub(crate) fn check_claims(&self, claims: &Map<String, Value>, now: u64) -> Result<(), VerifyError> {
        let iss = required_str(claims, "iss")?;
        if iss != self.issuer {
            return Err(VerifyError::WrongIssuer {
                found: text::excerpt(iss),
            });
        }
        self.check_audience(claims.get("aud").ok_or(VerifyError::MissingClaim("aud"))?)?;
        if required_str(claims, "sub")?.is_empty() {
            return Err(VerifyError::ClaimType {
                claim: "sub",
                expected: "a non-empty string",
            });
        }
        required_str(claims, "client_id")?;
        if required_str(claims, "jti")?.is_empty() {
            return Err(VerifyError::ClaimType {
                claim: "jti",
                expected: "a non-empty string",
            });
        }
        if claims.get("scope").is_some_and(|s| !s.is_string()) {
            return Err(VerifyError::ClaimType {
                claim: "scope",
                expected: "a string",
            });
        }

        let leeway = self.leeway;
        let exp = numeric_date(claims, "exp")?.ok_or(VerifyError::MissingClaim("exp"))?;
        let iat = numeric_date(claims, "iat")?.ok_or(VerifyError::MissingClaim("iat"))?;
        let nbf = numeric_date(claims, "nbf")?;
        if now >= exp.saturating_add(leeway) {
            return Err(VerifyError::Expired { exp, now, leeway });
        }
        if let Some(nbf) = nbf {
            if nbf > now.saturating_add(leeway) {
                return Err(VerifyError::NotYetValid { nbf, now, leeway });
            }
        }
        if iat > now.saturating_add(leeway) {
            return Err(VerifyError::IssuedInFuture { iat, now, leeway });
        }
        if exp <= iat {
            return Err(VerifyError::ClaimType {
                claim: "exp",
                expected: "a time after iat",
            });
        }
        if exp - iat > self.max_lifetime {
            return Err(VerifyError::LifetimeTooLong {
                lifetime: exp - iat,
                max: self.max_lifetime,
            });
        }
        for (claim, required) in &self.required_claims {
            match claims.get(claim) {
                Some(found) if found == required => {}
                found => {
                    return Err(VerifyError::RequiredClaim {
                        claim: text::excerpt(claim),
                        present: found.is_some(),
                    })
                }
            }
        }
        Ok(())
    }

    fn check_audience(&self, aud: &Value) -> Result<(), VerifyError> {
        const EXPECTED: &str = "a non-empty string or a non-empty array of strings";
        let malformed = || VerifyError::ClaimType {
            claim: "aud",
            expected: EXPECTED,
        };
        // Borrowed in place: no list is built for the usual single audience.
        let found = match aud {
            Value::String(_) => std::slice::from_ref(aud),
            Value::Array(many) if !many.is_empty() => many.as_slice(),
            _ => return Err(malformed()),
        };
        let mut accepted = false;
        for a in found {
            match a.as_str() {
                Some(a) if !a.is_empty() => {
                    accepted = accepted || self.audiences.iter().any(|known| known == a);
                }
                _ => return Err(malformed()),
            }
        }
        if accepted {
            Ok(())
        } else {
            Err(VerifyError::WrongAudience {
                found: found
                    .iter()
                    .take(4)
                    .filter_map(Value::as_str)
                    .map(text::excerpt)
                    .collect(),
            })
        }
    }
}

fn required_str<'a>(claims: &'a Map<String, Value>, claim: &'static str) -> Result<&'a str, VerifyError> {
    match claims.get(claim) {
        None => Err(VerifyError::MissingClaim(claim)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(VerifyError::ClaimType {
            claim,
            expected: "a string",
        }),
    }
}

impl PolicyBuilder {
    /// Clock leeway for `exp`, `nbf` and `iat` (default 30 s, at most 300 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Maximum `exp - iat` (default 900 s).
    pub fn max_lifetime(mut self, max: Duration) -> Self {
        self.max_lifetime = max;
        self
    }

    /// The required `typ` (default `at+jwt`).
    pub fn typ(mut self, typ: impl Into<String>) -> Self {
        self.policy.typ = typ.into();
        self
    }

    /// The token size cap (default 8 KiB).
    pub fn max_token_len(mut self, len: usize) -> Self {
        self.policy.max_token_len = len;
        self
    }

    /// Accepts only tokens whose header names one of `algorithms` (default:
    /// any algorithm, as long as it is the one its key is pinned to). Useful
    /// when one issuer's key set may hold keys that its tokens must not use.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        let mut list: Vec<Algorithm> = Vec::new();
        for alg in algorithms {
            if !list.contains(&alg) {
                list.push(alg);
            }
        }
        self.policy.algorithms = Some(list);
        self
    }

    /// Requires claim `name` to be present with exactly `value` (JSON
    /// equality: `"42"` is not `42`), for example a tenant's `org_id`.
    ///
    /// ```
    /// use oidc_core::Policy;
    /// let policy = Policy::builder("https://tokens.example.com", ["https://api.example.com"])
    ///     .require_claim("org_id", "org-42")
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(policy.required_claims().len(), 1);
    /// ```
    pub fn require_claim(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.policy.required_claims.push((name.into(), value.into()));
        self
    }

    /// Checks and builds the policy.
    pub fn build(self) -> Result<Policy, PolicyError> {
        let mut policy = self.policy;
        if policy.issuer.is_empty() {
            return Err(PolicyError::EmptyIssuer);
        }
        if policy.audiences.is_empty() || policy.audiences.iter().any(String::is_empty) {
            return Err(PolicyError::NoAudience);
        }
        if policy.typ.is_empty() {
            return Err(PolicyError::EmptyType);
        }
        if self.leeway > MAX_LEEWAY {
            return Err(PolicyError::LeewayTooLarge(self.leeway));
        }
        if self.max_lifetime.as_secs() == 0 {
            return Err(PolicyError::ZeroLifetime);
        }
        if policy.max_token_len == 0 {
            return Err(PolicyError::ZeroTokenLen);
        }
        if policy.algorithms.as_ref().is_some_and(Vec::is_empty) {
            return Err(PolicyError::NoAlgorithm);
        }
        for (i, (name, _)) in policy.required_claims.iter().enumerate() {
            let twice = policy.required_claims[..i].iter().any(|(other, _)| other == name);
            if name.is_empty() || twice {
                return Err(PolicyError::RequiredClaim(text::excerpt(name)));
            }
        }
        policy.leeway = self.leeway.as_secs();
        policy.max_lifetime = self.max_lifetime.as_secs();
        Ok(policy)
    }
}
