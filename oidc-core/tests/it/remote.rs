//! The remote key source (`remote` feature) and the axum extractor (`axum`
//! feature), against a local JWKS and discovery server that counts requests
//! and can be told to misbehave. Time is a manual monotonic clock: lifetimes,
//! cooldowns and stale limits are stepped over, never slept through.
//!
//! Run with `cargo test -p oidc-core --features remote,axum --test it remote`.

#![cfg(all(feature = "remote", feature = "axum"))]
// Test code: a failed unwrap is a failed test (clippy's allow-unwrap-in-tests
// covers #[test] functions only, not the fixtures they share).
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, ETAG, IF_NONE_MATCH, LOCATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use tower::ServiceExt;

use oidc_core::axum::{shared_verifier, VerifiedToken};
use oidc_core::base64url;
use oidc_core::clock::{ManualMonotonicClock, ManualWallClock, SystemClock, WallClock};
use oidc_core::jwks::JwkSet;
use oidc_core::keys::{KeyError, LocalSigner, Signer};
use oidc_core::verify::remote::{RemoteJwksBuilder, RemoteJwksError, DEFAULT_MAX_BODY};
use oidc_core::verify::RemoteJwks;
use oidc_core::{
    AccessTokenClaims, Algorithm, Issuer, KeyLookupError, KeySet, KeySource, Lifetime, Policy, TokenRequest,
    Verifier, VerifyError,
};

const AUDIENCE: &str = "https://api.example.com";
const SECS: fn(u64) -> Duration = Duration::from_secs;

// ---------------------------------------------------------------------------
// The test server
// ---------------------------------------------------------------------------

/// What `/jwks.json` answers.
#[derive(Clone)]
struct Behaviour {
    status: StatusCode,
    body: Bytes,
    headers: Vec<(&'static str, String)>,
    /// Answer `304` to a matching `If-None-Match`, and send this `ETag`.
    etag: Option<String>,
    /// Sleep before answering.
    delay: Duration,
    /// Send the body in chunks without `Content-Length`.
    chunked: bool,
    /// Answer `302` to this location instead.
    redirect: Option<String>,
}

struct ServerState {
    jwks_hits: AtomicUsize,
    not_modified: AtomicUsize,
    target_hits: AtomicUsize,
    discovery_hits: AtomicUsize,
    behaviour: Mutex<Behaviour>,
    discovery: Mutex<Value>,
    if_none_match: Mutex<Option<String>>,
}

struct JwksServer {
    base: String,
    state: Arc<ServerState>,
}

impl JwksServer {
    /// Serves `jwks` with `Cache-Control: max-age=300` on 127.0.0.1.
    async fn start(body: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(ServerState {
            jwks_hits: AtomicUsize::new(0),
            not_modified: AtomicUsize::new(0),
            target_hits: AtomicUsize::new(0),
            discovery_hits: AtomicUsize::new(0),
            behaviour: Mutex::new(Behaviour {
                status: StatusCode::OK,
                body: Bytes::from(body),
                headers: vec![("cache-control", "public, max-age=300".into())],
                etag: None,
                delay: Duration::ZERO,
                chunked: false,
                redirect: None,
            }),
            discovery: Mutex::new(json!({
                "issuer": base,
                "jwks_uri": format!("{base}/jwks.json"),
                "token_endpoint": format!("{base}/token"),
            })),
            if_none_match: Mutex::new(None),
        });
        let app = Router::new()
            .route("/jwks.json", get(serve_jwks))
            .route("/target.json", get(target))
            .route("/.well-known/openid-configuration", get(discovery))
            .with_state(Arc::clone(&state));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, state }
    }

    fn jwks_url(&self) -> String {
        format!("{}/jwks.json", self.base)
    }

    fn hits(&self) -> usize {
        self.state.jwks_hits.load(Ordering::SeqCst)
    }

    fn set(&self, change: impl FnOnce(&mut Behaviour)) {
        change(&mut self.state.behaviour.lock().unwrap());
    }

    fn serve(&self, jwks: String) {
        self.set(|b| b.body = Bytes::from(jwks));
    }
}

