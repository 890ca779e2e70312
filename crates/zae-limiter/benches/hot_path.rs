//! Criterion benches of the hot path on the embedded store, with `governor` (an in-process
//! GCRA limiter) as a reference point. DynamoDB is measured by `zae-limiter bench` instead.
//!
//! `cargo bench -p zae-limiter --no-default-features --bench hot_path` (the embedded store
//! alone: no AWS SDK to build)
//!
//! `scaling/*/N`: N OS threads, each with its own current-thread runtime and its own
//! entity, on one limiter and store; the time per op is wall time / ops over all threads
//! (the inverse of the combined throughput), so perfect scaling halves it from 1 to 2.
//! `scaling/memory_separate_stores/N` is the same work with nothing shared in the process
//! (a store and a limiter per thread): what the machine's cores allow, the reference for
//! the shared store's scaling.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use zae_limiter::bucket::{BucketParams, MILLI};
use zae_limiter::{Limit, MemoryStore, RateLimiter};

/// 2026-01-01T00:00:00Z in ms.
const T0: i64 = 1_767_225_600_000;

fn limits() -> Vec<Limit> {
    // never rejects, however many iterations criterion runs
    vec![
        Limit::per_minute("rpm", zae_limiter::MAX_AMOUNT),
        Limit::per_minute("tpm", zae_limiter::MAX_AMOUNT),
    ]
}

async fn acquire_commit(limiter: &RateLimiter, entity: &str) {
    let lease = limiter
        .acquire(entity, "api")
        .limits(limits())
        .consume([("rpm", 1), ("tpm", 500)])
        .await
        .expect("admitted");
    lease.commit().await.expect("committed");
}

fn bucket_math(c: &mut Criterion) {
    let mut g = c.benchmark_group("bucket");
    let p = BucketParams::new(100, 100, 60_000);
    // half full: the partial case (ADD), the one that needs the comparison
    let z = p.consume(None, 50 * MILLI, T0).expect("allowed");
    let other = BucketParams::new(1_000, 500, 3_600_000);
    g.bench_function("consume_partial", |b| {
        b.iter(|| black_box(p).consume(black_box(Some(z)), black_box(MILLI), black_box(T0 + 1)))
    });
    g.bench_function("rebase", |b| {
        b.iter(|| black_box(p).rebase(black_box(Some(z)), black_box(T0 + 1), black_box(&other)))
    });
    g.finish();
}

fn hot_path(c: &mut Criterion) {
    if std::env::var_os("ZAEL_FUTURE_SIZE").is_some() {
        let limiter = RateLimiter::builder(MemoryStore::new()).build();
        let f = std::future::IntoFuture::into_future(limiter.acquire("k", "api"));
        eprintln!("acquire future: {} bytes", std::mem::size_of_val(&*f));
    }
    let mut g = c.benchmark_group("acquire_commit");

    // one task on a current-thread runtime: the latency of one acquire + commit
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let limiter = RateLimiter::builder(MemoryStore::new()).build();
    g.bench_function("memory_1_thread", |b| {
        b.to_async(&rt).iter(|| acquire_commit(&limiter, "key-1"))
    });

    // two tasks on two worker threads, one entity each, sharing one store: time per op is
    // wall time / ops, i.e. the inverse of the combined throughput
    let rt2 = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let limiter = RateLimiter::builder(MemoryStore::new()).build();
    g.bench_function("memory_2_threads", |b| {
        b.iter_custom(|iters| {
            rt2.block_on(async {
                let start = Instant::now();
                let tasks: Vec<_> = [("key-a", iters / 2), ("key-b", iters - iters / 2)]
                    .into_iter()
                    .map(|(entity, n)| {
                        let l = limiter.clone();
                        tokio::spawn(async move {
                            for _ in 0..n {
                                acquire_commit(&l, entity).await;
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.expect("task");
                }
                start.elapsed()
            })
        })
    });

    // reference: governor's direct (un-keyed) limiter, one check
    let gov = governor::RateLimiter::direct(governor::Quota::per_second(
        NonZeroU32::new(u32::MAX).expect("non-zero"),
    ));
    g.bench_function("governor_direct_check", |b| {
        b.iter(|| black_box(gov.check()))
    });
    g.finish();
}

/// Run `per_thread(thread, n)` on `threads` OS threads, `iters` calls in all; wall time.
fn on_threads(threads: u64, iters: u64, per_thread: impl Fn(u64, u64) + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let n = iters / threads + u64::from(t < iters % threads);
            let f = &per_thread;
            s.spawn(move || f(t, n));
        }
    });
    start.elapsed()
}

fn scaling(c: &mut Criterion) {
    let mut g = c.benchmark_group("scaling");
    let limiter = RateLimiter::builder(MemoryStore::new()).build();
    let entities = ["key-0", "key-1", "key-2", "key-3"];
    let runtimes: Vec<tokio::runtime::Runtime> = entities
        .iter()
        .map(|_| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
        })
        .collect();
    // the shared store: every thread's limiter is the same one
    let shared: Vec<RateLimiter> = entities.iter().map(|_| limiter.clone()).collect();
    // reference: nothing shared in the process (one store and one limiter per thread), the
    // best this machine's cores allow for this work; the shared store should match it
    let separate: Vec<RateLimiter> = entities
        .iter()
        .map(|_| RateLimiter::builder(MemoryStore::new()).build())
        .collect();
    for (name, limiters) in [
        ("memory_acquire_commit", &shared),
        ("memory_separate_stores", &separate),
    ] {
        for threads in [1u64, 2] {
            g.bench_function(format!("{name}/{threads}"), |b| {
                b.iter_custom(|iters| {
                    on_threads(threads, iters, |t, n| {
                        let entity = entities[t as usize];
                        runtimes[t as usize].block_on(async {
                            for _ in 0..n {
                                acquire_commit(&limiters[t as usize], entity).await;
                            }
                        })
                    })
                })
            });
        }
    }
    // reference: one governor key per thread (a keyed limiter, as the embedded store is)
    let gov = governor::RateLimiter::keyed(governor::Quota::per_second(
        NonZeroU32::new(u32::MAX).expect("non-zero"),
    ));
    for threads in [1u64, 2] {
        g.bench_function(format!("governor_keyed_check/{threads}"), |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, |t, n| {
                    let key = entities[t as usize];
                    for _ in 0..n {
                        black_box(gov.check_key(&key).is_ok());
                    }
                })
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bucket_math, hot_path, scaling
}
criterion_main!(benches);
