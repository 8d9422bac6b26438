//! Token issue and verify, side by side with a bare ring signature over the same
//! signing input and with the `jsonwebtoken` crate (aws-lc-rs backend) on the
//! same claims (DESIGN.md, "Performance targets").
//!
//! Run (about three minutes on two cores, build included):
//!
//! ```sh
//! cargo bench -p oidc-core --bench tokens
//! # one group only:
//! cargo bench -p oidc-core --bench tokens -- 'verify/ES256'
//! ```
//!
//! Benchmark ids are `{issue,verify}/{ES256,EdDSA,RS256}/{oidc-core,ring,jsonwebtoken}`
//! (plus `verify/*/jsonwebtoken-signature`);
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
//! - `jsonwebtoken`: `encode` of the same claims under the same header, and
//!   `decode::<AccessTokenClaims>` validating issuer, audience, `exp` and `nbf`
//!   with the same leeway. The target is `oidc-core` faster than this.
//! - `jsonwebtoken-signature` (verify only; a reference, not a target): the
//!   signature check alone through `jsonwebtoken::crypto::verify`, i.e. aws-lc-rs.
//!   Compared with `ring`, it shows how much of a `jsonwebtoken` lead is its
//!   crypto backend rather than its JWT handling.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use ring::rand::SystemRandom;
use ring::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair, UnparsedPublicKey};

use oidc_core::claims::{AccessTokenClaims, Attributes, ACCESS_TOKEN_TYP};
use oidc_core::keys::{LocalSigner, PublicKey, Signer};
use oidc_core::{Algorithm, Issuer, JwkSet, KeySet, Lifetime, Policy, TokenRequest, Verifier};

const ISSUER: &str = "https://tokens.example.com";
const AUDIENCE: &str = "https://api.example.com";

const P256_PEM: &str = include_str!("../tests/keys/p256.pem");
const ED25519_PEM: &str = include_str!("../tests/keys/ed25519.pem");
const RSA2048_PEM: &str = include_str!("../tests/keys/rsa2048.pem");

/// Drives a future that never waits (local signing, a static key set) to
/// completion with one poll, as a task would, without a runtime around it.
fn now_or_never<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a local signer or a static key set never waits"),
    }
}

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
    kid: String,
    public_key: PublicKey,
    pkcs8_der: Vec<u8>,
    jwt_alg: jsonwebtoken::Algorithm,
    jwt_encoding_key: jsonwebtoken::EncodingKey,
    jwt_decoding_key: jsonwebtoken::DecodingKey,
}

impl Fixture {
    fn new(name: &'static str, pem_text: &str, alg: Algorithm, jwt_alg: jsonwebtoken::Algorithm) -> Self {
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
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk).expect("jsonwebtoken reads the JWK");
        let pem_bytes = pem_text.as_bytes();
        let jwt_encoding_key = match alg {
            Algorithm::ES256 => jsonwebtoken::EncodingKey::from_ec_pem(pem_bytes),
            Algorithm::EdDSA => jsonwebtoken::EncodingKey::from_ed_pem(pem_bytes),
            _ => jsonwebtoken::EncodingKey::from_rsa_pem(pem_bytes),
        }
        .expect("jsonwebtoken reads the PEM");

        Self {
            name,
            issuer,
            request,
            verifier,
            signing_input: signing_input.as_bytes().to_vec(),
            token,
            signature,
            claims,
            kid: verifying_key.kid().to_owned(),
            public_key: verifying_key.public_key().clone(),
            pkcs8_der: pem::parse(pem_text).expect("PEM").into_contents(),
            jwt_alg,
            jwt_encoding_key,
            jwt_decoding_key: jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("jsonwebtoken key"),
        }
    }

    fn jwt_header(&self) -> jsonwebtoken::Header {
        let mut header = jsonwebtoken::Header::new(self.jwt_alg);
        header.typ = Some(ACCESS_TOKEN_TYP.to_owned());
        header.kid = Some(self.kid.clone());
        header
    }

    fn jwt_validation(&self) -> jsonwebtoken::Validation {
        let mut validation = jsonwebtoken::Validation::new(self.jwt_alg);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = self.verifier.policy().leeway_secs();
        validation
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

    let header = fixture.jwt_header();
    group.bench_function("jsonwebtoken", |b| {
        b.iter(|| {
            jsonwebtoken::encode(&header, black_box(&fixture.claims), &fixture.jwt_encoding_key)
                .expect("encode")
        })
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
    match &fixture.public_key {
        PublicKey::P256(point) => {
            let key = UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point);
            group.bench_function("ring", |b| {
                b.iter(|| {
                    key.verify(black_box(input), black_box(signature))
                        .expect("verify")
                })
            });
        }
        PublicKey::Ed25519(x) => {
            let key = UnparsedPublicKey::new(&sig::ED25519, x);
            group.bench_function("ring", |b| {
                b.iter(|| {
                    key.verify(black_box(input), black_box(signature))
                        .expect("verify")
                })
            });
        }
        PublicKey::Rsa { n, e } => {
            let key = sig::RsaPublicKeyComponents { n, e };
            group.bench_function("ring", |b| {
                b.iter(|| {
                    key.verify(
                        &sig::RSA_PKCS1_2048_8192_SHA256,
                        black_box(input),
                        black_box(signature),
                    )
                    .expect("verify")
                })
            });
        }
    }

    // Reference, not a target: jsonwebtoken's signature check alone (aws-lc-rs,
    // plus a base64url decode of the signature), to tell its crypto backend
    // apart from its JWT handling.
    let (_, signature_b64) = token.rsplit_once('.').expect("compact JWS");
    group.bench_function("jsonwebtoken-signature", |b| {
        b.iter(|| {
            let ok = jsonwebtoken::crypto::verify(
                black_box(signature_b64),
                black_box(input),
                &fixture.jwt_decoding_key,
                fixture.jwt_alg,
            )
            .expect("verify");
            assert!(ok);
        })
    });

    let validation = fixture.jwt_validation();
    group.bench_function("jsonwebtoken", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<AccessTokenClaims>(
                black_box(token),
                &fixture.jwt_decoding_key,
                &validation,
            )
            .expect("decode")
        })
    });
    group.finish();
}

fn tokens(c: &mut Criterion) {
    let algorithms = [
        (
            "ES256",
            P256_PEM,
            Algorithm::ES256,
            jsonwebtoken::Algorithm::ES256,
        ),
        (
            "EdDSA",
            ED25519_PEM,
            Algorithm::EdDSA,
            jsonwebtoken::Algorithm::EdDSA,
        ),
        (
            "RS256",
            RSA2048_PEM,
            Algorithm::RS256,
            jsonwebtoken::Algorithm::RS256,
        ),
    ];
    for (name, pem_text, alg, jwt_alg) in algorithms {
        // Built per algorithm, so that its token is fresh when its verify group runs.
        let fixture = &Fixture::new(name, pem_text, alg, jwt_alg);
        // Same claims everywhere: what oidc-core signs is what jsonwebtoken encodes.
        let check = jsonwebtoken::decode::<AccessTokenClaims>(
            &fixture.token,
            &fixture.jwt_decoding_key,
            &fixture.jwt_validation(),
        )
        .expect("jsonwebtoken accepts an oidc-core token");
        assert_eq!(check.claims, fixture.claims);
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