async fn serve_jwks(State(state): State<Arc<ServerState>>, headers: HeaderMap) -> Response {
    state.jwks_hits.fetch_add(1, Ordering::SeqCst);
    let behaviour = state.behaviour.lock().unwrap().clone();
    let if_none_match = headers.get(IF_NONE_MATCH).map(|v| v.to_str().unwrap().to_owned());
    state.if_none_match.lock().unwrap().clone_from(&if_none_match);
    if !behaviour.delay.is_zero() {
        tokio::time::sleep(behaviour.delay).await;
    }
    if let Some(location) = &behaviour.redirect {
        return (StatusCode::FOUND, [(LOCATION, location.clone())]).into_response();
    }
    let mut response = if behaviour.etag.is_some() && if_none_match == behaviour.etag {
        state.not_modified.fetch_add(1, Ordering::SeqCst);
        StatusCode::NOT_MODIFIED.into_response()
    } else if behaviour.chunked {
        let chunks: Vec<Result<Bytes, Infallible>> = behaviour
            .body
            .chunks(16 * 1024)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let mut response = Response::new(Body::from_stream(futures_util::stream::iter(chunks)));
        *response.status_mut() = behaviour.status;
        response
    } else {
        (behaviour.status, behaviour.body.clone()).into_response()
    };
    for (name, value) in &behaviour.headers {
        response
            .headers_mut()
            .append(*name, HeaderValue::from_str(value).unwrap());
    }
    if let Some(etag) = &behaviour.etag {
        response
            .headers_mut()
            .insert(ETAG, HeaderValue::from_str(etag).unwrap());
    }
    response
}

async fn target(State(state): State<Arc<ServerState>>) -> Response {
    state.target_hits.fetch_add(1, Ordering::SeqCst);
    let body = state.behaviour.lock().unwrap().body.clone();
    (StatusCode::OK, body).into_response()
}

async fn discovery(State(state): State<Arc<ServerState>>) -> Json<Value> {
    state.discovery_hits.fetch_add(1, Ordering::SeqCst);
    Json(state.discovery.lock().unwrap().clone())
}

// ---------------------------------------------------------------------------
// Keys, tokens, sources
// ---------------------------------------------------------------------------

struct Key {
    issuer: Issuer,
    jwk: Map<String, Value>,
    kid: String,
}

impl Key {
    fn new(iss: &str) -> Self {
        let (signer, _) = LocalSigner::generate(Algorithm::ES256).unwrap();
        let jwk = signer.verifying_key().to_jwk();
        let kid = signer.kid().to_owned();
        let keys = Arc::new(KeySet::single(Arc::new(signer)));
        Self {
            issuer: Issuer::new(iss, keys, Lifetime::default()).unwrap(),
            jwk,
            kid,
        }
    }

    async fn token(&self) -> String {
        self.token_for(&TokenRequest::new("connector-1", AUDIENCE)).await
    }

    async fn token_for(&self, request: &TokenRequest) -> String {
        self.issuer
            .issue(request)
            .await
            .unwrap()
            .token
            .as_str()
            .to_owned()
    }

    /// The public JWK with `change` applied.
    fn jwk_with(&self, change: impl FnOnce(&mut Map<String, Value>)) -> Value {
        let mut jwk = self.jwk.clone();
        change(&mut jwk);
        Value::Object(jwk)
    }
}

fn jwks_of(entries: &[Value]) -> String {
    json!({ "keys": entries }).to_string()
}

/// A token whose header names `kid`, with a signature nobody made: it can only
/// fail, and it fails at the key lookup.
fn token_with_kid(kid: &str) -> String {
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": kid}).to_string();
    format!(
        "{}.{}.{}",
        base64url::encode(header),
        base64url::encode(b"{}"),
        base64url::encode([7u8; 64])
    )
}

fn random_kid() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 12];
    ring::rand::SystemRandom::new().fill(&mut bytes).unwrap();
    base64url::encode(bytes)
}

struct Setup {
    server: JwksServer,
    clock: Arc<ManualMonotonicClock>,
    key: Key,
}

impl Setup {
    /// A server publishing one fresh ES256 key, with tokens issued under the
    /// server's own URL (so that discovery agrees with them).
    async fn new() -> Self {
        let server = JwksServer::start(String::new()).await;
        let key = Key::new(&server.base);
        server.serve(jwks_of(&[Value::Object(key.jwk.clone())]));
        Self {
            server,
            clock: Arc::new(ManualMonotonicClock::default()),
            key,
        }
    }

    fn another_key(&self) -> Key {
        Key::new(&self.server.base)
    }

    fn builder(&self) -> RemoteJwksBuilder {
        RemoteJwks::builder(self.server.jwks_url()).clock(self.clock.clone())
    }

    fn discovery(&self) -> RemoteJwksBuilder {
        RemoteJwks::discovery(self.server.base.clone()).clock(self.clock.clone())
    }

    fn verifier(&self, keys: RemoteJwks) -> Verifier<RemoteJwks> {
        let policy = Policy::builder(self.server.base.clone(), [AUDIENCE])
            .build()
            .unwrap();
        Verifier::new(policy, keys)
    }

    fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }
}

async fn verify(verifier: &Verifier<RemoteJwks>, token: &str) -> Result<String, VerifyError> {
    verifier
        .verify::<AccessTokenClaims>(token)
        .await
        .map(|v| v.into_claims().sub)
}

