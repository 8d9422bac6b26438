//! Verification with a warm [`RemoteJwks`] cache, side by side with a bare ring
//! verify of the same signature and with the same verifier over a static
//! `JwkSet` (DESIGN.md, "Performance targets": within 1.3x of bare ring).
//!
//! Run (about a minute and a half on two cores once built):
//!
//! ```sh
//! cargo bench -p oidc-core --features remote --bench remote
//! ```
//!
//! Benchmark ids are `verify_warm/{ES256,EdDSA,RS256}/{ring,oidc-core static,oidc-core remote}`;
//! medians are in `target/criterion/verify_warm_<alg>/<id>/new/estimates.json`.
//!
//! - `ring`: `UnparsedPublicKey::verify` (RSA: `RsaPublicKeyComponents::verify`)
//!   of the token's signature over its exact signing input: the floor.
//! - `oidc-core remote`: `Verifier::verify::<AccessTokenClaims>` with a
//!   [`RemoteJwks`] that fetched its set from a local JWKS server before the
//!   measurement (`max-age=3600`): strict decode, header checks, the lock-free
//!   cache lookup, signature, strict claims parse, policy, typed claims.
//! - `oidc-core static`: the same verifier over a static `JwkSet`, to show what
//!   the remote source itself costs.

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};

use common::{now_or_never, ED25519_PEM, P256_PEM, RSA2048_PEM};
use oidc_core::keys::{LocalSigner, PublicKey, Signer};
use oidc_core::verify::RemoteJwks;
use oidc_core::{
    AccessTokenClaims, Algorithm, Issuer, JwkSet, KeySet, Lifetime, Policy, TokenRequest, Verifier,
};

const AUDIENCE: &str = "https://api.example.com";

struct Fixture {
    name: &'static str,
    token: String,
    signing_input: Vec<u8>,
    signature: Vec<u8>,
    public_key: PublicKey,
    remote: Verifier<RemoteJwks>,
    fixed: Verifier<JwkSet>,
}

fn fixture(runtime: &tokio::runtime::Runtime, name: &'static str, pem: &str, alg: Algorithm) -> Fixture {
    let signer = LocalSigner::from_pem_with_algorithm(pem, Some(alg)).expect("test key loads");
    let verifying_key = signer.verifying_key().clone();
    let jwks = JwkSet::from_keys([verifying_key.clone()]).expect("key set");

    // The JWKS server, on the runtime's worker threads.
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let body = jwks.to_json();
    let app = Router::new().route(
        "/jwks.json",
        get(move || {
            let body = body.clone();
            async move { ([("cache-control", "public, max-age=3600")], body) }
        }),
    );
    runtime.spawn(async move { axum::serve(listener, app).await });

    let remote = RemoteJwks::builder(format!("{base}/jwks.json"))
        .build()
        .expect("remote source");
    runtime.block_on(remote.refresh()).expect("the JWKS is fetched");

    let issuer = Issuer::new(
        base.clone(),
        Arc::new(KeySet::single(Arc::new(signer))),
        Lifetime::new(Duration::from_secs(900), Duration::from_secs(900)).expect("lifetime"),
    )
    .expect("issuer");
    let token = runtime
        .block_on(issuer.issue(&TokenRequest::new("connector-7f3a9c", AUDIENCE)))
        .expect("issue")
        .token
        .into_string();
    let (signing_input, signature) = token.rsplit_once('.').expect("compact JWS");
    let signature = oidc_core::base64url::decode(signature).expect("signature");
    let policy = Policy::builder(base, [AUDIENCE]).build().expect("policy");
    Fixture {
        name,
        signing_input: signing_input.as_bytes().to_vec(),
        signature,
        public_key: verifying_key.public_key().clone(),
        remote: Verifier::new(policy.clone(), remote),
        fixed: Verifier::new(policy, jwks),
        token,
    }
}

fn ring_verify(fixture: &Fixture) {
    common::ring_verify(
        &fixture.public_key,
        black_box(&fixture.signing_input[..]),
        black_box(&fixture.signature[..]),
    );
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    // A lookup that found the set past its lifetime would spawn a refresh.
    let _context = runtime.enter();
    let fixtures = [
        fixture(&runtime, "ES256", P256_PEM, Algorithm::ES256),
        fixture(&runtime, "EdDSA", ED25519_PEM, Algorithm::EdDSA),
        fixture(&runtime, "RS256", RSA2048_PEM, Algorithm::RS256),
    ];
    for fixture in &fixtures {
        let mut group = c.benchmark_group(format!("verify_warm/{}", fixture.name));
        group.bench_function("ring", |b| b.iter(|| ring_verify(fixture)));
        group.bench_function("oidc-core static", |b| {
            b.iter(|| {
                now_or_never(
                    fixture
                        .fixed
                        .verify::<AccessTokenClaims>(black_box(&fixture.token)),
                )
                .expect("verifies")
            })
        });
        group.bench_function("oidc-core remote", |b| {
            b.iter(|| {
                now_or_never(
                    fixture
                        .remote
                        .verify::<AccessTokenClaims>(black_box(&fixture.token)),
                )
                .expect("verifies")
            })
        });
        group.finish();
    }
    // Nothing was fetched during the measurement: the cache stayed warm.
    for fixture in &fixtures {
        assert!(fixture.remote.key_source().status().fresh);
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
