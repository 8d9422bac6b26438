//! Verifying access tokens: a [`Verifier`] checks a token against a [`Policy`]
//! with keys from a [`KeySource`] and yields [`Verified`] claims.
//!
//! The algorithm comes from the key: each key is pinned to one algorithm when
//! it is loaded, and a token whose header names another is refused. The token
//! header can never pick the key material (no `jwk`, `jku`, `x5u`, `x5c`).

pub mod cache;
mod claim_rules;
pub mod dpop;
mod error;
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
pub use claim_rules::{ClaimPath, Glob};
pub use error::VerifyError;
pub use key_source::{KeyLookupError, KeySource};
pub use policy::{
    Policy, PolicyBuilder, PolicyError, DEFAULT_LEEWAY, DEFAULT_MAX_LIFETIME, MAX_LEEWAY,
    MAX_TOKEN_LEN_LIMIT, UPSTREAM_MAX_TOKEN_LEN,
};
#[cfg(feature = "remote")]
pub use remote::{RemoteJwks, RemoteJwksBuilder, RemoteJwksError};

use self::cache::{Entry, Validity};
use crate::claims::TokenBinding;
use crate::clock::{SystemClock, WallClock};
use crate::json;
use crate::jws::{KnownHeader, UnverifiedJws};
use crate::keys::VerifyingKey;
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
    binding: TokenBinding,
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

    /// What the token is bound to, read from its `cnf` claim whatever `C`
    /// is: a bound token must be presented with a proof of its key
    /// ([`verify_request`](Verifier::verify_request)), never as a bearer
    /// token.
    pub fn binding(&self) -> &TokenBinding {
        &self.binding
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
        let profile = self.policy.check_type(header.typ.as_deref())?;
        self.policy.check_algorithm(header.alg)?;
        let kid = header.kid.as_deref().ok_or(VerifyError::MissingKid)?;
        let key = self.keys.key(kid).await.map_err(VerifyError::Key)?;
        let alg = self.policy.key_algorithm(&key)?;
        let payload = jws.verify_as(&key, alg)?;
        let claims = match claims {
            Some(claims) => claims,
            None => json::parse_object(&payload).map_err(VerifyError::Claims)?,
        };
        self.policy.check_claims(&claims, self.clock.now(), profile)?;
        let binding = TokenBinding::of(&claims).map_err(|expected| VerifyError::ClaimType {
            claim: "cnf",
            expected,
        })?;
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
            binding,
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
    use crate::jws::JwsError;
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
