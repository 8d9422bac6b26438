//! connector-client against the real token server on loopback: refresh ahead
//! of expiry, single flight, backoff through a failing or stopped token
//! endpoint, the 401 retry against a resource that verifies with oidc-core,
//! issuer clock skew, and the `get-token` example binary.
//!
//! The cache runs on connector-client's `ManualTimer` (it only decides when to
//! refresh); the HTTP requests are real and go to the real server, whose
//! metrics count them. Nothing here sleeps through a token lifetime: real time
//! is only spent waiting for background work, with generous safety limits.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use connector_client::timer::{ManualTimer, Timer as _};
use connector_client::{
    AccessToken, BearerAuth, CachedTokenSource, ClientAuth, ClientCredentials, ClientSecret, Endpoint, Error,
    NoTokenReason, TokenSource, TransportErrorKind, UnavailableError,
};
use e2e::scratch::Scratch;
use e2e::{client_key, test_config, TestServer, AUDIENCE, JWT_CLIENT, SECRET, SECRET_CLIENT};
use oidc_core::clock::{SystemClock, WallClock};
use oidc_core::keys::{LocalSigner, SignError, Signer, VerifyingKey};
use oidc_core::verify::remote::RemoteJwks;
use oidc_core::{AccessTokenClaims, Algorithm, KeySet, Policy, Verifier};
use serde_json::Value;
use tokio::sync::watch;

/// The server's token lifetime (its default), i.e. the `expires_in` the client sees.
const LIFETIME: Duration = Duration::from_secs(300);
/// With the default policy a 300 s token is refreshed 225–240 s after it was requested.
const REFRESH_EARLIEST: Duration = Duration::from_secs(225);
const REFRESH_LATEST: Duration = Duration::from_secs(240);

// ---------------------------------------------------------------------------
// Server side

/// The test configuration with a request timeout long enough for a signer
/// held on purpose (the default 10 s would answer 503 on a slow machine).
fn config() -> String {
    let (_key, jwks) = client_key(Algorithm::ES256);
    server_config(&jwks)
}

fn server_config(jwks: &Value) -> String {
    format!("{}\n[http]\nrequest_timeout_secs = 120\n", test_config(jwks))
}

/// What the [`SwitchSigner`] does with a signing request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum SignMode {
    /// Sign.
    Sign,
    /// Wait until the mode changes.
    Hold,
    /// Fail as a throttled or unreachable backend would, asking to retry after this long.
    Unavailable(Duration),
}

/// The server's signing key, behind a switch: the test holds signatures back
/// or makes the backend unavailable, so the real token endpoint answers
/// `503 temporarily_unavailable` with `Retry-After`, as it does when KMS fails.
#[derive(Debug)]
struct SwitchSigner {
    key: LocalSigner,
    mode: watch::Sender<SignMode>,
    started: AtomicU64,
}

impl SwitchSigner {
    fn new() -> Arc<Self> {
        let (key, _pem) = LocalSigner::generate(Algorithm::ES256).unwrap();
        Arc::new(Self {
            key,
            mode: watch::Sender::new(SignMode::Sign),
            started: AtomicU64::new(0),
        })
    }

    fn set(&self, mode: SignMode) {
        self.mode.send_replace(mode);
    }

    /// Signing requests received so far (held ones included).
    fn started(&self) -> u64 {
        self.started.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Signer for SwitchSigner {
    fn verifying_key(&self) -> &VerifyingKey {
        self.key.verifying_key()
    }

    async fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, SignError> {
        self.started.fetch_add(1, Ordering::SeqCst);
        let mut mode = self.mode.subscribe();
        // The sender lives as long as `self`.
        let mode = *mode.wait_for(|m| *m != SignMode::Hold).await.unwrap();
        match mode {
            SignMode::Unavailable(after) => Err(SignError::Unavailable {
                reason: "test: the signing backend is down".into(),
                retry_after: Some(after),
            }),
            _ => self.key.sign(signing_input).await,
        }
    }
}

async fn server_with(signer: Arc<SwitchSigner>) -> TestServer {
    TestServer::builder(&config())
        .keys(Arc::new(KeySet::single(signer)))
        .start()
        .await
}

/// A signer still waiting on its backend at the sign deadline (80% of the
/// request timeout) gets the token endpoint's own clean `503
/// temporarily_unavailable` with `Retry-After` (not the request timeout's
/// bare 503), counted as `signer_timeout`; once the backend answers, tokens
/// are signed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signer_past_the_sign_deadline_is_a_clean_503() {
    let signer = SwitchSigner::new();
    let (_key, jwks) = client_key(Algorithm::ES256);
    let toml = format!(
        "{}\n[http]\nrequest_timeout_secs = 1\n[log]\nmax_wait_ms = 500\n",
        test_config(&jwks)
    );
    let server = TestServer::builder(&toml)
        .keys(Arc::new(KeySet::single(signer.clone())))
        .start()
        .await;
    signer.set(SignMode::Hold);
    let (status, body, retry_after) = server.request_token().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    assert!(retry_after.is_some(), "no Retry-After");
    let metrics = server.state.metrics().render();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("oidc_server_tokens_refused_total{")
                && l.contains("signer_timeout")
                && l.ends_with(" 1")),
        "not counted as signer_timeout:\n{metrics}"
    );
    signer.set(SignMode::Sign);
    server.verify(&server.token().await).await;
}

