//! The registry of trusted issuers (`remote` feature) against the loopback
//! server of `tenants.rs`, which plays many token services at once. Other
//! files: `trust_lookup.rs` (the on-demand source), `trust_scale.rs` (10,000
//! issuers), `cache_remote.rs` (the registry with a verification cache).
//!
//! Run with `cargo test -p oidc-core --all-features --test it trust`.

#![cfg(feature = "remote")]
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use oidc_core::clock::ManualMonotonicClock;
use oidc_core::keys::Signer;
use oidc_core::verify::trust::{
    IssuerEntry, KeysStatus, RefreshError, TrustedIssuers, TrustedIssuersBuilder,
};
use oidc_core::{AccessTokenClaims, Algorithm, JwkSet};

use crate::tenants::{entry, reason, verify, Mode, TenantServer, TestKey, AUDIENCE, SECS};

/// Three tenants (`acme` and `globex` with their own ES256 keys, `initech`
/// EdDSA only) on one server, and a registry of them built by `change`.
struct Three {
    server: TenantServer,
    keys: HashMap<&'static str, TestKey>,
    trusted: TrustedIssuers,
}

impl Three {
    async fn new(change: impl FnOnce(TrustedIssuersBuilder) -> TrustedIssuersBuilder) -> Self {
        let server = TenantServer::start().await;
        let mut keys = HashMap::new();
        let mut builder = TrustedIssuers::builder();
        for (id, alg) in [
            ("acme", Algorithm::ES256),
            ("globex", Algorithm::ES256),
            ("initech", Algorithm::EdDSA),
        ] {
            let key = TestKey::new(alg);
            server.add(id, &key.jwks);
            builder = builder.issuer(entry(&server, id).algorithms([alg]).build().unwrap());
            keys.insert(id, key);
        }
        let trusted = change(builder).build().unwrap();
        Self {
            server,
            keys,
            trusted,
        }
    }

    async fn token(&self, id: &str) -> String {
        self.keys[id]
            .token(&self.server.issuer(id), AUDIENCE, Some(id))
            .await
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test]
async fn each_issuer_verifies_with_its_own_entry_fetched_once() {
    let t = Three::new(|b| b).await;
    assert_eq!(t.server.requests(), 0, "nothing is fetched before a token");
    for _ in 0..3 {
        for id in ["acme", "globex", "initech"] {
            let (name, sub) = verify(&t.trusted, &t.token(id).await).await.unwrap();
            assert_eq!((name.as_str(), sub.as_str()), (id, "connector-1"));
        }
    }
    for id in ["acme", "globex", "initech"] {
        assert_eq!(
            t.server.tenant(id).hits(),
            (1, 1),
            "{id}: one discovery, one JWKS"
        );
    }
    let status = t.trusted.status();
    let names: Vec<&str> = status.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["acme", "globex", "initech"]);
    for s in &status {
        assert_eq!((s.verified, s.refused, s.keys.keys()), (3, 0, 1), "{s:?}");
        let KeysStatus::Remote(remote) = &s.keys else {
            panic!("fetched keys expected")
        };
        assert_eq!((remote.fetches, remote.failures), (1, 0));
    }
}

#[tokio::test]
async fn an_unknown_issuer_is_refused_without_any_connection() {
    let t = Three::new(|b| b).await;
    // Something listening where the token points: it must never hear from us.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let elsewhere = format!("http://{}", listener.local_addr().unwrap());
    let acme = t.server.issuer("acme");
    let key = &t.keys["acme"];
    // Not byte-equal to a registered issuer: another issuer.
    for iss in [
        elsewhere.clone(),
        format!("{acme}/"),
        acme.to_uppercase(),
        format!("{acme}/.."),
        acme.replace("127.0.0.1", "localhost"),
        format!("{acme}\u{0}"),
        "x".repeat(5000),
    ] {
        let token = key.token(&iss, AUDIENCE, Some("acme")).await;
        let error = t.trusted.verify::<AccessTokenClaims>(&token).await.unwrap_err();
        assert_eq!(error.reason(), "unknown_issuer", "{iss:?}: {error}");
        assert!(error.to_string().len() < 120, "the iss is shortened: {error}");
    }
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "no connection to the unregistered issuer"
    );
    assert_eq!(t.server.requests(), 0, "nor to any registered one");
    assert_eq!(t.trusted.stats().unknown_issuer_refusals, 7);
    assert_eq!(t.trusted.stats().cached_issuers, 0, "strangers leave no state");

    // No iss, or one that is not a string: refused before any lookup too.
    let no_iss = key.token(&acme, AUDIENCE, Some("acme")).await;
    let [h, p, s]: [&str; 3] = no_iss.split('.').collect::<Vec<_>>().try_into().unwrap();
    let mut claims: Value = serde_json::from_slice(&oidc_core::base64url::decode(p).unwrap()).unwrap();
    claims.as_object_mut().unwrap().remove("iss");
    let forged = format!("{h}.{}.{s}", oidc_core::base64url::encode(claims.to_string()));
    assert_eq!(reason(verify(&t.trusted, &forged).await), "missing_claim");
    claims["iss"] = json!(["x"]);
    let forged = format!("{h}.{}.{s}", oidc_core::base64url::encode(claims.to_string()));
    assert_eq!(reason(verify(&t.trusted, &forged).await), "malformed_claims");
    assert_eq!(t.server.requests(), 0);
}

