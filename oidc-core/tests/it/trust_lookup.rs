//! The registry's on-demand source: an [`IssuerLookup`] that counts its
//! calls, the negative cache under a flood of unknown issuers, single-flight
//! lookups, and entries that change or disappear in the control plane's store.

#![cfg(feature = "remote")]
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use oidc_core::internal::ManualMonotonicClock;
use oidc_core::verify::trust::{IssuerEntry, IssuerLookup, IssuerOrigin, LookupError, TrustedIssuers};
use oidc_core::Algorithm;

use crate::tenants::{entry, reason, verify, Mode, TenantServer, TestKey, AUDIENCE, SECS};

/// The control plane's store: issuer → entry, a call counter, an optional
/// delay, and a switch that makes it fail.
#[derive(Default)]
struct Store {
    entries: Mutex<HashMap<String, IssuerEntry>>,
    calls: AtomicUsize,
    delay: Mutex<Duration>,
    down: Mutex<bool>,
}

#[async_trait]
impl IssuerLookup for Store {
    async fn lookup(&self, issuer: &str) -> Result<Option<IssuerEntry>, LookupError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let delay = *self.delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if *self.down.lock().unwrap() {
            return Err(LookupError::new("tenant database unavailable"));
        }
        Ok(self.entries.lock().unwrap().get(issuer).cloned())
    }
}

impl Store {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn put(&self, entry: IssuerEntry) {
        self.entries
            .lock()
            .unwrap()
            .insert(entry.issuer().to_owned(), entry);
    }
}

struct Setup {
    server: TenantServer,
    key: TestKey,
    store: Arc<Store>,
    clock: Arc<ManualMonotonicClock>,
    trusted: TrustedIssuers,
}

impl Setup {
    /// A tenant `acme` in the store (not in any static list).
    async fn new() -> Self {
        let server = TenantServer::start().await;
        let key = TestKey::new(Algorithm::ES256);
        server.add("acme", &key.jwks);
        let store = Arc::new(Store::default());
        store.put(entry(&server, "acme").build().unwrap());
        let clock = Arc::new(ManualMonotonicClock::default());
        let trusted = TrustedIssuers::builder()
            .lookup(Arc::clone(&store))
            .negative_ttl(SECS(60))
            .negative_capacity(1000)
            .lookup_ttl(SECS(300))
            .clock(clock.clone())
            .build()
            .unwrap();
        Self {
            server,
            key,
            store,
            clock,
            trusted,
        }
    }

    async fn token(&self, tenant: &str) -> String {
        self.key
            .token(&self.server.issuer(tenant), AUDIENCE, Some(tenant))
            .await
    }
}

