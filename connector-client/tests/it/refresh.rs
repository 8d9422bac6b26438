//! Refresh timing, serving through failures, expiry, recovery, invalidate().

use std::time::Duration;

use connector_client::timer::Timer;
use connector_client::{Error, NoTokenReason};

use crate::support::{cache, eventually, fetched, outage, settle, unavailable, Fake, Outcome};

const S: fn(u64) -> Duration = Duration::from_secs;

#[tokio::test]
async fn first_token_is_fetched_at_start_and_lives_by_expires_in() {
    let fake = Fake::new(S(300));
    let (cache, clock) = cache(&fake);
    let t0 = clock.now();
    fetched(&fake, &cache, &clock, 1).await;
    assert_eq!(cache.token().await.unwrap().secret().as_str(), "token-1");

    // Expiry is local receipt time + expires_in; the token's own claims and
    // the issuer's clock play no part. The last 5 s are not handed out.
    let status = cache.status();
    assert_eq!(status.expires_at, Some(t0 + S(300)));
    assert_eq!(status.valid_until, Some(t0 + S(295)));
    assert_eq!((status.failures, status.retry_at, status.fetches), (0, None, 1));
}

/// Drives `rounds` background refreshes of tokens living `lifetime` and
/// returns each refresh delay, checking that nothing happens before it is due.
async fn refresh_delays(lifetime: Duration, rounds: u64) -> Vec<Duration> {
    let fake = Fake::new(lifetime);
    let (cache, clock) = cache(&fake);
    fetched(&fake, &cache, &clock, 1).await;
    let mut fetched_at = clock.now();
    let mut delays = Vec::new();
    for round in 1..=rounds {
        let refresh_at = cache.status().refresh_at.unwrap();
        delays.push(refresh_at - fetched_at);
        clock.advance_to(refresh_at - Duration::from_millis(1));
        settle().await;
        assert_eq!(fake.fetches(), round, "refreshed before it was due");
        assert_eq!(
            cache.token().await.unwrap().secret().as_str(),
            format!("token-{round}")
        );
        clock.advance_to(refresh_at);
        fetched(&fake, &cache, &clock, round + 1).await;
        assert_eq!(
            cache.token().await.unwrap().secret().as_str(),
            format!("token-{}", round + 1)
        );
        fetched_at = clock.now();
    }
    delays
}

#[tokio::test]
async fn refresh_is_at_75_to_80_percent_with_jitter() {
    let delays = refresh_delays(S(300), 30).await;
    for delay in &delays {
        assert!(
            (S(225)..=S(240)).contains(delay),
            "{delay:?} outside [225 s, 240 s]"
        );
    }
    let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
    assert!(
        distinct.len() > 20,
        "jitter is not spreading refreshes: {delays:?}"
    );
}

#[tokio::test]
async fn refresh_keeps_a_minimum_buffer_before_expiry() {
    // 80% of 100 s would leave 20 s; the 30 s buffer moves it to 65–70 s.
    for delay in refresh_delays(S(100), 10).await {
        assert!((S(65)..=S(70)).contains(&delay), "{delay:?}");
    }
    // Too short for the buffer: refresh at 45–50% instead of looping.
    for delay in refresh_delays(S(40), 10).await {
        assert!((S(18)..=S(20)).contains(&delay), "{delay:?}");
    }
}

#[tokio::test]
async fn valid_token_is_served_while_refresh_fails_then_expiry_names_the_cause() {
    let fake = Fake::new(S(300));
    let (cache, clock) = cache(&fake);
    let t0 = clock.now();
    fetched(&fake, &cache, &clock, 1).await;

    fake.set(Outcome::Fail(outage("token endpoint answered 503")));
    let mut n = 1;
    // Fail every retry until the token is past its usable time.
    while clock.now() < t0 + S(295) {
        let due = cache.status().retry_at.or(cache.status().refresh_at).unwrap();
        clock.advance_to(due.min(t0 + S(295)));
        if clock.now() >= due {
            n += 1;
            fetched(&fake, &cache, &clock, n).await;
        }
        if clock.now() < t0 + S(295) {
            assert_eq!(cache.token().await.unwrap().secret().as_str(), "token-1");
        }
    }
    assert!(n >= 3, "expected several failed refreshes, got {}", n - 1);
    assert_eq!(cache.status().failures as u64, n - 1);
    assert!(cache.cached().is_none());

    // Expired, and backing off: the error comes at once, without a request.
    // (The loop left the clock before the next retry.)
    assert!(cache.status().retry_at.unwrap() > clock.now());
    let error = cache.token().await.unwrap_err();
    assert_eq!(fake.fetches(), n);
    let unavailable = unavailable(&error);
    assert!(matches!(unavailable.reason(), NoTokenReason::Expired { .. }));
    assert_eq!(unavailable.failures() as u64, n - 1);
    assert!(matches!(unavailable.cause(), Error::Source(_)));
    let text = error.to_string();
    assert!(
        text.starts_with("no valid access token: the last one expired"),
        "{text}"
    );
    assert!(
        text.ends_with("; last error: token endpoint answered 503"),
        "{text}"
    );
    assert!(error.is_retryable());
    assert!(std::error::Error::source(&error).is_some());
}