/// Verifies `token` as a control plane would: discovery, JWKS, strict policy,
/// on `clock` (the issuer's, in the skew test).
async fn verify_on(server: &TestServer, token: &str, clock: Arc<dyn WallClock>) -> AccessTokenClaims {
    let keys = RemoteJwks::discovery(server.url.clone()).build().unwrap();
    let policy = Policy::builder(server.url.clone(), [AUDIENCE]).build().unwrap();
    Verifier::new(policy, keys)
        .with_clock(clock)
        .verify::<AccessTokenClaims>(token)
        .await
        .unwrap_or_else(|e| panic!("the control plane refused the token: {e}"))
        .into_claims()
}

async fn verify(server: &TestServer, token: &str) -> AccessTokenClaims {
    verify_on(server, token, Arc::new(SystemClock)).await
}

// ---------------------------------------------------------------------------
// Client side

/// A token source that counts the requests it has finished, so that a test
/// knows when the cache has the outcome of an attempt.
struct Counted<S> {
    inner: S,
    done: Arc<AtomicU64>,
}

#[async_trait]
impl<S: TokenSource> TokenSource for Counted<S> {
    async fn token(&self) -> Result<AccessToken, Error> {
        let result = self.inner.token().await;
        self.done.fetch_add(1, Ordering::SeqCst);
        result
    }
}

fn credentials(server: &TestServer) -> ClientCredentials {
    ClientCredentials::builder(
        Endpoint::TokenUrl(server.token_url()),
        SECRET_CLIENT,
        ClientAuth::ClientSecretBasic(ClientSecret::new(SECRET)),
    )
    .audience(AUDIENCE)
    // A safety limit only: a held signature must not time the request out.
    .timeout(Duration::from_secs(120))
    .build()
    .unwrap()
}

/// A `CachedTokenSource` over real `ClientCredentials`, on a manual clock.
struct Client {
    tokens: CachedTokenSource,
    clock: Arc<ManualTimer>,
    done: Arc<AtomicU64>,
}

impl Client {
    fn new(source: ClientCredentials) -> Self {
        let clock = Arc::new(ManualTimer::new());
        let done = Arc::new(AtomicU64::new(0));
        let counted = Counted {
            inner: source,
            done: done.clone(),
        };
        let tokens = CachedTokenSource::builder(counted)
            .timer(clock.clone())
            .build()
            .unwrap();
        Self { tokens, clock, done }
    }

    fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Waits until `n` token requests have finished and the refresher is
    /// parked on the clock again (so the recorded state is final), and checks
    /// that no further request started.
    async fn idle(&self, n: u64) {
        eventually(&format!("{n} token requests to finish"), || {
            self.done.load(Ordering::SeqCst) >= n
        })
        .await;
        eventually("the refresher to park", || self.clock.sleepers() >= 1).await;
        settle().await;
        assert_eq!(
            self.done.load(Ordering::SeqCst),
            n,
            "more token requests than expected"
        );
        assert_eq!(self.tokens.status().fetches, n, "a token request is in flight");
    }

    /// The cached token's text; panics if there is none.
    fn cached(&self) -> String {
        let token = self.tokens.cached().expect("a cached token");
        token.secret().as_str().to_owned()
    }
}

/// Waits (real time, at most 60 s on a loaded machine) until `condition` holds.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Gives background tasks a moment (real time) to do something they should not.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

fn unavailable(error: &Error) -> &UnavailableError {
    match error {
        Error::Unavailable(e) => e,
        other => panic!("expected Error::Unavailable, got {other:?}"),
    }
}

fn text(token: &AccessToken) -> String {
    token.secret().as_str().to_owned()
}

// ---------------------------------------------------------------------------
// Refresh ahead of expiry, single flight

