//! Many issuers: verification through a [`TrustedIssuers`] registry holding
//! 10,000 live issuers beside the same registry with one issuer (DESIGN.md,
//! "Performance targets": at least 0.9x), beside a plain single-issuer
//! `Verifier` and a bare ring signature check; and the time to a new
//! issuer's first verification (discovery and JWKS fetched from loopback).
//!
//! Run (about two minutes on two cores once built):
//!
//! ```sh
//! cargo bench -p oidc-core --features remote --bench trust
//! ```
//!
//! Ids: `trust_warm/{ring, verifier 1 issuer, registry 1 issuer, registry 10000 issuers}`
//! and `trust_first/{registry new issuer, remote jwks new source}`; medians in
//! `target/criterion/<group>/<id>/new/estimates.json`.
//!
//! - Every warm case cycles through 10,000 distinct ES256 tokens (10,000
//!   issuers with a key each, or one issuer's 10,000 tokens), so both sides
//!   touch as many token bytes; the 10,000-issuer side also touches 10,000
//!   issuers' state and keys.
//! - `trust_first`: a registry entry (or a `RemoteJwks::discovery` source,
//!   built beforehand with its own HTTP client) that has fetched nothing yet,
//!   and its first token: a discovery request, a JWKS request, the verification.

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

use common::now_or_never;
use common::tenants::{Tenants, AUDIENCE};
use oidc_core::keys::Signer;
use oidc_core::verify::trust::{IssuerEntry, TrustedIssuers};
use oidc_core::verify::RemoteJwks;
use oidc_core::{AccessTokenClaims, Policy, Verifier};

const ISSUERS: usize = 10_000;

fn registry(tenants: &Tenants, which: impl Iterator<Item = usize>) -> TrustedIssuers {
    let entries = which.map(|n| {
        IssuerEntry::builder(format!("tenant-{n}"), tenants.issuer(n), [AUDIENCE])
            .build()
            .expect("entry")
    });
    TrustedIssuers::builder()
        .issuers(entries)
        .max_cached_issuers(ISSUERS)
        .build()
        .expect("registry")
}

fn warm(runtime: &tokio::runtime::Runtime, trusted: &TrustedIssuers, tokens: &[String]) {
    for token in tokens {
        runtime
            .block_on(trusted.verify::<AccessTokenClaims>(token))
            .expect("verifies");
    }
}

