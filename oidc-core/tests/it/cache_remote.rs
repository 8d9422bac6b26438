//! The verification cache over keys that change: a remote JWKS rotated by
//! its issuer, and the trust registry (rotation, eviction, names on hits).

#![cfg(feature = "remote")]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use oidc_core::clock::ManualMonotonicClock;
use oidc_core::verify::trust::TrustedIssuers;
use oidc_core::verify::{RemoteJwks, VerificationCache};
use oidc_core::{AccessTokenClaims, Algorithm, Policy, Verifier};

use crate::tenants::{entry, TenantServer, TestKey, AUDIENCE, SECS};

async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_cached_token_is_refused_once_its_kid_left_the_remote_jwks() {
    let server = TenantServer::start().await;
    let (old, new) = (TestKey::new(Algorithm::ES256), TestKey::new(Algorithm::ES256));
    let tenant = server.add("acme", &old.jwks);
    let clock = Arc::new(ManualMonotonicClock::default());
    let remote = RemoteJwks::discovery(server.issuer("acme"))
        .clock(clock.clone())
        .build()
        .unwrap();
    let cache = VerificationCache::new(100);
    let policy = Policy::builder(server.issuer("acme"), [AUDIENCE])
        .build()
        .unwrap();
    let verifier = Verifier::new(policy, remote.clone()).with_cache(cache.clone());
    let token = old.token(&server.issuer("acme"), AUDIENCE, None).await;
    for _ in 0..3 {
        verifier.verify::<AccessTokenClaims>(&token).await.unwrap();
    }
    assert_eq!(cache.stats().hits, 2);

    // The issuer rotates: only the new key is published. Past the set's
    // lifetime, a hit still serves from the set in hand (as an uncached
    // lookup would) and starts the refetch that notices the rotation.
    tenant.serve(&new.jwks);
    clock.advance(SECS(301));
    verifier.verify::<AccessTokenClaims>(&token).await.unwrap();
    eventually("the background refetch", || {
        tenant.hits().1 == 2 && !remote.status().fetching
    })
    .await;
    let error = verifier.verify::<AccessTokenClaims>(&token).await.unwrap_err();
    assert_eq!(error.reason(), "unknown_kid", "{error}");
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.invalidations, stats.entries), (3, 1, 0));

    // The new key's tokens: verified, then served.
    let fresh = new.token(&server.issuer("acme"), AUDIENCE, None).await;
    verifier.verify::<AccessTokenClaims>(&fresh).await.unwrap();
    verifier.verify::<AccessTokenClaims>(&fresh).await.unwrap();
    assert_eq!(cache.stats().hits, 4);
}

#[tokio::test]
async fn the_registry_serves_hits_under_the_entry_name_while_the_issuer_holds() {
    let server = TenantServer::start().await;
    let (acme, globex) = (TestKey::new(Algorithm::ES256), TestKey::new(Algorithm::ES256));
    server.add("acme", &acme.jwks);
    server.add("globex", &globex.jwks);
    let cache = VerificationCache::new(100);
    let trusted = TrustedIssuers::builder()
        .issuers(["acme", "globex"].map(|id| entry(&server, id).build().unwrap()))
        .verification_cache(cache.clone())
        .build()
        .unwrap();
    let acme_token = acme.token(&server.issuer("acme"), AUDIENCE, Some("acme")).await;
    let globex_token = globex
        .token(&server.issuer("globex"), AUDIENCE, Some("globex"))
        .await;
    for _ in 0..3 {
        for (name, token) in [("acme", &acme_token), ("globex", &globex_token)] {
            let trusted = trusted.verify::<AccessTokenClaims>(token).await.unwrap();
            assert_eq!(trusted.issuer_name(), name);
        }
    }
    assert_eq!(cache.stats().hits, 4);
    assert_eq!(
        trusted.issuer_status("acme").unwrap().verified,
        3,
        "hits count as verifications"
    );

    // acme rotates and the operator forces a refresh: its cached token is refused.
    let rotated = TestKey::new(Algorithm::ES256);
    server.tenant("acme").serve(&rotated.jwks);
    trusted.refresh("acme").await.unwrap();
    let error = trusted
        .verify::<AccessTokenClaims>(&acme_token)
        .await
        .unwrap_err();
    assert_eq!(error.reason(), "unknown_kid");
    assert_eq!(
        trusted
            .verify::<AccessTokenClaims>(&globex_token)
            .await
            .unwrap()
            .issuer_name(),
        "globex"
    );

    // One live issuer at most: an evicted issuer's entries are not served.
    let one = TrustedIssuers::builder()
        .issuers(["acme", "globex"].map(|id| entry(&server, id).build().unwrap()))
        .max_cached_issuers(1)
        .verification_cache(VerificationCache::new(100))
        .build()
        .unwrap();
    let rotated_token = rotated
        .token(&server.issuer("acme"), AUDIENCE, Some("acme"))
        .await;
    for _ in 0..3 {
        one.verify::<AccessTokenClaims>(&rotated_token).await.unwrap();
        one.verify::<AccessTokenClaims>(&globex_token).await.unwrap();
    }
    assert_eq!(one.stats().evictions, 5);
}
