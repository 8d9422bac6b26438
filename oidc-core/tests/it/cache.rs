//! The verification cache: what a hit still checks (time, policy, key), what
//! is never cached, keys that differ in one byte, the bound under a flood,
//! a key leaving a remote JWKS, concurrency, and the trust registry with it.
//! (Every catalog test also runs with the cache on: see `helpers::Fixture::verify`.)

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use oidc_core::verify::VerificationCache;
use oidc_core::{AccessTokenClaims, Algorithm, JwkSet, Policy, Verifier, VerifyError};
use serde_json::{json, Value};

use crate::helpers::*;

fn cached(f: &Fixture, cache: &VerificationCache) -> Verifier<JwkSet> {
    f.verifier().with_cache(cache.clone())
}

async fn verify(verifier: &Verifier<JwkSet>, token: &str) -> Result<String, VerifyError> {
    verifier
        .verify::<AccessTokenClaims>(token)
        .await
        .map(|v| v.claims().jti.clone())
}

#[tokio::test]
async fn a_hit_rechecks_exp_nbf_and_iat_with_the_leeway() {
    let f = Fixture::es256();
    let cache = VerificationCache::new(100);
    let verifier = cached(&f, &cache);
    let token = f.valid_token(); // iat = nbf = NOW, exp = NOW + 300, leeway 30
    verify(&verifier, &token).await.unwrap();
    verify(&verifier, &token).await.unwrap();
    assert_eq!((cache.stats().misses, cache.stats().hits), (1, 1));

    // Just before exp + leeway: still a hit. At it: refused as an uncached
    // verifier refuses it, and the entry is gone.
    f.clock.set(NOW + 300 + 29);
    verify(&verifier, &token).await.unwrap();
    assert_eq!(cache.stats().hits, 2);
    f.clock.set(NOW + 300 + 30);
    let error = verify(&verifier, &token).await.unwrap_err();
    assert_eq!(
        error,
        f.verifier()
            .verify::<AccessTokenClaims>(&token)
            .await
            .unwrap_err()
    );
    assert!(matches!(error, VerifyError::Expired { .. }), "{error}");
    let stats = cache.stats();
    assert_eq!((stats.invalidations, stats.entries, stats.hits), (1, 0, 2));

    // A clock stepped back before nbf - leeway (and iat - leeway): refused too.
    f.clock.set(NOW);
    verify(&verifier, &token).await.unwrap();
    f.clock.set(NOW - 31);
    let error = verify(&verifier, &token).await.unwrap_err();
    assert!(matches!(error, VerifyError::NotYetValid { .. }), "{error}");
    assert_eq!(cache.stats().invalidations, 2);
}

#[tokio::test]
async fn a_refused_token_is_never_cached() {
    let f = Fixture::es256();
    let cache = VerificationCache::new(100);
    let verifier = cached(&f, &cache);
    let good = f.valid_token();
    let [h, p, _] = parts(&good);
    let refused = [
        with_signature(&good, &[0u8; 64]),
        f.token_claims(|c| c["aud"] = json!("https://other.example.com")),
        f.token_claims(|c| c["exp"] = json!(NOW - 100)),
        f.token_header(|h| h["typ"] = json!("JWT")),
        format!("{h}.{p}"),
        "x".repeat(10_000),
    ];
    for token in &refused {
        for _ in 0..3 {
            verify(&verifier, token).await.unwrap_err();
        }
    }
    let stats = cache.stats();
    assert_eq!((stats.inserts, stats.entries, stats.hits), (0, 0, 0));
}

#[tokio::test]
async fn tokens_that_differ_in_one_byte_never_share_an_entry() {
    let f = Fixture::es256();
    let cache = VerificationCache::new(100);
    let verifier = cached(&f, &cache);
    let token = f.valid_token();
    verify(&verifier, &token).await.unwrap();
    // Every position, every part: a changed byte is a miss, and refused.
    let bytes = token.as_bytes();
    for i in (0..bytes.len()).filter(|&i| bytes[i] != b'.') {
        let mut changed = bytes.to_vec();
        changed[i] = if changed[i] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8(changed).unwrap();
        let before = cache.stats();
        verify(&verifier, &changed).await.unwrap_err();
        assert_eq!(
            cache.stats().hits,
            before.hits,
            "byte {i} was served from the cache"
        );
    }
    // Two valid tokens of the same claims (ECDSA signs with a fresh nonce):
    // two entries, each a miss first.
    let header = f.header().to_string();
    let claims = f.claims().to_string();
    let a = f.sign_raw(header.as_bytes(), claims.as_bytes());
    let b = f.sign_raw(header.as_bytes(), claims.as_bytes());
    assert_ne!(a, b);
    let misses = cache.stats().misses;
    verify(&verifier, &a).await.unwrap();
    verify(&verifier, &b).await.unwrap();
    assert_eq!(cache.stats().misses, misses + 2);
    // (The first valid token, `a`, `b`.)
    assert_eq!(cache.stats().entries, 3);
}

