//! FileSink over a scripted token source on a manual clock: the file follows
//! the cache's token through refreshes, an outage past expiry (removed) and
//! recovery (back); failed writes are retried; `changes()` wakes it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use connector_client::{FileSink, FileState, TokenFile};

use crate::support::{cache, eventually, fetched, outage, settle, Fake, Outcome};

const S: fn(u64) -> Duration = Duration::from_secs;

/// A scratch folder, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cc-file-sink-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

async fn holds(path: &Path, token: &str) {
    eventually(&format!("the file to hold {token}"), || {
        read(path).as_deref() == Some(token)
    })
    .await;
}

#[tokio::test]
async fn the_file_follows_the_token_through_refresh_outage_and_recovery() {
    let scratch = Scratch::new();
    let path = scratch.0.join("token");
    let fake = Fake::new(S(300));
    let (cache, clock) = cache(&fake);
    let file = Arc::new(TokenFile::new(&path).unwrap());
    let mut sink = FileSink::spawn(cache.clone(), file.clone());

    sink.holding().await;
    assert_eq!(read(&path).as_deref(), Some("token-1"));
    let FileState::Holding { expires_at } = sink.state() else {
        panic!("holding, yet {:?}", sink.state())
    };
    let info: serde_json::Value =
        serde_json::from_str(&read(&scratch.0.join("token.json")).unwrap()).unwrap();
    let unix = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(info["expires_at_unix"], unix(expires_at));
    assert_eq!(info["token_type"], "Bearer");
    let ahead = expires_at.duration_since(SystemTime::now()).unwrap();
    assert!(ahead > S(290) && ahead <= S(300), "expires in {ahead:?}");

    // A refresh: the new token replaces the old one.
    fetched(&fake, &cache, &clock, 1).await;
    clock.advance_to(cache.status().refresh_at.unwrap());
    holds(&path, "token-2").await;

    // Outage: the file keeps the valid token while attempts fail...
    fake.set(Outcome::Fail(outage("token endpoint down")));
    let valid_until = cache.status().valid_until.unwrap();
    clock.advance_to(cache.status().refresh_at.unwrap());
    eventually("a failed refresh", || cache.status().failures >= 1).await;
    let retry_at = cache.status().retry_at.unwrap();
    assert!(retry_at < valid_until);
    clock.advance_to(retry_at);
    eventually("a second failed refresh", || cache.status().failures >= 2).await;
    settle().await;
    assert_eq!(read(&path).as_deref(), Some("token-2"));
    assert!(matches!(sink.state(), FileState::Holding { .. }));

    // ... and removes it, with the info file, once that token is no longer usable.
    clock.advance_to(valid_until);
    eventually("the file to go", || !path.exists()).await;
    eventually("the state to follow", || sink.state() == FileState::Absent).await;
    assert!(!scratch.0.join("token.json").exists());

    // Recovery: the next token brings it back.
    fake.set(Outcome::Token(S(300)));
    clock.advance_to(cache.status().retry_at.unwrap());
    eventually("a token again", || cache.cached().is_some()).await;
    let token = cache.cached().unwrap();
    holds(&path, token.secret().as_str()).await;
    sink.holding().await;

    // Stopping leaves the file; removing it is the caller's decision.
    sink.stop().await;
    assert!(path.exists());
    assert!(file.remove().unwrap());
}

#[tokio::test]
async fn a_failed_write_is_retried_after_a_backoff() {
    let scratch = Scratch::new();
    let path = scratch.0.join("token");
    let fake = Fake::new(S(300));
    let (cache, clock) = cache(&fake);
    let file = Arc::new(TokenFile::new(&path).unwrap().info_file(None));
    let mut sink = FileSink::spawn(cache.clone(), file);
    sink.holding().await;
    fetched(&fake, &cache, &clock, 1).await;

    // A directory where the file was: renaming over it fails, even as root.
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("blocker"), "").unwrap();
    clock.advance_to(cache.status().refresh_at.unwrap());
    fetched(&fake, &cache, &clock, 2).await;
    settle().await;
    assert!(path.is_dir(), "the write failed");

    // Retried after the backoff (1 s on the sink's clock), and it works once
    // the obstacle is gone.
    std::fs::remove_dir_all(&path).unwrap();
    clock.advance(S(1));
    holds(&path, "token-2").await;

    sink.stop().await;
}

#[tokio::test]
async fn a_token_is_removed_when_it_expires_even_if_writing_its_successor_failed() {
    let scratch = Scratch::new();
    let path = scratch.0.join("token");
    let info = scratch.0.join("token.json");
    let fake = Fake::new(S(300));
    let (cache, clock) = cache(&fake);
    let mut sink = FileSink::spawn(cache.clone(), Arc::new(TokenFile::new(&path).unwrap()));
    sink.holding().await;
    fetched(&fake, &cache, &clock, 1).await;
    let first_valid_until = cache.status().valid_until.unwrap();

    // The next write fails half-way (token written, info file blocked), so
    // the file may hold either token: it must go when the first one expires.
    std::fs::remove_file(&info).unwrap();
    std::fs::create_dir(&info).unwrap();
    clock.advance_to(cache.status().refresh_at.unwrap());
    fetched(&fake, &cache, &clock, 2).await;
    settle().await;
    assert!(cache.status().valid_until.unwrap() > first_valid_until);
    clock.advance_to(first_valid_until);
    eventually("the file to go", || !path.exists()).await;
    eventually("the state to follow", || sink.state() == FileState::Absent).await;

    // Once writes work again, the current token is back.
    std::fs::remove_dir(&info).unwrap();
    clock.advance(S(2));
    holds(&path, "token-2").await;
    eventually("the info file", || info.is_file()).await;
    sink.stop().await;
}

#[tokio::test]
async fn changes_wake_on_a_new_token_and_on_invalidate() {
    let fake = Fake::new(S(300));
    let (cache, clock) = cache(&fake);
    let mut changes = cache.changes();
    tokio::time::timeout(S(10), changes.changed())
        .await
        .expect("the first token is a change")
        .unwrap();
    fetched(&fake, &cache, &clock, 1).await;
    // Nothing new: no wake-up.
    assert!(tokio::time::timeout(Duration::from_millis(50), changes.changed())
        .await
        .is_err());

    let first = cache.cached().unwrap();
    cache.invalidate(&first);
    tokio::time::timeout(S(10), changes.changed())
        .await
        .expect("a dropped token is a change")
        .unwrap();
    // The replacement is one more; changes seen late are coalesced, not queued.
    fetched(&fake, &cache, &clock, 2).await;
    clock.advance_to(cache.status().refresh_at.unwrap());
    fetched(&fake, &cache, &clock, 3).await;
    tokio::time::timeout(S(10), changes.changed())
        .await
        .unwrap()
        .unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(50), changes.changed())
        .await
        .is_err());

    // The cache's instants are on its timer.
    assert!(cache.status().expires_at.unwrap() > cache.timer().now());
    drop(cache);
    assert!(changes.changed().await.is_err(), "no cache, no changes");
}
