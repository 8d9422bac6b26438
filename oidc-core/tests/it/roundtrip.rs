//! Issue → verify for every algorithm, and the time checks at exactly the
//! leeway edge, one second on either side.

use std::sync::Arc;
use std::time::Duration;

use oidc_core::claims::Attributes;
use oidc_core::clock::ManualWallClock;
use oidc_core::{
    AccessTokenClaims, Algorithm, Audience, IssuedToken, Lifetime, Policy, TokenRequest, VerifyError,
};
use serde_json::{json, Value};

use crate::helpers::*;

fn request() -> TokenRequest {
    let mut attributes = Attributes::default();
    attributes
        .insert("org_id", json!("org-42"))
        .expect("not reserved");
    attributes
        .insert("account_id", json!("123456789012"))
        .expect("not reserved");
    TokenRequest {
        client_id: "client-7".into(),
        scope: Some("poll report".into()),
        attributes,
        ..TokenRequest::new("connector-1", AUDIENCE)
    }
}

async fn issue(f: &Fixture, request: &TokenRequest) -> IssuedToken {
    f.issuer(Lifetime::default()).issue(request).await.expect("issue")
}

#[tokio::test]
async fn every_algorithm_round_trips() {
    for alg in Algorithm::ALL {
        let f = Fixture::new(alg);
        let issued = issue(&f, &request()).await;
        assert_eq!((issued.alg, issued.kid.as_str()), (alg, f.kid()));
        assert_eq!(
            (issued.issued_at, issued.expires_at, issued.expires_in()),
            (NOW, NOW + 300, 300)
        );

        // The header is exactly alg, typ and kid.
        let header: Value = serde_json::from_slice(&unb64(parts(issued.token.as_str())[0])).expect("json");
        assert_eq!(
            header,
            json!({"alg": alg.name(), "typ": "at+jwt", "kid": f.kid()})
        );

        let verified = f
            .verify(issued.token.as_str())
            .await
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!((verified.kid(), verified.algorithm()), (f.kid(), alg));
        let claims = verified.into_claims();
        let mut attributes = serde_json::Map::new();
        attributes.insert("org_id".into(), json!("org-42"));
        attributes.insert("account_id".into(), json!("123456789012"));
        assert_eq!(
            claims,
            AccessTokenClaims {
                iss: ISSUER.into(),
                sub: "connector-1".into(),
                aud: Audience::One(AUDIENCE.into()),
                client_id: "client-7".into(),
                iat: NOW,
                nbf: Some(NOW),
                exp: NOW + 300,
                jti: issued.jti.clone(),
                scope: Some("poll report".into()),
                cnf: None,
                attributes,
            }
        );
        // jti: 128 random bits, base64url, fresh every time.
        assert_eq!(unb64(&issued.jti).len(), 16);
        assert_ne!(issue(&f, &request()).await.jti, issued.jti);
    }
}

#[tokio::test]
async fn rsa_from_pem_signs_both_rsa_algorithms_with_one_kid() {
    let rs = Fixture::new(Algorithm::RS256);
    let ps = Fixture::new(Algorithm::PS256);
    assert_eq!(
        rs.kid(),
        ps.kid(),
        "kid is the key's thumbprint, not the algorithm's"
    );
    for f in [rs, ps] {
        let token = issue(&f, &request()).await.token;
        assert_eq!(parts(token.as_str())[2].len(), 342, "2048-bit signature");
        f.verify(token.as_str()).await.expect("verifies");
    }
}

#[tokio::test]
async fn minimal_request_round_trips() {
    // No scope, no attributes: the claims carry neither.
    let f = Fixture::es256();
    let issued = issue(&f, &TokenRequest::new("connector-2", AUDIENCE)).await;
    let payload: Value = serde_json::from_slice(&unb64(parts(issued.token.as_str())[1])).expect("json");
    let mut names: Vec<_> = payload.as_object().expect("object").keys().cloned().collect();
    names.sort();
    assert_eq!(
        names,
        ["aud", "client_id", "exp", "iat", "iss", "jti", "nbf", "sub"]
    );
    let claims = f
        .verify(issued.token.as_str())
        .await
        .expect("verifies")
        .into_claims();
    assert_eq!((claims.scope, claims.attributes.len()), (None, 0));
}

/// A verifier on its own clock, with `leeway`.
fn verifier_at(f: &Fixture, leeway: u64) -> (oidc_core::Verifier<oidc_core::JwkSet>, Arc<ManualWallClock>) {
    let clock = Arc::new(ManualWallClock::new(NOW));
    let policy = Policy::builder(ISSUER, [AUDIENCE])
        .leeway(Duration::from_secs(leeway))
        .build()
        .expect("policy");
    (f.verifier_with(policy).with_clock(clock.clone()), clock)
}

