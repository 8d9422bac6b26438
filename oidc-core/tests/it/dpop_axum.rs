//! DPoP through the axum extractors: the answers a client sees (status,
//! `WWW-Authenticate`, `DPoP-Nonce`), a single verifier and a registry of
//! issuers with a `dpop` mode per entry, and the bearer-only extractors
//! refusing DPoP-bound tokens.

#![cfg(all(feature = "axum", feature = "remote"))]
// Test fixtures outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::FromRef;
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use oidc_core::axum::{
    DpopResource, DpopToken, DpopTrustedToken, SharedDpop, SharedVerifier, TrustedToken, VerifiedToken,
    DPOP_NONCE_HEADER,
};
use oidc_core::claims::Confirmation;
use oidc_core::dpop::{DpopKey, DpopMode, DpopNonces, DpopProof, DpopVerifier};
use oidc_core::verify::trust::{IssuerEntry, TrustedIssuers};
use oidc_core::{AccessTokenClaims, Lifetime, Policy, TokenRequest};
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::helpers::{Fixture, AUDIENCE, ISSUER, NOW};

const ORIGIN: &str = "https://api.example.com";
const PATH: &str = "/poll";

#[derive(Clone)]
struct Single {
    verifier: SharedVerifier,
    dpop: SharedDpop,
}

impl FromRef<Single> for SharedVerifier {
    fn from_ref(state: &Single) -> Self {
        state.verifier.clone()
    }
}

impl FromRef<Single> for SharedDpop {
    fn from_ref(state: &Single) -> Self {
        state.dpop.clone()
    }
}

#[derive(Clone)]
struct Many {
    trusted: TrustedIssuers,
    dpop: SharedDpop,
}

impl FromRef<Many> for TrustedIssuers {
    fn from_ref(state: &Many) -> Self {
        state.trusted.clone()
    }
}

impl FromRef<Many> for SharedDpop {
    fn from_ref(state: &Many) -> Self {
        state.dpop.clone()
    }
}

async fn poll(DpopToken(request): DpopToken<AccessTokenClaims>) -> Json<Value> {
    let proof = request.proof().map(|p| p.jkt().to_owned());
    Json(json!({ "sub": request.token().claims().sub, "jkt": proof }))
}

async fn poll_many(DpopTrustedToken(request): DpopTrustedToken<AccessTokenClaims>) -> Json<Value> {
    Json(json!({ "issuer": request.token().issuer_name() }))
}

async fn bearer_only(VerifiedToken(token): VerifiedToken<AccessTokenClaims>) -> Json<Value> {
    Json(json!({ "sub": token.claims().sub }))
}

async fn bearer_only_many(TrustedToken(token): TrustedToken<AccessTokenClaims>) -> Json<Value> {
    Json(json!({ "issuer": token.issuer_name() }))
}

struct Reply {
    status: StatusCode,
    challenges: Vec<String>,
    nonce: Option<String>,
    body: Vec<u8>,
}

async fn call(app: &Router, path: &str, authorization: Option<&str>, proof: Option<&str>) -> Reply {
    let mut request = Request::builder().uri(path);
    if let Some(value) = authorization {
        request = request.header(AUTHORIZATION, value);
    }
    if let Some(proof) = proof {
        request = request.header("DPoP", proof);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status,
        challenges: parts
            .headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect(),
        nonce: parts
            .headers
            .get(DPOP_NONCE_HEADER)
            .map(|v| v.to_str().unwrap().to_owned()),
        body: axum::body::to_bytes(body, 1 << 16).await.unwrap().to_vec(),
    }
}

async fn issue(fixture: &Fixture, jkt: Option<&str>) -> String {
    let cnf = jkt.map(Confirmation::jkt);
    fixture
        .issuer(Lifetime::default())
        .issue_with_confirmation(&TokenRequest::new("connector-1", AUDIENCE), cnf.as_ref())
        .await
        .unwrap()
        .token
        .into_string()
}

fn proof(key: &DpopKey, token: &str, nonce: Option<&str>) -> String {
    let url = format!("{ORIGIN}{PATH}");
    let mut builder = DpopProof::builder(key, "GET", &url)
        .access_token(token)
        .issued_at(NOW);
    if let Some(nonce) = nonce {
        builder = builder.nonce(nonce);
    }
    builder.sign().unwrap().into_string()
}

fn resource(fixture: &Fixture, nonces: Option<DpopNonces>) -> SharedDpop {
    let mut proofs = DpopVerifier::builder().clock(fixture.clock.clone());
    if let Some(nonces) = nonces {
        proofs = proofs.nonces(nonces);
    }
    Arc::new(DpopResource::new(ORIGIN, proofs.build().unwrap()).unwrap())
}