#[tokio::test]
async fn the_cache_stays_within_its_bound_under_a_flood() {
    let f = Fixture::new(Algorithm::EdDSA);
    let cache = VerificationCache::new(100);
    let verifier = cached(&f, &cache);
    let hot = f.valid_token();
    for i in 0..5_000 {
        let token = f.token_claims(|c| c["jti"] = json!(format!("jti-{i}")));
        verify(&verifier, &token).await.unwrap();
        // The polling connector keeps its token warm meanwhile.
        verify(&verifier, &hot).await.unwrap();
        assert!(cache.stats().entries <= 100);
    }
    let stats = cache.stats();
    assert_eq!(stats.inserts, 5_001);
    assert!(stats.evictions >= 4_900, "{stats:?}");
    assert!(stats.hits >= 4_990, "the hot token stays cached: {stats:?}");
}

#[tokio::test]
async fn a_policy_change_is_never_served_an_old_entry() {
    let f = Fixture::es256();
    let cache = VerificationCache::new(100);
    let token = f.valid_token();
    verify(&cached(&f, &cache), &token).await.unwrap();
    // Another verifier on the same cache, under a stricter policy: refused.
    let strict = Policy::builder(ISSUER, [AUDIENCE])
        .require_claim("org_id", "org-7")
        .build()
        .unwrap();
    let verifier = f.verifier_with(strict).with_cache(cache.clone());
    assert_eq!(
        verify(&verifier, &token).await.unwrap_err().reason(),
        "required_claim"
    );
    assert_eq!(cache.stats().invalidations, 1);
    // An equal policy (not the same object) is served.
    let equal = f.verifier_with(Fixture::policy()).with_cache(cache.clone());
    verify(&equal, &token).await.unwrap();
    verify(&equal, &token).await.unwrap();
    assert_eq!(cache.stats().hits, 1);
}

#[tokio::test]
async fn another_claims_type_is_verified_anew() {
    let f = Fixture::es256();
    let cache = VerificationCache::new(100);
    let verifier = cached(&f, &cache);
    let token = f.valid_token();
    verifier.verify::<AccessTokenClaims>(&token).await.unwrap();
    let as_value = verifier.verify::<Value>(&token).await.unwrap();
    assert_eq!(as_value.claims()["org_id"], "org-42");
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.inserts), (0, 2, 2));
    assert_eq!(verifier.verify::<Value>(&token).await.unwrap(), as_value);
    assert_eq!(cache.stats().hits, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_hits_agree() {
    let f = Fixture::es256();
    let cache = VerificationCache::new(100);
    let verifier = Arc::new(cached(&f, &cache));
    let token = Arc::new(f.valid_token());
    let expected = verify(&verifier, &token).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (verifier, token, expected) = (Arc::clone(&verifier), Arc::clone(&token), expected.clone());
        tasks.spawn(async move {
            for _ in 0..1_000 {
                assert_eq!(verify(&verifier, &token).await.unwrap(), expected);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    assert_eq!(cache.stats().hits, 8_000);
}

#[test]
fn a_key_source_that_cannot_tell_never_hits() {
    use async_trait::async_trait;
    use oidc_core::keys::VerifyingKey;
    use oidc_core::{KeyLookupError, KeySource};

    struct Opaque(JwkSet);
    #[async_trait]
    impl KeySource for Opaque {
        async fn key(&self, kid: &str) -> Result<Arc<VerifyingKey>, KeyLookupError> {
            self.0.key(kid).await
        }
    }
    let f = Fixture::es256();
    let cache = VerificationCache::new(10);
    let verifier = Verifier::new(Fixture::policy(), Opaque(f.jwks.clone()))
        .with_clock(f.clock.clone())
        .with_cache(cache.clone());
    let token = f.valid_token();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    for _ in 0..3 {
        runtime
            .block_on(verifier.verify::<AccessTokenClaims>(&token))
            .unwrap();
    }
    assert_eq!((cache.stats().hits, cache.stats().invalidations), (0, 2));
}
