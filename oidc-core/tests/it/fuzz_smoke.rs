//! Bad input never panics: a deterministic byte mutator over valid tokens and
//! key sets, many thousands of rounds, feeding the decoder, the verifier and
//! the JWKS parser. Not a fuzzer (no coverage feedback), a smoke test that
//! runs in every `cargo test`.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use oidc_core::json;
use oidc_core::jws::{UnverifiedJws, DEFAULT_MAX_LEN};
use oidc_core::keys::{LocalSigner, Signer, VerifyingKey};
use oidc_core::{AccessTokenClaims, Algorithm, JwkSet};
use serde_json::Value;

use crate::helpers::*;

/// xorshift64*: small, fast, and the same sequence on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Fragments that reach deeper than random bytes: separators, base64url edge
/// symbols, JSON syntax, dangerous header values, multi-byte UTF-8, bad UTF-8.
const INTERESTING: &[&[u8]] = &[
    b".",
    b"=",
    b"+",
    b"/",
    b" ",
    b"\n",
    b"-",
    b"_",
    b"A",
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"\\",
    b"\x00",
    b"\xff",
    b"\xc3",
    b"\xc3\xa9",
    b"\xe2\x82\xac",
    b"H\xc3\xa9",
    b"null",
    b"true",
    b"-1",
    b"0.5",
    b"1e999",
    b"18446744073709551616",
    b"\"none\"",
    b"\"HS256\"",
    b"\"alg\"",
    b"\"kid\"",
    b"\"crit\"",
    b"\"jwk\"",
    b"\"b64\"",
    b"\"typ\"",
    b"\"exp\"",
    b"\"aud\"",
    b"\\u0000",
    b"\\ud800",
    b"[[[[[[[[",
    b"{\"a\":{\"a\":",
    b"\"oct\"",
    b"\"RSA\"",
    b"\"OKP\"",
    b"\"d\"",
    b"\"use\"",
    b"\"enc\"",
    b"\"key_ops\"",
];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(8) {
            0 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] = rng.next() as u8;
            }
            2 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                let fragment = INTERESTING[rng.below(INTERESTING.len())];
                out.splice(i..i + 1, fragment.iter().copied());
            }
            3 => {
                let fragment = INTERESTING[rng.below(INTERESTING.len())];
                out.splice(at..at, fragment.iter().copied());
            }
            4 => {
                let end = (at + 1 + rng.below(8)).min(out.len());
                out.drain(at.min(end)..end);
            }
            5 if !out.is_empty() => {
                let start = rng.below(out.len());
                let end = (start + 1 + rng.below(16)).min(out.len());
                let chunk: Vec<u8> = out[start..end].to_vec();
                out.splice(at..at, chunk);
            }
            6 => out.truncate(at),
            _ => {
                let i = rng.below(out.len());
                let j = rng.below(out.len());
                if i < out.len() && j < out.len() {
                    out.swap(i, j);
                }
            }
        }
    }
    out
}

/// A short random string over symbols that matter to header parsing: the
/// letters of algorithm names, case variants, and multi-byte characters
/// (which make byte-offset slicing panic).
fn random_name(rng: &mut Rng) -> String {
    const SYMBOLS: [&str; 16] = [
        "H",
        "S",
        "h",
        "s",
        "E",
        "d",
        "n",
        "o",
        "2",
        "5",
        "+",
        "/",
        "\u{e9}",
        "\u{20ac}",
        "\u{1f511}",
        "\0",
    ];
    (0..rng.below(6))
        .map(|_| SYMBOLS[rng.below(SYMBOLS.len())])
        .collect()
}

/// Runs a future that cannot wait (a static key set answers at once).
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a static key source never waits"),
    }
}

