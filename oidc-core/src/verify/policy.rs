//! What a verifier accepts: issuer, audiences, token types, clock leeway,
//! lifetime and age, token size, allowed algorithms, and claim rules.
//!
//! The defaults are those of this project's own access tokens (RFC 9068:
//! `typ` `at+jwt`, `client_id` required, 8 KiB). A policy for an upstream
//! identity provider's tokens (AWS STS web identity tokens, Kubernetes
//! service-account tokens) loosens only what it names: the accepted `typ`
//! values, the algorithms that keys published without `alg` verify with,
//! rules on nested claims; see [`PolicyBuilder`].

use std::time::Duration;

use serde_json::{Map, Value};

use super::claim_rules::{ClaimRule, RuleError};
use super::{numeric_date, VerifyError};
use crate::claims::ACCESS_TOKEN_TYP;
use crate::dpop::DpopMode;
use crate::jws::DEFAULT_MAX_LEN;
use crate::keys::VerifyingKey;
use crate::text;
use crate::Algorithm;

/// Default clock leeway: 30 s.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// Largest leeway a policy may have: 5 min.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);
/// Default maximum token lifetime (`exp - iat`): 900 s, the issuer's default cap.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(900);
/// Default token size cap of a policy that accepts a `typ` other than
/// `at+jwt` (an upstream identity provider's tokens): 24 KiB. AWS STS web
/// identity tokens carry up to 14,984 bytes of claims (principal and
/// request tags), about 20 KB once encoded and signed.
pub const UPSTREAM_MAX_TOKEN_LEN: usize = 24 * 1024;
/// Largest token size cap a policy may have: 64 KiB. Anything longer is
/// refused before it is decoded, whatever the policy.
pub const MAX_TOKEN_LEN_LIMIT: usize = 64 * 1024;

/// The acceptance rules of a verifier. Built with [`Policy::builder`], which
/// requires the issuer and the audiences up front: there is no policy that
/// forgets to check them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    issuer: String,
    audiences: Vec<String>,
    /// Accepted `typ` values, without an `application/` prefix; `""` for a
    /// token without `typ`.
    types: Vec<String>,
    leeway: u64,
    max_lifetime: u64,
    /// Largest `now - iat`, if limited.
    max_age: Option<u64>,
    max_token_len: usize,
    /// `None`: every algorithm the key allows.
    algorithms: Option<Vec<Algorithm>>,
    /// Claims that must be present with this JSON value (or an array holding it).
    required_claims: Vec<(String, Value)>,
    /// Claims that must be present with a string matching this glob.
    claim_patterns: Vec<(String, String)>,
    /// Both of the above, parsed.
    rules: Vec<ClaimRule>,
    /// Whether tokens must be DPoP-bound and presented with a proof.
    dpop: DpopMode,
}

/// Builds a [`Policy`].
#[derive(Debug, Clone)]
#[must_use]
pub struct PolicyBuilder {
    policy: Policy,
    leeway: Duration,
    max_lifetime: Duration,
    max_age: Option<Duration>,
    /// `None`: the default for the accepted types.
    max_token_len: Option<usize>,
}

/// What a token's `typ` says it is, once accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Profile {
    /// An RFC 9068 access token (`at+jwt`): `client_id` is required.
    AccessToken,
    /// Another JWT (an upstream identity token).
    Other,
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
    /// No `typ` is accepted (an empty list).
    #[error("no typ is accepted: give at least one (\"\" accepts a token without typ)")]
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
    /// A token size cap over [`MAX_TOKEN_LEN_LIMIT`].
    #[error("the token size cap of {0} bytes is more than the limit of {MAX_TOKEN_LEN_LIMIT}")]
    TokenLenTooLarge(usize),
    /// A maximum token age of zero.
    #[error("the maximum token age must be at least 1 s")]
    ZeroTokenAge,
    /// An empty list of allowed algorithms.
    #[error("the list of allowed algorithms is empty")]
    NoAlgorithm,
    /// A required claim with an empty name, or required twice.
    #[error("required claim {0:?} is empty or required twice")]
    RequiredClaim(String),
    /// A claim name that starts with `/` but is not an RFC 6901 JSON Pointer.
    #[error("claim {0:?} starts with / but is not a JSON Pointer (RFC 6901: escape ~ as ~0 and / as ~1)")]
    ClaimPointer(String),
    /// A claim pattern with an empty name, or given twice for one claim.
    #[error("claim pattern for {0:?} is empty or given twice")]
    ClaimPattern(String),
}

