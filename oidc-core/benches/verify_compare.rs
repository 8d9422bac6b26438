//! Verification throughput on a given set of tokens, single-threaded: oidc-core
//! beside the `jsonwebtoken` crate (11 on aws-lc-rs, 9 on ring) and a bare ring
//! signature check, for the cross-language comparison of `bench/run.sh`
//! (which runs PyJWT and npm `jose` on the same tokens).
//!
//! ```sh
//! BENCH_TOKENS_DIR=bench/results/tokens cargo bench -p oidc-core --bench verify_compare
//! ```
//!
//! `BENCH_TOKENS_DIR` holds `tokens.txt` (one ES256 compact JWS a line),
//! `jwks.json` (the key set that signed them) and `meta.json`
//! (`{"issuer", "audience", "seconds"}`). Each implementation verifies the
//! tokens round-robin for `seconds` and prints
//! `RESULT impl=NAME per_s=N` (verifications per second).
//!
//! For profiling, `BENCH_ONLY=NAME` runs one implementation and
//! `BENCH_ITERATIONS=N` makes it N verifications instead of a timed run, e.g.
//! `BENCH_ONLY=oidc-core BENCH_ITERATIONS=2000 valgrind --tool=callgrind <bench binary>`.
//!
//! Checks, as in the other languages: signature (ES256 only), issuer,
//! audience, `exp`. oidc-core also always checks `typ`, `iat`, `nbf`, the
//! lifetime cap, duplicate members and the header's forbidden parameters: it
//! has no way to skip them. `jsonwebtoken` also checks `nbf` and requires
//! `sub`. Every implementation deserializes the claims into
//! `AccessTokenClaims` (typed, like a service would); `ring` is the signature
//! alone over the pre-split signing input, the floor.

mod common;

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::now_or_never;
use oidc_core::keys::PublicKey;
use oidc_core::{AccessTokenClaims, JwkSet, Policy, Verifier};
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use serde_json::Value;

/// Runs `verify` over the tokens round-robin for `seconds`; verifications per second.
fn measure(tokens: &[String], seconds: f64, mut verify: impl FnMut(&str)) -> f64 {
    if let Some(n) = std::env::var("BENCH_ITERATIONS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    {
        let started = Instant::now();
        tokens.iter().cycle().take(n).for_each(|t| verify(black_box(t)));
        return n as f64 / started.elapsed().as_secs_f64();
    }
    // Warm-up: every token once, plus a quarter second.
    let warm_until = Instant::now() + Duration::from_millis(250);
    while Instant::now() < warm_until {
        tokens.iter().for_each(|t| verify(t));
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let mut done = 0u64;
    while Instant::now() < deadline {
        for token in tokens {
            verify(black_box(token));
        }
        done += tokens.len() as u64;
    }
    done as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let Some(dir) = std::env::var_os("BENCH_TOKENS_DIR").map(PathBuf::from) else {
        eprintln!("verify_compare: set BENCH_TOKENS_DIR (see bench/run.sh); nothing to do");
        return;
    };
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect("bench input");
    let tokens: Vec<String> = read("tokens.txt").lines().map(str::to_owned).collect();
    let jwks_text = read("jwks.json");
    let meta: Value = serde_json::from_str(&read("meta.json")).expect("meta.json");
    let issuer = meta["issuer"].as_str().expect("issuer");
    let audience = meta["audience"].as_str().expect("audience");
    let seconds = meta["seconds"].as_f64().unwrap_or(3.0);
    assert!(!tokens.is_empty(), "no tokens");

    let jwks = JwkSet::from_json(jwks_text.as_bytes()).expect("JWKS");
    assert_eq!(jwks.len(), 1, "one key expected");
    let key = jwks.keys().next().expect("a key").clone();
    let PublicKey::P256(point) = key.public_key().clone() else {
        panic!("an ES256 key expected")
    };
    let policy = Policy::builder(issuer, [audience]).build().expect("policy");
    let leeway = policy.leeway_secs();
    let verifier = Verifier::new(policy, jwks);
    let jwk = Value::Object(key.to_jwk());
    let jwt11 = common::jwt11::Baseline::new("ES256", &jwk, None, key.kid(), issuer, audience, leeway);
    let jwt9 = common::jwt9::Baseline::new("ES256", &jwk, None, key.kid(), issuer, audience, leeway);

    // Everyone accepts every token before anything is timed.
    for token in &tokens {
        let ours = now_or_never(verifier.verify::<AccessTokenClaims>(token))
            .expect("oidc-core accepts the token")
            .into_claims();
        assert_eq!(jwt11.decode(token), ours);
        assert_eq!(jwt9.decode(token), ours);
    }

    let ring_key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point);
    let split: Vec<(String, Vec<u8>)> = tokens
        .iter()
        .map(|t| {
            let (input, signature) = t.rsplit_once('.').expect("compact JWS");
            let signature = oidc_core::base64url::decode(signature).expect("signature");
            (input.to_owned(), signature)
        })
        .collect();

    println!(
        "verify_compare: {} tokens, {seconds} s per implementation, single thread",
        tokens.len()
    );
    let only = std::env::var("BENCH_ONLY").ok();
    let selected = |name: &str| only.as_deref().is_none_or(|only| only == name);
    let report = |name: &str, per_s: f64| println!("RESULT impl={name} per_s={per_s:.0}");
    if selected("oidc-core") {
        report(
            "oidc-core",
            measure(&tokens, seconds, |t| {
                now_or_never(verifier.verify::<AccessTokenClaims>(t)).expect("verify");
            }),
        );
    }
    if selected("jsonwebtoken11") {
        report(
            "jsonwebtoken11",
            measure(&tokens, seconds, |t| {
                jwt11.decode(t);
            }),
        );
    }
    if selected("jsonwebtoken9") {
        report(
            "jsonwebtoken9",
            measure(&tokens, seconds, |t| {
                jwt9.decode(t);
            }),
        );
    }
    if selected("ring") {
        let mut i = 0;
        report(
            "ring",
            measure(&tokens, seconds, |_| {
                let (input, signature) = &split[i % split.len()];
                i += 1;
                ring_key.verify(input.as_bytes(), signature).expect("ring verify");
            }),
        );
    }
}
