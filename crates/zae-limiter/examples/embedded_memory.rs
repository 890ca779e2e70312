//! Memory of the embedded store with per-user buckets: one acquire on each of N distinct
//! entity ids (1,000,000 by default), then eviction once they are full again, then N new ids.
//! Reports the resident set size (from `/proc/self/statm`, Linux) after each phase.
//!
//! `cargo run --release -p zae-limiter --example embedded_memory [N]`

use std::time::{Duration, Instant};

use zae_limiter::{Clock, Limit, ManualClock, MemoryStore, RateLimiter};

/// 2026-01-01T00:00:00Z
const T0: i64 = 1_767_225_600_000;

/// Resident set size in bytes: the second field of /proc/self/statm, in 4 KiB pages.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .expect("resident pages");
    pages * 4096
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

async fn fill(limiter: &RateLimiter, prefix: &str, n: usize, limits: &[Limit]) -> Duration {
    let start = Instant::now();
    for i in 0..n {
        limiter
            .acquire(format!("{prefix}-{i:07}"), "api")
            .limits(limits.to_vec())
            .consume([("rpm", 1)])
            .await
            .expect("admitted")
            .commit()
            .await
            .expect("committed");
    }
    start.elapsed()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("N: a number of ids"))
        .unwrap_or(1_000_000);
    let store = MemoryStore::new();
    let clock = ManualClock::new(T0);
    let limiter = RateLimiter::builder(store.clone())
        .clock(clock.clone())
        .build();
    // full again 6 s after one request
    let rpm = [Limit::per_minute("rpm", 10)];
    let probe = [Limit::per_minute("rpm", 1_000_000)];

    let base = rss();
    println!("start:                        RSS {:7.1} MiB", mib(base));

    let took = fill(&limiter, "user", n, &rpm).await;
    let full = rss();
    println!(
        "{n} ids, one acquire each:  RSS {:7.1} MiB  (+{:.1} MiB, {:.0} B per bucket; {} buckets; {:.2} s, {:.2} µs per acquire)",
        mib(full),
        mib(full - base),
        (full - base) as f64 / n as f64,
        store.bucket_count(),
        took.as_secs_f64(),
        took.as_secs_f64() * 1e6 / n as f64,
    );

    // past the refill and the grace: each apply (here, a probe's) drops some
    clock.advance(Duration::from_millis(
        6_000 + MemoryStore::EVICTION_GRACE_MS as u64,
    ));
    let start = Instant::now();
    let mut calls = 0;
    while store.bucket_count() > 1 {
        limiter
            .acquire("probe", "api")
            .limits(probe.to_vec())
            .consume([("rpm", 1)])
            .await
            .expect("admitted")
            .commit()
            .await
            .expect("committed");
        calls += 1;
    }
    let swept = rss();
    println!(
        "swept by {calls} acquires:      RSS {:7.1} MiB  ({} bucket left: the probe; {:.2} s)",
        mib(swept),
        store.bucket_count(),
        start.elapsed().as_secs_f64(),
    );

    clock.advance(Duration::from_secs(60));
    let dropped = store.evict_expired(clock.now_ms());
    let evicted = rss();
    println!(
        "evict_expired (tables shrunk): RSS {:7.1} MiB  ({dropped} dropped, {} left)",
        mib(evicted),
        store.bucket_count(),
    );

    let took = fill(&limiter, "other", n, &rpm).await;
    let again = rss();
    println!(
        "{n} new ids:                RSS {:7.1} MiB  ({} buckets; freed memory reused; {:.2} s)",
        mib(again),
        store.bucket_count(),
        took.as_secs_f64(),
    );
}