impl Policy {
    /// Starts a policy for tokens from `issuer` (compared byte for byte) for any
    /// of `audiences`. Defaults: `typ` `at+jwt`, leeway 30 s, maximum lifetime
    /// 900 s, no maximum age, tokens up to 8 KiB.
    pub fn builder<A: Into<String>>(
        issuer: impl Into<String>,
        audiences: impl IntoIterator<Item = A>,
    ) -> PolicyBuilder {
        PolicyBuilder {
            policy: Policy {
                issuer: issuer.into(),
                audiences: audiences.into_iter().map(Into::into).collect(),
                types: vec![ACCESS_TOKEN_TYP.to_owned()],
                leeway: 0,
                max_lifetime: 0,
                max_age: None,
                max_token_len: DEFAULT_MAX_LEN,
                algorithms: None,
                required_claims: Vec::new(),
                claim_patterns: Vec::new(),
                rules: Vec::new(),
                dpop: DpopMode::Allowed,
            },
            leeway: DEFAULT_LEEWAY,
            max_lifetime: DEFAULT_MAX_LIFETIME,
            max_age: None,
            max_token_len: None,
        }
    }

    /// Whether tokens must be DPoP-bound (see
    /// [`PolicyBuilder::dpop`]).
    pub fn dpop(&self) -> DpopMode {
        self.dpop
    }

    /// The issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The accepted audiences.
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// The accepted `typ` values (`""`: a token without `typ`).
    pub fn types(&self) -> &[String] {
        &self.types
    }

    /// The leeway in seconds.
    pub fn leeway_secs(&self) -> u64 {
        self.leeway
    }

    /// The longest accepted `exp - iat`, in seconds.
    pub fn max_lifetime_secs(&self) -> u64 {
        self.max_lifetime
    }

    /// The greatest accepted age (`now - iat`) in seconds, if limited.
    pub fn max_token_age_secs(&self) -> Option<u64> {
        self.max_age
    }

    /// The token size cap.
    pub fn max_token_len(&self) -> usize {
        self.max_token_len
    }

    /// The allowed algorithms; `None`: whatever each key is pinned to.
    pub fn algorithms(&self) -> Option<&[Algorithm]> {
        self.algorithms.as_deref()
    }

    /// The claims required to have these values (names starting with `/`
    /// are JSON Pointers).
    pub fn required_claims(&self) -> &[(String, Value)] {
        &self.required_claims
    }

    /// The claims required to match these glob patterns.
    pub fn claim_patterns(&self) -> &[(String, String)] {
        &self.claim_patterns
    }

    /// The header's `alg` must be one of the allowed algorithms (checked
    /// before any key is looked up).
    pub(crate) fn check_algorithm(&self, alg: Algorithm) -> Result<(), VerifyError> {
        match &self.algorithms {
            Some(allowed) if !allowed.contains(&alg) => Err(VerifyError::AlgorithmNotAllowed(alg)),
            _ => Ok(()),
        }
    }

    /// The algorithm `key` verifies with under this policy: the one it was
    /// pinned to with its `alg`; for a key published without `alg`, the one
    /// allowed algorithm its key type fits (an RSA key under `[RS256]`, a
    /// P-384 key under `[ES384]`), never its default nor the header's.
    pub(crate) fn key_algorithm(&self, key: &VerifyingKey) -> Result<Algorithm, VerifyError> {
        if key.algorithm_stated() {
            return Ok(key.algorithm());
        }
        let mut fitting = self
            .algorithms
            .iter()
            .flatten()
            .filter(|alg| key.public_key().fits(**alg));
        match (fitting.next(), fitting.next()) {
            (Some(alg), None) => Ok(*alg),
            _ => Err(VerifyError::KeyAlgorithm {
                kid: text::excerpt(key.kid()),
            }),
        }
    }