/// Runs `check` on `input`, turning a panic into a failure that shows the input.
fn no_panic(what: &str, input: &[u8], check: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(check)).is_err() {
        panic!("{what} panicked on input {:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn mutated_tokens_are_refused_without_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut rounds = 0;
    for alg in Algorithm::ALL {
        let f = Fixture::new(alg);
        let verifier = f.verifier();
        let original = f.valid_token();
        let key = f.signer.verifying_key().clone();
        ready(verifier.verify::<AccessTokenClaims>(&original)).expect("the original is valid");
        for _ in 0..5_000 {
            let bytes = mutate(&mut rng, original.as_bytes());
            let token = String::from_utf8_lossy(&bytes);
            no_panic("decode/verify", &bytes, || {
                for max in [DEFAULT_MAX_LEN, 64] {
                    if let Ok(jws) = UnverifiedJws::decode(&token, max) {
                        let _ = jws.header();
                        if jws.verify(&key).is_ok() {
                            assert_eq!(token, original, "a changed token verified");
                        }
                    }
                }
                let result = ready(verifier.verify::<AccessTokenClaims>(&token));
                if let Err(error) = &result {
                    // Every refusal can be displayed and has a reason code.
                    let _ = (error.to_string(), error.reason());
                } else {
                    assert_eq!(token, original, "a changed token verified");
                }
            });
            rounds += 1;
        }
    }
    assert_eq!(rounds, 5_000 * Algorithm::ALL.len());
}

#[test]
fn mutated_headers_and_claims_signed_with_the_real_key_do_not_panic() {
    // Re-signing after each mutation carries the damage past the signature
    // check into header parsing, claim checks and deserialization.
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let f = Fixture::new(Algorithm::EdDSA);
    let verifier = f.verifier();
    let header = f.header().to_string().into_bytes();
    let claims = f.claims().to_string().into_bytes();
    let (mut accepted, mut rounds) = (0, 0);
    for round in 0..8_000 {
        let (h, c) = match round % 4 {
            0 => (mutate(&mut rng, &header), claims.clone()),
            1 => (header.clone(), mutate(&mut rng, &claims)),
            2 => (mutate(&mut rng, &header), mutate(&mut rng, &claims)),
            _ => {
                let mut h = f.header();
                let member = ["alg", "typ", "kid"][rng.below(3)];
                h[member] = Value::String(random_name(&mut rng));
                (h.to_string().into_bytes(), claims.clone())
            }
        };
        let token = f.sign_raw(&h, &c);
        no_panic("verify", &[&h[..], b" / ", &c[..]].concat(), || {
            match ready(verifier.verify::<AccessTokenClaims>(&token)) {
                Ok(_) => accepted += 1,
                Err(error) => {
                    let _ = (error.to_string(), error.reason());
                }
            }
            let _ = ready(verifier.verify::<Value>(&token));
        });
        rounds += 1;
    }
    assert_eq!(rounds, 8_000);
    // Some mutations only touch a value (sub, jti, ...): still valid tokens.
    assert!(accepted > 0 && accepted < rounds, "{accepted} accepted");
}

#[test]
fn mutated_jwks_documents_do_not_panic() {
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let keys: Vec<Value> = Algorithm::ALL
        .into_iter()
        .filter(|alg| *alg != Algorithm::PS256) // same RSA key as RS256: one kid
        .map(|alg| Value::Object(signer(alg).0.verifying_key().to_jwk()))
        .collect();
    let document = serde_json::json!({ "keys": keys }).to_string().into_bytes();
    let usable = JwkSet::from_json(&document).expect("valid").len();
    assert_eq!(usable, 4);
    let single = keys[0].to_string().into_bytes();
    for _ in 0..12_000 {
        let bytes = mutate(&mut rng, &document);
        no_panic("JwkSet::from_json", &bytes, || {
            if let Ok(set) = JwkSet::from_json(&bytes) {
                let _ = set.to_json();
                for refused in set.refused() {
                    let _ = refused.reason.to_string();
                }
            }
        });
        let bytes = mutate(&mut rng, &single);
        no_panic("VerifyingKey::from_jwk_json", &bytes, || {
            if let Ok(key) = VerifyingKey::from_jwk_json(&bytes) {
                let _ = (key.public_key().thumbprint(), key.to_jwk());
            }
            let _ = json::parse(&bytes);
        });
    }
}

#[test]
fn mutated_private_keys_do_not_panic() {
    // Key files come from operators; a damaged one must be an error.
    let mut rng = Rng(0x5eed_c0ff_ee00_0001);
    for file in ["p256", "ed25519", "rsa2048", "rsa1024", "p384", "p256-sec1"] {
        let text = key_pem(file);
        let der = pem::parse(&text).expect("PEM").into_contents();
        for round in 0..1_500 {
            let bytes = mutate(&mut rng, &der);
            let alg = [
                None,
                Some(Algorithm::ES256),
                Some(Algorithm::PS256),
                Some(Algorithm::ES384),
            ][round % 4];
            no_panic("LocalSigner::from_pkcs8_der", &bytes, || {
                if let Ok(signer) = LocalSigner::from_pkcs8_der(&bytes, alg) {
                    let _ = signer.sign_now(b"input");
                }
            });
            let bytes = mutate(&mut rng, text.as_bytes());
            no_panic("LocalSigner::from_pem", &bytes, || {
                let _ = LocalSigner::from_pem(&String::from_utf8_lossy(&bytes));
            });
        }
    }
}