#[tokio::test]
async fn a_known_issuer_is_looked_up_once_and_cached() {
    let s = Setup::new().await;
    for _ in 0..100 {
        assert_eq!(
            verify(&s.trusted, &s.token("acme").await).await.unwrap().0,
            "acme"
        );
    }
    assert_eq!(s.store.calls(), 1);
    assert_eq!(s.server.tenant("acme").hits(), (1, 1));
    assert_eq!(s.trusted.status()[0].origin, IssuerOrigin::Lookup);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_issuer_flood_costs_one_lookup_per_issuer_per_interval() {
    let s = Setup::new().await;
    // 20 unknown issuers, 10,000 tokens, all at once.
    let mut strangers = Vec::new();
    for i in 0..20 {
        strangers.push(s.token(&format!("stranger-{i}")).await);
    }
    *s.store.delay.lock().unwrap() = Duration::from_millis(50);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10_000 {
        let (trusted, token) = (s.trusted.clone(), strangers[i % 20].clone());
        tasks.spawn(async move { verify(&trusted, &token).await });
    }
    while let Some(result) = tasks.join_next().await {
        assert_eq!(reason(result.unwrap()), "unknown_issuer");
    }
    assert_eq!(s.store.calls(), 20, "one lookup per unknown issuer");
    let stats = s.trusted.stats();
    assert_eq!(stats.negative_cache_entries, 20);
    assert_eq!(stats.unknown_issuer_refusals, 10_000);
    assert_eq!(stats.cached_issuers, 0);
    assert_eq!(s.server.requests(), 0, "no issuer was contacted");

    // Within the TTL: no lookup at all; after it, one more per issuer.
    *s.store.delay.lock().unwrap() = Duration::ZERO;
    s.clock.advance(SECS(59));
    for token in &strangers {
        assert_eq!(reason(verify(&s.trusted, token).await), "unknown_issuer");
    }
    assert_eq!(s.store.calls(), 20);
    s.clock.advance(SECS(1));
    for token in strangers.iter().chain(&strangers) {
        assert_eq!(reason(verify(&s.trusted, token).await), "unknown_issuer");
    }
    assert_eq!(s.store.calls(), 40);

    // A flood of distinct issuers: one lookup each, the cache bounded.
    for i in 0..3000 {
        let token = s.token(&format!("random-{i}")).await;
        assert_eq!(reason(verify(&s.trusted, &token).await), "unknown_issuer");
    }
    assert_eq!(s.store.calls(), 40 + 3000);
    assert_eq!(
        s.trusted.stats().negative_cache_entries,
        1000,
        "bounded by its capacity"
    );

    // The known tenant was never affected.
    assert_eq!(
        verify(&s.trusted, &s.token("acme").await).await.unwrap().0,
        "acme"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tokens_of_a_new_issuer_share_one_lookup_and_one_fetch() {
    let s = Setup::new().await;
    *s.store.delay.lock().unwrap() = Duration::from_millis(200);
    let token = s.token("acme").await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..500 {
        let (trusted, token) = (s.trusted.clone(), token.clone());
        tasks.spawn(async move { verify(&trusted, &token).await });
    }
    while let Some(result) = tasks.join_next().await {
        assert_eq!(result.unwrap().unwrap().0, "acme");
    }
    assert_eq!(s.store.calls(), 1);
    assert_eq!(s.server.tenant("acme").hits(), (1, 1));
}

#[tokio::test]
async fn store_changes_take_effect_within_the_lookup_ttl() {
    let s = Setup::new().await;
    let token = s.token("acme").await;
    verify(&s.trusted, &token).await.unwrap();

    // The tenant's required org changes in the store: old tokens keep
    // verifying until the TTL, then the new entry applies, on the same keys.
    s.store.put(
        IssuerEntry::builder("acme", s.server.issuer("acme"), [AUDIENCE])
            .require_claim("org_id", "acme-2")
            .build()
            .unwrap(),
    );
    s.clock.advance(SECS(299));
    verify(&s.trusted, &token).await.unwrap();
    assert_eq!(s.store.calls(), 1);
    s.clock.advance(SECS(1));
    assert_eq!(reason(verify(&s.trusted, &token).await), "required_claim");
    assert_eq!(s.store.calls(), 2);
    assert_eq!(s.server.tenant("acme").hits(), (1, 1), "the key source was kept");

    // The store is down at the next TTL: the entry in hand is kept.
    let new_token = s
        .key
        .token(&s.server.issuer("acme"), AUDIENCE, Some("acme-2"))
        .await;
    *s.store.down.lock().unwrap() = true;
    s.clock.advance(SECS(300));
    assert_eq!(verify(&s.trusted, &new_token).await.unwrap().0, "acme");
    assert_eq!(s.store.calls(), 3);

    // The tenant is removed: refused once the lookup says so.
    *s.store.down.lock().unwrap() = false;
    s.store.entries.lock().unwrap().clear();
    s.clock.advance(SECS(10));
    assert_eq!(reason(verify(&s.trusted, &new_token).await), "unknown_issuer");
    assert_eq!(s.trusted.stats().cached_issuers, 0);
    assert_eq!(reason(verify(&s.trusted, &new_token).await), "unknown_issuer");
    assert_eq!(s.store.calls(), 4, "then the negative cache answers");

    // Added back: forgetting the negative answer makes it count at once.
    s.store.put(entry(&s.server, "acme").build().unwrap());
    s.trusted.forget_unknown(&s.server.issuer("acme"));
    assert_eq!(verify(&s.trusted, &token).await.unwrap().0, "acme");
}

#[tokio::test]
async fn a_failed_lookup_is_an_error_not_an_unknown_issuer() {
    let s = Setup::new().await;
    *s.store.down.lock().unwrap() = true;
    let token = s.token("acme").await;
    let error = s
        .trusted
        .verify::<oidc_core::AccessTokenClaims>(&token)
        .await
        .unwrap_err();
    assert_eq!(error.reason(), "issuer_lookup_failed");
    assert!(
        error.to_string().contains("tenant database unavailable"),
        "{error}"
    );
    // Not remembered as unknown: the next token asks again, and succeeds.
    *s.store.down.lock().unwrap() = false;
    assert_eq!(verify(&s.trusted, &token).await.unwrap().0, "acme");
    assert_eq!(s.store.calls(), 2);
    assert_eq!(s.trusted.stats().lookup_failures, 1);
}

#[tokio::test]
async fn a_lookup_answering_for_another_issuer_is_refused() {
    let s = Setup::new().await;
    // The store maps globex's issuer to acme's entry (a bug in the control
    // plane): globex's tokens must not be checked against acme's entry.
    let acme = entry(&s.server, "acme").build().unwrap();
    s.store
        .entries
        .lock()
        .unwrap()
        .insert(s.server.issuer("globex"), acme);
    s.server.add("globex", &s.key.jwks).set_mode(Mode::Up);
    let token = s
        .key
        .token(&s.server.issuer("globex"), AUDIENCE, Some("acme"))
        .await;
    assert_eq!(reason(verify(&s.trusted, &token).await), "issuer_lookup_failed");
    assert_eq!(s.server.requests(), 0);
}