/// The message of an `Unavailable` refusal; panics on anything else.
fn unavailable(result: Result<String, VerifyError>) -> String {
    match result {
        Err(VerifyError::Key(KeyLookupError::Unavailable(message))) => message,
        other => panic!("expected keys_unavailable, got {other:?}"),
    }
}

/// Waits (in real time, briefly) for a background fetch to land.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------------------
// Caching
// ---------------------------------------------------------------------------

#[tokio::test]
async fn cache_control_lifetime_is_honoured() {
    let s = Setup::new().await;
    let remote = s.builder().build().unwrap();
    let verifier = s.verifier(remote.clone());
    let token = s.key.token().await;
    assert_eq!(s.server.hits(), 0, "nothing is fetched before the first lookup");

    for _ in 0..50 {
        assert_eq!(verify(&verifier, &token).await.unwrap(), "connector-1");
    }
    assert_eq!(s.server.hits(), 1);

    s.advance(SECS(299));
    verify(&verifier, &token).await.unwrap();
    assert_eq!(s.server.hits(), 1, "max-age=300 is honoured");
    assert!(remote.status().fresh);

    s.advance(SECS(2));
    // Past its lifetime the set still answers at once, and one fetch replaces it.
    verify(&verifier, &token).await.unwrap();
    eventually("the background refetch", || {
        s.server.hits() == 2 && !remote.status().fetching
    })
    .await;
    assert!(remote.status().fresh);
    for _ in 0..10 {
        verify(&verifier, &token).await.unwrap();
    }
    assert_eq!(s.server.hits(), 2);
}

#[tokio::test]
async fn cache_lifetime_is_clamped() {
    // (Cache-Control, Age, lifetime expected with the default [60 s, 1 h])
    let cases: [(Option<&str>, Option<&str>, u64); 7] = [
        (Some("max-age=5"), None, 60),
        (Some("public, max-age=600"), None, 600),
        (Some("max-age=600"), Some("500"), 100),
        (Some("max-age=31536000"), None, 3600),
        (Some("no-store"), None, 60),
        (Some("no-cache, max-age=600"), None, 60),
        (None, None, 60),
    ];
    let s = Setup::new().await;
    for (cache_control, age, lifetime) in cases {
        s.server.set(|b| {
            b.headers.clear();
            if let Some(cc) = cache_control {
                b.headers.push(("cache-control", cc.into()));
            }
            if let Some(age) = age {
                b.headers.push(("age", age.into()));
            }
        });
        let remote = s.builder().build().unwrap();
        remote.refresh().await.unwrap();
        s.advance(SECS(lifetime - 1));
        assert!(
            remote.status().fresh,
            "{cache_control:?}: fresh before {lifetime} s"
        );
        s.advance(SECS(1));
        assert!(!remote.status().fresh, "{cache_control:?}: stale at {lifetime} s");
    }

    // Configured bounds.
    s.server
        .set(|b| b.headers = vec![("cache-control", "max-age=31536000".into())]);
    let remote = s
        .builder()
        .cache_min(SECS(10))
        .cache_max(SECS(120))
        .build()
        .unwrap();
    remote.refresh().await.unwrap();
    s.advance(SECS(119));
    assert!(remote.status().fresh);
    s.advance(SECS(1));
    assert!(!remote.status().fresh);
}

#[tokio::test]
async fn etag_revalidation_renews_the_set() {
    let s = Setup::new().await;
    s.server.set(|b| b.etag = Some("\"v1\"".into()));
    let remote = s.builder().build().unwrap();
    let verifier = s.verifier(remote.clone());
    let token = s.key.token().await;

    verify(&verifier, &token).await.unwrap();
    assert_eq!(*s.server.state.if_none_match.lock().unwrap(), None);

    s.advance(SECS(301));
    assert!(!remote.status().fresh);
    remote.refresh().await.unwrap();
    assert_eq!(s.server.hits(), 2);
    assert_eq!(
        s.server.state.if_none_match.lock().unwrap().as_deref(),
        Some("\"v1\"")
    );
    assert_eq!(s.server.state.not_modified.load(Ordering::SeqCst), 1);
    let status = remote.status();
    assert!(status.fresh, "a 304 renews the lifetime");
    assert_eq!(status.keys, 1);
    verify(&verifier, &token).await.unwrap();

    // A changed set comes with a new ETag and a 200.
    let second = s.another_key();
    s.server.set(|b| {
        b.etag = Some("\"v2\"".into());
        b.body = Bytes::from(jwks_of(&[
            Value::Object(s.key.jwk.clone()),
            Value::Object(second.jwk.clone()),
        ]));
    });
    s.advance(SECS(301));
    remote.refresh().await.unwrap();
    assert_eq!(s.server.state.not_modified.load(Ordering::SeqCst), 1);
    assert_eq!(remote.status().keys, 2);
    verify(&verifier, &second.token().await).await.unwrap();
}

