//! Token issue and verify, side by side with a bare ring signature over the same
//! signing input and with the `jsonwebtoken` crate on the same claims, in both
//! its current release (11, on aws-lc-rs) and its last ring-backed one (9)
//! (DESIGN.md, "Performance targets"; `bench/run.sh` runs this and tabulates it).
//!
//! Run (about four minutes on two cores, build included):
//!
//! ```sh
//! cargo bench -p oidc-core --bench tokens
//! # one group only:
//! cargo bench -p oidc-core --bench tokens -- 'verify/ES256'
//! ```
//!
//! Benchmark ids are `{issue,verify}/{ES256,EdDSA,RS256}/{oidc-core,ring,jsonwebtoken11,jsonwebtoken9}`
//! (plus `verify/*/jsonwebtoken{11,9}-signature`);
//! each one's estimates are in `target/criterion/<op>_<alg>/<impl>/new/estimates.json`.
//!
//! - `oidc-core` issue: `Issuer::issue` with a local key (fresh `jti`, clock,
//!   claims serialization, base64url, signature), polled once as it would be
//!   inside a task; verify: `Verifier::verify::<AccessTokenClaims>` with a static
//!   `JwkSet` (strict decode, header checks, signature, strict claims parse,
//!   policy, typed claims).
//! - `ring`: the signature alone over the exact signing input of an issued token
//!   (`EcdsaKeyPair::sign`, `Ed25519KeyPair::sign`, `RsaKeyPair::sign`;
//!   `UnparsedPublicKey::verify`, `RsaPublicKeyComponents::verify`). The target is
//!   `oidc-core` within 1.3x of this.
//! - `jsonwebtoken11` (aws-lc-rs) and `jsonwebtoken9` (ring, the same crypto as
//!   ours): `encode` of the same claims under the same header, and
//!   `decode::<AccessTokenClaims>` validating issuer, audience, `exp` and `nbf`
//!   with the same leeway. The target is `oidc-core` faster than these; against
//!   `jsonwebtoken9` the comparison is of JWT handling alone.
//! - `jsonwebtoken11-signature`, `jsonwebtoken9-signature` (verify only; a
//!   reference, not a target): the signature check alone through
//!   `jsonwebtoken::crypto::verify`. Compared with `ring`, they show how much of a
//!   `jsonwebtoken` lead is its crypto backend rather than its JWT handling.

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use ring::rand::SystemRandom;
use ring::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};

use common::{now_or_never, ED25519_PEM, P256_PEM, RSA2048_PEM};
use oidc_core::claims::{AccessTokenClaims, Attributes};
use oidc_core::keys::{LocalSigner, PublicKey, Signer};
use oidc_core::{Algorithm, Issuer, JwkSet, KeySet, Lifetime, Policy, TokenRequest, Verifier};

const ISSUER: &str = "https://tokens.example.com";
const AUDIENCE: &str = "https://api.example.com";

fn request() -> TokenRequest {
    let mut attributes = Attributes::default();
    attributes
        .insert("org_id", "org-42".into())
        .expect("org_id is not reserved");
    attributes
        .insert("region", "eu-west-1".into())
        .expect("region is not reserved");
    TokenRequest {
        scope: Some("connector:poll connector:report".into()),
        attributes,
        ..TokenRequest::new("connector-7f3a9c", AUDIENCE)
    }
}

/// Everything one algorithm's groups need, all derived from one PEM key.
struct Fixture {
    name: &'static str,
    issuer: Issuer,
    request: TokenRequest,
    verifier: Verifier<JwkSet>,
    /// A token issued by `issuer`, and its parts.
    token: String,
    signing_input: Vec<u8>,
    signature: Vec<u8>,
    claims: AccessTokenClaims,
    public_key: PublicKey,
    pkcs8_der: Vec<u8>,
    jwt11: common::jwt11::Baseline,
    jwt9: common::jwt9::Baseline,
}

impl Fixture {
    fn new(name: &'static str, pem_text: &str, alg: Algorithm) -> Self {
        let signer = LocalSigner::from_pem_with_algorithm(pem_text, Some(alg)).expect("test key loads");
        let verifying_key = signer.verifying_key().clone();
        let issuer = Issuer::new(
            ISSUER,
            Arc::new(KeySet::single(Arc::new(signer))),
            Lifetime::default(),
        )
        .expect("issuer");
        let request = request();
        let policy = Policy::builder(ISSUER, [AUDIENCE]).build().expect("policy");
        let verifier = Verifier::new(
            policy,
            JwkSet::from_keys([verifying_key.clone()]).expect("key set"),
        );

        let token = now_or_never(issuer.issue(&request))
            .expect("issue")
            .token
            .into_string();
        let (signing_input, signature) = token.rsplit_once('.').expect("compact JWS");
        let signature = oidc_core::base64url::decode(signature).expect("signature");
        let claims = now_or_never(verifier.verify::<AccessTokenClaims>(&token))
            .expect("verify")
            .into_claims();

        let jwk = serde_json::Value::Object(verifying_key.to_jwk());
        let kid = verifying_key.kid();
        let leeway = verifier.policy().leeway_secs();
        let jwt11 =
            common::jwt11::Baseline::new(alg.name(), &jwk, Some(pem_text), kid, ISSUER, AUDIENCE, leeway);
        let jwt9 =
            common::jwt9::Baseline::new(alg.name(), &jwk, Some(pem_text), kid, ISSUER, AUDIENCE, leeway);

        Self {
            name,
            issuer,
            request,
            verifier,
            signing_input: signing_input.as_bytes().to_vec(),
            token,
            signature,
            claims,
            public_key: verifying_key.public_key().clone(),
            pkcs8_der: pem::parse(pem_text).expect("PEM").into_contents(),
            jwt11,
            jwt9,
        }
    }
}