/// Six refresh cycles against the server: each token is requested again in
/// the background 75–80% into its lifetime (225–240 s of 300 s), never before
/// that, exactly once, while the old token is still valid and still served;
/// the refresh times differ (jitter).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_happens_ahead_of_expiry_with_jitter_within_bounds() {
    let server = TestServer::start(&config()).await;
    let client = Client::new(credentials(&server));
    client.idle(1).await;
    assert_eq!(server.token_requests(), 1);

    let mut delays = Vec::new();
    for cycle in 1..=6u64 {
        // The clock stands still during a request: it was sent at `now`.
        let requested = client.now();
        let status = client.tokens.status();
        let expires_at = status.expires_at.unwrap();
        let refresh_at = status.refresh_at.unwrap();
        assert_eq!(
            expires_at - requested,
            LIFETIME,
            "lifetime is expires_in from the request"
        );
        let delay = refresh_at - requested;
        assert!(
            (REFRESH_EARLIEST..=REFRESH_LATEST).contains(&delay),
            "cycle {cycle}: refresh {delay:?} after the request, expected 225–240 s"
        );
        assert!(
            expires_at - refresh_at >= Duration::from_secs(60),
            "refresh too close to expiry"
        );
        delays.push(delay);

        let old = client.cached();
        client.clock.advance_to(refresh_at - Duration::from_millis(1));
        settle().await;
        assert_eq!(server.token_requests(), cycle, "cycle {cycle}: refreshed early");
        assert_eq!(
            client.cached(),
            old,
            "the valid token is served until the refresh"
        );

        client.clock.advance_to(refresh_at);
        client.idle(cycle + 1).await;
        assert_eq!(
            server.token_requests(),
            cycle + 1,
            "cycle {cycle}: one request per refresh"
        );
        assert_eq!(server.tokens_issued(), cycle + 1);
        let new = client.cached();
        assert_ne!(new, old, "cycle {cycle}: no new token");
        assert_eq!(client.tokens.status().failures, 0);
    }
    let distinct: HashSet<Duration> = delays.iter().copied().collect();
    assert!(
        distinct.len() > 1,
        "no jitter: every refresh after {:?}",
        delays[0]
    );

    let claims = verify(&server, &client.cached()).await;
    assert_eq!(claims.sub, SECRET_CLIENT);
    assert_eq!(claims.exp - claims.iat, LIFETIME.as_secs());
}

/// At expiry, 10,000 concurrent `token()` calls share one request: the server
/// holds that request's signature until every caller is waiting, then counts
/// exactly one more token request and one more token, which all callers get.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_callers_at_expiry_cause_one_token_request() {
    const CALLERS: usize = 10_000;
    let signer = SwitchSigner::new();
    let server = server_with(signer.clone()).await;
    let client = Client::new(credentials(&server));
    client.idle(1).await;
    assert_eq!(server.token_requests(), 1);
    let old = client.cached();

    signer.set(SignMode::Hold);
    let expires_at = client.tokens.status().expires_at.unwrap();
    client.clock.advance_to(expires_at);
    assert!(
        client.tokens.cached().is_none(),
        "an expired token is not handed out"
    );

    let started = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let tokens = client.tokens.clone();
            let started = started.clone();
            tokio::spawn(async move {
                started.fetch_add(1, Ordering::SeqCst);
                tokens.token().await
            })
        })
        .collect();
    eventually("every caller to ask for a token", || {
        started.load(Ordering::SeqCst) == CALLERS
    })
    .await;
    eventually("the token request to reach the signer", || signer.started() == 2).await;
    settle().await;
    assert_eq!(signer.started(), 2, "more than one token request at expiry");
    assert_eq!(
        server.token_requests(),
        1,
        "the held request has not been answered"
    );

    signer.set(SignMode::Sign);
    let mut seen = HashSet::new();
    for caller in callers {
        let token = caller
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("a caller failed: {e}"));
        seen.insert(text(&token));
    }
    assert_eq!(seen.len(), 1, "callers got different tokens");
    let new = seen.into_iter().next().unwrap();
    assert_ne!(new, old);
    client.idle(2).await;
    assert_eq!(
        server.token_requests(),
        2,
        "10,000 callers caused more than one request"
    );
    assert_eq!(server.tokens_issued(), 2);
    assert_eq!(verify(&server, &new).await.sub, SECRET_CLIENT);
}

// ---------------------------------------------------------------------------
// Failing token endpoint

/// What a test expects callers to get at one moment of an outage.
fn check_served(client: &Client, first: &str, phase: &mut (bool, bool)) -> Option<Error> {
    let now = client.now();
    let status = client.tokens.status();
    match status.valid_until {
        Some(valid_until) if now < valid_until => {
            assert_eq!(
                client.cached(),
                first,
                "the valid token is not served during the outage"
            );
            phase.0 = true;
            None
        }
        _ => {
            assert!(client.tokens.cached().is_none());
            phase.1 = true;
            let error = futures_util::FutureExt::now_or_never(client.tokens.token())
                .expect("while backing off, token() answers at once")
                .unwrap_err();
            let e = unavailable(&error);
            assert!(
                matches!(e.reason(), NoTokenReason::Expired { .. }),
                "{:?}",
                e.reason()
            );
            assert_eq!(e.failures(), status.failures);
            assert!(e.retry_in().is_some());
            Some(error)
        }
    }
}

