//! Memory per cached issuer of a [`TrustedIssuers`] registry (DESIGN.md,
//! "Performance targets": under 8 KiB plus its keys), counted exactly by a
//! counting global allocator (`stats_alloc`): live heap bytes after minus
//! before, over 10,000 issuers. Not a criterion benchmark: it prints figures.
//!
//! Run:
//!
//! ```sh
//! cargo bench -p oidc-core --features remote --bench memory
//! ```
//!
//! - *keys*: one issuer's key set as a live issuer holds it (an
//!   `Arc<JwkSet>` of one ES256 key, parsed from its JWKS document);
//! - *entry*: an `IssuerEntry` (name, issuer, policy), held by the static list;
//! - *live issuer*: what one issuer's first token adds to a registry that
//!   holds its entry already: its `RemoteJwks` (discovered JWKS URL, cache
//!   state, counters), its verifier (remembered header), its place in the
//!   LRU, and its keys; the shared HTTP client's pooled connection is
//!   amortized over all of them;
//! - *bounded*: the same 10,000 first tokens through a registry of at most
//!   1,000 live issuers: what stays live afterwards;
//! - *verification cache entry*: what one more cached verification of a
//!   ~700-byte access token (`AccessTokenClaims` with two private claims)
//!   adds to a `VerificationCache` holding 10,000 entries: the entry, its claims,
//!   its slot and map bucket (the key and policy are shared).

mod common;

use std::alloc::System;
use std::sync::Arc;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

use common::tenants::{Tenants, AUDIENCE};
use oidc_core::verify::trust::{IssuerEntry, TrustedIssuers};
use oidc_core::verify::VerificationCache;
use oidc_core::{AccessTokenClaims, JwkSet, Policy, Verifier};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const ISSUERS: usize = 10_000;

/// Heap bytes live now that were not when `region` started.
fn live(region: &Region<'_, System>) -> f64 {
    // stats_alloc adds a reallocation's growth to `bytes_allocated` and its
    // shrinking to `bytes_deallocated` already (`bytes_reallocated` is the
    // same figure again, not to be added).
    let c = region.change();
    (c.bytes_allocated as f64) - (c.bytes_deallocated as f64)
}

fn entries(tenants: &Tenants) -> Vec<IssuerEntry> {
    (0..ISSUERS)
        .map(|n| {
            IssuerEntry::builder(format!("tenant-{n:05}"), tenants.issuer(n), [AUDIENCE])
                .require_claim("org_id", format!("org-{n:05}"))
                .build()
                .expect("entry")
        })
        .collect()
}

fn first_tokens(runtime: &tokio::runtime::Runtime, trusted: &TrustedIssuers, tokens: &[String]) {
    for token in tokens {
        runtime
            .block_on(trusted.verify::<AccessTokenClaims>(token))
            .expect("verifies");
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let _context = runtime.enter();
    let tenants = Tenants::start(&runtime, ISSUERS);
    let tokens: Vec<String> = (0..ISSUERS).map(|n| tenants.token(&runtime, n)).collect();

    let mut sets: Vec<Arc<JwkSet>> = Vec::with_capacity(ISSUERS);
    let region = Region::new(GLOBAL);
    sets.extend((0..ISSUERS).map(|n| Arc::new(JwkSet::from_json(tenants.jwks(n).as_bytes()).expect("jwks"))));
    let keys = live(&region) / ISSUERS as f64;
    drop(sets);

    let region = Region::new(GLOBAL);
    let list = entries(&tenants);
    let entry = live(&region) / ISSUERS as f64;

    let trusted = TrustedIssuers::builder()
        .issuers(list)
        .max_cached_issuers(ISSUERS)
        .build()
        .expect("registry");
    let region = Region::new(GLOBAL);
    first_tokens(&runtime, &trusted, &tokens);
    let per_issuer = live(&region) / ISSUERS as f64;
    assert_eq!(trusted.stats().cached_issuers, ISSUERS);
    drop(trusted);

    let bounded = TrustedIssuers::builder()
        .issuers(entries(&tenants))
        .max_cached_issuers(1_000)
        .build()
        .expect("registry");
    let region = Region::new(GLOBAL);
    first_tokens(&runtime, &bounded, &tokens);
    let bounded_total = live(&region);
    let stats = bounded.stats();
    assert_eq!((stats.cached_issuers, stats.evictions), (1_000, 9_000));

    drop(bounded);

    // Verification cache entries: 10,000 distinct tokens of one issuer.
    let one_issuer: Vec<String> = (0..ISSUERS).map(|_| tenants.token(&runtime, 0)).collect();
    let jwks = JwkSet::from_json(tenants.jwks(0).as_bytes()).expect("jwks");
    let policy = Policy::builder(tenants.issuer(0), [AUDIENCE])
        .build()
        .expect("policy");
    // Room to spare: each of the 16 shards holds its share of the bound.
    let cache = VerificationCache::new(2 * ISSUERS);
    let verifier = Verifier::new(policy, jwks).with_cache(cache.clone());
    runtime
        .block_on(verifier.verify::<AccessTokenClaims>(&one_issuer[0]))
        .expect("verifies");
    let region = Region::new(GLOBAL);
    for token in &one_issuer[1..] {
        runtime
            .block_on(verifier.verify::<AccessTokenClaims>(token))
            .expect("verifies");
    }
    let per_entry = live(&region) / (ISSUERS - 1) as f64;
    assert_eq!(cache.stats().entries, ISSUERS);

    println!("memory per cached issuer, {ISSUERS} issuers (live heap bytes, counting allocator)");
    println!("  keys (Arc<JwkSet>, one ES256 key)        {keys:>9.0} B");
    println!("  static entry (IssuerEntry)                {entry:>9.0} B");
    println!("  live issuer, keys included                {per_issuer:>9.0} B");
    println!(
        "  live issuer, keys excluded                {:>9.0} B   (target < 8192 B)",
        per_issuer - keys
    );
    println!(
        "  bounded: 1,000 live of {ISSUERS} seen, total {:.0} KiB = {:.0} B per live issuer ({} evictions)",
        bounded_total / 1024.0,
        bounded_total / 1000.0,
        stats.evictions
    );
    println!(
        "  verification cache entry ({ISSUERS} entries, {}-byte tokens)  {per_entry:>5.0} B",
        one_issuer[0].len()
    );
}
