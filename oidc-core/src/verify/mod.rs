//! Verifying access tokens: a [`Verifier`] checks a token against a [`Policy`]
//! with keys from a [`KeySource`] and yields [`Verified`] claims.
//!
//! The algorithm comes from the key: each key is pinned to one algorithm when
//! it is loaded, and a token whose header names another is refused. The token
//! header can never pick the key material (no `jwk`, `jku`, `x5u`, `x5c`).

pub mod cache;
mod key_source;
mod policy;
#[cfg(feature = "remote")]
pub mod remote;
#[cfg(feature = "remote")]
pub mod trust;

use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

pub use cache::{CacheStats, VerificationCache};
pub use key_source::{KeyLookupError, KeySource};
pub use policy::{Policy, PolicyBuilder, PolicyError, DEFAULT_LEEWAY, DEFAULT_MAX_LIFETIME, MAX_LEEWAY};
#[cfg(feature = "remote")]
pub use remote::{RemoteJwks, RemoteJwksBuilder, RemoteJwksError};

use self::cache::{Entry, Validity};
use crate::json::{self, JsonError};
use crate::jws::{JwsError, KnownHeader, UnverifiedJws};
use crate::keys::{SignatureError, VerifyingKey};
use crate::time::{SystemClock, WallClock};
use crate::Algorithm;

/// Claims that passed verification, with the key that vouched for them.
/// Only a [`Verifier`] makes one. The claims are shared (an `Arc`): a
/// verification served by a [`VerificationCache`] hands out the same claims
/// again rather than a copy.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified<C> {
    claims: Arc<C>,
    key: Arc<VerifyingKey>,
    alg: Algorithm,
}

impl<C> Verified<C> {
    /// The verified claims.
    pub fn claims(&self) -> &C {
        &self.claims
    }

    /// The verified claims, shared.
    pub fn shared_claims(&self) -> &Arc<C> {
        &self.claims
    }

    /// The verified claims, by value (a copy only if they are shared, as
    /// after a cache hit).
    pub fn into_claims(self) -> C
    where
        C: Clone,
    {
        Arc::unwrap_or_clone(self.claims)
    }

    /// The `kid` of the key that verified the signature.
    pub fn kid(&self) -> &str {
        self.key.kid()
    }

    /// The key that verified the signature.
    pub fn key(&self) -> &Arc<VerifyingKey> {
        &self.key
    }

