//! The failed-authentication throttle with its table full (an attacker has
//! sprayed one failure from each of as many addresses as it tracks) beside
//! the same throttle empty, in the same run:
//!
//! - `throttle/1000_failures/{empty,full}`: 1,000 failures from fresh
//!   peers (each one new to the table: in the full one, each evicts);
//! - `throttle/check_peer/{empty,full_untracked,full_limited}`: the check
//!   every token request makes before authenticating, for a peer the table
//!   does not hold and for one it refuses.
//!
//! Run (under a minute once built):
//!
//! ```sh
//! cargo bench -p oidc-server --bench throttle
//! ```

use std::hint::black_box;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use oidc_server::throttle::Throttle;

const LIMIT: u32 = 10;
/// Long enough that no window of the run expires.
const WINDOW: Duration = Duration::from_secs(3600);
const FAILURES: u64 = 1_000;

/// Peer `n` of a spray (one IPv6 /64 each, what an attacker has plenty of).
fn peer(n: u64) -> Option<IpAddr> {
    Some(IpAddr::V6(Ipv6Addr::from(
        0x2001_0db8_u128 << 96 | u128::from(n) << 32,
    )))
}

fn bench(c: &mut Criterion) {
    let full = Throttle::new(LIMIT, WINDOW);
    let mut next = 0u64;
    while full.tracked_peers() < full.peer_capacity() {
        for _ in 0..1_000 {
            let _ = full.failed(None, peer(next));
            next += 1;
        }
    }
    let limited = Some(IpAddr::from([192, 0, 2, 1]));
    for _ in 0..LIMIT {
        let _ = full.failed(None, limited);
    }
    assert!(full.check_peer(limited).is_err());
    let untracked = Some(IpAddr::from([198, 51, 100, 7]));

    let mut failures = c.benchmark_group("throttle/1000_failures");
    failures.throughput(Throughput::Elements(FAILURES));
    failures.bench_function("empty", |b| {
        b.iter_batched(
            || Throttle::new(LIMIT, WINDOW),
            |throttle| {
                for n in 0..FAILURES {
                    let _ = black_box(throttle.failed(None, peer(n)));
                }
                throttle
            },
            BatchSize::SmallInput,
        )
    });
    failures.bench_function("full", |b| {
        b.iter(|| {
            for _ in 0..FAILURES {
                let _ = black_box(full.failed(None, peer(next)));
                next += 1;
            }
        })
    });
    failures.finish();
    assert_eq!(full.tracked_peers(), full.peer_capacity());
    assert!(full.check_peer(limited).is_err());

    let empty = Throttle::new(LIMIT, WINDOW);
    let mut check = c.benchmark_group("throttle/check_peer");
    check.throughput(Throughput::Elements(1));
    check.bench_function("empty", |b| b.iter(|| empty.check_peer(black_box(untracked))));
    check.bench_function("full_untracked", |b| {
        b.iter(|| full.check_peer(black_box(untracked)))
    });
    check.bench_function("full_limited", |b| b.iter(|| full.check_peer(black_box(limited))));
    check.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