/// The token endpoint answers `503 temporarily_unavailable` with
/// `Retry-After: 20` (its signing backend is down) for ten minutes of client
/// time: no attempt comes sooner than 20 s after the last (so at most 31 in
/// 600 s, counted at the server), the still-valid token keeps being served,
/// after expiry `token()` fails at once, without a request, with an error
/// naming the 503 and its cause, and when the backend is back the client
/// recovers on its own at its next attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_503_with_retry_after() {
    const RETRY_AFTER: Duration = Duration::from_secs(20);
    const SPAN: Duration = Duration::from_secs(600);
    let signer = SwitchSigner::new();
    let server = server_with(signer.clone()).await;
    let client = Client::new(credentials(&server));
    client.idle(1).await;
    let first = client.cached();

    signer.set(SignMode::Unavailable(RETRY_AFTER));
    let outage_start = client.tokens.status().refresh_at.unwrap();
    client.clock.advance_to(outage_start);
    client.idle(2).await;
    assert_eq!(server.token_requests(), 2);
    let status = client.tokens.status();
    assert_eq!(status.failures, 1);
    match status.last_error.as_ref().unwrap() {
        Error::Endpoint(e) => {
            assert_eq!(e.status(), 503);
            assert_eq!(e.oauth_error(), Some("temporarily_unavailable"));
            assert_eq!(e.retry_after(), Some(RETRY_AFTER));
        }
        other => panic!("expected the endpoint's 503, got {other:?}"),
    }

    let mut attempts = 1u64;
    let mut last_attempt = outage_start;
    let mut phase = (false, false);
    loop {
        let retry_at = client
            .tokens
            .status()
            .retry_at
            .expect("another attempt is scheduled");
        assert!(
            retry_at - last_attempt >= RETRY_AFTER,
            "attempt {}: {:?} after the last one, Retry-After was 20 s",
            attempts + 1,
            retry_at - last_attempt
        );
        assert!(
            retry_at - last_attempt <= Duration::from_secs(60),
            "backoff beyond its cap"
        );
        // Just before the attempt is due: nothing is sent, whatever callers do.
        client.clock.advance_to(retry_at - Duration::from_millis(1));
        for _ in 0..50 {
            if let Some(error) = check_served(&client, &first, &mut phase) {
                let message = error.to_string();
                for part in [
                    "no valid access token: the last one expired",
                    &format!(
                        "last error: token endpoint {} answered 503 temporarily_unavailable",
                        server.token_url()
                    ),
                    "retry after 20 s",
                ] {
                    assert!(message.contains(part), "{part:?} missing from: {message}");
                }
                assert_eq!(error.retry_after(), Some(RETRY_AFTER));
                assert!(error.is_retryable());
            }
        }
        settle().await;
        assert_eq!(
            server.token_requests(),
            1 + attempts,
            "a request before the backoff was over"
        );
        if retry_at - outage_start > SPAN {
            break;
        }
        client.clock.advance_to(retry_at);
        attempts += 1;
        client.idle(1 + attempts).await;
        assert_eq!(server.token_requests(), 1 + attempts);
        assert_eq!(client.tokens.status().failures as u64, attempts);
        last_attempt = retry_at;
    }
    let bound = SPAN.as_secs() / RETRY_AFTER.as_secs() + 1;
    assert!(
        (2..=bound).contains(&attempts),
        "{attempts} attempts in {SPAN:?}, at most {bound} allowed"
    );
    assert_eq!(phase, (true, true), "the outage did not span the token's expiry");
    assert_eq!(server.tokens_issued(), 1);

    // The backend comes back; nobody calls: the next scheduled attempt recovers.
    signer.set(SignMode::Sign);
    let retry_at = client.tokens.status().retry_at.unwrap();
    client.clock.advance_to(retry_at);
    client.idle(2 + attempts).await;
    assert_eq!(server.token_requests(), 2 + attempts);
    assert_eq!(server.tokens_issued(), 2);
    let status = client.tokens.status();
    assert_eq!((status.failures, status.retry_at.is_none()), (0, true));
    let token = client.tokens.token().await.unwrap();
    assert_ne!(text(&token), first);
    assert_eq!(verify(&server, &text(&token)).await.sub, SECRET_CLIENT);
}

/// The least the documented default backoff waits after `failures`
/// consecutive failures of a retryable kind: `d = min(60 s, 1 s × 2^(n−1))`,
/// jittered within `[d/2, d)`. Written out here rather than taken from
/// `RefreshPolicy`, so that the bound does not move with the code it checks.
fn least_backoff(failures: u32) -> Duration {
    let d = Duration::from_secs(1 << failures.saturating_sub(1).min(6)).min(Duration::from_secs(60));
    d / 2
}