// ---------------------------------------------------------------------------
// Unknown kids: refetch, cooldown, single flight
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_rotated_key_is_picked_up_at_once() {
    let s = Setup::new().await;
    let verifier = s.verifier(s.builder().build().unwrap());
    verify(&verifier, &s.key.token().await).await.unwrap();
    s.advance(SECS(31)); // past the cooldown, well within max-age

    let next = s.another_key();
    s.server.serve(jwks_of(&[
        Value::Object(s.key.jwk.clone()),
        Value::Object(next.jwk.clone()),
    ]));
    assert_eq!(
        verify(&verifier, &next.token().await).await.unwrap(),
        "connector-1"
    );
    assert_eq!(s.server.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_kids_costs_one_fetch_per_cooldown() {
    let s = Setup::new().await;
    let verifier = Arc::new(s.verifier(s.builder().build().unwrap()));
    verify(&verifier, &s.key.token().await).await.unwrap();
    assert_eq!(s.server.hits(), 1);

    for round in 1..=3 {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..10_000 {
            let verifier = Arc::clone(&verifier);
            let token = token_with_kid(&random_kid());
            tasks.spawn(async move { verify(&verifier, &token).await });
        }
        while let Some(result) = tasks.join_next().await {
            assert_eq!(result.unwrap().unwrap_err().reason(), "unknown_kid");
        }
        // Round 1 falls within the cooldown of the first fetch: no fetch at
        // all. Each later round starts a cooldown later: one fetch.
        assert_eq!(s.server.hits(), round, "round {round}");
        s.advance(SECS(30));
    }
    // The good key never stopped working.
    verify(&verifier, &s.key.token().await).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_on_a_new_kid_share_one_fetch() {
    let s = Setup::new().await;
    let verifier = Arc::new(s.verifier(s.builder().build().unwrap()));
    let old_token = s.key.token().await;
    verify(&verifier, &old_token).await.unwrap();

    let next = s.another_key();
    s.server.serve(jwks_of(&[
        Value::Object(s.key.jwk.clone()),
        Value::Object(next.jwk.clone()),
    ]));
    s.server.set(|b| b.delay = Duration::from_secs(1));
    s.advance(SECS(31));

    let token = next.token().await;
    let barrier = Arc::new(tokio::sync::Barrier::new(1000));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let (verifier, token, barrier) = (Arc::clone(&verifier), token.clone(), Arc::clone(&barrier));
        tasks.spawn(async move {
            barrier.wait().await;
            verify(&verifier, &token).await
        });
    }
    // While the one fetch is under way, a key already held is served at once.
    eventually("the refetch to start", || s.server.hits() == 2).await;
    let started = Instant::now();
    verify(&verifier, &old_token).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "a known key waited for a fetch"
    );
    assert!(verifier.key_source().status().fetching);

    while let Some(result) = tasks.join_next().await {
        assert_eq!(result.unwrap().unwrap(), "connector-1");
    }
    assert_eq!(s.server.hits(), 2, "1,000 concurrent misses, one fetch");
}

#[tokio::test]
async fn a_cancelled_caller_does_not_cancel_the_fetch() {
    let s = Setup::new().await;
    s.server.set(|b| b.delay = Duration::from_millis(300));
    let remote = s.builder().build().unwrap();
    let kid = s.key.kid.clone();
    let gave_up = tokio::time::timeout(Duration::from_millis(50), remote.key(&kid)).await;
    assert!(gave_up.is_err());
    // The fetch goes on and lands; the next lookup needs no fetch of its own.
    eventually("the fetch to land", || !remote.status().fetching).await;
    assert_eq!(remote.status().keys, 1);
    remote.key(&kid).await.unwrap();
    assert_eq!(s.server.hits(), 1);
}

// ---------------------------------------------------------------------------
// Failures: stale set, then errors that say why
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_last_good_set_serves_within_the_stale_limit_then_fails() {
    let s = Setup::new().await;
    let remote = s.builder().stale_limit(SECS(3600)).build().unwrap();
    let verifier = s.verifier(remote.clone());
    let token = s.key.token().await;
    verify(&verifier, &token).await.unwrap();

    s.server.set(|b| b.status = StatusCode::SERVICE_UNAVAILABLE);
    s.advance(SECS(301)); // past max-age=300
    verify(&verifier, &token).await.unwrap();
    eventually("the failed refetch", || !remote.status().fetching).await;
    let status = remote.status();
    assert!(!status.fresh && status.usable);
    assert!(status.last_error.unwrap().contains("HTTP 503"));

    // Stale but within the limit: still served, and the endpoint is asked
    // again at most once per cooldown.
    for _ in 0..10 {
        s.advance(SECS(10));
        verify(&verifier, &token).await.unwrap();
        // Let a background fetch, if one started, land.
        eventually("the background fetch", || !remote.status().fetching).await;
    }
    // t = 301 .. 401: fetches at 301, 331, 361, 391.
    assert_eq!(s.server.hits(), 1 + 4);
    s.advance(SECS(300 + 3600 - 1 - 401)); // one second before the limit
    verify(&verifier, &token).await.unwrap();

    // Past the limit: refused, and the message says why.
    s.advance(SECS(2));
    let message = unavailable(verify(&verifier, &token).await);
    assert!(message.contains("beyond the stale limit of 3600 s"), "{message}");
    assert!(message.contains("HTTP 503"), "{message}");
    assert!(!remote.status().usable);

    // Back up: the next fetch (after the cooldown) restores service.
    s.server.set(|b| b.status = StatusCode::OK);
    s.advance(SECS(31));
    verify(&verifier, &token).await.unwrap();
    assert!(remote.status().fresh);
}

#[tokio::test]
async fn with_no_set_a_dead_endpoint_fails_fast_during_the_cooldown() {
    let s = Setup::new().await;
    s.server.set(|b| b.status = StatusCode::INTERNAL_SERVER_ERROR);
    let verifier = s.verifier(s.builder().build().unwrap());
    let token = s.key.token().await;
    let first = unavailable(verify(&verifier, &token).await);
    assert!(first.contains("no key set could be fetched yet"), "{first}");
    assert!(first.contains("HTTP 500"), "{first}");
    for _ in 0..100 {
        let again = unavailable(verify(&verifier, &token).await);
        assert!(again.contains("next attempt in 30 s"), "{again}");
    }
    assert_eq!(s.server.hits(), 1);
    s.advance(SECS(30));
    unavailable(verify(&verifier, &token).await);
    assert_eq!(s.server.hits(), 2);
}

/// The first lookup against a server that answers `change`: refused, with a
/// message containing `expected`.
async fn first_fetch_fails(
    change: impl FnOnce(&mut Behaviour),
    builder: impl FnOnce(RemoteJwksBuilder) -> RemoteJwksBuilder,
    expected: &str,
) {
    let s = Setup::new().await;
    s.server.set(change);
    let verifier = s.verifier(builder(s.builder()).build().unwrap());
    let result = verify(&verifier, &s.key.token().await).await;
    assert_eq!(result.as_ref().unwrap_err().reason(), "keys_unavailable");
    let message = unavailable(result);
    assert!(
        message.contains(expected),
        "{message:?} should contain {expected:?}"
    );
}

fn same(b: RemoteJwksBuilder) -> RemoteJwksBuilder {
    b
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let big = Bytes::from(format!(
        "{{\"keys\":[],\"pad\":\"{}\"}}",
        "x".repeat(DEFAULT_MAX_BODY)
    ));
    let cap = format!("larger than {DEFAULT_MAX_BODY} bytes");
    let body = big.clone();
    first_fetch_fails(|b| b.body = body, same, &cap).await;
    // Without Content-Length: counted as it arrives.
    first_fetch_fails(
        |b| {
            b.body = big;
            b.chunked = true;
        },
        same,
        &cap,
    )
    .await;
    // A configured cap below a normal set.
    first_fetch_fails(|_| {}, |b| b.max_body(100), "larger than 100 bytes").await;
}

#[tokio::test]
async fn a_chunked_body_within_the_cap_is_fine() {
    let s = Setup::new().await;
    s.server.set(|b| b.chunked = true);
    let verifier = s.verifier(s.builder().build().unwrap());
    verify(&verifier, &s.key.token().await).await.unwrap();
}

#[tokio::test]
async fn malformed_bodies_are_refused() {
    for (body, expected) in [
        ("not json", "not valid JSON"),
        ("", "not valid JSON"),
        ("[]", "not a JSON object"),
        ("{\"keys\": {}}", "no \"keys\" array"),
        ("{\"no_keys\": []}", "no \"keys\" array"),
        ("{\"keys\": [], \"keys\": []}", "duplicate member"),
        ("{\"keys\": []} trailing", "not valid JSON"),
        ("{\"keys\": []}", "no usable key"),
        ("{\"keys\": [1, \"x\", null]}", "no usable key (3 entries refused"),
    ] {
        first_fetch_fails(|b| b.body = Bytes::from(body), same, expected).await;
    }
    let deep = format!("{{\"keys\":{}{}}}", "[".repeat(64), "]".repeat(64));
    first_fetch_fails(|b| b.body = Bytes::from(deep), same, "nested deeper").await;
    let many = jwks_of(&vec![json!({"kty": "XYZ"}); 101]);
    first_fetch_fails(|b| b.body = Bytes::from(many), same, "more than 100").await;
}

#[tokio::test]
async fn non_200_answers_are_refused() {
    for status in [
        StatusCode::NOT_FOUND,
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::NO_CONTENT,
        StatusCode::NOT_MODIFIED, // never asked for: no If-None-Match was sent
        StatusCode::FORBIDDEN,
    ] {
        first_fetch_fails(
            |b| b.status = status,
            same,
            &format!("answered HTTP {}", status.as_u16()),
        )
        .await;
    }
}

#[tokio::test]
async fn timeouts_are_refused() {
    first_fetch_fails(
        |b| b.delay = Duration::from_secs(3),
        |b| b.timeout(Duration::from_millis(200)),
        "timed out",
    )
    .await;
}

// ---------------------------------------------------------------------------
// The JWKS items of the security catalog
// ---------------------------------------------------------------------------

#[tokio::test]
async fn duplicate_kids_make_the_set_invalid() {
    let s = Setup::new().await;
    let jwk = Value::Object(s.key.jwk.clone());
    let other_with_same_kid = s.another_key().jwk_with(|j| {
        j.insert("kid".into(), json!(s.key.kid));
    });
    s.server
        .serve(jwks_of(&[jwk.clone(), other_with_same_kid.clone()]));
    let remote = s.builder().build().unwrap();
    let verifier = s.verifier(remote.clone());
    let token = s.key.token().await;
    let message = unavailable(verify(&verifier, &token).await);
    assert!(message.contains("appears more than once"), "{message}");

    // Nor does an ambiguous set replace a good one.
    s.server.serve(jwks_of(&[jwk]));
    s.advance(SECS(31));
    verify(&verifier, &token).await.unwrap();
    s.server
        .serve(jwks_of(&[Value::Object(s.key.jwk.clone()), other_with_same_kid]));
    s.advance(SECS(31));
    remote.refresh().await.unwrap_err();
    assert_eq!(remote.status().keys, 1);
    verify(&verifier, &token).await.unwrap();
}

#[tokio::test]
async fn unusable_entries_are_refused_one_by_one() {
    let s = Setup::new().await;
    let enc = s.another_key();
    let no_verify = s.another_key();
    let private = s.another_key();
    let wrong_alg = s.another_key();
    let entries = [
        Value::Object(s.key.jwk.clone()),
        enc.jwk_with(|j| {
            j.insert("use".into(), json!("enc"));
        }),
        no_verify.jwk_with(|j| {
            j.insert("key_ops".into(), json!(["encrypt", "sign"]));
        }),
        private.jwk_with(|j| {
            j.insert("d".into(), json!(base64url::encode([1u8; 32])));
        }),
        wrong_alg.jwk_with(|j| {
            j.insert("alg".into(), json!("RS256"));
        }),
        json!({"kty": "oct", "kid": "hmac", "k": base64url::encode([2u8; 32])}),
        json!({"kty": "XYZ", "kid": "future", "x": "AAAA"}),
        json!({"kty": "EC", "crv": "P-521", "kid": "p521", "x": "AAAA", "y": "AAAA"}),
    ];
    s.server.serve(jwks_of(&entries));
    let remote = s.builder().build().unwrap();
    let verifier = s.verifier(remote.clone());

    // Unknown kty and curve are skipped, not fatal: the good key works.
    verify(&verifier, &s.key.token().await).await.unwrap();
    let set: Arc<JwkSet> = remote.cached().unwrap();
    assert_eq!(set.len(), 1);
    let reasons: Vec<(Option<String>, KeyError)> = set
        .refused()
        .iter()
        .map(|r| (r.kid.clone(), r.reason.clone()))
        .collect();
    assert!(matches!(reasons[0].1, KeyError::WrongUse(_)), "{reasons:?}");
    assert_eq!(reasons[1].1, KeyError::KeyOpsWithoutVerify);
    assert_eq!(reasons[2].1, KeyError::PrivateMember("d"));
    assert!(
        matches!(reasons[3].1, KeyError::AlgorithmMismatch { .. }),
        "{reasons:?}"
    );
    assert_eq!(reasons[4].1, KeyError::Symmetric);
    assert!(
        matches!(reasons[5].1, KeyError::UnsupportedKeyType(_)),
        "{reasons:?}"
    );
    assert!(
        matches!(reasons[6].1, KeyError::UnsupportedCurve(_)),
        "{reasons:?}"
    );

    // Tokens signed by the refused keys are tokens with unknown keys.
    for key in [&enc, &no_verify, &private, &wrong_alg] {
        let error = verify(&verifier, &key.token().await).await.unwrap_err();
        assert_eq!(error.reason(), "unknown_kid", "{error}");
    }
    for kid in ["hmac", "future", "p521"] {
        let error = verify(&verifier, &token_with_kid(kid)).await.unwrap_err();
        assert_eq!(error.reason(), "unknown_kid", "{error}");
    }
}

#[tokio::test]
async fn the_algorithm_comes_from_the_key() {
    let s = Setup::new().await;
    let verifier = s.verifier(s.builder().build().unwrap());
    let token = s.key.token().await;
    let [_, payload, signature]: [&str; 3] = token.split('.').collect::<Vec<_>>().try_into().unwrap();
    for alg in ["EdDSA", "RS256", "PS256"] {
        let header = json!({"alg": alg, "typ": "at+jwt", "kid": s.key.kid}).to_string();
        let forged = format!("{}.{payload}.{signature}", base64url::encode(header));
        let error = verify(&verifier, &forged).await.unwrap_err();
        assert_eq!(error.reason(), "algorithm_mismatch", "{alg}: {error}");
    }
}

// ---------------------------------------------------------------------------
// URLs, redirects, discovery
// ---------------------------------------------------------------------------

#[test]
fn plain_http_is_refused_except_to_loopback() {
    for url in [
        "http://tokens.example.com/.well-known/jwks.json",
        "http://192.168.1.10:8080/jwks.json",
        "http://[fe80::1]/jwks.json",
        "ftp://tokens.example.com/jwks.json",
    ] {
        assert!(
            matches!(
                RemoteJwks::builder(url).build(),
                Err(RemoteJwksError::Insecure { .. })
            ),
            "{url}"
        );
    }
    assert!(matches!(
        RemoteJwks::discovery("http://tokens.example.com").build(),
        Err(RemoteJwksError::Insecure { .. })
    ));
    assert!(matches!(
        RemoteJwks::builder("not a url").build(),
        Err(RemoteJwksError::InvalidUrl { .. })
    ));
    for url in [
        "https://tokens.example.com/.well-known/jwks.json",
        "http://127.0.0.1:8080/jwks.json",
        "http://[::1]:8080/jwks.json",
        "http://localhost:8080/jwks.json",
    ] {
        RemoteJwks::builder(url).build().unwrap();
    }
}

#[tokio::test]
async fn redirects_stay_on_the_origin() {
    let s = Setup::new().await;
    let verifier = s.verifier(s.builder().build().unwrap());
    let token = s.key.token().await;

    // Another host (same port, same server: only the name differs).
    let port = s.server.base.rsplit(':').next().unwrap().to_owned();
    s.server
        .set(|b| b.redirect = Some(format!("http://localhost:{port}/target.json")));
    let message = unavailable(verify(&verifier, &token).await);
    assert!(message.contains("another origin"), "{message}");
    assert_eq!(s.server.state.target_hits.load(Ordering::SeqCst), 0);

    // Another scheme.
    s.server
        .set(|b| b.redirect = Some(format!("https://127.0.0.1:{port}/target.json")));
    s.advance(SECS(30));
    let message = unavailable(verify(&verifier, &token).await);
    assert!(message.contains("another origin"), "{message}");

    // The same origin is fine.
    s.server.set(|b| b.redirect = Some("/target.json".into()));
    s.advance(SECS(30));
    verify(&verifier, &token).await.unwrap();
    assert_eq!(s.server.state.target_hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn discovery_finds_the_jwks_once() {
    let s = Setup::new().await;
    let remote = s.discovery().build().unwrap();
    let verifier = s.verifier(remote.clone());
    verify(&verifier, &s.key.token().await).await.unwrap();
    assert_eq!(s.server.state.discovery_hits.load(Ordering::SeqCst), 1);
    assert_eq!(s.server.hits(), 1);

    s.advance(SECS(301));
    remote.refresh().await.unwrap();
    assert_eq!(s.server.hits(), 2);
    assert_eq!(s.server.state.discovery_hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn discovery_requires_the_exact_issuer() {
    let s = Setup::new().await;
    // A trailing slash is another issuer (byte equality).
    for claimed in [
        format!("{}/", s.server.base),
        s.server.base.to_uppercase(),
        "https://evil.example.com".into(),
    ] {
        s.server.state.discovery.lock().unwrap()["issuer"] = json!(claimed);
        let verifier = s.verifier(s.discovery().build().unwrap());
        let message = unavailable(verify(&verifier, &s.key.token().await).await);
        assert!(message.contains("is not the expected issuer"), "{message}");
    }
    s.server.state.discovery.lock().unwrap()["issuer"] = json!(42);
    let verifier = s.verifier(s.discovery().build().unwrap());
    let message = unavailable(verify(&verifier, &s.key.token().await).await);
    assert!(
        message.contains("\"issuer\" is missing or not a string"),
        "{message}"
    );
    assert_eq!(s.server.hits(), 0, "no JWKS fetched for a mismatched issuer");
}

#[tokio::test]
async fn discovery_applies_the_url_rules_to_jwks_uri() {
    let s = Setup::new().await;
    for (jwks_uri, expected) in [
        (json!("http://tokens.example.com/jwks.json"), "must use https"),
        (json!("file:///etc/passwd"), "must use https"),
        (json!("/jwks.json"), "not a valid URL"),
        (json!(null), "\"jwks_uri\" is missing or not a string"),
    ] {
        s.server.state.discovery.lock().unwrap()["jwks_uri"] = jwks_uri;
        let verifier = s.verifier(s.discovery().build().unwrap());
        let message = unavailable(verify(&verifier, &s.key.token().await).await);
        assert!(
            message.contains(expected),
            "{message:?} should contain {expected:?}"
        );
    }
    assert_eq!(s.server.hits(), 0);
}

// ---------------------------------------------------------------------------
// The axum extractor
// ---------------------------------------------------------------------------

async fn whoami(VerifiedToken(token): VerifiedToken<AccessTokenClaims>) -> Json<Value> {
    Json(json!({ "sub": token.claims().sub, "kid": token.kid() }))
}

async fn call(app: &Router, authorization: Option<&str>) -> (StatusCode, HeaderMap, Bytes) {
    let mut request = Request::builder().uri("/whoami");
    if let Some(value) = authorization {
        request = request.header(AUTHORIZATION, value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    (parts.status, parts.headers, body)
}

#[tokio::test]
async fn the_extractor_yields_claims_or_a_bare_401() {
    let s = Setup::new().await;
    let policy = Policy::builder(s.server.base.clone(), [AUDIENCE])
        .build()
        .unwrap();
    let app = Router::new()
        .route("/whoami", get(whoami))
        .with_state(shared_verifier(policy, s.discovery().build().unwrap()));

    let (status, _, body) = call(&app, Some(&format!("Bearer {}", s.key.token().await))).await;
    assert_eq!(status, StatusCode::OK);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body, json!({"sub": "connector-1", "kid": s.key.kid}));

    // No credentials: the bare challenge.
    for authorization in [None, Some("Basic Y29ubmVjdG9yOnNlY3JldA==")] {
        let (status, headers, body) = call(&app, authorization).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(headers[WWW_AUTHENTICATE], "Bearer");
        assert!(body.is_empty());
    }

    // Every refused token gets the very same answer, whatever the reason.
    let mut expired_issuer = Issuer::new(
        s.server.base.clone(),
        Arc::clone(s.key.issuer.keys()),
        Lifetime::default(),
    )
    .unwrap();
    let an_hour_ago = SystemClock.now() - 3600;
    expired_issuer = expired_issuer.with_clock(Arc::new(ManualWallClock::new(an_hour_ago)));
    let expired = expired_issuer
        .issue(&TokenRequest::new("connector-1", AUDIENCE))
        .await
        .unwrap()
        .token
        .as_str()
        .to_owned();
    let wrong_audience = s
        .key
        .token_for(&TokenRequest::new("connector-1", "https://other.example.com"))
        .await;
    let unknown_key = s.another_key().token().await;
    let good = s.key.token().await;
    let last = if good.ends_with('A') { 'Q' } else { 'A' };
    let tampered = format!("{}{last}", &good[..good.len() - 1]);
    let refused = [
        "Bearer not-a-token".to_owned(),
        "Bearer ".to_owned(),
        format!("Bearer {expired}"),
        format!("Bearer {wrong_audience}"),
        format!("Bearer {unknown_key}"),
        format!("Bearer {tampered}"),
        format!("Bearer {}", token_with_kid("../../etc/passwd")),
    ];
    for authorization in &refused {
        let (status, headers, body) = call(&app, Some(authorization)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{authorization}");
        assert_eq!(headers[WWW_AUTHENTICATE], "Bearer error=\"invalid_token\"");
        for name in headers.keys() {
            assert!(name == WWW_AUTHENTICATE || name == CONTENT_LENGTH, "{headers:?}");
        }
        assert!(body.is_empty());
    }
}

#[tokio::test]
async fn the_extractor_answers_401_when_keys_are_unavailable() {
    let s = Setup::new().await;
    s.server.set(|b| b.status = StatusCode::BAD_GATEWAY);
    let policy = Policy::builder(s.server.base.clone(), [AUDIENCE])
        .build()
        .unwrap();
    let app = Router::new()
        .route("/whoami", get(whoami))
        .with_state(shared_verifier(policy, s.builder().build().unwrap()));
    let (status, headers, body) = call(&app, Some(&format!("Bearer {}", s.key.token().await))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers[WWW_AUTHENTICATE], "Bearer error=\"invalid_token\"");
    assert!(body.is_empty());
}

/// `KeySource` is object safe, and the cached set can be shared as `dyn`.
#[tokio::test]
async fn remote_jwks_is_a_key_source() {
    let s = Setup::new().await;
    let keys: Arc<dyn KeySource> = Arc::new(s.builder().build().unwrap());
    let key = keys.key(&s.key.kid).await.unwrap();
    assert_eq!(key.kid(), s.key.kid);
    assert_eq!(key.algorithm(), Algorithm::ES256);
}
