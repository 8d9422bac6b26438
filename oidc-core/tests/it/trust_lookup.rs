//! The registry's on-demand source: an [`IssuerLookup`] that counts its
//! calls, the negative cache under a flood of unknown issuers, single-flight
//! lookups, the bounds on waiting under a flood of random issuers, and
//! entries that change or disappear in the control plane's store (also
//! while it fails).

#![cfg(feature = "remote")]
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use oidc_core::clock::ManualMonotonicClock;
use oidc_core::verify::trust::{
    IssuerEntry, IssuerLookup, IssuerOrigin, LookupError, TrustedIssuers, TrustedIssuersBuilder,
};
use oidc_core::verify::VerificationCache;
use oidc_core::Algorithm;
use tokio::sync::watch;

use crate::tenants::{entry, reason, verify, Mode, TenantServer, TestKey, AUDIENCE, SECS};

/// The control plane's store: issuer → entry, a call counter, an optional
/// delay, a switch that makes it fail, and one that makes a lookup of an
/// issuer it does not have hang (a slow miss) until switched off.
#[derive(Default)]
struct Store {
    entries: Mutex<HashMap<String, IssuerEntry>>,
    calls: AtomicUsize,
    /// Lookups that returned (hanging ones that were given up never do).
    answered: AtomicUsize,
    delay: Mutex<Duration>,
    down: Mutex<bool>,
    stall_misses: watch::Sender<bool>,
}

