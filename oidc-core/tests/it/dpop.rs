//! DPoP (RFC 9449) at the control plane: every refusal the issue lists,
//! each its own test, through `Verifier::verify_request` with the
//! verification cache on (as a control plane runs it); the RFC's own
//! examples; the strict JWS layer under proofs.

// Test fixtures outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use oidc_core::claims::{Confirmation, TokenBinding};
use oidc_core::dpop::{
    DpopError, DpopKey, DpopMode, DpopNonces, DpopProof, DpopVerifier, NonceError, ProofTarget,
};
use oidc_core::jws::{self, JwsError};
use oidc_core::keys::{KeyError, LocalSigner, PublicKey};
use oidc_core::verify::dpop::{PresentedRequest, RequestError, Scheme};
use oidc_core::{AccessTokenClaims, Algorithm, AlgorithmError, Lifetime, Policy, TokenRequest, Verifier};
use serde_json::{json, Value};

use crate::helpers::{b64, unb64, Fixture, AUDIENCE, ISSUER, NOW};

const URL: &str = "https://api.example.com/connectors/poll";

/// A control plane (verifier with a cache, proof verifier, one clock) and
/// a connector (its DPoP key, a token bound to it).
struct Setup {
    fixture: Fixture,
    verifier: Verifier<oidc_core::JwkSet>,
    proofs: DpopVerifier,
    key: DpopKey,
    token: String,
}

impl Setup {
    async fn new(mode: DpopMode) -> Self {
        Self::with(mode, |b| b).await
    }

    async fn with(
        mode: DpopMode,
        proofs: impl FnOnce(oidc_core::dpop::DpopVerifierBuilder) -> oidc_core::dpop::DpopVerifierBuilder,
    ) -> Self {
        let fixture = Fixture::es256();
        let policy = Policy::builder(ISSUER, [AUDIENCE]).dpop(mode).build().unwrap();
        let verifier = fixture.verifier_with(policy).with_cache(fixture.cache.clone());
        let proofs = proofs(DpopVerifier::builder().clock(fixture.clock.clone()))
            .build()
            .unwrap();
        let key = DpopKey::generate().unwrap();
        let token = bound_token(&fixture, Some(key.thumbprint())).await;
        Self {
            fixture,
            verifier,
            proofs,
            key,
            token,
        }
    }

    /// A fresh proof by the connector's key for `GET URL` with the token.
    fn proof(&self) -> String {
        self.proof_for("GET", URL)
    }

    fn proof_for(&self, htm: &str, htu: &str) -> String {
        DpopProof::builder(&self.key, htm, htu)
            .access_token(&self.token)
            .issued_at(NOW)
            .sign()
            .unwrap()
            .into_string()
    }

    async fn present(
        &self,
        scheme: &str,
        token: &str,
        proof: Option<&str>,
    ) -> Result<oidc_core::verify::dpop::Authorized<oidc_core::Verified<AccessTokenClaims>>, RequestError>
    {
        self.present_to("GET", URL, scheme, token, proof).await
    }

    async fn present_to(
        &self,
        method: &str,
        url: &str,
        scheme: &str,
        token: &str,
        proof: Option<&str>,
    ) -> Result<oidc_core::verify::dpop::Authorized<oidc_core::Verified<AccessTokenClaims>>, RequestError>
    {
        let authorization = format!("{scheme} {token}");
        let mut request = PresentedRequest::new(method, url).authorization(&authorization);
        if let Some(proof) = proof {
            request = request.dpop(proof);
        }
        self.verifier
            .verify_request::<AccessTokenClaims>(&request, &self.proofs)
            .await
    }

    /// The refusal of the connector's token with `proof`.
    async fn proof_refusal(&self, proof: &str) -> RequestError {
        self.present("DPoP", &self.token, Some(proof))
            .await
            .expect_err("refused")
    }
}

/// A token from the fixture's issuer, bound to `jkt` when given.
async fn bound_token(fixture: &Fixture, jkt: Option<&str>) -> String {
    let issuer = fixture.issuer(Lifetime::default());
    let request = TokenRequest::new("connector-1", AUDIENCE);
    let cnf = jkt.map(Confirmation::jkt);
    issuer
        .issue_with_confirmation(&request, cnf.as_ref())
        .await
        .unwrap()
        .token
        .into_string()
}

