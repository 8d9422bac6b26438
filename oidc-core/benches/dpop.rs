//! DPoP at the control plane (DESIGN.md, "Performance targets": a poll
//! with proof + cached token costs at most 1.2x one uncached ES256 token
//! verification), in one run: a DPoP poll, a bearer poll with the cache,
//! and an uncached ES256 verification, beside the client's cost per proof.
//!
//! Run (about a minute on two cores once built):
//!
//! ```sh
//! cargo bench -p oidc-core --bench dpop
//! ```
//!
//! Ids, all on one thread:
//!
//! - `dpop/poll`: `Verifier::verify_request` of `Authorization: DPoP` with
//!   a fresh ES256 proof: the token through the verification cache (a
//!   hit), then the whole proof check (strict JWS decode with the header
//!   `jwk`, the key, the signature, the claims, `htu` normalized, `ath`),
//!   the RFC 7638 thumbprint against `cnf.jkt`, and the `jti` recorded in
//!   the in-memory replay store (in a steady state: the clock moves one
//!   second every 2,000 proofs, so old entries leave as new ones come).
//!   Making each proof is set-up, outside the timing.
//! - `dpop/bearer_cached`: `verify_request` of `Authorization: Bearer` with
//!   an unbound token, served by the cache.
//! - `dpop/uncached_es256`: `Verifier::verify` of the bound token without a
//!   cache: the whole strict path of one ES256 token.
//! - `dpop/proof_check`: `DpopVerifier::check` alone (no replay store).
//! - `dpop/proof_sign`: the client's cost: `DpopProof::builder(..).sign()`
//!   with `ath`.
//!
//! Then the headline ratio, `poll / uncached`, from alternated blocks as
//! in the cache benchmark (each side first in every other round).

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use common::{now_or_never, P256_PEM};
use oidc_core::claims::Confirmation;
use oidc_core::clock::{ManualWallClock, WallClock};
use oidc_core::dpop::{DpopKey, DpopMode, DpopProof, DpopVerifier, MemoryProofReplayStore, ProofTarget};
use oidc_core::keys::{LocalSigner, Signer};
use oidc_core::verify::dpop::PresentedRequest;
use oidc_core::verify::VerificationCache;
use oidc_core::{
    AccessTokenClaims, Algorithm, Issuer, JwkSet, KeySet, Lifetime, Policy, TokenRequest, Verifier,
};

const ISSUER: &str = "https://tokens.example.com";
const AUDIENCE: &str = "https://api.example.com";
const URL: &str = "https://api.example.com/v1/connectors/7f3a9c/poll";
const START: u64 = 1_700_000_000;

struct Bench {
    clock: Arc<ManualWallClock>,
    made: AtomicU64,
    key: DpopKey,
    bound: String,
    bound_authorization: String,
    bearer_authorization: String,
    cached: Verifier<JwkSet>,
    uncached: Verifier<JwkSet>,
    proofs: DpopVerifier,
}

impl Bench {
    fn new() -> Self {
        let clock = Arc::new(ManualWallClock::new(START));
        let signer =
            LocalSigner::from_pem_with_algorithm(P256_PEM, Some(Algorithm::ES256)).expect("test key");
        let jwks = JwkSet::from_keys([signer.verifying_key().clone()]).expect("key set");
        let lifetime = Lifetime::new(Duration::from_secs(900), Duration::from_secs(900)).expect("lifetime");
        let issuer = Issuer::new(ISSUER, Arc::new(KeySet::single(Arc::new(signer))), lifetime)
            .expect("issuer")
            .with_clock(clock.clone());
        let mut request = TokenRequest::new("connector-7f3a9c", AUDIENCE);
        request.scope = Some("actions:read actions:write".into());
        for (name, value) in [("org_id", "org-1234"), ("account_id", "123456789012")] {
            request
                .attributes
                .insert(name, value.into())
                .expect("private claim");
        }
        let key = DpopKey::generate().expect("DPoP key");
        let cnf = Confirmation::jkt(key.thumbprint());
        let bound = now_or_never(issuer.issue_with_confirmation(&request, Some(&cnf)))
            .expect("issue")
            .token
            .into_string();
        let bearer = now_or_never(issuer.issue(&request))
            .expect("issue")
            .token
            .into_string();
        let policy = Policy::builder(ISSUER, [AUDIENCE])
            .dpop(DpopMode::Allowed)
            .build()
            .expect("policy");
        let cached = Verifier::new(policy.clone(), jwks.clone())
            .with_cache(VerificationCache::new(100_000))
            .with_clock(clock.clone());
        let uncached = Verifier::new(policy, jwks).with_clock(clock.clone());
        // One busy connector: up to 2,000 proofs a second for 60 s.
        let store = Arc::new(MemoryProofReplayStore::new(1_000_000, 200_000));
        let proofs = DpopVerifier::builder()
            .clock(clock.clone())
            .replay_store(store)
            .build()
            .expect("proof verifier");
        Self {
            clock,
            made: AtomicU64::new(0),
            key,
            bound_authorization: format!("DPoP {bound}"),
            bearer_authorization: format!("Bearer {bearer}"),
            bound,
            cached,
            uncached,
            proofs,
        }
    }