    /// The signature algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

/// Why a token was refused. Each variant is one reason; [`reason`](Self::reason)
/// gives a stable short code for metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The token is not a well-formed compact JWS with an acceptable header.
    #[error("malformed token: {0}")]
    Malformed(JwsError),
    /// The header has no `kid`.
    #[error("token header has no kid")]
    MissingKid,
    /// No key could be found for the `kid`.
    #[error("{0}")]
    Key(KeyLookupError),
    /// `typ` is absent or not the required type.
    #[error("token type is {found:?}, expected {expected:?}")]
    WrongType {
        /// The `typ` found.
        found: Option<String>,
        /// The `typ` required.
        expected: String,
    },
    /// The signature does not verify with the key.
    #[error("{0}")]
    Signature(SignatureError),
    /// The payload is not a strict JSON object.
    #[error("claims are not a valid JSON object: {0}")]
    Claims(JsonError),
    /// A required claim is absent.
    #[error("required claim {0:?} is missing")]
    MissingClaim(&'static str),
    /// A claim has the wrong JSON type.
    #[error("claim {claim:?} must be {expected}")]
    ClaimType {
        /// The claim.
        claim: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// `iss` is not byte-equal to the expected issuer.
    #[error("issuer {found:?} is not the expected issuer")]
    WrongIssuer {
        /// The issuer found (shortened).
        found: String,
    },
    /// No `aud` value is an accepted audience.
    #[error("audience {found:?} is not accepted")]
    WrongAudience {
        /// The audiences found (shortened).
        found: Vec<String>,
    },
    /// `exp` has passed (beyond the leeway).
    #[error("token expired {} s ago (exp {exp}, now {now}, leeway {leeway} s)", now.saturating_sub(*exp))]
    Expired {
        /// `exp`.
        exp: u64,
        /// The verifier's time.
        now: u64,
        /// The leeway applied.
        leeway: u64,
    },
    /// `nbf` is in the future (beyond the leeway).
    #[error("token is not valid for another {} s (nbf {nbf}, now {now}, leeway {leeway} s)", nbf.saturating_sub(*now))]
    NotYetValid {
        /// `nbf`.
        nbf: u64,
        /// The verifier's time.
        now: u64,
        /// The leeway applied.
        leeway: u64,
    },
    /// `iat` is in the future (beyond the leeway).
    #[error("token was issued {} s in the future (iat {iat}, now {now}, leeway {leeway} s)", iat.saturating_sub(*now))]
    IssuedInFuture {
        /// `iat`.
        iat: u64,
        /// The verifier's time.
        now: u64,
        /// The leeway applied.
        leeway: u64,
    },
    /// `exp - iat` exceeds the policy's maximum lifetime.
    #[error("token lifetime of {lifetime} s exceeds the maximum of {max} s")]
    LifetimeTooLong {
        /// `exp - iat`.
        lifetime: u64,
        /// The maximum.
        max: u64,
    },
    /// The claims passed every check but do not fit the caller's claims type.
    #[error("claims do not fit the expected type: {0}")]
    ClaimsShape(String),
    /// The header's `alg` is not one the policy allows (checked before any
    /// key is looked up).
    #[error("algorithm {} is not allowed for this issuer", .0.name())]
    AlgorithmNotAllowed(Algorithm),
    /// A claim the policy requires a value for is absent or has another value.
    #[error("claim {claim:?} {}", if *present { "does not have the required value" } else { "is required and missing" })]
    RequiredClaim {
        /// The claim (from the policy, not the token).
        claim: String,
        /// Whether the token has the claim at all.
        present: bool,
    },
    /// The token's `iss` is not a trusted issuer (see
    /// [`TrustedIssuers`](crate::verify::trust::TrustedIssuers)); nothing was
    /// fetched for it.
    #[error("issuer {issuer:?} is not trusted")]
    UnknownIssuer {
        /// The `iss` found (shortened).
        issuer: String,
    },
    /// The trusted-issuer lookup failed, so whether the issuer is trusted is
    /// not known (the control plane's own store is down, for example).
    #[error("trusted-issuer lookup failed: {0}")]
    IssuerLookup(String),
}

impl VerifyError {
    /// A stable, short reason code (`expired`, `bad_signature`, ...).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(JwsError::TooLarge { .. }) => "too_large",
            Self::Malformed(JwsError::Algorithm(_)) => "bad_algorithm",
            Self::Malformed(JwsError::ForbiddenHeader(_)) => "forbidden_header",
            Self::Malformed(_) => "malformed",
            Self::MissingKid => "missing_kid",
            Self::Key(KeyLookupError::UnknownKid(_)) => "unknown_kid",
            Self::Key(_) => "keys_unavailable",
            Self::WrongType { .. } => "wrong_typ",
            Self::Signature(SignatureError::AlgorithmMismatch { .. }) => "algorithm_mismatch",
            Self::Signature(_) => "bad_signature",
            Self::Claims(_) | Self::ClaimType { .. } | Self::ClaimsShape(_) => "malformed_claims",
            Self::MissingClaim(_) => "missing_claim",
            Self::WrongIssuer { .. } => "wrong_issuer",
            Self::WrongAudience { .. } => "wrong_audience",
            Self::Expired { .. } => "expired",
            Self::NotYetValid { .. } => "not_yet_valid",
            Self::IssuedInFuture { .. } => "issued_in_future",
            Self::LifetimeTooLong { .. } => "lifetime_too_long",
            Self::AlgorithmNotAllowed(_) => "algorithm_not_allowed",
            Self::RequiredClaim { .. } => "required_claim",
            Self::UnknownIssuer { .. } => "unknown_issuer",
            Self::IssuerLookup(_) => "issuer_lookup_failed",
        }
    }
}

impl From<JwsError> for VerifyError {
    fn from(error: JwsError) -> Self {
        match error {
            JwsError::Signature(e) => Self::Signature(e),
            // An odd kid is just an unknown key, whatever its JSON type.
            JwsError::KidNotString(kid) => Self::Key(KeyLookupError::UnknownKid(kid)),
            other => Self::Malformed(other),
        }
    }
}