#[tokio::test]
async fn recovers_when_the_source_does() {
    let fake = Fake::failing(outage("connection refused"));
    let (cache, clock) = cache(&fake);
    fetched(&fake, &cache, &clock, 1).await;
    let error = cache.token().await.unwrap_err();
    assert_eq!(unavailable(&error).reason(), NoTokenReason::NeverObtained);
    assert!(error.to_string().contains("connection refused"), "{error}");

    fake.set(Outcome::Token(S(300)));
    clock.advance_to(cache.status().retry_at.unwrap());
    fetched(&fake, &cache, &clock, 2).await;
    assert_eq!(cache.token().await.unwrap().secret().as_str(), "token-2");
    let status = cache.status();
    assert_eq!((status.failures, status.retry_at), (0, None));
    assert!(status.last_error.is_none());
}

#[tokio::test]
async fn on_demand_fetch_after_expiry_when_not_backing_off() {
    let fake = Fake::new(S(300));
    let (cache, clock) = cache(&fake);
    fetched(&fake, &cache, &clock, 1).await;
    // Hold the background refresh at the gate and jump past expiry: the
    // caller waits for that fetch rather than starting its own.
    fake.close_gate();
    clock.advance(S(400));
    eventually("the background refresh to start", || fake.fetches() == 2).await;
    let waiter = tokio::spawn({
        let cache = cache.clone();
        async move { cache.token().await }
    });
    settle().await;
    assert!(!waiter.is_finished());
    fake.open_gate();
    assert_eq!(waiter.await.unwrap().unwrap().secret().as_str(), "token-2");
    assert_eq!(fake.fetches(), 2);
}

#[tokio::test]
async fn invalidate_fetches_a_new_token_once() {
    let fake = Fake::new(S(300));
    let (cache, clock) = cache(&fake);
    fetched(&fake, &cache, &clock, 1).await;
    let first = cache.token().await.unwrap();

    for _ in 0..10 {
        cache.invalidate(&first);
    }
    fetched(&fake, &cache, &clock, 2).await;
    let second = cache.token().await.unwrap();
    assert_eq!(second.secret().as_str(), "token-2");

    // A stale token does nothing.
    cache.invalidate(&first);
    settle().await;
    assert_eq!(fake.fetches(), 2);
    assert_eq!(cache.token().await.unwrap(), second);
}

#[tokio::test]
async fn invalidated_token_while_backing_off_reports_refused() {
    let fake = Fake::new(S(300));
    let (cache, clock) = cache(&fake);
    fetched(&fake, &cache, &clock, 1).await;
    let first = cache.token().await.unwrap();
    fake.set(Outcome::Fail(outage("token endpoint down")));
    cache.invalidate(&first);
    fetched(&fake, &cache, &clock, 2).await;
    let error = cache.token().await.unwrap_err();
    assert_eq!(unavailable(&error).reason(), NoTokenReason::Refused);
    assert_eq!(fake.fetches(), 2);
}

#[tokio::test]
async fn dropping_the_last_clone_stops_the_refresher() {
    let fake = Fake::new(S(300));
    let (cache, clock) = cache(&fake);
    fetched(&fake, &cache, &clock, 1).await;
    let clone = cache.clone();
    drop(cache);
    clock.advance(S(250));
    fetched(&fake, &clone, &clock, 2).await;
    drop(clone);
    eventually("the refresher to stop", || clock.sleepers() == 0).await;
    clock.advance(S(1000));
    settle().await;
    assert_eq!(fake.fetches(), 2);
}
