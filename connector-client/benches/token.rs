//! A cached `token()` read beside a `Mutex<Option<Token>>` baseline, on one
//! thread and under 8 threads of contention.
//!
//! Run: `cargo bench -p connector-client --bench token`
//!
//! Both sides do the same work per read: check expiry against the clock and
//! clone the token out (a ~700-byte JWT string). The cached read polls
//! `CachedTokenSource::token()` once with a no-op waker; it is always ready
//! because a valid token is cached. `cached_token_source_sync` is the same
//! read through the synchronous `cached()`.

use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use connector_client::{AccessToken, CachedTokenSource, Error, TokenSource};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures_util::FutureExt as _;

const THREADS: usize = 8;

/// A realistic access token: ES256 JWT with a few private claims.
fn jwt() -> String {
    format!(
        "eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6IjEyMyJ9.{}.{}",
        "x".repeat(520),
        "s".repeat(86)
    )
}

struct Static(String);

#[async_trait]
impl TokenSource for Static {
    async fn token(&self) -> Result<AccessToken, Error> {
        Ok(AccessToken::new(self.0.clone(), Duration::from_secs(3600)))
    }
}

/// The obvious alternative: a mutex around the token and its expiry.
struct MutexCache(Mutex<Option<(AccessToken, Instant)>>);

impl MutexCache {
    fn token(&self) -> Option<AccessToken> {
        let guard = self.0.lock().ok()?;
        let (token, valid_until) = guard.as_ref()?;
        (Instant::now() < *valid_until).then(|| token.clone())
    }
}

fn cached_read(cache: &CachedTokenSource) -> AccessToken {
    match cache.token().now_or_never() {
        Some(Ok(token)) => token,
        _ => panic!("the cached token was not ready"),
    }
}

/// Runs `read` `iters` times on each of `THREADS` threads at once and returns
/// the wall time; criterion divides by `iters`, so with `Throughput::Elements(8)`
/// it reports reads per second across all threads.
fn contended(iters: u64, read: impl Fn() + Send + Sync + 'static) -> Duration {
    let read = Arc::new(read);
    let start_line = Arc::new(Barrier::new(THREADS + 1));
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let read = read.clone();
            let start_line = start_line.clone();
            thread::spawn(move || {
                start_line.wait();
                for _ in 0..iters {
                    read();
                }
            })
        })
        .collect();
    let started = Instant::now();
    start_line.wait();
    for worker in workers {
        worker.join().expect("bench thread panicked");
    }
    started.elapsed()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let cache = runtime.block_on(async {
        let cache = CachedTokenSource::new(Static(jwt())).expect("cache");
        cache.token().await.expect("first token");
        cache
    });
    let baseline = Arc::new(MutexCache(Mutex::new(Some((
        AccessToken::new(jwt(), Duration::from_secs(3600)),
        Instant::now() + Duration::from_secs(3600),
    )))));

    let mut one = c.benchmark_group("token_read/1_thread");
    one.throughput(Throughput::Elements(1));
    one.bench_function("cached_token_source", |b| b.iter(|| cached_read(&cache)));
    one.bench_function("cached_token_source_sync", |b| {
        b.iter(|| cache.cached().expect("cached token"))
    });
    one.bench_function("mutex_option_baseline", |b| {
        b.iter(|| baseline.token().expect("baseline token"))
    });
    one.finish();

    let mut many = c.benchmark_group(format!("token_read/{THREADS}_threads"));
    many.throughput(Throughput::Elements(THREADS as u64));
    many.bench_function(BenchmarkId::from_parameter("cached_token_source"), |b| {
        b.iter_custom(|iters| {
            let cache = cache.clone();
            contended(iters, move || drop(cached_read(&cache)))
        })
    });
    many.bench_function(BenchmarkId::from_parameter("mutex_option_baseline"), |b| {
        b.iter_custom(|iters| {
            let baseline = baseline.clone();
            contended(iters, move || drop(baseline.token()))
        })
    });
    many.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
