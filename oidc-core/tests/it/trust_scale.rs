//! 10,000 registered issuers served by one loopback server under distinct
//! paths: each fetched exactly once (one discovery, one JWKS) while the
//! registry holds them all; with a smaller cache, the live issuers never
//! exceed it, and evictions and the refetches they cause are counted.

#![cfg(feature = "remote")]
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::Arc;

use oidc_core::verify::trust::{IssuerEntry, TrustedIssuers};
use oidc_core::Algorithm;

use crate::tenants::{entry, verify, TenantServer, TestKey, AUDIENCE};

const ISSUERS: usize = 10_000;

fn tenant(i: usize) -> String {
    format!("tenant-{i:05}")
}

/// Verifies `tokens[i]` for every `i` in `which`, 32 at a time; each must be
/// accepted under its tenant's name.
async fn verify_all(trusted: &TrustedIssuers, tokens: &Arc<Vec<String>>, which: impl Iterator<Item = usize>) {
    let which: Vec<usize> = which.collect();
    for chunk in which.chunks(32) {
        let mut tasks = tokio::task::JoinSet::new();
        for &i in chunk {
            let (trusted, tokens) = (trusted.clone(), Arc::clone(tokens));
            tasks.spawn(async move { (i, verify(&trusted, &tokens[i]).await) });
        }
        while let Some(result) = tasks.join_next().await {
            let (i, result) = result.unwrap();
            assert_eq!(result.unwrap().0, tenant(i));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_issuers_each_fetched_once_within_a_bounded_cache() {
    let server = TenantServer::start().await;
    // A few keys shared round-robin: what matters here is fetching and
    // caching, and each tenant still publishes only its own key.
    let keys: Vec<TestKey> = (0..8).map(|_| TestKey::new(Algorithm::ES256)).collect();
    let mut entries: Vec<IssuerEntry> = Vec::with_capacity(ISSUERS);
    let mut tokens = Vec::with_capacity(ISSUERS);
    for i in 0..ISSUERS {
        let (id, key) = (tenant(i), &keys[i % keys.len()]);
        server.add(&id, &key.jwks);
        entries.push(entry(&server, &id).build().unwrap());
        tokens.push(key.token(&server.issuer(&id), AUDIENCE, Some(&id)).await);
    }
    let tokens = Arc::new(tokens);
    let hits = |i: usize| server.tenant(&tenant(i)).hits();

    // All of them cached: one discovery and one JWKS each, then none.
    let all = TrustedIssuers::builder()
        .issuers(entries.clone())
        .max_cached_issuers(ISSUERS)
        .build()
        .unwrap();
    verify_all(&all, &tokens, 0..ISSUERS).await;
    verify_all(&all, &tokens, 0..ISSUERS).await;
    for i in 0..ISSUERS {
        assert_eq!(hits(i), (1, 1), "{}", tenant(i));
    }
    let stats = all.stats();
    assert_eq!((stats.cached_issuers, stats.evictions), (ISSUERS, 0));
    assert_eq!(server.requests(), 2 * ISSUERS);
    drop(all);

    // A cache of 1,000: never more live, every eviction counted, and an
    // evicted issuer fetched again on its next token (a cached one not).
    let bounded = TrustedIssuers::builder()
        .issuers(entries)
        .max_cached_issuers(1_000)
        .build()
        .unwrap();
    for start in (0..ISSUERS).step_by(500) {
        verify_all(&bounded, &tokens, start..start + 500).await;
        assert!(bounded.stats().cached_issuers <= 1_000);
    }
    let stats = bounded.stats();
    assert_eq!((stats.cached_issuers, stats.evictions), (1_000, 9_000));
    for i in 0..ISSUERS {
        assert_eq!(hits(i), (2, 2), "{}", tenant(i));
    }
    let cached: HashSet<String> = bounded.status().into_iter().map(|s| s.name).collect();
    assert_eq!(cached.len(), 1_000);
    let (kept, evicted): (Vec<usize>, Vec<usize>) = (0..ISSUERS).partition(|i| cached.contains(&tenant(*i)));
    verify_all(&bounded, &tokens, kept.iter().copied()).await;
    assert_eq!(server.requests(), 4 * ISSUERS, "cached issuers need no fetch");
    let again: Vec<usize> = evicted.into_iter().take(100).collect();
    verify_all(&bounded, &tokens, again.iter().copied()).await;
    for &i in &again {
        assert_eq!(hits(i), (3, 3), "{}", tenant(i));
    }
    let stats = bounded.stats();
    assert_eq!((stats.cached_issuers, stats.evictions), (1_000, 9_100));
    assert_eq!(server.requests(), 4 * ISSUERS + 200);
}