/// The token endpoint is down (the server is stopped: connections are
/// refused) for ten minutes of client time: attempts back off exponentially
/// (each gap at least the backoff's lower bound, at most its 60 s cap), so
/// their number stays under the bound the backoff allows; the valid token is
/// served until it expires, then `token()` fails at once naming the refused
/// connection; a server started again on the same address gets exactly one
/// request, the client's own next attempt, and the client is healthy again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_down_then_back() {
    const SPAN: Duration = Duration::from_secs(600);
    let toml = config();
    let server = TestServer::start(&toml).await;
    let (addr, token_url) = (server.addr, server.token_url());
    let client = Client::new(credentials(&server));
    client.idle(1).await;
    let first = client.cached();
    server.stop().await;

    let outage_start = client.tokens.status().refresh_at.unwrap();
    client.clock.advance_to(outage_start);
    client.idle(2).await;
    // (The first attempt may still find a pooled connection the server has
    // just closed; later ones are refused.)
    match client.tokens.status().last_error.as_ref().unwrap() {
        Error::Transport(e) => assert_eq!(e.url(), token_url),
        other => panic!("expected a transport error, got {other:?}"),
    }

    let mut attempts = 1u32;
    let mut last_attempt = outage_start;
    let mut phase = (false, false);
    loop {
        let retry_at = client
            .tokens
            .status()
            .retry_at
            .expect("another attempt is scheduled");
        let gap = retry_at - last_attempt;
        assert!(
            gap >= least_backoff(attempts) && gap <= Duration::from_secs(60),
            "after {attempts} failures the next attempt is {gap:?} later, outside [{:?}, 60 s]",
            least_backoff(attempts)
        );
        client.clock.advance_to(retry_at - Duration::from_millis(1));
        for _ in 0..50 {
            if let Some(error) = check_served(&client, &first, &mut phase) {
                let message = error.to_string();
                let cause = format!("last error: cannot connect to {token_url}");
                assert!(message.contains(&cause), "{cause:?} missing from: {message}");
                assert!(error.is_retryable());
            }
        }
        settle().await;
        assert_eq!(
            client.tokens.status().fetches,
            u64::from(attempts) + 1,
            "an attempt before its time"
        );
        if attempts > 1 {
            match client.tokens.status().last_error.as_ref().unwrap() {
                Error::Transport(e) => assert_eq!(e.kind(), TransportErrorKind::Connect, "{e}"),
                other => panic!("expected a refused connection, got {other:?}"),
            }
        }
        if retry_at - outage_start > SPAN {
            break;
        }
        client.clock.advance_to(retry_at);
        attempts += 1;
        client.idle(u64::from(attempts) + 1).await;
        assert_eq!(client.tokens.status().failures, attempts);
        last_attempt = retry_at;
    }
    // The most attempts the backoff allows in SPAN: every gap at its lower bound.
    let (mut bound, mut at) = (1u32, Duration::ZERO);
    while at + least_backoff(bound) <= SPAN {
        at += least_backoff(bound);
        bound += 1;
    }
    assert!(
        (8..=bound).contains(&attempts),
        "{attempts} attempts in {SPAN:?}, the backoff allows at most {bound}"
    );
    assert_eq!(phase, (true, true), "the outage did not span the token's expiry");

    // The endpoint comes back at the same address; the client is left alone.
    let server = TestServer::builder(&toml).at(addr).start().await;
    assert_eq!(server.token_url(), token_url);
    let retry_at = client.tokens.status().retry_at.unwrap();
    client.clock.advance_to(retry_at - Duration::from_millis(1));
    settle().await;
    assert_eq!(server.token_requests(), 0);
    client.clock.advance_to(retry_at);
    client.idle(u64::from(attempts) + 2).await;
    assert_eq!(server.token_requests(), 1, "recovery took more than one request");
    assert_eq!(server.tokens_issued(), 1);
    assert_eq!(client.tokens.status().failures, 0);
    let token = client.tokens.token().await.unwrap();
    assert_ne!(text(&token), first);
    assert_eq!(verify(&server, &text(&token)).await.sub, SECRET_CLIENT);
}

// ---------------------------------------------------------------------------
// 401 from the resource

/// A control-plane resource that verifies tokens with oidc-core (discovery,
/// remote JWKS) and can be told to refuse some of them with 401.
struct Resource {
    verifier: Verifier<RemoteJwks>,
    /// Refuse every request.
    refuse_all: AtomicBool,
    /// Refuse these tokens (as if revoked or rejected for a reason of its own).
    refused: Mutex<HashSet<String>>,
    /// Every token presented, in order.
    seen: Mutex<Vec<String>>,
}

async fn actions(State(resource): State<Arc<Resource>>, headers: HeaderMap) -> Response {
    let unauthorized = || {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")],
        )
            .into_response()
    };
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")]).into_response();
    };
    resource.seen.lock().unwrap().push(token.to_owned());
    if resource.refuse_all.load(Ordering::SeqCst) || resource.refused.lock().unwrap().contains(token) {
        return unauthorized();
    }
    match resource.verifier.verify::<AccessTokenClaims>(token).await {
        Ok(verified) => axum::Json(serde_json::json!({ "connector": verified.claims().sub })).into_response(),
        Err(_) => unauthorized(),
    }
}