/// Verifies access tokens for one policy against one key source.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use oidc_core::keys::{LocalSigner, Signer};
/// use oidc_core::{AccessTokenClaims, Algorithm, Issuer, JwkSet, KeySet, Lifetime, Policy, TokenRequest, Verifier};
///
/// let (signer, _pem) = LocalSigner::generate(Algorithm::ES256).unwrap();
/// let jwks = JwkSet::from_keys([signer.verifying_key().clone()]).unwrap();
/// let issuer = Issuer::new("https://tokens.example.com", Arc::new(KeySet::single(Arc::new(signer))), Lifetime::default()).unwrap();
/// let token = issuer.issue(&TokenRequest::new("connector-1", "https://api.example.com")).await.unwrap().token;
///
/// let policy = Policy::builder("https://tokens.example.com", ["https://api.example.com"]).build().unwrap();
/// let verifier = Verifier::new(policy, jwks);
/// let verified = verifier.verify::<AccessTokenClaims>(token.as_str()).await.unwrap();
/// assert_eq!(verified.claims().sub, "connector-1");
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct Verifier<K> {
    policy: Arc<Policy>,
    keys: K,
    clock: Arc<dyn WallClock>,
    /// The headers of the last tokens that passed every check (most recent
    /// first, at most [`KNOWN_HEADERS`]), shared by clones.
    known_headers: Arc<ArcSwap<Vec<Arc<KnownHeader>>>>,
    cache: Option<VerificationCache>,
}

/// How many accepted headers a verifier remembers: the keys in use at once
/// (active, next, retiring) each give one.
const KNOWN_HEADERS: usize = 4;

impl<K: KeySource> Verifier<K> {
    /// A verifier for `policy` with keys from `keys`.
    pub fn new(policy: Policy, keys: K) -> Self {
        Self {
            policy: Arc::new(policy),
            keys,
            clock: Arc::new(SystemClock),
            known_headers: Arc::default(),
            cache: None,
        }
    }

    /// A verifier for a policy shared with others (a trust registry's entry).
    #[cfg(feature = "remote")]
    pub(crate) fn from_shared(policy: Arc<Policy>, keys: K) -> Self {
        Self {
            policy,
            keys,
            clock: Arc::new(SystemClock),
            known_headers: Arc::default(),
            cache: None,
        }
    }