/// A proof with exactly this header and these claims, signed by `key`.
fn hand_proof(key: &DpopKey, header: &Value, claims: &Value) -> String {
    let signer = LocalSigner::from_pem(key.pem().as_str()).unwrap();
    jws::sign_with(&b64(header.to_string()), claims.to_string().as_bytes(), |input| {
        signer.sign_now(input)
    })
    .unwrap()
}

fn header(key: &DpopKey) -> Value {
    json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": key.public_jwk() })
}

fn claims(token: &str) -> Value {
    let ath = b64(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()));
    json!({ "jti": "j-1", "htm": "GET", "htu": URL, "iat": NOW, "ath": ath })
}

fn proof_error(error: RequestError) -> DpopError {
    match error {
        RequestError::Proof(error) => error,
        other => panic!("not a proof refusal: {other:?}"),
    }
}

#[tokio::test]
async fn a_bound_token_with_its_proof_is_accepted_poll_after_poll() {
    let s = Setup::new(DpopMode::Required).await;
    for _ in 0..3 {
        let ok = s.present("DPoP", &s.token, Some(&s.proof())).await.unwrap();
        assert_eq!(ok.scheme(), Scheme::Dpop);
        assert_eq!(ok.token().claims().sub, "connector-1");
        assert_eq!(
            ok.token().claims().cnf,
            Some(Confirmation::jkt(s.key.thumbprint()))
        );
        assert_eq!(ok.token().binding().jkt(), Some(s.key.thumbprint()));
        assert_eq!(ok.proof().unwrap().jkt(), s.key.thumbprint());
    }
    // The token itself was verified once, then served by the cache.
    let stats = s.fixture.cache.stats();
    assert_eq!((stats.misses, stats.hits), (1, 2));
    // The scheme is matched without regard to case; the URL as RFC 9449
    // §4.3 says (scheme and host case, default port, query).
    let proof = s.proof();
    s.present_to(
        "GET",
        "HTTPS://API.example.com:443/connectors/poll?wait=20",
        "dpop",
        &s.token,
        Some(&proof),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn no_proof_where_required_is_refused() {
    let s = Setup::new(DpopMode::Required).await;
    assert_eq!(
        s.present("DPoP", &s.token, None).await.unwrap_err(),
        RequestError::MissingProof
    );
    // An unbound token as bearer, where the issuer requires DPoP.
    let bearer = bound_token(&s.fixture, None).await;
    assert_eq!(
        s.present("Bearer", &bearer, None).await.unwrap_err(),
        RequestError::DpopRequired
    );
    // Where DPoP is only allowed, the same bearer token passes as bearer.
    let allowed = Setup::new(DpopMode::Allowed).await;
    let bearer = bound_token(&allowed.fixture, None).await;
    let ok = allowed.present("Bearer", &bearer, None).await.unwrap();
    assert_eq!(
        (ok.scheme(), ok.proof(), ok.token().binding()),
        (Scheme::Bearer, None, &TokenBinding::Unbound)
    );
}

#[tokio::test]
async fn a_proof_for_another_method_is_refused() {
    let s = Setup::new(DpopMode::Required).await;
    let error = proof_error(s.proof_refusal(&s.proof_for("POST", URL)).await);
    assert!(matches!(error, DpopError::WrongMethod { .. }), "{error:?}");
    // Methods are compared exactly.
    let error = proof_error(s.proof_refusal(&s.proof_for("get", URL)).await);
    assert!(matches!(error, DpopError::WrongMethod { .. }), "{error:?}");
}

#[tokio::test]
async fn a_proof_for_another_url_is_refused() {
    let s = Setup::new(DpopMode::Required).await;
    for other in [
        "https://api.example.com/connectors/other",
        "https://api.example.com/connectors/Poll",
        "https://api.example.com/connectors/poll/",
        "https://other.example.com/connectors/poll",
        "http://api.example.com/connectors/poll",
        "https://api.example.com:8443/connectors/poll",
        "not a url",
    ] {
        let error = proof_error(s.proof_refusal(&s.proof_for("GET", other)).await);
        assert!(matches!(error, DpopError::WrongUrl { .. }), "{other}: {error:?}");
    }
}

#[tokio::test]
async fn a_proof_issued_outside_the_window_is_refused() {
    let s = Setup::new(DpopMode::Required).await;
    let at = |iat: u64| {
        DpopProof::builder(&s.key, "GET", URL)
            .access_token(&s.token)
            .issued_at(iat)
            .sign()
            .unwrap()
            .into_string()
    };
    let error = proof_error(s.proof_refusal(&at(NOW - 61)).await);
    assert!(
        matches!(error, DpopError::TooOld { max_age: 60, .. }),
        "{error:?}"
    );
    let error = proof_error(s.proof_refusal(&at(NOW + 6)).await);
    assert!(
        matches!(error, DpopError::IssuedInFuture { skew: 5, .. }),
        "{error:?}"
    );
    // The edges of the window pass.
    s.present("DPoP", &s.token, Some(&at(NOW - 60))).await.unwrap();
    s.present("DPoP", &s.token, Some(&at(NOW + 5))).await.unwrap();
}

#[tokio::test]
async fn the_same_proof_twice_is_refused() {
    let s = Setup::new(DpopMode::Required).await;
    let proof = s.proof();
    s.present("DPoP", &s.token, Some(&proof)).await.unwrap();
    assert_eq!(proof_error(s.proof_refusal(&proof).await), DpopError::Replayed);
    // Still refused later in the window; a refused request never spends a
    // proof (here: one presented with the wrong method first).
    s.fixture.clock.advance(59);
    assert_eq!(proof_error(s.proof_refusal(&proof).await), DpopError::Replayed);
    let fresh = DpopProof::builder(&s.key, "GET", URL)
        .access_token(&s.token)
        .issued_at(NOW + 59)
        .sign()
        .unwrap()
        .into_string();
    let wrong_method = s
        .present_to("POST", URL, "DPoP", &s.token, Some(&fresh))
        .await
        .unwrap_err();
    assert!(matches!(proof_error(wrong_method), DpopError::WrongMethod { .. }));
    s.present("DPoP", &s.token, Some(&fresh)).await.unwrap();
}

#[tokio::test]
async fn a_proof_signed_by_another_key_than_cnf_jkt_is_refused() {
    let s = Setup::new(DpopMode::Required).await;
    let thief = DpopKey::generate().unwrap();
    let proof = DpopProof::builder(&thief, "GET", URL)
        .access_token(&s.token)
        .issued_at(NOW)
        .sign()
        .unwrap();
    assert_eq!(s.proof_refusal(proof.as_str()).await, RequestError::KeyMismatch);
    // The owner goes on polling.
    s.present("DPoP", &s.token, Some(&s.proof())).await.unwrap();
}

#[tokio::test]
async fn a_wrong_or_missing_ath_is_refused() {
    let s = Setup::new(DpopMode::Required).await;
    let other_token = bound_token(&s.fixture, Some(s.key.thumbprint())).await;
    let for_other = DpopProof::builder(&s.key, "GET", URL)
        .access_token(&other_token)
        .issued_at(NOW)
        .sign()
        .unwrap();
    assert_eq!(
        proof_error(s.proof_refusal(for_other.as_str()).await),
        DpopError::WrongAth
    );
    let without = DpopProof::builder(&s.key, "GET", URL)
        .issued_at(NOW)
        .sign()
        .unwrap();
    assert_eq!(
        proof_error(s.proof_refusal(without.as_str()).await),
        DpopError::MissingAth
    );
    let mut c = claims(&s.token);
    c["ath"] = json!(42);
    let error = proof_error(s.proof_refusal(&hand_proof(&s.key, &header(&s.key), &c)).await);
    assert!(
        matches!(error, DpopError::ClaimType { claim: "ath", .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_private_key_in_the_jwk_is_refused() {
    let s = Setup::new(DpopMode::Required).await;
    // The hand-made proof with a public jwk passes: only the member differs.
    s.present(
        "DPoP",
        &s.token,
        Some(&hand_proof(&s.key, &header(&s.key), &claims(&s.token))),
    )
    .await
    .unwrap();
    for member in ["d", "p", "q", "dp", "dq", "qi", "k"] {
        let mut h = header(&s.key);
        h["jwk"][member] = json!(b64([7u8; 32]));
        let mut c = claims(&s.token);
        c["jti"] = json!(format!("private-{member}"));
        let error = proof_error(s.proof_refusal(&hand_proof(&s.key, &h, &c)).await);
        assert_eq!(
            error,
            DpopError::Key(KeyError::PrivateMember(member_name(member)))
        );
        assert_eq!(error.reason(), "private_jwk");
    }
}

fn member_name(member: &str) -> &'static str {
    ["d", "p", "q", "dp", "dq", "qi", "oth", "k"]
        .into_iter()
        .find(|m| *m == member)
        .unwrap()
}

#[tokio::test]
async fn a_symmetric_key_in_the_jwk_is_refused() {
    let s = Setup::new(DpopMode::Required).await;
    let mut h = header(&s.key);
    h["jwk"] = json!({ "kty": "oct", "k": b64([1u8; 32]) });
    let error = proof_error(s.proof_refusal(&hand_proof(&s.key, &h, &claims(&s.token))).await);
    assert_eq!(error, DpopError::Key(KeyError::Symmetric));
    // And so is a proof with no jwk at all, or one that is not an object.
    for jwk in [None, Some(json!("key")), Some(json!([1]))] {
        let mut h = header(&s.key);
        match jwk {
            None => {
                h.as_object_mut().unwrap().remove("jwk");
            }
            Some(jwk) => h["jwk"] = jwk,
        }
        let error = proof_error(s.proof_refusal(&hand_proof(&s.key, &h, &claims(&s.token))).await);
        assert_eq!(error, DpopError::Malformed(JwsError::MissingJwk));
    }
}

#[tokio::test]
async fn a_jwk_that_does_not_match_the_signing_key_or_the_alg_is_refused() {
    let s = Setup::new(DpopMode::Required).await;
    // Another public key in the header than the one that signed.
    let other = DpopKey::generate().unwrap();
    let mut h = header(&s.key);
    h["jwk"] = Value::Object(other.public_jwk());
    let error = proof_error(s.proof_refusal(&hand_proof(&s.key, &h, &claims(&s.token))).await);
    assert!(matches!(error, DpopError::Signature(_)), "{error:?}");
    // A point off the curve (checked by the signature check itself).
    let mut h = header(&s.key);
    let mut y = unb64(h["jwk"]["y"].as_str().unwrap());
    y[31] ^= 1;
    h["jwk"]["y"] = json!(b64(y));
    let error = proof_error(s.proof_refusal(&hand_proof(&s.key, &h, &claims(&s.token))).await);
    assert!(matches!(error, DpopError::Signature(_)), "{error:?}");
    // A jwk whose own alg is another, and an alg the key does not fit.
    let mut h = header(&s.key);
    h["jwk"]["alg"] = json!("ES384");
    let error = proof_error(s.proof_refusal(&hand_proof(&s.key, &h, &claims(&s.token))).await);
    assert!(
        matches!(error, DpopError::Key(KeyError::AlgorithmMismatch { .. })),
        "{error:?}"
    );
    let mut h = header(&s.key);
    h["alg"] = json!("EdDSA");
    let error = proof_error(s.proof_refusal(&hand_proof(&s.key, &h, &claims(&s.token))).await);
    assert!(
        matches!(error, DpopError::Key(KeyError::AlgorithmMismatch { .. })),
        "{error:?}"
    );
}

#[tokio::test]
async fn alg_none_and_hs256_proofs_are_refused() {
    let s = Setup::new(DpopMode::Required).await;
    let c = claims(&s.token);
    // alg none: an unsigned proof.
    let mut h = header(&s.key);
    h["alg"] = json!("none");
    let unsigned = format!("{}.{}.", b64(h.to_string()), b64(c.to_string()));
    assert_eq!(
        proof_error(s.proof_refusal(&unsigned).await),
        DpopError::Malformed(JwsError::Algorithm(AlgorithmError::None))
    );
    // HS256 with the public key's bytes as the secret.
    let mut h = header(&s.key);
    h["alg"] = json!("HS256");
    let input = format!("{}.{}", b64(h.to_string()), b64(c.to_string()));
    let secret = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, h["jwk"].to_string().as_bytes());
    let mac = ring::hmac::sign(&secret, input.as_bytes());
    let hs256 = format!("{input}.{}", b64(mac.as_ref()));
    assert_eq!(
        proof_error(s.proof_refusal(&hs256).await),
        DpopError::Malformed(JwsError::Algorithm(AlgorithmError::Symmetric("HS256".into())))
    );
    // An allowed-list that leaves an algorithm out refuses it too.
    let es384_only = Setup::with(DpopMode::Required, |b| b.algorithms([Algorithm::ES384])).await;
    assert_eq!(
        proof_error(es384_only.proof_refusal(&es384_only.proof()).await),
        DpopError::AlgorithmNotAllowed(Algorithm::ES256)
    );
    let listed = DpopVerifier::builder()
        .algorithms([Algorithm::ES256, Algorithm::ES384, Algorithm::ES256])
        .build()
        .unwrap();
    assert_eq!(listed.algorithms(), [Algorithm::ES256, Algorithm::ES384]);
    assert!(DpopVerifier::builder().algorithms([]).build().is_err());
}

#[tokio::test]
async fn a_dpop_bound_token_presented_as_bearer_is_refused() {
    // Whatever the mode: the stolen-token case.
    for mode in [DpopMode::Allowed, DpopMode::Required] {
        let s = Setup::new(mode).await;
        assert_eq!(
            s.present("Bearer", &s.token, None).await.unwrap_err(),
            RequestError::BoundTokenAsBearer
        );
        // A proof alongside does not make a bearer presentation acceptable.
        assert_eq!(
            s.present("Bearer", &s.token, Some(&s.proof())).await.unwrap_err(),
            RequestError::BoundTokenAsBearer
        );
    }
}

#[tokio::test]
async fn a_bearer_token_presented_as_dpop_is_refused() {
    let s = Setup::new(DpopMode::Allowed).await;
    let bearer = bound_token(&s.fixture, None).await;
    let proof = DpopProof::builder(&s.key, "GET", URL)
        .access_token(&bearer)
        .issued_at(NOW)
        .sign()
        .unwrap();
    assert_eq!(
        s.present("DPoP", &bearer, Some(proof.as_str()))
            .await
            .unwrap_err(),
        RequestError::UnboundTokenAsDpop
    );
}

#[tokio::test]
async fn an_expired_nonce_is_refused_when_nonces_are_on() {
    let nonces = DpopNonces::new(&[9u8; 32], Duration::from_secs(60)).unwrap();
    let s = Setup::with(DpopMode::Required, |b| b.nonces(nonces.clone())).await;
    let with_nonce = |nonce: Option<&str>, iat: u64| {
        let mut builder = DpopProof::builder(&s.key, "GET", URL)
            .access_token(&s.token)
            .issued_at(iat);
        if let Some(nonce) = nonce {
            builder = builder.nonce(nonce);
        }
        builder.sign().unwrap().into_string()
    };
    // No nonce: use_dpop_nonce, and the server's nonce is on hand.
    let error = proof_error(s.proof_refusal(&with_nonce(None, NOW)).await);
    assert_eq!(error, DpopError::Nonce(NonceError::Missing));
    assert_eq!(error.error_code(), "use_dpop_nonce");
    let nonce = s.proofs.fresh_nonce().unwrap();
    s.present("DPoP", &s.token, Some(&with_nonce(Some(&nonce), NOW)))
        .await
        .unwrap();
    // Two steps later the same nonce has expired, though the proof is fresh.
    s.fixture.clock.advance(120);
    let later = NOW + 120;
    let error = proof_error(s.proof_refusal(&with_nonce(Some(&nonce), later)).await);
    assert_eq!(error, DpopError::Nonce(NonceError::Expired));
    assert_eq!(error.error_code(), "use_dpop_nonce");
    // A nonce of another server (another key) is refused too.
    let stranger = DpopNonces::new(&[8u8; 32], Duration::from_secs(60)).unwrap();
    let error = proof_error(
        s.proof_refusal(&with_nonce(Some(&stranger.issue(later)), later))
            .await,
    );
    assert_eq!(error, DpopError::Nonce(NonceError::Invalid));
    // A replica with the same key made this one: accepted.
    let replica = DpopNonces::new(&[9u8; 32], Duration::from_secs(60)).unwrap();
    s.present(
        "DPoP",
        &s.token,
        Some(&with_nonce(Some(&replica.issue(later)), later)),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_copied_token_without_its_key_is_worth_nothing() {
    // The stolen-token story end to end: the connector keeps polling while
    // whoever copied its token tries every way to use it.
    let s = Setup::new(DpopMode::Allowed).await;
    let thief = DpopKey::generate().unwrap();
    for round in 0..3 {
        s.present("DPoP", &s.token, Some(&s.proof())).await.unwrap();
        assert_eq!(
            s.present("Bearer", &s.token, None).await.unwrap_err(),
            RequestError::BoundTokenAsBearer
        );
        let theirs = DpopProof::builder(&thief, "GET", URL)
            .access_token(&s.token)
            .issued_at(NOW)
            .sign()
            .unwrap();
        assert_eq!(
            s.proof_refusal(theirs.as_str()).await,
            RequestError::KeyMismatch,
            "round {round}"
        );
        assert_eq!(
            s.present("DPoP", &s.token, None).await.unwrap_err(),
            RequestError::MissingProof
        );
    }
}

#[test]
fn the_rfc_7638_example_thumbprint() {
    // RFC 7638 §3.1.
    let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
    let key = PublicKey::rsa(&unb64(n), &unb64("AQAB")).unwrap();
    assert_eq!(key.thumbprint(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
}

/// RFC 9449 §4.1, Figure 2 (header and claims in Figure 4; the key's
/// thumbprint in §6.1, Figure 9).
const RFC_9449_PROOF: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg";

#[tokio::test]
async fn the_rfc_9449_example_proof_verifies_at_its_time() {
    let clock = Arc::new(oidc_core::clock::ManualWallClock::new(1_562_262_616));
    let proofs = DpopVerifier::builder().clock(clock.clone()).build().unwrap();
    let target = ProofTarget::new("POST", "https://server.example.com/token");
    let verified = proofs.verify(RFC_9449_PROOF, &target).await.unwrap();
    assert_eq!(verified.jkt(), "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");
    assert_eq!(verified.jti(), "-BwC3ESc6acc2lTc");
    assert_eq!(
        (verified.issued_at(), verified.algorithm()),
        (1_562_262_616, Algorithm::ES256)
    );
    // Its jti once only; and a minute and a bit later it is too old.
    assert_eq!(
        proofs.verify(RFC_9449_PROOF, &target).await.unwrap_err(),
        DpopError::Replayed
    );
    clock.advance(61);
    let fresh = DpopVerifier::builder().clock(clock).build().unwrap();
    assert!(matches!(
        fresh.verify(RFC_9449_PROOF, &target).await.unwrap_err(),
        DpopError::TooOld { .. }
    ));
}

#[test]
fn the_rfc_9449_example_ath() {
    // RFC 9449 §7.1: the access token of Figure 12 and its ath (Figure 13).
    let token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
    let ath = b64(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()));
    assert_eq!(ath, "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo");
}

#[tokio::test]
async fn proofs_go_through_the_strict_jws_layer() {
    let s = Setup::new(DpopMode::Required).await;
    let c = claims(&s.token);
    let signer = LocalSigner::from_pem(s.key.pem().as_str()).unwrap();
    let sign_raw = |header: &str, payload: &str| {
        jws::sign_with(&b64(header), payload.as_bytes(), |i| signer.sign_now(i)).unwrap()
    };
    let jwk = Value::Object(s.key.public_jwk()).to_string();
    // A duplicate member in the header (the second alg would win in serde_json).
    let duplicate = format!(r#"{{"typ":"dpop+jwt","alg":"ES256","alg":"none","jwk":{jwk}}}"#);
    let error = proof_error(s.proof_refusal(&sign_raw(&duplicate, &c.to_string())).await);
    assert!(
        matches!(error, DpopError::Malformed(JwsError::Json { .. })),
        "{error:?}"
    );
    // A duplicate claim.
    let payload = c.to_string().replacen('{', r#"{"htm":"POST","#, 1);
    let error = proof_error(
        s.proof_refusal(&sign_raw(&header(&s.key).to_string(), &payload))
            .await,
    );
    assert!(matches!(error, DpopError::Claims(_)), "{error:?}");
    // crit, jku, x5u, x5c, b64.
    for (member, value) in [
        ("crit", json!(["exp"])),
        ("jku", json!("https://evil.example/jwks")),
        ("x5u", json!("https://evil.example/cert")),
        ("x5c", json!(["MIIB"])),
        ("b64", json!(false)),
    ] {
        let mut h = header(&s.key);
        h[member] = value;
        let error = proof_error(s.proof_refusal(&hand_proof(&s.key, &h, &c)).await);
        assert!(
            matches!(error, DpopError::Malformed(JwsError::ForbiddenHeader(m)) if m == member),
            "{member}: {error:?}"
        );
    }
    // Oversized: refused before decoding (8 KiB by default).
    let mut big = c.clone();
    big["pad"] = json!("x".repeat(8 * 1024));
    let error = proof_error(s.proof_refusal(&hand_proof(&s.key, &header(&s.key), &big)).await);
    assert!(
        matches!(error, DpopError::Malformed(JwsError::TooLarge { max: 8192, .. })),
        "{error:?}"
    );
    // Lax base64url: padding, the standard alphabet, whitespace.
    let proof = s.proof();
    let [h, p, sig] = crate::helpers::parts(&proof);
    for lax in [
        format!("{h}=.{p}.{sig}"),
        format!("{h}.{p}.{}", sig.replace('-', "+").replace('_', "/")),
        format!("{h}.{p} .{sig}"),
    ] {
        let error = proof_error(s.proof_refusal(&lax).await);
        assert!(matches!(error, DpopError::Malformed(_)), "{lax}: {error:?}");
    }
    // Wrong typ: an access token's, none, or JWT.
    for typ in [Some("at+jwt"), None, Some("JWT")] {
        let mut h = header(&s.key);
        match typ {
            Some(typ) => h["typ"] = json!(typ),
            None => {
                h.as_object_mut().unwrap().remove("typ");
            }
        }
        let error = proof_error(s.proof_refusal(&hand_proof(&s.key, &h, &c)).await);
        assert!(matches!(error, DpopError::WrongType(_)), "{typ:?}: {error:?}");
    }
    // Missing, empty or overlong jti; missing htm, htu, iat; a non-integer iat.
    for (edit, reason) in [
        (json!({ "jti": null }), "malformed_claims"),
        (json!({ "jti": "" }), "malformed_claims"),
        (json!({ "jti": "j".repeat(65) }), "malformed_claims"),
        (json!({ "iat": 1.5 }), "malformed_claims"),
        (json!({ "iat": "now" }), "malformed_claims"),
    ] {
        let mut claims = c.clone();
        for (k, v) in edit.as_object().unwrap() {
            claims[k] = v.clone();
        }
        let error = proof_error(
            s.proof_refusal(&hand_proof(&s.key, &header(&s.key), &claims))
                .await,
        );
        assert_eq!(error.reason(), reason, "{edit}: {error:?}");
    }
    for missing in ["jti", "htm", "htu", "iat"] {
        let mut claims = c.clone();
        claims.as_object_mut().unwrap().remove(missing);
        let error = proof_error(
            s.proof_refusal(&hand_proof(&s.key, &header(&s.key), &claims))
                .await,
        );
        assert_eq!(error, DpopError::MissingClaim(missing_name(missing)));
    }
    // The regular decoder still refuses a header jwk.
    assert_eq!(
        jws::UnverifiedJws::decode(&proof, 8192).unwrap_err(),
        JwsError::ForbiddenHeader("jwk")
    );
}

fn missing_name(claim: &str) -> &'static str {
    ["jti", "htm", "htu", "iat"]
        .into_iter()
        .find(|c| *c == claim)
        .unwrap()
}

#[tokio::test]
async fn keys_load_from_pem_and_prove_with_every_generated_algorithm() {
    for alg in [Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA] {
        let key = DpopKey::generate_with(alg).unwrap();
        let again = DpopKey::from_pem(key.pem().as_str()).unwrap();
        assert_eq!((again.thumbprint(), again.algorithm()), (key.thumbprint(), alg));
        assert!(!format!("{key:?}").contains("PRIVATE"), "{key:?}");
        let proofs = DpopVerifier::builder().build().unwrap();
        let proof = DpopProof::builder(&again, "POST", "https://tokens.example.com/token?x=1")
            .sign()
            .unwrap();
        let verified = proofs
            .verify(
                proof.as_str(),
                &ProofTarget::new("POST", "https://tokens.example.com/token"),
            )
            .await
            .unwrap();
        assert_eq!(verified.jkt(), key.thumbprint());
        assert_eq!(verified.jti(), proof.jti());
        // 128 random bits.
        assert_eq!(unb64(proof.jti()).len(), 16);
    }
    // RSA from a PEM file (ring generates none).
    let rsa = DpopKey::from_pem(&crate::helpers::key_pem("rsa2048")).unwrap();
    assert_eq!(rsa.algorithm(), Algorithm::RS256);
    let proofs = DpopVerifier::builder().build().unwrap();
    let proof = DpopProof::builder(&rsa, "GET", URL).sign().unwrap();
    proofs
        .verify(proof.as_str(), &ProofTarget::new("GET", URL))
        .await
        .unwrap();
    assert!(DpopKey::from_pem("not a key").is_err());
}

#[tokio::test]
async fn an_issued_cnf_is_read_whatever_the_claims_type() {
    let s = Setup::new(DpopMode::Allowed).await;
    // As serde_json::Value: the binding is still known, so the bearer path
    // still refuses it.
    let verified = s.verifier.verify::<Value>(&s.token).await.unwrap();
    assert_eq!(verified.claims()["cnf"]["jkt"], s.key.thumbprint());
    assert_eq!(verified.binding().jkt(), Some(s.key.thumbprint()));
    // A cnf that is not an object, or whose jkt is not a non-empty string,
    // is a malformed token.
    for cnf in [json!("x"), json!({ "jkt": 1 }), json!({ "jkt": "" })] {
        let token = s.fixture.token_claims(|c| c["cnf"] = cnf.clone());
        let error = s.fixture.refusal(&token).await;
        assert!(
            matches!(error, oidc_core::VerifyError::ClaimType { claim: "cnf", .. }),
            "{cnf}: {error:?}"
        );
    }
    // A cnf of another method (mutual TLS) is bound, and unusable here.
    let token = s
        .fixture
        .token_claims(|c| c["cnf"] = json!({ "x5t#S256": "bN7qLJ6KZWv-ggUZlr8V8oZc3IcVjIcjOi8Qq8E6J0A" }));
    assert_eq!(
        s.present("Bearer", &token, None).await.unwrap_err(),
        RequestError::BoundTokenAsBearer
    );
    assert_eq!(
        s.present("DPoP", &token, Some(&s.proof())).await.unwrap_err(),
        RequestError::UnsupportedBinding
    );
    // An issuer refuses a cnf that names no key.
    let issuer = s.fixture.issuer(Lifetime::default());
    let empty = Confirmation {
        jkt: None,
        other: Default::default(),
    };
    assert!(issuer
        .issue_with_confirmation(&TokenRequest::new("c", AUDIENCE), Some(&empty))
        .await
        .is_err());
}

#[test]
fn every_one_character_change_to_a_proof_is_refused() {
    let clock = Arc::new(oidc_core::clock::ManualWallClock::new(NOW));
    let proofs = DpopVerifier::builder().clock(clock).build().unwrap();
    let key = DpopKey::generate().unwrap();
    let proof = DpopProof::builder(&key, "GET", URL)
        .access_token("token")
        .issued_at(NOW)
        .sign()
        .unwrap()
        .into_string();
    let target = ProofTarget::new("GET", URL).with_access_token("token");
    let checked = proofs.check(&proof, &target).unwrap();
    assert_eq!(checked.jkt(), key.thumbprint());
    let bytes = proof.as_bytes();
    for i in 0..bytes.len() {
        for replacement in [b'A', b'-', b'.', b'=', b'\xc3'] {
            if bytes[i] == replacement {
                continue;
            }
            let mut changed = bytes.to_vec();
            changed[i] = replacement;
            let changed = String::from_utf8_lossy(&changed);
            assert!(
                proofs.check(&changed, &target).is_err(),
                "byte {i} as {replacement}"
            );
        }
    }
}