impl Resource {
    async fn start(issuer: &TestServer) -> (Arc<Resource>, String) {
        let keys = RemoteJwks::discovery(issuer.url.clone()).build().unwrap();
        let policy = Policy::builder(issuer.url.clone(), [AUDIENCE]).build().unwrap();
        let resource = Arc::new(Resource {
            verifier: Verifier::new(policy, keys),
            refuse_all: AtomicBool::new(false),
            refused: Mutex::new(HashSet::new()),
            seen: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .route("/v1/actions", get(actions))
            .with_state(resource.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/actions", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (resource, url)
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// `BearerAuth` in front of a resource that verifies tokens from the real
/// server: a 401 causes exactly one refresh (counted at the server) and one
/// retry with the new token; a second 401 reaches the caller as it is; twenty
/// requests refused at once with the same token share one refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_401_refreshes_once_and_retries_once() {
    let server = TestServer::start(&config()).await;
    let (resource, url) = Resource::start(&server).await;
    let client = Client::new(credentials(&server));
    client.idle(1).await;
    let http = reqwest_middleware::ClientBuilder::new(e2e::http())
        .with(BearerAuth::new(client.tokens.clone()))
        .build();

    // Accepted: the token is verified by the resource, no refresh.
    let response = http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["connector"], SECRET_CLIENT);
    let t1 = client.cached();
    assert_eq!(resource.seen(), std::slice::from_ref(&t1));
    assert_eq!(server.token_requests(), 1);

    // The resource refuses this token once: one refresh, one retry, success.
    resource.refused.lock().unwrap().insert(t1.clone());
    let response = http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200, "the retry with a fresh token failed");
    client.idle(2).await;
    let t2 = client.cached();
    assert_ne!(t2, t1);
    assert_eq!(resource.seen()[1..], [t1.clone(), t2.clone()]);
    assert_eq!(server.token_requests(), 2, "a 401 must cause exactly one refresh");

    // It refuses every token: one refresh, one retry, and the second 401 is the answer.
    resource.refuse_all.store(true, Ordering::SeqCst);
    let response = http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 401, "the second 401 goes to the caller");
    assert_eq!(
        response.headers()[header::WWW_AUTHENTICATE.as_str()],
        "Bearer error=\"invalid_token\""
    );
    client.idle(3).await;
    let t3 = client.cached();
    assert_ne!(t3, t2);
    assert_eq!(
        resource.seen()[3..],
        [t2.clone(), t3.clone()],
        "exactly one retry"
    );
    assert_eq!(
        server.token_requests(),
        3,
        "exactly one refresh for two 401s in a row"
    );
    // The token that was refused twice in a row is still the current one:
    // no refresh loop, nothing more sent.
    settle().await;
    assert_eq!((resource.seen().len(), server.token_requests()), (5, 3));

    // Twenty requests refused at once with the same token share one refresh.
    resource.refuse_all.store(false, Ordering::SeqCst);
    resource.refused.lock().unwrap().insert(t3.clone());
    let requests = (0..20).map(|_| http.get(&url).send());
    for response in futures_util::future::join_all(requests).await {
        assert_eq!(response.unwrap().status(), 200);
    }
    client.idle(4).await;
    assert_eq!(
        server.token_requests(),
        4,
        "twenty 401s with one token must cause one refresh"
    );
    let t4 = client.cached();
    let seen = resource.seen();
    assert!(seen[5..].iter().all(|t| *t == t3 || *t == t4));
    assert_eq!(seen[5..].iter().filter(|t| **t == t4).count(), 20);
}

// ---------------------------------------------------------------------------
// Issuer clock skew

/// The system clock shifted by a fixed number of seconds.
#[derive(Debug)]
struct SkewedClock(i64);

impl WallClock for SkewedClock {
    fn now(&self) -> u64 {
        SystemClock.now().saturating_add_signed(self.0)
    }
}

/// The issuer's clock 10 minutes ahead or behind changes nothing for the
/// client: it takes the lifetime from `expires_in` (300 s) on its own clock,
/// refreshes 225–240 s after each request, exactly once per cycle, and never
/// fails, although the tokens' `iat` and `exp` are 10 minutes off (an
/// unskewed verifier with the default leeway refuses them; one on the
/// issuer's time accepts them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_clock_skew_changes_nothing() {
    for skew in [600i64, -600] {
        let issuer_clock = Arc::new(SkewedClock(skew));
        let server = TestServer::builder(&config())
            .clock(issuer_clock.clone())
            .start()
            .await;
        let client = Client::new(credentials(&server));
        client.idle(1).await;

        let token = client.cached();
        let claims = verify_on(&server, &token, issuer_clock.clone()).await;
        let shifted = SystemClock.now().saturating_add_signed(skew);
        assert!(
            claims.iat.abs_diff(shifted) <= 5,
            "skew {skew}: iat {} is not the issuer's time",
            claims.iat
        );
        assert_eq!(claims.exp - claims.iat, LIFETIME.as_secs());
        // The skew is real: a verifier on the true time refuses the token.
        let keys = RemoteJwks::discovery(server.url.clone()).build().unwrap();
        let policy = Policy::builder(server.url.clone(), [AUDIENCE]).build().unwrap();
        let refused = Verifier::new(policy, keys)
            .verify::<AccessTokenClaims>(&token)
            .await;
        assert!(
            refused.is_err(),
            "skew {skew}: an unskewed verifier accepted the token"
        );

        for cycle in 1..=3u64 {
            let requested = client.now();
            let status = client.tokens.status();
            let (expires_at, refresh_at) = (status.expires_at.unwrap(), status.refresh_at.unwrap());
            assert_eq!(
                expires_at - requested,
                LIFETIME,
                "skew {skew}: lifetime not from expires_in"
            );
            let delay = refresh_at - requested;
            assert!(
                (REFRESH_EARLIEST..=REFRESH_LATEST).contains(&delay),
                "skew {skew}, cycle {cycle}: refresh {delay:?} after the request"
            );
            let old = client.cached();
            client.clock.advance_to(refresh_at - Duration::from_millis(1));
            settle().await;
            assert_eq!(server.token_requests(), cycle, "skew {skew}: refreshed early");
            assert_eq!(client.tokens.token().await.map(|t| text(&t)).unwrap(), old);
            client.clock.advance_to(refresh_at);
            client.idle(cycle + 1).await;
            assert_eq!(
                server.token_requests(),
                cycle + 1,
                "skew {skew}: one request per refresh"
            );
            assert_ne!(client.cached(), old);
            assert_eq!(client.tokens.status().failures, 0);
        }
        let claims = verify_on(&server, &client.cached(), issuer_clock).await;
        assert_eq!(claims.sub, SECRET_CLIENT);
    }
}