    /// Serves repeated tokens from `cache` (see [`VerificationCache`] for
    /// what a hit still checks); the cache may be shared with other
    /// verifiers, each served only what it verified under its own policy.
    pub fn with_cache(mut self, cache: VerificationCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The verification cache, if one is on.
    pub fn cache(&self) -> Option<&VerificationCache> {
        self.cache.as_ref()
    }

    /// Uses `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn WallClock>) -> Self {
        self.clock = clock;
        self
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The key source.
    pub fn key_source(&self) -> &K {
        &self.keys
    }

    /// Verifies `token` and deserializes its claims as `C`
    /// (for example [`AccessTokenClaims`](crate::AccessTokenClaims)).
    ///
    /// The headers of the last few accepted tokens are remembered: a token
    /// whose header text is byte for byte one of them skips decoding and
    /// parsing it again (every token of one key carries the same header);
    /// everything else is checked anew on every call. With a
    /// [cache](Self::with_cache), a token verified before is served from it
    /// while its time, policy and key still hold.
    pub async fn verify<C>(&self, token: &str) -> Result<Verified<C>, VerifyError>
    where
        C: DeserializeOwned + Send + Sync + 'static,
    {
        let Some(cache) = &self.cache else {
            return self.verify_uncached(token).await.map(|(verified, _)| verified);
        };
        let key = cache.key(token);
        if let Some(entry) = cache.get(key) {
            if let Some(verified) = cache.serve(key, &entry, &self.policy, self.clock.now(), &self.keys) {
                return Ok(verified);
            }
        }
        let (verified, validity) = self.verify_uncached(token).await?;
        if let Some(validity) = validity {
            let entry = Entry::new(&verified, &self.policy, validity, None);
            cache.insert(key, entry, self.clock.now());
        }
        Ok(verified)
    }

    async fn verify_uncached<C>(&self, token: &str) -> Result<(Verified<C>, Option<Validity>), VerifyError>
    where
        C: DeserializeOwned,
    {
        let jws =
            UnverifiedJws::decode_reusing(token, self.policy.max_token_len(), &self.known_headers.load())?;
        self.verify_decoded(jws, None).await
    }

    /// The shared policy (for the trust registry's cache entries).
    #[cfg(feature = "remote")]
    pub(crate) fn shared_policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// The verifier's wall-clock time.
    #[cfg(feature = "remote")]
    pub(crate) fn now(&self) -> u64 {
        self.clock.now()
    }

    /// The checks after decoding: header, key, signature, claims, policy.
    /// `claims` is the payload already parsed by a caller that had to read it
    /// first (the trust registry picks the issuer by `iss`): the same bytes
    /// as the payload the signature covers, so it is not parsed again.
    /// Also returns the times a cache entry would depend on.
    pub(crate) async fn verify_decoded<C: DeserializeOwned>(
        &self,
        jws: UnverifiedJws<'_>,
        claims: Option<Map<String, Value>>,
    ) -> Result<(Verified<C>, Option<Validity>), VerifyError> {
        // A header to remember once the token passes: not one reused, and not
        // one remembered already (the trust registry decodes headers itself,
        // so it never reuses one).
        let remembered = || {
            self.known_headers
                .load()
                .iter()
                .any(|h| *h.text == *jws.header_text())
        };
        let known = (!jws.reused_header() && !remembered()).then(|| jws.known_header());
        let header = jws.header();
        self.policy.check_type(header.typ.as_deref())?;
        let alg = header.alg;
        self.policy.check_algorithm(alg)?;
        let kid = header.kid.as_deref().ok_or(VerifyError::MissingKid)?;
        let key = self.keys.key(kid).await.map_err(VerifyError::Key)?;
        let payload = jws.verify(&key)?;
        let claims = match claims {
            Some(claims) => claims,
            None => json::parse_object(&payload).map_err(VerifyError::Claims)?,
        };
        self.policy.check_claims(&claims, self.clock.now())?;
        let validity = Validity::of(&claims);
        let claims =
            C::deserialize(Value::Object(claims)).map_err(|e| VerifyError::ClaimsShape(e.to_string()))?;
        if let Some(known) = known {
            self.known_headers.rcu(|headers| {
                let mut next = Vec::with_capacity(KNOWN_HEADERS);
                next.push(known.clone());
                // Another call may have added the same header meanwhile.
                let others = headers.iter().filter(|h| h.text != known.text);
                next.extend(others.take(KNOWN_HEADERS - 1).cloned());
                next
            });
        }
        let verified = Verified {
            claims: Arc::new(claims),
            key,
            alg,
        };
        Ok((verified, validity))
    }
}

/// Reads a NumericDate claim: a non-negative integer number of seconds.
pub(crate) fn numeric_date(
    claims: &Map<String, Value>,
    claim: &'static str,
) -> Result<Option<u64>, VerifyError> {
    match claims.get(claim) {
        None => Ok(None),
        Some(value) => value.as_u64().map(Some).ok_or(VerifyError::ClaimType {
            claim,
            expected: "a NumericDate (non-negative integer seconds)",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{LocalSigner, Signer};
    use crate::{base64url, AccessTokenClaims, Issuer, JwkSet, KeySet, Lifetime, TokenRequest};

    const ISS: &str = "https://tokens.example.com";
    const AUD: &str = "https://api.example.com";

    struct Key {
        issuer: Issuer,
        kid: String,
    }

    fn key(alg: Algorithm) -> (Key, crate::keys::VerifyingKey) {
        let (signer, _pem) = LocalSigner::generate(alg).unwrap();
        let verifying = signer.verifying_key().clone();
        let issuer = Issuer::new(
            ISS,
            Arc::new(KeySet::single(Arc::new(signer))),
            Lifetime::default(),
        )
        .unwrap();
        let kid = verifying.kid().to_owned();
        (Key { issuer, kid }, verifying)
    }

    async fn token(key: &Key) -> String {
        key.issuer
            .issue(&TokenRequest::new("connector-1", AUD))
            .await
            .unwrap()
            .token
            .into_string()
    }

    /// Remembering accepted headers saves work and changes no outcome: what
    /// follows the header is checked on every call, a refused token is never
    /// remembered, and the memory is bounded.
    #[tokio::test]
    async fn remembered_headers_change_no_outcome() {
        let mut keys = Vec::new();
        let mut verifying = Vec::new();
        for alg in [
            Algorithm::ES256,
            Algorithm::EdDSA,
            Algorithm::ES256,
            Algorithm::EdDSA,
            Algorithm::ES256,
        ] {
            let (k, v) = key(alg);
            keys.push(k);
            verifying.push(v);
        }
        let policy = Policy::builder(ISS, [AUD]).build().unwrap();
        let verifier = Verifier::new(policy, JwkSet::from_keys(verifying).unwrap());
        let remembered = |v: &Verifier<JwkSet>| v.known_headers.load().len();

        let first = token(&keys[0]).await;
        let verified = verifier.verify::<AccessTokenClaims>(&first).await.unwrap();
        assert_eq!(
            (verified.kid(), verified.algorithm()),
            (keys[0].kid.as_str(), Algorithm::ES256)
        );
        assert_eq!(remembered(&verifier), 1);

        // The same header again: reused, and the rest is still checked.
        let second = token(&keys[0]).await;
        let verified = verifier.verify::<AccessTokenClaims>(&second).await.unwrap();
        assert_eq!(verified.kid(), keys[0].kid);
        let (signing_input, _) = second.rsplit_once('.').unwrap();
        let zero_signature = format!("{signing_input}.{}", base64url::encode([0u8; 64]));
        assert!(matches!(
            verifier.verify::<AccessTokenClaims>(&zero_signature).await,
            Err(VerifyError::Signature(_))
        ));
        let (header, rest) = second.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let (_, other_payload) = first.split_once('.').unwrap();
        let (other_payload, _) = other_payload.split_once('.').unwrap();
        let spliced = format!("{header}.{other_payload}.{signature}");
        assert!(matches!(
            verifier.verify::<AccessTokenClaims>(&spliced).await,
            Err(VerifyError::Signature(_))
        ));
        let bad_payload = format!("{header}.{}.{signature}", "%");
        assert!(matches!(
            verifier.verify::<AccessTokenClaims>(&bad_payload).await,
            Err(VerifyError::Malformed(JwsError::Base64 { .. }))
        ));
        assert_eq!(remembered(&verifier), 1);

        // A header that is refused is not remembered.
        let wrong_typ = format!(
            "{}.{rest}",
            base64url::encode(format!(
                r#"{{"alg":"ES256","kid":"{}","typ":"JWT"}}"#,
                keys[0].kid
            ))
        );
        assert!(matches!(
            verifier.verify::<AccessTokenClaims>(&wrong_typ).await,
            Err(VerifyError::WrongType { .. })
        ));
        // Nor one whose token fails later (here: its signature).
        let other_header = format!(
            "{}.{rest}",
            base64url::encode(format!(
                r#"{{"typ":"at+jwt","alg":"ES256","kid":"{}"}}"#,
                keys[0].kid
            ))
        );
        assert!(matches!(
            verifier.verify::<AccessTokenClaims>(&other_header).await,
            Err(VerifyError::Signature(_))
        ));
        assert_eq!(remembered(&verifier), 1);

        // Each key's header is remembered, most recent first, at most four;
        // clones share them; every key's tokens keep verifying.
        let clone = verifier.clone();
        for key in &keys {
            let verified = clone
                .verify::<AccessTokenClaims>(&token(key).await)
                .await
                .unwrap();
            assert_eq!(verified.kid(), key.kid);
        }
        assert_eq!(remembered(&verifier), KNOWN_HEADERS);
        for key in keys.iter().rev() {
            let verified = verifier
                .verify::<AccessTokenClaims>(&token(key).await)
                .await
                .unwrap();
            assert_eq!(verified.kid(), key.kid);
        }
        assert_eq!(remembered(&verifier), KNOWN_HEADERS);
    }
}