#[tokio::test]
async fn cross_issuer_confusion_is_refused() {
    let t = Three::new(|b| b).await;
    let (acme, globex) = (t.server.issuer("acme"), t.server.issuer("globex"));
    // Both issuers live, with their keys in hand.
    verify(&t.trusted, &t.token("acme").await).await.unwrap();
    verify(&t.trusted, &t.token("globex").await).await.unwrap();

    // acme's iss, signed by globex's key (globex's kid): acme's keys only.
    let forged = t.keys["globex"].token(&acme, AUDIENCE, Some("acme")).await;
    assert_eq!(reason(verify(&t.trusted, &forged).await), "unknown_kid");
    // acme's key, globex's iss.
    let forged = t.keys["acme"].token(&globex, AUDIENCE, Some("globex")).await;
    assert_eq!(reason(verify(&t.trusted, &forged).await), "unknown_kid");
    // acme's token for an audience only globex accepts.
    let globex_aud = "https://globex.example/api";
    let trusted = TrustedIssuers::builder()
        .issuer(entry(&t.server, "acme").build().unwrap())
        .issuer(
            IssuerEntry::builder("globex", globex.clone(), [globex_aud])
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let wrong_aud = t.keys["acme"].token(&acme, globex_aud, Some("acme")).await;
    assert_eq!(reason(verify(&trusted, &wrong_aud).await), "wrong_audience");
    // Required claims: missing, another tenant's value, another type.
    for org in [None, Some("globex"), Some("ACME")] {
        let token = t.keys["acme"].token(&acme, AUDIENCE, org).await;
        assert_eq!(
            reason(verify(&t.trusted, &token).await),
            "required_claim",
            "{org:?}"
        );
    }
    // An algorithm the entry does not allow, even with a key in its JWKS.
    let es256 = TestKey::new(Algorithm::ES256);
    let mut both = t.keys["initech"]
        .jwks
        .keys()
        .map(|k| (**k).clone())
        .collect::<Vec<_>>();
    both.push(es256.signer.verifying_key().clone());
    t.server
        .tenant("initech")
        .serve(&JwkSet::from_keys(both).unwrap());
    let initech = t.server.issuer("initech");
    let token = es256.token(&initech, AUDIENCE, Some("initech")).await;
    assert_eq!(reason(verify(&t.trusted, &token).await), "algorithm_not_allowed");
    assert_eq!(
        t.server.tenant("initech").hits(),
        (0, 0),
        "refused before any fetch"
    );

    // The genuine tokens still verify, each under its own name.
    for id in ["acme", "globex", "initech"] {
        assert_eq!(verify(&t.trusted, &t.token(id).await).await.unwrap().0, id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_or_hanging_issuer_does_not_slow_the_others() {
    let t = Three::new(|b| b.max_concurrent_fetches(2).timeout(Duration::from_secs(2))).await;
    let (dead, hanging) = (TestKey::new(Algorithm::ES256), TestKey::new(Algorithm::ES256));
    t.server
        .add("dead", &dead.jwks)
        .set_mode(Mode::Status(StatusCode::BAD_GATEWAY));
    t.server.add("hanging", &hanging.jwks).set_mode(Mode::Hang);
    let trusted = TrustedIssuers::builder()
        .issuers(["acme", "globex", "dead", "hanging"].map(|id| entry(&t.server, id).build().unwrap()))
        .max_concurrent_fetches(2)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();

    // Many callers wait on the hanging issuer: one fetch, one permit.
    let hanging_token = hanging
        .token(&t.server.issuer("hanging"), AUDIENCE, Some("hanging"))
        .await;
    let mut waiting = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (trusted, token) = (trusted.clone(), hanging_token.clone());
        waiting.spawn(async move { verify(&trusted, &token).await });
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(trusted.stats().fetches_in_flight, 1);

    // Meanwhile the dead issuer fails fast, and the live ones verify at once,
    // their first token (a fetch of their own) included.
    let dead_token = dead.token(&t.server.issuer("dead"), AUDIENCE, Some("dead")).await;
    let started = Instant::now();
    let message = verify(&trusted, &dead_token).await.unwrap_err().to_string();
    assert!(message.contains("HTTP 502"), "{message}");
    for _ in 0..20 {
        assert_eq!(reason(verify(&trusted, &dead_token).await), "keys_unavailable");
        for id in ["acme", "globex"] {
            assert_eq!(verify(&trusted, &t.token(id).await).await.unwrap().0, id);
        }
    }
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(t.server.tenant("dead").hits(), (1, 0), "failures back off");

    // The hanging fetch times out; its callers are told why.
    while let Some(result) = waiting.join_next().await {
        let message = result.unwrap().unwrap_err().to_string();
        assert!(message.contains("timed out"), "{message}");
    }
    assert_eq!(t.server.tenant("hanging").hits(), (1, 0));
    let status = trusted.issuer_status("hanging").unwrap();
    assert_eq!(status.refused, 50);
    assert!(status.issuer.ends_with("/t/hanging"));
}

#[tokio::test]
async fn failures_back_off_per_issuer() {
    let clock = Arc::new(ManualMonotonicClock::default());
    let server = TenantServer::start().await;
    let key = TestKey::new(Algorithm::ES256);
    let tenant = server.add("flaky", &key.jwks);
    tenant.set_mode(Mode::Status(StatusCode::SERVICE_UNAVAILABLE));
    let trusted = TrustedIssuers::builder()
        .issuer(entry(&server, "flaky").build().unwrap())
        .refetch_cooldown(SECS(30))
        .failure_backoff(SECS(120))
        .clock(clock.clone())
        .build()
        .unwrap();
    let token = key.token(&server.issuer("flaky"), AUDIENCE, Some("flaky")).await;
    // (seconds to advance, fetches expected after a token at that time)
    let steps = [
        (0, 1),
        (29, 1),
        (1, 2),
        (59, 2),
        (1, 3),
        (119, 3),
        (1, 4),
        (120, 5),
    ];
    for (advance, fetches) in steps {
        clock.advance(SECS(advance));
        assert_eq!(reason(verify(&trusted, &token).await), "keys_unavailable");
        assert_eq!(tenant.hits().0, fetches, "after {advance} s more");
    }
    let KeysStatus::Remote(status) = trusted.issuer_status("flaky").unwrap().keys else {
        panic!("remote keys")
    };
    assert_eq!((status.consecutive_failures, status.failures), (5, 5));
    assert_eq!(status.next_attempt_in, Some(SECS(120)));

    // Back up: a forced refresh ignores the backoff, and resets it.
    tenant.set_mode(Mode::Up);
    trusted.refresh("flaky").await.unwrap();
    assert_eq!(verify(&trusted, &token).await.unwrap().0, "flaky");
    let KeysStatus::Remote(status) = trusted.issuer_status("flaky").unwrap().keys else {
        panic!("remote keys")
    };
    assert_eq!(status.consecutive_failures, 0);
}

#[tokio::test]
async fn a_pinned_issuer_is_never_fetched() {
    let server = TenantServer::start().await;
    let key = TestKey::new(Algorithm::EdDSA);
    let tenant = server.add("offline", &key.jwks);
    let trusted = TrustedIssuers::builder()
        .issuer(
            entry(&server, "offline")
                .pinned_jwks(key.jwks.clone())
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let token = key
        .token(&server.issuer("offline"), AUDIENCE, Some("offline"))
        .await;
    assert_eq!(verify(&trusted, &token).await.unwrap().0, "offline");
    let other = TestKey::new(Algorithm::EdDSA);
    let token = other
        .token(&server.issuer("offline"), AUDIENCE, Some("offline"))
        .await;
    assert_eq!(reason(verify(&trusted, &token).await), "unknown_kid");
    assert_eq!(tenant.hits(), (0, 0));
    assert_eq!(
        trusted.refresh("offline").await.unwrap().keys,
        KeysStatus::Pinned { keys: 1 }
    );
}

#[tokio::test]
async fn forced_refresh_and_status_name_the_entry() {
    let t = Three::new(|b| b).await;
    assert!(
        t.trusted.issuer_status("acme").is_none(),
        "not live before a token"
    );
    // A static entry becomes live on refresh, fetched at once.
    let status = t.trusted.refresh("acme").await.unwrap();
    assert_eq!((status.name.as_str(), status.keys.keys()), ("acme", 1));
    assert_eq!(t.server.tenant("acme").hits(), (1, 1));
    // A rotated key: a refresh picks it up without waiting for the cooldown.
    let rotated = TestKey::new(Algorithm::ES256);
    t.server.tenant("acme").serve(&rotated.jwks);
    t.trusted.refresh("acme").await.unwrap();
    assert_eq!(t.server.tenant("acme").hits(), (1, 2), "discovery is done once");
    let token = rotated
        .token(&t.server.issuer("acme"), AUDIENCE, Some("acme"))
        .await;
    assert_eq!(verify(&t.trusted, &token).await.unwrap().0, "acme");
    assert!(matches!(
        t.trusted.refresh("nobody").await,
        Err(RefreshError::UnknownName(_))
    ));
    t.server
        .tenant("globex")
        .set_mode(Mode::Status(StatusCode::NOT_FOUND));
    let error = t.trusted.refresh("globex").await.unwrap_err().to_string();
    assert!(error.starts_with("issuer \"globex\": "), "{error}");
    let status = t.trusted.issuer_status("globex").unwrap();
    let KeysStatus::Remote(remote) = status.keys else {
        panic!("remote keys")
    };
    assert!(remote.last_error.unwrap().contains("HTTP 404"));
}

#[tokio::test]
async fn the_trust_file_is_read() {
    let t = Three::new(|b| b).await;
    let dir = std::env::temp_dir().join(format!("trust-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pinned = TestKey::new(Algorithm::ES256);
    std::fs::write(dir.join("pinned.json"), pinned.jwks.to_json()).unwrap();
    let file = dir.join("trust.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[[issuers]]
name = "acme"
issuer = "{acme}"
audiences = ["{AUDIENCE}"]
required_claims = {{ org_id = "acme" }}
algorithms = ["ES256"]

[[issuers]]
name = "pinned"
issuer = "https://unreachable.example"
audiences = ["{AUDIENCE}"]
jwks_file = "pinned.json"
"#,
            acme = t.server.issuer("acme"),
        ),
    )
    .unwrap();
    let trusted = TrustedIssuers::from_toml_file(&file).unwrap().build().unwrap();
    assert_eq!(verify(&trusted, &t.token("acme").await).await.unwrap().0, "acme");
    let token = pinned.token("https://unreachable.example", AUDIENCE, None).await;
    assert_eq!(verify(&trusted, &token).await.unwrap().0, "pinned");
    assert_eq!(
        reason(verify(&trusted, &t.token("globex").await).await),
        "unknown_issuer"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn registries_are_checked_when_built() {
    let e = |name: &str, iss: &str| IssuerEntry::builder(name, iss, [AUDIENCE]).build().unwrap();
    let err = |b: TrustedIssuersBuilder| b.build().unwrap_err().to_string();
    assert!(err(TrustedIssuers::builder()).contains("no trusted issuer"));
    assert!(err(TrustedIssuers::builder()
        .issuer(e("a", "https://a.example"))
        .issuer(e("a", "https://b.example")))
    .contains("two issuer entries are named \"a\""));
    assert!(err(TrustedIssuers::builder()
        .issuer(e("a", "https://a.example"))
        .issuer(e("b", "https://a.example")))
    .contains("is in two entries"));
    assert!(err(TrustedIssuers::builder()
        .issuer(e("a", "https://a.example"))
        .max_cached_issuers(0))
    .contains("must be positive"));
    assert!(err(TrustedIssuers::builder()
        .issuer(e("a", "https://a.example"))
        .failure_backoff(SECS(1)))
    .contains("below the refetch cooldown"));
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn the_trusted_extractor_yields_the_entry_name() {
    use axum::body::Body;
    use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
    use axum::http::Request;
    use oidc_core::axum::TrustedToken;
    use tower::ServiceExt;

    async fn whoami(TrustedToken(token): TrustedToken<AccessTokenClaims>) -> axum::Json<Value> {
        axum::Json(json!({ "issuer": token.issuer_name(), "sub": token.claims().sub }))
    }
    let t = Three::new(|b| b).await;
    let app = Router::new()
        .route("/whoami", get(whoami))
        .with_state(t.trusted.clone());
    let call = |token: String| {
        let app = app.clone();
        async move {
            let request = Request::builder()
                .uri("/whoami")
                .header(AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap();
            let response = app.oneshot(request).await.unwrap();
            let status = response.status();
            let challenge = response.headers().get(WWW_AUTHENTICATE).cloned();
            let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
            (status, challenge, body)
        }
    };
    for id in ["acme", "initech"] {
        let (status, _, body) = call(t.token(id).await).await;
        assert_eq!(status, StatusCode::OK);
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body, json!({ "issuer": id, "sub": "connector-1" }));
    }
    let stranger = t.keys["acme"]
        .token("https://stranger.example", AUDIENCE, None)
        .await;
    let wrong_org = t.keys["acme"]
        .token(&t.server.issuer("acme"), AUDIENCE, Some("globex"))
        .await;
    for token in [stranger, wrong_org, "not-a-token".to_owned()] {
        let (status, challenge, body) = call(token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(challenge.unwrap(), "Bearer error=\"invalid_token\"");
        assert!(body.is_empty());
    }
}
