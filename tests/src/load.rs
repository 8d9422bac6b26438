//! The load loop the ignored benchmark tests share: `work` on `concurrency`
//! tasks until a deadline (or until `work` says it has nothing left).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs `work` on `concurrency` tasks for `seconds`; returns the rate per
/// second and how many times it ran. `work` returns `false` to stop its
/// task early (an exhausted pool of inputs).
pub async fn run<F, Fut>(concurrency: usize, seconds: u64, work: F) -> (f64, u64)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let work = Arc::new(work);
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (work, done) = (work.clone(), done.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline && work().await {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a load task panicked");
    }
    let done = done.load(Ordering::Relaxed);
    (done as f64 / started.elapsed().as_secs_f64(), done)
}