/// A bare ring signer over the same key.
enum RingSigner {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

impl RingSigner {
    fn new(fixture: &Fixture) -> Self {
        let der = &fixture.pkcs8_der;
        match fixture.public_key {
            PublicKey::P256(_) => Self::Ecdsa(
                EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, der, &SystemRandom::new())
                    .expect("P-256 key"),
            ),
            PublicKey::P384(_) => Self::Ecdsa(
                EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P384_SHA384_FIXED_SIGNING, der, &SystemRandom::new())
                    .expect("P-384 key"),
            ),
            PublicKey::Ed25519(_) => {
                Self::Ed25519(Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).expect("Ed25519 key"))
            }
            PublicKey::Rsa { .. } => Self::Rsa(RsaKeyPair::from_pkcs8(der).expect("RSA key")),
        }
    }
}

fn bench_issue(c: &mut Criterion, fixture: &Fixture) {
    let mut group = c.benchmark_group(format!("issue/{}", fixture.name));
    if matches!(fixture.public_key, PublicKey::Rsa { .. }) {
        // RSA signing takes milliseconds: flat sampling keeps the run short.
        group.sampling_mode(SamplingMode::Flat);
    }

    group.bench_function("oidc-core", |b| {
        b.iter(|| now_or_never(fixture.issuer.issue(black_box(&fixture.request))).expect("issue"))
    });

    let ring_signer = RingSigner::new(fixture);
    let rng = SystemRandom::new();
    let input = fixture.signing_input.as_slice();
    match &ring_signer {
        RingSigner::Ecdsa(key) => group.bench_function("ring", |b| {
            b.iter(|| key.sign(&rng, black_box(input)).expect("sign"))
        }),
        RingSigner::Ed25519(key) => group.bench_function("ring", |b| b.iter(|| key.sign(black_box(input)))),
        RingSigner::Rsa(key) => group.bench_function("ring", |b| {
            let mut out = vec![0u8; key.public().modulus_len()];
            b.iter(|| {
                key.sign(&sig::RSA_PKCS1_SHA256, &rng, black_box(input), &mut out)
                    .expect("sign");
                black_box(&out);
            })
        }),
    };

    group.bench_function("jsonwebtoken11", |b| {
        b.iter(|| fixture.jwt11.encode(black_box(&fixture.claims)))
    });
    group.bench_function("jsonwebtoken9", |b| {
        b.iter(|| fixture.jwt9.encode(black_box(&fixture.claims)))
    });
    group.finish();
}

fn bench_verify(c: &mut Criterion, fixture: &Fixture) {
    let mut group = c.benchmark_group(format!("verify/{}", fixture.name));
    let token = fixture.token.as_str();

    group.bench_function("oidc-core", |b| {
        b.iter(|| {
            now_or_never(fixture.verifier.verify::<AccessTokenClaims>(black_box(token))).expect("verify")
        })
    });

    let input = fixture.signing_input.as_slice();
    let signature = fixture.signature.as_slice();
    group.bench_function("ring", |b| {
        b.iter(|| common::ring_verify(&fixture.public_key, black_box(input), black_box(signature)))
    });

    // References, not targets: jsonwebtoken's signature check alone (a
    // base64url decode of the signature, then aws-lc-rs for 11, ring for 9),
    // to tell its crypto backend apart from its JWT handling.
    let (_, signature_b64) = token.rsplit_once('.').expect("compact JWS");
    group.bench_function("jsonwebtoken11-signature", |b| {
        b.iter(|| {
            fixture
                .jwt11
                .verify_signature(black_box(signature_b64), black_box(input))
        })
    });
    group.bench_function("jsonwebtoken9-signature", |b| {
        b.iter(|| {
            fixture
                .jwt9
                .verify_signature(black_box(signature_b64), black_box(input))
        })
    });

    group.bench_function("jsonwebtoken11", |b| {
        b.iter(|| fixture.jwt11.decode(black_box(token)))
    });
    group.bench_function("jsonwebtoken9", |b| {
        b.iter(|| fixture.jwt9.decode(black_box(token)))
    });
    group.finish();
}

fn tokens(c: &mut Criterion) {
    let algorithms = [
        ("ES256", P256_PEM, Algorithm::ES256),
        ("EdDSA", ED25519_PEM, Algorithm::EdDSA),
        ("RS256", RSA2048_PEM, Algorithm::RS256),
    ];
    for (name, pem_text, alg) in algorithms {
        // Built per algorithm, so that its token is fresh when its verify group runs.
        let fixture = &Fixture::new(name, pem_text, alg);
        // Same claims everywhere: what oidc-core signs is what jsonwebtoken
        // encodes, and both versions accept an oidc-core token.
        assert_eq!(fixture.jwt11.decode(&fixture.token), fixture.claims);
        assert_eq!(fixture.jwt9.decode(&fixture.token), fixture.claims);
        bench_issue(c, fixture);
        bench_verify(c, fixture);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = tokens
}
criterion_main!(benches);