    /// `typ` must be one of the accepted types, ignoring ASCII case and an
    /// `application/` prefix (RFC 7515 §4.1.9); an absent `typ` only if `""`
    /// is one of them.
    pub(crate) fn check_type(&self, typ: Option<&str>) -> Result<Profile, VerifyError> {
        let found = typ.map(without_media_prefix);
        let accepted = match found {
            None => self.types.iter().any(String::is_empty),
            Some(t) => !t.is_empty() && self.types.iter().any(|known| t.eq_ignore_ascii_case(known)),
        };
        if !accepted {
            return Err(VerifyError::WrongType {
                found: typ.map(text::excerpt),
                expected: self.expected_types(),
            });
        }
        Ok(match found {
            Some(t) if t.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) => Profile::AccessToken,
            _ => Profile::Other,
        })
    }

    /// The accepted types, for an error message (`at+jwt`; `JWT or none`).
    fn expected_types(&self) -> String {
        let names: Vec<&str> = self
            .types
            .iter()
            .map(|t| if t.is_empty() { "none" } else { t.as_str() })
            .collect();
        names.join(" or ")
    }

    /// Whether a token issued at `iat` is young enough at `now`.
    pub(crate) fn within_age(&self, iat: u64, now: u64) -> bool {
        self.max_age
            .is_none_or(|max| now.saturating_sub(iat) <= max.saturating_add(self.leeway))
    }

    /// Checks the registered claims and the claim rules at time `now`, for
    /// a token of `profile`.
    pub(crate) fn check_claims(
        &self,
        claims: &Map<String, Value>,
        now: u64,
        profile: Profile,
    ) -> Result<(), VerifyError> {
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
        // RFC 9068 §2.2; other JWTs (AWS STS tokens) have no client_id.
        match profile {
            Profile::AccessToken => {
                required_str(claims, "client_id")?;
            }
            Profile::Other if claims.get("client_id").is_some_and(|c| !c.is_string()) => {
                return Err(VerifyError::ClaimType {
                    claim: "client_id",
                    expected: "a string",
                });
            }
            Profile::Other => {}
        }
        // An access token names itself; an upstream identity token may not
        // (a SPIFFE JWT-SVID, an older Kubernetes service-account token).
        let jti = match profile {
            Profile::AccessToken => Some(required_str(claims, "jti")?),
            Profile::Other if claims.get("jti").is_none() => None,
            Profile::Other => Some(required_str(claims, "jti")?),
        };
        if jti.is_some_and(str::is_empty) {
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
        if let (false, Some(max_age)) = (self.within_age(iat, now), self.max_age) {
            return Err(VerifyError::TooOld {
                iat,
                now,
                max_age,
                leeway,
            });
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
        for rule in &self.rules {
            rule.check(claims)?;
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

/// `t` without an `application/` prefix (in any letter case).
fn without_media_prefix(t: &str) -> &str {
    match t.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &t[12..],
        _ => t,
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

    /// Tokens issued longer ago than `max` (`now - iat`, beyond the leeway)
    /// are refused, whatever their `exp` (default: no limit). For upstream
    /// tokens a workload may reuse for long (a Kubernetes service-account
    /// token lives up to an hour, or more).
    pub fn max_token_age(mut self, max: Duration) -> Self {
        self.max_age = Some(max);
        self
    }

    /// The required `typ` (default `at+jwt`); `""`: a token without `typ`.
    pub fn typ(mut self, typ: impl Into<String>) -> Self {
        self.policy.types = vec![typ.into()];
        self
    }

    /// The accepted `typ` values (default `["at+jwt"]`), compared ignoring
    /// ASCII case and an `application/` prefix; `""` accepts a token
    /// without `typ`. AWS STS web identity tokens say `JWT`.
    ///
    /// A token of type `at+jwt` must carry `client_id` (RFC 9068); one of
    /// another type need not. Accepting a type other than `at+jwt` also
    /// raises the default [token size cap](Self::max_token_len) to
    /// [`UPSTREAM_MAX_TOKEN_LEN`].
    pub fn types<T: Into<String>>(mut self, types: impl IntoIterator<Item = T>) -> Self {
        self.policy.types = types.into_iter().map(Into::into).collect();
        self
    }

    /// The token size cap, checked before anything is decoded (default
    /// 8 KiB, or [`UPSTREAM_MAX_TOKEN_LEN`] when a `typ` other than `at+jwt`
    /// is accepted; at most [`MAX_TOKEN_LEN_LIMIT`]).
    pub fn max_token_len(mut self, len: usize) -> Self {
        self.max_token_len = Some(len);
        self
    }

    /// Accepts only tokens whose header names one of `algorithms` (default:
    /// any algorithm, as long as it is the one its key is pinned to). Useful
    /// when one issuer's key set may hold keys that its tokens must not use.
    ///
    /// Required for keys published without `alg` (AWS STS's RSA key): such
    /// a key verifies only under the one listed algorithm its key type fits
    /// (`RS256` for an RSA key, `ES384` for a P-384 key). With none, or
    /// with two (`RS256` and `PS256` for an RSA key), its tokens are refused
    /// ([`VerifyError::KeyAlgorithm`]).
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
    /// equality: `"42"` is not `42`), or as an array that holds `value`;
    /// for example a tenant's `org_id`. A `name` starting with `/` is an
    /// RFC 6901 JSON Pointer to a nested member:
    /// `/https:~1~1sts.amazonaws.com~1/aws_account` is `aws_account` in the
    /// object of claim `https://sts.amazonaws.com/`.
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

    /// Requires claim `name` (a name or a JSON Pointer, as for
    /// [`require_claim`](Self::require_claim)) to be a string, or an array
    /// holding a string, that matches the glob `pattern` whole: `*` stands
    /// for any run of characters (`/` included), `?` for one character.
    ///
    /// ```
    /// use oidc_core::Policy;
    /// let policy = Policy::builder("https://abc.tokens.sts.global.api.aws", ["https://api.example.com"])
    ///     .types(["JWT"])
    ///     .require_claim_pattern("sub", "arn:aws:iam::123456789012:role/connectors/*")
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(policy.claim_patterns().len(), 1);
    /// ```
    pub fn require_claim_pattern(mut self, name: impl Into<String>, pattern: impl Into<String>) -> Self {
        self.policy.claim_patterns.push((name.into(), pattern.into()));
        self
    }

    /// Whether tokens must be DPoP-bound (RFC 9449) when a request presents
    /// them ([`Verifier::verify_request`](super::Verifier::verify_request),
    /// the axum extractors). [`DpopMode::Allowed`] (the default): a bearer
    /// token as `Bearer`, a bound token as `DPoP` with its proof.
    /// [`DpopMode::Required`]: bound tokens only. Either way a bound token
    /// is never accepted as `Bearer` (RFC 9449 §7.2). Plain
    /// [`Verifier::verify`](super::Verifier::verify) checks the token
    /// alone, whatever this says.
    pub fn dpop(mut self, mode: DpopMode) -> Self {
        self.policy.dpop = mode;
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
        if policy.types.is_empty() {
            return Err(PolicyError::EmptyType);
        }
        for typ in &mut policy.types {
            *typ = without_media_prefix(typ).to_owned();
        }
        if self.leeway > MAX_LEEWAY {
            return Err(PolicyError::LeewayTooLarge(self.leeway));
        }
        if self.max_lifetime.as_secs() == 0 {
            return Err(PolicyError::ZeroLifetime);
        }
        let upstream = policy
            .types
            .iter()
            .any(|t| !t.eq_ignore_ascii_case(ACCESS_TOKEN_TYP));
        policy.max_token_len = match self.max_token_len {
            Some(len) => len,
            None if upstream => UPSTREAM_MAX_TOKEN_LEN,
            None => DEFAULT_MAX_LEN,
        };
        if policy.max_token_len == 0 {
            return Err(PolicyError::ZeroTokenLen);
        }
        if policy.max_token_len > MAX_TOKEN_LEN_LIMIT {
            return Err(PolicyError::TokenLenTooLarge(policy.max_token_len));
        }
        if self.max_age.is_some_and(|age| age.as_secs() == 0) {
            return Err(PolicyError::ZeroTokenAge);
        }
        if policy.algorithms.as_ref().is_some_and(Vec::is_empty) {
            return Err(PolicyError::NoAlgorithm);
        }
        let pointer = |name: &str| PolicyError::ClaimPointer(text::excerpt(name));
        let mut rules = Vec::new();
        for (i, (name, value)) in policy.required_claims.iter().enumerate() {
            let twice = policy.required_claims[..i].iter().any(|(other, _)| other == name);
            if name.is_empty() || twice {
                return Err(PolicyError::RequiredClaim(text::excerpt(name)));
            }
            rules.push(ClaimRule::equals(name, value).map_err(|RuleError::Pointer| pointer(name))?);
        }
        for (i, (name, pattern)) in policy.claim_patterns.iter().enumerate() {
            let twice = policy.claim_patterns[..i].iter().any(|(other, _)| other == name);
            if name.is_empty() || twice {
                return Err(PolicyError::ClaimPattern(text::excerpt(name)));
            }
            rules.push(ClaimRule::matches(name, pattern).map_err(|RuleError::Pointer| pointer(name))?);
        }
        policy.rules = rules;
        policy.leeway = self.leeway.as_secs();
        policy.max_lifetime = self.max_lifetime.as_secs();
        policy.max_age = self.max_age.map(|age| age.as_secs());
        Ok(policy)
    }
}
