//! Backoff after failures: bounds, Retry-After, slower pace for errors that
//! are not retryable, and no requests from callers while backing off.

use std::time::Duration;

use connector_client::timer::Timer;
use connector_client::{Error, SourceError};

use crate::support::{cache, fetched, outage, settle, unavailable, Fake};

#[tokio::test]
async fn backoff_doubles_within_jitter_bounds_up_to_the_cap() {
    let fake = Fake::failing(outage("connection refused"));
    let (cache, clock) = cache(&fake);
    fetched(&fake, &cache, &clock, 1).await;
    for failures in 1..=10u32 {
        let status = cache.status();
        assert_eq!(status.failures, failures);
        let delay = status.retry_at.unwrap() - clock.now();
        let d = (Duration::from_secs(1) * 2u32.pow(failures - 1)).min(Duration::from_secs(60));
        assert!(
            delay >= d / 2 && delay < d,
            "failure {failures}: {delay:?} not in [{:?}, {d:?})",
            d / 2
        );
        clock.advance(delay - Duration::from_millis(1));
        settle().await;
        assert_eq!(fake.fetches(), u64::from(failures), "retried early");
        clock.advance(Duration::from_millis(1));
        fetched(&fake, &cache, &clock, u64::from(failures) + 1).await;
    }
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let error: Error = SourceError::new(std::io::Error::other("503 temporarily_unavailable"))
        .with_retry_after(Duration::from_secs(30))
        .into();
    let fake = Fake::failing(error);
    let (cache, clock) = cache(&fake);
    fetched(&fake, &cache, &clock, 1).await;
    let retry_at = cache.status().retry_at.unwrap();
    assert!(retry_at - clock.now() >= Duration::from_secs(30));

    clock.advance(Duration::from_secs(29));
    settle().await;
    let error = cache.token().await.unwrap_err();
    assert_eq!(fake.fetches(), 1, "a caller or the refresher ignored Retry-After");
    assert!(unavailable(&error).retry_in().unwrap() <= Duration::from_secs(1));
    assert_eq!(error.retry_after(), Some(Duration::from_secs(30)));

    clock.advance_to(retry_at);
    fetched(&fake, &cache, &clock, 2).await;
}

#[tokio::test]
async fn errors_that_are_not_retryable_back_off_at_least_five_seconds() {
    let error: Error = SourceError::new(std::io::Error::other("invalid_client"))
        .permanent()
        .into();
    assert!(!error.is_retryable());
    let fake = Fake::failing(error);
    let (cache, clock) = cache(&fake);
    fetched(&fake, &cache, &clock, 1).await;
    let delay = cache.status().retry_at.unwrap() - clock.now();
    assert!(
        delay >= Duration::from_secs(5) && delay < Duration::from_secs(10),
        "{delay:?}"
    );
}

#[tokio::test]
async fn callers_get_the_cause_at_once_while_backing_off() {
    let fake = Fake::failing(outage("connection refused"));
    let (cache, clock) = cache(&fake);
    fetched(&fake, &cache, &clock, 1).await;
    for _ in 0..100 {
        let error = cache.token().await.unwrap_err();
        assert!(
            error.to_string().ends_with("; last error: connection refused"),
            "{error}"
        );
        assert_eq!(unavailable(&error).failures(), 1);
    }
    assert_eq!(fake.fetches(), 1);
}