#[async_trait]
impl IssuerLookup for Store {
    async fn lookup(&self, issuer: &str) -> Result<Option<IssuerEntry>, LookupError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let delay = *self.delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let miss = !self.entries.lock().unwrap().contains_key(issuer);
        if miss && *self.stall_misses.borrow() {
            let mut stall = self.stall_misses.subscribe();
            let _ = stall.wait_for(|stalled| !stalled).await;
        }
        self.answered.fetch_add(1, Ordering::SeqCst);
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
        Self::with(|builder| builder).await
    }

    /// [`new`](Self::new), with more settings.
    async fn with(settings: impl FnOnce(TrustedIssuersBuilder) -> TrustedIssuersBuilder) -> Self {
        let server = TenantServer::start().await;
        let key = TestKey::new(Algorithm::ES256);
        server.add("acme", &key.jwks);
        let store = Arc::new(Store::default());
        store.put(entry(&server, "acme").build().unwrap());
        let clock = Arc::new(ManualMonotonicClock::default());
        let builder = TrustedIssuers::builder()
            .lookup(Arc::clone(&store))
            .negative_ttl(SECS(60))
            .negative_capacity(1000)
            .lookup_ttl(SECS(300))
            .clock(clock.clone());
        let trusted = settings(builder).build().unwrap();
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

/// A flood of thousands of distinct random issuers whose lookups hang (the
/// store is slow on misses): only `max_concurrent_lookups` (4) run and
/// `max_queued_lookups` (8) wait; every other token is refused as
/// unavailable at once, while no lookup has answered, not after waiting
/// behind the others, and nothing is remembered as unknown. A registered
/// tenant's first token, arriving while the flood's lookups still hang, is
/// answered without waiting for them (refused as unavailable while the
/// places are taken, never as unknown), and verifies once the hanging
/// lookups reach the lookup timeout, while the store still has not answered
/// one of them. The flood cost at most 12 lookups, not thousands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_issuer_flood_waits_in_a_bounded_queue_and_does_not_hold_back_a_new_tenant() {
    let s = Setup::with(|builder| {
        builder
            .max_concurrent_lookups(4)
            .max_queued_lookups(8)
            .lookup_timeout(SECS(3))
    })
    .await;
    let (in_flight, queued, flood) = (4, 8, 2000);
    let mut strangers = Vec::new();
    for i in 0..flood {
        strangers.push(s.token(&format!("random-{i}")).await);
    }
    let acme = s.token("acme").await;
    s.store.stall_misses.send_replace(true);

    let refused = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for token in strangers {
        let (trusted, refused) = (s.trusted.clone(), Arc::clone(&refused));
        tasks.spawn(async move {
            let reason = reason(verify(&trusted, &token).await);
            refused.fetch_add(1, Ordering::SeqCst);
            reason
        });
    }
    // The excess is refused while every admitted lookup still hangs (none
    // has answered). Before the bound, no token came back at all.
    let deadline = tokio::time::Instant::now() + SECS(60);
    while refused.load(Ordering::SeqCst) < flood - in_flight - queued {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {flood} tokens came back",
            refused.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        s.store.answered.load(Ordering::SeqCst),
        0,
        "no lookup has answered yet"
    );
    let calls = s.store.calls();
    assert!(calls <= in_flight + queued, "{calls} lookups for the flood");
    let stats = s.trusted.stats();
    assert!(
        stats.lookups_refused >= (flood - in_flight - queued) as u64,
        "{stats:?}"
    );

    // The new tenant's first token, while the flood's lookups hang: an answer
    // without waiting for them; then, by the lookup timeout, a verification.
    let first = verify(&s.trusted, &acme).await;
    let answered = s.store.answered.load(Ordering::SeqCst);
    match &first {
        // The hanging lookups reached their timeout already: acme's ran.
        Ok((name, _)) => assert_eq!((name.as_str(), answered), ("acme", 1)),
        Err(error) => {
            assert_eq!(error.reason(), "issuer_lookup_failed", "{error}");
            assert_eq!(answered, 0, "refused without waiting for the flood's lookups");
        }
    }
    let deadline = tokio::time::Instant::now() + SECS(60);
    let verified = loop {
        match verify(&s.trusted, &acme).await {
            Ok(verified) => break verified,
            Err(error) => assert_eq!(error.reason(), "issuer_lookup_failed", "{error}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "acme never verified");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(verified.0, "acme");
    assert_eq!(
        s.store.answered.load(Ordering::SeqCst),
        1,
        "only acme's lookup answered: the flood's still hang"
    );

    while let Some(reason) = tasks.join_next().await {
        assert_eq!(reason.unwrap(), "issuer_lookup_failed");
    }
    let stats = s.trusted.stats();
    assert!(
        s.store.calls() <= in_flight + queued + 1,
        "{} lookups",
        s.store.calls()
    );
    assert_eq!(stats.negative_cache_entries, 0, "a refusal is not an answer");
    assert_eq!(stats.unknown_issuer_refusals, 0);
    s.store.stall_misses.send_replace(false);
}

/// While the store fails, a tenant's entry in hand keeps verifying (also
/// from the verification cache) for `lookup_stale_limit` past its lookup
/// TTL, and is refused as unavailable after it, even though the store can
/// no longer say the tenant was removed; the store back: a removed tenant
/// is unknown, a tenant still there is trusted again.
#[tokio::test]
async fn a_tenant_stops_being_trusted_after_the_stale_limit_while_lookups_fail() {
    let s = Setup::with(|builder| {
        builder
            .lookup_stale_limit(SECS(600))
            .verification_cache(VerificationCache::new(100))
    })
    .await;
    let token = s.token("acme").await;
    verify(&s.trusted, &token).await.unwrap();

    // Removed from the store, which fails from now on.
    s.store.entries.lock().unwrap().clear();
    *s.store.down.lock().unwrap() = true;
    s.clock.advance(SECS(300));
    assert_eq!(verify(&s.trusted, &token).await.unwrap().0, "acme", "in hand");
    assert_eq!(s.store.calls(), 2);
    s.clock.advance(SECS(599));
    assert_eq!(verify(&s.trusted, &token).await.unwrap().0, "acme");
    assert_eq!(verify(&s.trusted, &token).await.unwrap().0, "acme", "cached");
    s.clock.advance(SECS(1));
    for _ in 0..3 {
        let error = s
            .trusted
            .verify::<oidc_core::AccessTokenClaims>(&token)
            .await
            .unwrap_err();
        assert_eq!(error.reason(), "issuer_lookup_failed", "{error}");
        assert!(error.to_string().contains("\"acme\""), "{error}");
    }
    // Looked up again once per retry interval meanwhile, not per token.
    let calls = s.store.calls();
    s.clock.advance(SECS(10));
    assert_eq!(reason(verify(&s.trusted, &token).await), "issuer_lookup_failed");
    assert_eq!(s.store.calls(), calls + 1);

    // The store answers: removed means unknown.
    *s.store.down.lock().unwrap() = false;
    s.clock.advance(SECS(10));
    assert_eq!(reason(verify(&s.trusted, &token).await), "unknown_issuer");

    // A tenant still in the store is trusted again once a lookup answers.
    s.store.put(entry(&s.server, "acme").build().unwrap());
    s.trusted.forget_unknown(&s.server.issuer("acme"));
    verify(&s.trusted, &token).await.unwrap();
    *s.store.down.lock().unwrap() = true;
    s.clock.advance(SECS(900));
    assert_eq!(reason(verify(&s.trusted, &token).await), "issuer_lookup_failed");
    *s.store.down.lock().unwrap() = false;
    s.clock.advance(SECS(10));
    assert_eq!(verify(&s.trusted, &token).await.unwrap().0, "acme");
}