// ---------------------------------------------------------------------------
// The get-token example

/// The `get-token` example binary of connector-client, built (or found up to
/// date) by cargo once per test run, in this test's target directory and
/// profile, with the workspace's features as `cargo test --workspace
/// --all-features` builds it.
fn get_token_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| e2e::built_executable(&["--example", "get-token"], "get-token"))
}

/// What one run of get-token did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn get_token(args: &[&str]) -> Run {
    let binary = tokio::task::spawn_blocking(get_token_binary).await.unwrap();
    let run = tokio::process::Command::new(binary)
        .args(args)
        .env_remove("RUST_LOG")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("get-token finished in time")
        .unwrap();
    Run {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// get-token against the server with `client_secret_basic`, `client_secret_post`,
/// `private_key_jwt`, and with discovery: exit 0, one JSON object on stdout
/// (`access_token`, `expires_in`) whose token the control plane accepts,
/// nothing on stderr, one token issued per run. Failures (wrong secret,
/// endpoint down, usage error) print one line on stderr and exit non-zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_token_example_with_each_auth_method() {
    // Build first, so that the build does not eat into the servers' time.
    tokio::task::spawn_blocking(get_token_binary).await.unwrap();
    let (key, pem) = LocalSigner::generate(Algorithm::ES256).unwrap();
    let jwks = serde_json::json!({ "keys": [Value::Object(key.verifying_key().to_jwk())] });
    let server = TestServer::start(&server_config(&jwks)).await;
    let scratch = Scratch::new("client");
    let secret_file = scratch.file("secret", &format!("{SECRET}\n"));
    let key_file = scratch.file("client.pem", pem.as_str());
    let token_url = server.token_url();

    let secret_args = |method: &'static str| {
        vec![
            "--token-url",
            &token_url,
            "--client-id",
            SECRET_CLIENT,
            "--client-secret-file",
            &secret_file,
            "--auth-method",
            method,
            "--audience",
            AUDIENCE,
        ]
    };
    let cases: Vec<(&str, &str, Vec<&str>)> = vec![
        ("client_secret_basic", SECRET_CLIENT, secret_args("basic")),
        ("client_secret_post", SECRET_CLIENT, secret_args("post")),
        (
            "private_key_jwt",
            JWT_CLIENT,
            vec![
                "--token-url",
                &token_url,
                "--client-id",
                JWT_CLIENT,
                "--private-key",
                &key_file,
                "--audience",
                AUDIENCE,
            ],
        ),
        (
            "client_secret_basic, discovered",
            SECRET_CLIENT,
            vec![
                "--issuer",
                &server.url,
                "--client-id",
                SECRET_CLIENT,
                "--client-secret-file",
                &secret_file,
                "--scope",
                "actions:write",
            ],
        ),
    ];
    for (issued, (method, client_id, args)) in (1u64..).zip(cases) {
        let run = get_token(&args).await;
        assert_eq!(run.code, Some(0), "{method}: exit code; stderr: {}", run.stderr);
        assert_eq!(run.stderr, "", "{method}: stderr");
        assert_eq!(
            run.stdout.lines().count(),
            1,
            "{method}: one line on stdout: {}",
            run.stdout
        );
        let out: Value = serde_json::from_str(&run.stdout).unwrap();
        let object = out.as_object().unwrap();
        assert_eq!(object.len(), 2, "{method}: {out}");
        assert_eq!(out["expires_in"], LIFETIME.as_secs(), "{method}");
        let claims = verify(&server, out["access_token"].as_str().unwrap()).await;
        assert_eq!(claims.sub, client_id, "{method}");
        assert_eq!(server.tokens_issued(), issued, "{method}: one token per run");
        if method.ends_with("discovered") {
            assert_eq!(claims.scope.as_deref(), Some("actions:write"));
        }
    }

    let one_line_failure = |run: &Run, code: i32, what: &str| {
        assert_eq!(run.code, Some(code), "{what}: exit code; stderr: {}", run.stderr);
        assert_eq!(run.stdout, "", "{what}: nothing on stdout");
        assert!(run.stderr.starts_with("get-token: "), "{what}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{what}: one line: {}", run.stderr);
        run.stderr.clone()
    };

    let wrong_secret = scratch.file("wrong", "not-the-secret");
    let mut args = secret_args("basic");
    args[5] = wrong_secret.as_str();
    let run = get_token(&args).await;
    let line = one_line_failure(&run, 1, "wrong secret");
    assert!(
        line.contains(&format!("token endpoint {token_url} answered 401 invalid_client")),
        "{line}"
    );

    let down = {
        // A port nothing listens on.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/token", listener.local_addr().unwrap())
    };
    let mut args = secret_args("basic");
    args[1] = down.as_str();
    let run = get_token(&args).await;
    let line = one_line_failure(&run, 1, "endpoint down");
    assert!(line.contains(&format!("cannot connect to {down}")), "{line}");

    let run = get_token(&["--token-url", &token_url, "--client-secret-file", &secret_file]).await;
    let line = one_line_failure(&run, 2, "usage error");
    assert!(line.contains("--client-id"), "{line}");
    assert_eq!(server.tokens_issued(), 4, "failures issued no token");
}