fn bench_warm(c: &mut Criterion, runtime: &tokio::runtime::Runtime, tenants: &Tenants) {
    let many_tokens: Vec<String> = (0..ISSUERS).map(|n| tenants.token(runtime, n)).collect();
    let one_tokens: Vec<String> = (0..ISSUERS).map(|_| tenants.token(runtime, 0)).collect();
    let many = registry(tenants, 0..ISSUERS);
    let one = registry(tenants, 0..1);
    warm(runtime, &many, &many_tokens);
    warm(runtime, &one, &one_tokens[..1]);
    let keys = RemoteJwks::discovery(tenants.issuer(0)).build().expect("source");
    runtime.block_on(keys.refresh()).expect("fetched");
    let policy = Policy::builder(tenants.issuer(0), [AUDIENCE])
        .build()
        .expect("policy");
    let verifier = Verifier::new(policy, keys);
    assert_eq!(many.stats().cached_issuers, ISSUERS);
    let requests = tenants.requests();

    let (signing_input, signature) = one_tokens[0].rsplit_once('.').expect("compact JWS");
    let signature = oidc_core::base64url::decode(signature).expect("signature");
    let public_key = tenants.signers[0].verifying_key().public_key().clone();

    let mut group = c.benchmark_group("trust_warm");
    group.bench_function("ring", |b| {
        b.iter(|| {
            common::ring_verify(
                &public_key,
                black_box(signing_input.as_bytes()),
                black_box(&signature),
            )
        })
    });
    let cycle = |tokens: &'static [String]| {
        let next = AtomicUsize::new(0);
        move || &tokens[next.fetch_add(1, Ordering::Relaxed) % tokens.len()]
    };
    let one_tokens: &'static [String] = Vec::leak(one_tokens);
    let many_tokens: &'static [String] = Vec::leak(many_tokens);
    let next = cycle(one_tokens);
    group.bench_function("verifier 1 issuer", |b| {
        b.iter(|| now_or_never(verifier.verify::<AccessTokenClaims>(black_box(next()))).expect("verifies"))
    });
    let next = cycle(one_tokens);
    group.bench_function("registry 1 issuer", |b| {
        b.iter(|| now_or_never(one.verify::<AccessTokenClaims>(black_box(next()))).expect("verifies"))
    });
    let next = cycle(many_tokens);
    group.bench_function("registry 10000 issuers", |b| {
        b.iter(|| now_or_never(many.verify::<AccessTokenClaims>(black_box(next()))).expect("verifies"))
    });
    group.finish();

    // The headline ratio again, from alternated blocks of 1,000 verifications
    // (each side first in every other round), so that both sides meet the
    // same load from whatever else runs on the machine.
    let (next_one, next_many) = (cycle(one_tokens), cycle(many_tokens));
    let (mut one_times, mut many_times) = (Vec::new(), Vec::new());
    let block = |trusted: &TrustedIssuers, next: &dyn Fn() -> &'static String| {
        let start = Instant::now();
        for _ in 0..1_000 {
            now_or_never(trusted.verify::<AccessTokenClaims>(black_box(next()))).expect("verifies");
        }
        start.elapsed() / 1_000
    };
    for round in 0..40 {
        if round % 2 == 0 {
            one_times.push(block(&one, &next_one));
            many_times.push(block(&many, &next_many));
        } else {
            many_times.push(block(&many, &next_many));
            one_times.push(block(&one, &next_one));
        }
    }
    let median = |times: &mut Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let (one_median, many_median) = (median(&mut one_times), median(&mut many_times));
    println!(
        "trust_warm alternated (median of 40 blocks of 1,000): registry 1 issuer {:.2} µs, \
         registry 10000 issuers {:.2} µs, 1-issuer time / 10000-issuer time = {:.3}x",
        one_median.as_secs_f64() * 1e6,
        many_median.as_secs_f64() * 1e6,
        one_median.as_secs_f64() / many_median.as_secs_f64()
    );
    assert_eq!(
        tenants.requests(),
        requests,
        "nothing was fetched while measuring"
    );
}

fn bench_first(c: &mut Criterion, runtime: &tokio::runtime::Runtime, tenants: &Tenants) {
    // Tenant numbers never used before, so every issuer is new to the server too.
    let fresh = AtomicUsize::new(ISSUERS);
    let take = |n: u64| {
        let start = fresh.fetch_add(n as usize, Ordering::Relaxed);
        start..start + n as usize
    };
    let mut group = c.benchmark_group("trust_first");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    group.bench_function("registry new issuer", |b| {
        b.iter_custom(|iters| {
            let range = take(iters);
            let tokens: Vec<String> = range.clone().map(|n| tenants.token(runtime, n)).collect();
            let trusted = registry(tenants, range);
            let start = Instant::now();
            warm(runtime, &trusted, &tokens);
            start.elapsed()
        })
    });
    group.bench_function("remote jwks new source", |b| {
        b.iter_custom(|iters| {
            let range = take(iters);
            let verifiers: Vec<(Verifier<RemoteJwks>, String)> = range
                .map(|n| {
                    let keys = RemoteJwks::discovery(tenants.issuer(n)).build().expect("source");
                    let policy = Policy::builder(tenants.issuer(n), [AUDIENCE])
                        .build()
                        .expect("policy");
                    (Verifier::new(policy, keys), tenants.token(runtime, n))
                })
                .collect();
            let start = Instant::now();
            for (verifier, token) in &verifiers {
                runtime
                    .block_on(verifier.verify::<AccessTokenClaims>(token))
                    .expect("verifies");
            }
            start.elapsed()
        })
    });
    group.finish();
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let _context = runtime.enter();
    let tenants = Tenants::start(&runtime, ISSUERS);
    bench_warm(c, &runtime, &tenants);
    bench_first(c, &runtime, &tenants);
}

criterion_group!(benches, bench);
criterion_main!(benches);