    /// A fresh proof for the poll; the clock moves a second every 2,000.
    fn proof(&self) -> String {
        if self.made.fetch_add(1, Ordering::Relaxed) % 2_000 == 1_999 {
            self.clock.advance(1);
        }
        DpopProof::builder(&self.key, "GET", URL)
            .access_token(&self.bound)
            .issued_at(self.clock.now())
            .sign()
            .expect("proof")
            .into_string()
    }

    fn poll(&self, proof: &str) {
        let request = PresentedRequest::new("GET", URL)
            .authorization(&self.bound_authorization)
            .dpop(proof);
        now_or_never(
            self.cached
                .verify_request::<AccessTokenClaims>(&request, &self.proofs),
        )
        .expect("DPoP poll");
    }

    fn bearer_poll(&self) {
        let request = PresentedRequest::new("GET", URL).authorization(&self.bearer_authorization);
        now_or_never(
            self.cached
                .verify_request::<AccessTokenClaims>(&request, &self.proofs),
        )
        .expect("bearer poll");
    }

    fn uncached(&self) {
        now_or_never(self.uncached.verify::<AccessTokenClaims>(black_box(&self.bound))).expect("verifies");
    }
}

fn bench(c: &mut Criterion) {
    let b = Bench::new();
    b.poll(&b.proof());
    b.bearer_poll();

    let mut group = c.benchmark_group("dpop");
    group.throughput(Throughput::Elements(1));
    group.bench_function("poll", |bencher| {
        bencher.iter_batched(
            || b.proof(),
            |proof| b.poll(black_box(&proof)),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("bearer_cached", |bencher| bencher.iter(|| b.bearer_poll()));
    group.bench_function("uncached_es256", |bencher| bencher.iter(|| b.uncached()));
    let target = ProofTarget::new("GET", URL).with_access_token(&b.bound);
    let one = b.proof();
    group.bench_function("proof_check", |bencher| {
        bencher.iter(|| b.proofs.check(black_box(&one), &target).expect("checks"))
    });
    group.bench_function("proof_sign", |bencher| {
        bencher.iter(|| {
            DpopProof::builder(&b.key, "GET", URL)
                .access_token(black_box(&b.bound))
                .sign()
                .expect("proof")
        })
    });
    group.finish();

    // The headline ratio from alternated blocks.
    let polls = |n: usize| {
        let proofs: Vec<String> = (0..n).map(|_| b.proof()).collect();
        let start = Instant::now();
        for proof in &proofs {
            b.poll(black_box(proof));
        }
        start.elapsed() / n as u32
    };
    let full = |n: u32| {
        let start = Instant::now();
        for _ in 0..n {
            b.uncached();
        }
        start.elapsed() / n
    };
    let (mut dpop, mut uncached) = (Vec::new(), Vec::new());
    for round in 0..40 {
        if round % 2 == 0 {
            dpop.push(polls(200));
            uncached.push(full(200));
        } else {
            uncached.push(full(200));
            dpop.push(polls(200));
        }
    }
    dpop.sort();
    uncached.sort();
    let (poll, verification) = (dpop[dpop.len() / 2], uncached[uncached.len() / 2]);
    println!(
        "dpop alternated (median of 40 blocks of 200, 1 thread): DPoP poll {:.2} µs, uncached ES256 {:.2} µs, poll / uncached = {:.2}x (target <= 1.2x)",
        poll.as_secs_f64() * 1e6,
        verification.as_secs_f64() * 1e6,
        poll.as_secs_f64() / verification.as_secs_f64()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
