//! The verification cache (DESIGN.md, "Performance targets": a repeated token
//! verified in under 1 µs, at least 50x faster than an uncached ES256
//! verification): the same ES256 token verified again and again with the
//! cache on, beside the same verifier without it, beside `jsonwebtoken` 11
//! (aws-lc-rs) and 9 (ring) decoding it, on one thread and on 8 threads at
//! once.
//!
//! Run (about a minute and a half on two cores once built):
//!
//! ```sh
//! cargo bench -p oidc-core --bench cache
//! ```
//!
//! Ids: `cache/1_thread/{cached,uncached,jsonwebtoken 11,jsonwebtoken 9}` and
//! `cache/8_threads/{cached,uncached}`. On 8 threads each id runs its call
//! `iters` times on each thread at once and reports the wall time over all
//! of them (throughput: elements = 8), on a machine with two cores.
//!
//! - `cached`: `Verifier::verify::<AccessTokenClaims>` with a
//!   `VerificationCache` holding the token: the keyed hash of the token
//!   (HMAC-SHA-256 over its ~700 bytes), one shard's read lock and map probe,
//!   the time, policy, key and type checks, and an `Arc` of the claims out.
//! - `uncached`: the same verifier without a cache: the whole strict path.
//! - `jsonwebtoken`: `decode::<AccessTokenClaims>` of the same token,
//!   validating issuer, audience, `exp` and `nbf` (see `benches/common`).

mod common;

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use common::{jwt11, jwt9, now_or_never, P256_PEM};
use oidc_core::keys::{LocalSigner, Signer};
use oidc_core::verify::VerificationCache;
use oidc_core::{
    AccessTokenClaims, Algorithm, Issuer, JwkSet, KeySet, Lifetime, Policy, TokenRequest, Verifier,
};
use serde_json::Value;

const ISSUER: &str = "https://tokens.example.com";
const AUDIENCE: &str = "https://api.example.com";
const THREADS: usize = 8;

/// Runs `call` `iters` times on each of [`THREADS`] threads at once; the wall time.
fn contended(iters: u64, call: impl Fn() + Send + Sync + 'static) -> Duration {
    let call = Arc::new(call);
    let start_line = Arc::new(Barrier::new(THREADS + 1));
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (call, start_line) = (Arc::clone(&call), Arc::clone(&start_line));
            thread::spawn(move || {
                start_line.wait();
                for _ in 0..iters {
                    call();
                }
            })
        })
        .collect();
    start_line.wait();
    let started = Instant::now();
    for worker in workers {
        worker.join().expect("bench thread panicked");
    }
    started.elapsed()
}

fn bench(c: &mut Criterion) {
    let signer = LocalSigner::from_pem_with_algorithm(P256_PEM, Some(Algorithm::ES256)).expect("test key");
    let jwk = Value::Object(signer.verifying_key().to_jwk());
    let kid = signer.kid().to_owned();
    let jwks = JwkSet::from_keys([signer.verifying_key().clone()]).expect("key set");
    let lifetime = Lifetime::new(Duration::from_secs(900), Duration::from_secs(900)).expect("lifetime");
    let issuer = Issuer::new(ISSUER, Arc::new(KeySet::single(Arc::new(signer))), lifetime).expect("issuer");
    let mut request = TokenRequest::new("connector-7f3a9c", AUDIENCE);
    request.scope = Some("actions:read actions:write".into());
    for (name, value) in [("org_id", "org-1234"), ("account_id", "123456789012")] {
        request
            .attributes
            .insert(name, value.into())
            .expect("private claim");
    }
    let token = now_or_never(issuer.issue(&request))
        .expect("issue")
        .token
        .into_string();
    let policy = Policy::builder(ISSUER, [AUDIENCE]).build().expect("policy");
    let cache = VerificationCache::new(100_000);
    let cached = Arc::new(Verifier::new(policy.clone(), jwks.clone()).with_cache(cache.clone()));
    let uncached = Arc::new(Verifier::new(policy, jwks));
    let jwt11 = jwt11::Baseline::new("ES256", &jwk, None, &kid, ISSUER, AUDIENCE, 30);
    let jwt9 = jwt9::Baseline::new("ES256", &jwk, None, &kid, ISSUER, AUDIENCE, 30);
    now_or_never(cached.verify::<AccessTokenClaims>(&token)).expect("verifies");
    let token: &'static str = String::leak(token);

    let mut one = c.benchmark_group("cache/1_thread");
    one.throughput(Throughput::Elements(1));
    one.bench_function("cached", |b| {
        b.iter(|| now_or_never(cached.verify::<AccessTokenClaims>(black_box(token))).expect("verifies"))
    });
    one.bench_function("uncached", |b| {
        b.iter(|| now_or_never(uncached.verify::<AccessTokenClaims>(black_box(token))).expect("verifies"))
    });
    one.bench_function("jsonwebtoken 11", |b| b.iter(|| jwt11.decode(black_box(token))));
    one.bench_function("jsonwebtoken 9", |b| b.iter(|| jwt9.decode(black_box(token))));
    one.finish();

    let mut many = c.benchmark_group(format!("cache/{THREADS}_threads"));
    many.throughput(Throughput::Elements(THREADS as u64));
    many.bench_function("cached", |b| {
        b.iter_custom(|iters| {
            let cached = Arc::clone(&cached);
            contended(iters, move || {
                now_or_never(cached.verify::<AccessTokenClaims>(black_box(token))).expect("verifies");
            })
        })
    });
    many.sample_size(20).measurement_time(Duration::from_secs(8));
    many.bench_function("uncached", |b| {
        b.iter_custom(|iters| {
            let uncached = Arc::clone(&uncached);
            contended(iters, move || {
                now_or_never(uncached.verify::<AccessTokenClaims>(black_box(token))).expect("verifies");
            })
        })
    });
    many.finish();

    // The headline ratio from alternated blocks (each side first in every
    // other round), so that both sides meet the same load from other work.
    let time = |n: u32, verifier: &Verifier<JwkSet>| {
        let start = Instant::now();
        for _ in 0..n {
            now_or_never(verifier.verify::<AccessTokenClaims>(black_box(token))).expect("verifies");
        }
        start.elapsed() / n
    };
    let (mut hits, mut full) = (Vec::new(), Vec::new());
    for round in 0..40 {
        if round % 2 == 0 {
            hits.push(time(20_000, &cached));
            full.push(time(200, &uncached));
        } else {
            full.push(time(200, &uncached));
            hits.push(time(20_000, &cached));
        }
    }
    hits.sort();
    full.sort();
    let (hit, verification) = (hits[hits.len() / 2], full[full.len() / 2]);
    println!(
        "cache alternated (median of 40 blocks, 1 thread): hit {:.0} ns, uncached {:.2} µs, uncached / hit = {:.0}x",
        hit.as_secs_f64() * 1e9,
        verification.as_secs_f64() * 1e6,
        verification.as_secs_f64() / hit.as_secs_f64()
    );

    let stats = cache.stats();
    assert_eq!(
        (stats.misses, stats.inserts, stats.invalidations),
        (1, 1, 0),
        "every call after the first hit"
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
