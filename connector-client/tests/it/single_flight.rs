//! Concurrent callers share one fetch: at start, at expiry, and on failure.

use std::time::Duration;

use crate::support::{cache, eventually, fetched, outage, settle, unavailable, Fake, Outcome};

const CALLERS: usize = 10_000;

async fn call_all(
    cache: &connector_client::CachedTokenSource,
    n: usize,
) -> Vec<tokio::task::JoinHandle<Result<String, connector_client::Error>>> {
    (0..n)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.token().await.map(|t| t.secret().as_str().to_owned()) })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_callers_at_expiry_cause_one_fetch() {
    let fake = Fake::new(Duration::from_secs(300));
    let (cache, clock) = cache(&fake);
    fetched(&fake, &cache, &clock, 1).await;

    // Jump past expiry with the source held, so every caller arrives while
    // the one fetch is in flight.
    fake.close_gate();
    clock.advance(Duration::from_secs(301));
    let callers = call_all(&cache, CALLERS).await;
    settle().await;
    fake.open_gate();
    for caller in callers {
        assert_eq!(caller.await.unwrap().unwrap(), "token-2");
    }
    assert_eq!(fake.fetches(), 2, "1 at start + 1 at expiry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_callers_at_start_cause_one_fetch() {
    let fake = Fake::new(Duration::from_secs(300));
    fake.close_gate();
    let (cache, _clock) = cache(&fake);
    let callers = call_all(&cache, CALLERS).await;
    eventually("the first fetch to start", || fake.fetches() == 1).await;
    settle().await;
    fake.open_gate();
    for caller in callers {
        assert_eq!(caller.await.unwrap().unwrap(), "token-1");
    }
    assert_eq!(fake.fetches(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fetch_is_shared_too() {
    let fake = Fake::new(Duration::from_secs(300));
    fake.set(Outcome::Fail(outage("connection refused")));
    fake.close_gate();
    let (cache, _clock) = cache(&fake);
    let callers = call_all(&cache, 1000).await;
    settle().await;
    fake.open_gate();
    for caller in callers {
        let error = caller.await.unwrap().unwrap_err();
        assert_eq!(unavailable(&error).failures(), 1);
    }
    assert_eq!(fake.fetches(), 1);
}