/// An IAM user made in the (shared) AWS emulator: access key id, secret, ARN.
const IAM_USER: &str = r#"
import json, sys, boto3
iam = boto3.client("iam", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="setup", aws_secret_access_key="setup")
user = iam.create_user(UserName=sys.argv[2])["User"]
key = iam.create_access_key(UserName=sys.argv[2])["AccessKey"]
print(json.dumps([key["AccessKeyId"], key["SecretAccessKey"], user["Arn"]]))
"#;

/// get-token with `--aws-iam`: the standard AWS chain (here the environment)
/// gives an IAM user's keys, the example signs `sts:GetCallerIdentity`, the
/// server forwards it to the emulator's STS and issues a token for the
/// connector bound to that user (exit 0, JSON on stdout). The same user asking
/// as a connector it is not bound to gets one line and exit 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_token_example_with_aws_iam() {
    tokio::task::spawn_blocking(get_token_binary).await.unwrap();
    let moto = tokio::task::spawn_blocking(e2e::moto::Moto::shared)
        .await
        .unwrap();
    let user = e2e::moto::unique("get-token");
    let out = e2e::tools::run_python(IAM_USER, &[&moto.endpoint, &user]).await;
    assert_eq!(out.code, 0, "IAM setup in the emulator failed: {}", out.stderr);
    let created: Value = serde_json::from_str(&out.stdout).unwrap();
    let (key_id, secret, arn) = (
        created[0].as_str().unwrap(),
        created[1].as_str().unwrap(),
        created[2].as_str().unwrap(),
    );
    let (_key, jwks) = client_key(Algorithm::ES256);
    let toml = format!(
        "{}\n[aws_iam]\nsts_endpoint = \"{}\"\n\n[[connectors]]\nid = \"connector-iam\"\naudiences = [\"{AUDIENCE}\"]\naws_principals = [\"{arn}\"]\n",
        test_config(&jwks),
        moto.endpoint
    );
    let server = TestServer::start(&toml).await;
    let token_url = server.token_url();

    let run = |client_id: &'static str| {
        let mut command = tokio::process::Command::new(get_token_binary());
        command
            .args(["--token-url", &token_url, "--client-id", client_id, "--aws-iam"])
            .args(["--audience", AUDIENCE])
            .env_remove("RUST_LOG")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
            .env("AWS_REGION", e2e::moto::REGION)
            .env("AWS_ENDPOINT_URL_STS", &moto.endpoint)
            .env("AWS_ACCESS_KEY_ID", key_id)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .kill_on_drop(true);
        async move {
            let output = tokio::time::timeout(Duration::from_secs(120), command.output())
                .await
                .expect("get-token finished in time")
                .unwrap();
            Run {
                code: output.status.code(),
                stdout: String::from_utf8(output.stdout).unwrap(),
                stderr: String::from_utf8(output.stderr).unwrap(),
            }
        }
    };

    let ok = run("connector-iam").await;
    assert_eq!(ok.code, Some(0), "stderr: {}", ok.stderr);
    assert_eq!(ok.stderr, "");
    let out: Value = serde_json::from_str(&ok.stdout).unwrap();
    assert_eq!(out["expires_in"], LIFETIME.as_secs());
    let claims = verify(&server, out["access_token"].as_str().unwrap()).await;
    assert_eq!(claims.sub, "connector-iam");
    assert_eq!(server.tokens_issued(), 1);

    let refused = run(SECRET_CLIENT).await;
    assert_eq!(refused.code, Some(1), "stderr: {}", refused.stderr);
    assert_eq!(refused.stdout, "");
    assert_eq!(refused.stderr.lines().count(), 1, "{}", refused.stderr);
    assert!(
        refused.stderr.starts_with(&format!(
            "get-token: token endpoint {token_url} answered 401 invalid_client"
        )),
        "{}",
        refused.stderr
    );
    assert_eq!(server.tokens_issued(), 1);
}