fn single(fixture: &Fixture, mode: DpopMode, nonces: Option<DpopNonces>) -> Router {
    let policy = Policy::builder(ISSUER, [AUDIENCE]).dpop(mode).build().unwrap();
    // As `shared_verifier_with_cache` makes it, on the fixture's clock.
    let keys: Arc<dyn oidc_core::KeySource> = Arc::new(fixture.jwks.clone());
    let verifier: SharedVerifier = Arc::new(
        oidc_core::Verifier::new(policy, keys)
            .with_cache(fixture.cache.clone())
            .with_clock(fixture.clock.clone()),
    );
    Router::new()
        .route(PATH, get(poll))
        .route("/bearer", get(bearer_only))
        .with_state(Single {
            verifier,
            dpop: resource(fixture, nonces),
        })
}

const ALGS: &str = "algs=\"ES256 EdDSA RS256 PS256 ES384\"";

#[tokio::test]
async fn the_dpop_extractor_answers_as_rfc_9449_says() {
    let f = Fixture::es256();
    let app = single(&f, DpopMode::Required, None);
    let key = DpopKey::generate().unwrap();
    let token = issue(&f, Some(key.thumbprint())).await;
    let dpop = format!("DPoP {token}");

    let ok = call(&app, PATH, Some(&dpop), Some(&proof(&key, &token, None))).await;
    assert_eq!(ok.status, StatusCode::OK);
    let body: Value = serde_json::from_slice(&ok.body).unwrap();
    assert_eq!(body, json!({ "sub": "connector-1", "jkt": key.thumbprint() }));

    // Nothing presented: both challenges, no error code.
    let none = call(&app, PATH, None, None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.challenges, [format!("DPoP {ALGS}"), "Bearer".to_owned()]);
    assert!(none.body.is_empty());

    // A bad proof (here: replayed), a missing proof, another key's proof.
    let used = proof(&key, &token, None);
    assert_eq!(
        call(&app, PATH, Some(&dpop), Some(&used)).await.status,
        StatusCode::OK
    );
    let thief = DpopKey::generate().unwrap();
    for (proof, what) in [
        (Some(used.clone()), "replayed"),
        (None, "missing"),
        (Some(proof(&thief, &token, None)), "another key"),
        (Some("not.a.proof".to_owned()), "garbage"),
    ] {
        let reply = call(&app, PATH, Some(&dpop), proof.as_deref()).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(
            reply.challenges,
            [format!("DPoP error=\"invalid_dpop_proof\", {ALGS}")],
            "{what}"
        );
        assert_eq!(reply.nonce, None, "{what}");
        assert!(reply.body.is_empty(), "{what}");
    }

    // The bound token as Bearer: invalid_token in the Bearer scheme.
    let stolen = call(&app, PATH, Some(&format!("Bearer {token}")), None).await;
    assert_eq!(stolen.status, StatusCode::UNAUTHORIZED);
    assert_eq!(stolen.challenges, ["Bearer error=\"invalid_token\""]);
    // A bearer token where DPoP is required.
    let bearer = issue(&f, None).await;
    let refused = call(&app, PATH, Some(&format!("Bearer {bearer}")), None).await;
    assert_eq!(
        refused.challenges,
        [format!("DPoP error=\"invalid_token\", {ALGS}")]
    );
    // A refused token in the DPoP scheme.
    let expired = f.token_claims(|c| c["exp"] = json!(NOW - 100));
    let reply = call(&app, PATH, Some(&format!("DPoP {expired}")), Some(&used)).await;
    assert_eq!(
        reply.challenges,
        [format!("DPoP error=\"invalid_token\", {ALGS}")]
    );
    // Two DPoP headers.
    let request = Request::builder()
        .uri(PATH)
        .header(AUTHORIZATION, &dpop)
        .header("DPoP", proof(&key, &token, None))
        .header("DPoP", proof(&key, &token, None))
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()[WWW_AUTHENTICATE],
        format!("DPoP error=\"invalid_dpop_proof\", {ALGS}")
    );
}

#[tokio::test]
async fn with_nonces_the_extractor_asks_for_one_and_sends_it() {
    let f = Fixture::es256();
    let nonces = DpopNonces::new(&[3u8; 32], Duration::from_secs(60)).unwrap();
    let app = single(&f, DpopMode::Required, Some(nonces));
    let key = DpopKey::generate().unwrap();
    let token = issue(&f, Some(key.thumbprint())).await;
    let dpop = format!("DPoP {token}");

    let first = call(&app, PATH, Some(&dpop), Some(&proof(&key, &token, None))).await;
    assert_eq!(first.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        first.challenges,
        [format!("DPoP error=\"use_dpop_nonce\", {ALGS}")]
    );
    let nonce = first.nonce.expect("a DPoP-Nonce header");
    let retry = call(&app, PATH, Some(&dpop), Some(&proof(&key, &token, Some(&nonce)))).await;
    assert_eq!(retry.status, StatusCode::OK);

    // Two steps on, the nonce has expired: asked again, with a new one.
    f.clock.advance(120);
    let late = DpopProof::builder(&key, "GET", &format!("{ORIGIN}{PATH}"))
        .access_token(&token)
        .issued_at(NOW + 120)
        .nonce(&nonce)
        .sign()
        .unwrap();
    let reply = call(&app, PATH, Some(&dpop), Some(late.as_str())).await;
    assert_eq!(
        reply.challenges,
        [format!("DPoP error=\"use_dpop_nonce\", {ALGS}")]
    );
    assert_ne!(reply.nonce.as_deref(), Some(nonce.as_str()));
    assert!(reply.nonce.is_some());
}