const LEEWAYS: [u64; 4] = [0, 1, 30, 300];

#[tokio::test]
async fn exp_boundary_at_the_leeway_edge() {
    for alg in Algorithm::ALL {
        let f = Fixture::new(alg);
        let token = issue(&f, &request()).await.token;
        let exp = NOW + 300;
        for leeway in LEEWAYS {
            let (verifier, clock) = verifier_at(&f, leeway);
            // Valid while now < exp + leeway.
            clock.set(exp + leeway - 1);
            verifier
                .verify::<AccessTokenClaims>(token.as_str())
                .await
                .unwrap_or_else(|e| panic!("{alg}, leeway {leeway}, last valid second: {e}"));
            clock.set(exp + leeway);
            assert_eq!(
                verifier
                    .verify::<AccessTokenClaims>(token.as_str())
                    .await
                    .unwrap_err(),
                VerifyError::Expired {
                    exp,
                    now: exp + leeway,
                    leeway
                },
                "{alg}, leeway {leeway}"
            );
        }
    }
}

#[tokio::test]
async fn nbf_boundary_at_the_leeway_edge() {
    for alg in Algorithm::ALL {
        let f = Fixture::new(alg);
        // Issued at NOW: nbf = iat = NOW. The verifier's clock runs behind.
        let token = issue(&f, &request()).await.token;
        for leeway in LEEWAYS {
            let (verifier, clock) = verifier_at(&f, leeway);
            clock.set(NOW - leeway);
            verifier
                .verify::<AccessTokenClaims>(token.as_str())
                .await
                .unwrap_or_else(|e| panic!("{alg}, leeway {leeway}, first valid second: {e}"));
            clock.set(NOW - leeway - 1);
            assert_eq!(
                verifier
                    .verify::<AccessTokenClaims>(token.as_str())
                    .await
                    .unwrap_err(),
                VerifyError::NotYetValid {
                    nbf: NOW,
                    now: NOW - leeway - 1,
                    leeway
                },
                "{alg}, leeway {leeway}"
            );
        }
    }
}

#[tokio::test]
async fn iat_boundary_at_the_leeway_edge() {
    // Without nbf, iat alone says when the token began.
    let f = Fixture::es256();
    let token = f.token_claims(|c| remove(c, "nbf"));
    for leeway in LEEWAYS {
        let (verifier, clock) = verifier_at(&f, leeway);
        clock.set(NOW - leeway);
        verifier
            .verify::<AccessTokenClaims>(&token)
            .await
            .unwrap_or_else(|e| panic!("leeway {leeway}: {e}"));
        clock.set(NOW - leeway - 1);
        assert_eq!(
            verifier.verify::<AccessTokenClaims>(&token).await.unwrap_err(),
            VerifyError::IssuedInFuture {
                iat: NOW,
                now: NOW - leeway - 1,
                leeway
            }
        );
    }
}

#[tokio::test]
async fn default_leeway_is_30_seconds() {
    let f = Fixture::es256();
    let token = issue(&f, &request()).await.token;
    f.clock.set(NOW + 300 + 29);
    f.verify(token.as_str()).await.expect("within the default leeway");
    f.clock.set(NOW + 300 + 30);
    assert!(matches!(
        f.verify(token.as_str()).await.unwrap_err(),
        VerifyError::Expired { leeway: 30, .. }
    ));
}

#[tokio::test]
async fn lifetime_boundary_between_issuer_and_verifier() {
    // An issuer allowed longer tokens than the verifier accepts.
    let f = Fixture::es256();
    let issuer =
        f.issuer(Lifetime::new(Duration::from_secs(300), Duration::from_secs(3600)).expect("lifetime"));
    let policy = Policy::builder(ISSUER, [AUDIENCE])
        .max_lifetime(Duration::from_secs(600))
        .build()
        .expect("policy");
    let verifier = f.verifier_with(policy);
    let with_ttl = |secs| TokenRequest {
        ttl: Some(Duration::from_secs(secs)),
        ..request()
    };
    let at_max = issuer.issue(&with_ttl(600)).await.expect("issue").token;
    verifier
        .verify::<AccessTokenClaims>(at_max.as_str())
        .await
        .expect("exactly the maximum");
    let over = issuer.issue(&with_ttl(601)).await.expect("issue").token;
    assert_eq!(
        verifier
            .verify::<AccessTokenClaims>(over.as_str())
            .await
            .unwrap_err(),
        VerifyError::LifetimeTooLong {
            lifetime: 601,
            max: 600
        }
    );
    // The issuer's own cap holds whatever is asked for.
    let capped = issuer.issue(&with_ttl(86_400)).await.expect("issue");
    assert_eq!(capped.expires_in(), 3600);
}