#[tokio::test]
async fn the_bearer_extractors_refuse_dpop_bound_tokens() {
    let f = Fixture::es256();
    let app = single(&f, DpopMode::Allowed, None);
    let key = DpopKey::generate().unwrap();
    let bound = issue(&f, Some(key.thumbprint())).await;
    let bearer = issue(&f, None).await;
    let ok = call(&app, "/bearer", Some(&format!("Bearer {bearer}")), None).await;
    assert_eq!(ok.status, StatusCode::OK);
    let stolen = call(&app, "/bearer", Some(&format!("Bearer {bound}")), None).await;
    assert_eq!(stolen.status, StatusCode::UNAUTHORIZED);
    assert_eq!(stolen.challenges, ["Bearer error=\"invalid_token\""]);
    // Under a policy that requires DPoP, even an unbound token is refused
    // by the bearer-only extractor.
    let required = single(&f, DpopMode::Required, None);
    let refused = call(&required, "/bearer", Some(&format!("Bearer {bearer}")), None).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn each_trusted_issuer_has_its_own_dpop_mode() {
    let strict = Fixture::es256();
    let lax = Fixture::es256();
    let entry = |name: &str, f: &Fixture, mode| {
        IssuerEntry::builder(name, ISSUER.replace("tokens", name), [AUDIENCE])
            .pinned_jwks(f.jwks.clone())
            .dpop(mode)
            .build()
            .unwrap()
    };
    let trusted = TrustedIssuers::builder()
        .issuer(entry("strict", &strict, DpopMode::Required))
        .issuer(entry("lax", &lax, DpopMode::Allowed))
        .build()
        .unwrap();
    let app = Router::new()
        .route(PATH, get(poll_many))
        .route("/bearer", get(bearer_only_many))
        .with_state(Many {
            trusted,
            dpop: Arc::new(DpopResource::new(ORIGIN, DpopVerifier::builder().build().unwrap()).unwrap()),
        });
    // Tokens at the real time (the registry reads the system clock).
    let now = oidc_core::clock::WallClock::now(&oidc_core::clock::SystemClock);
    let token = |f: &Fixture, name: &str, cnf: Option<&str>| {
        f.token_claims(|c| {
            c["iss"] = json!(ISSUER.replace("tokens", name));
            c["iat"] = json!(now);
            c["nbf"] = json!(now);
            c["exp"] = json!(now + 300);
            if let Some(jkt) = cnf {
                c["cnf"] = json!({ "jkt": jkt });
            }
        })
    };
    let key = DpopKey::generate().unwrap();
    let fresh = |token: &str| {
        DpopProof::builder(&key, "GET", &format!("{ORIGIN}{PATH}"))
            .access_token(token)
            .sign()
            .unwrap()
            .into_string()
    };

    // The lax issuer's bearer token passes as bearer; the strict one's does not.
    let lax_bearer = token(&lax, "lax", None);
    let reply = call(&app, PATH, Some(&format!("Bearer {lax_bearer}")), None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let strict_bearer = token(&strict, "strict", None);
    let reply = call(&app, PATH, Some(&format!("Bearer {strict_bearer}")), None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let reply = call(&app, "/bearer", Some(&format!("Bearer {strict_bearer}")), None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    // Both issuers' bound tokens pass with proofs, and never as bearer.
    for (f, name) in [(&strict, "strict"), (&lax, "lax")] {
        let bound = token(f, name, Some(key.thumbprint()));
        let reply = call(&app, PATH, Some(&format!("DPoP {bound}")), Some(&fresh(&bound))).await;
        assert_eq!(reply.status, StatusCode::OK, "{name}");
        let body: Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(body["issuer"], name);
        let reply = call(&app, "/bearer", Some(&format!("Bearer {bound}")), None).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{name}");
    }
}

#[test]
fn a_resource_origin_is_an_origin() {
    let proofs = || DpopVerifier::builder().build().unwrap();
    for good in [
        "https://api.example.com",
        "https://API.example.com:443/",
        "http://127.0.0.1:8080",
    ] {
        DpopResource::new(good, proofs()).unwrap();
    }
    assert_eq!(
        DpopResource::new("https://API.example.com:443/", proofs())
            .unwrap()
            .origin(),
        "https://api.example.com"
    );
    for bad in [
        "https://api.example.com/v1",
        "https://api.example.com/v1/",
        "https://a.example/?x",
        "api.example.com",
    ] {
        assert!(DpopResource::new(bad, proofs()).is_err(), "{bad}");
    }
}
