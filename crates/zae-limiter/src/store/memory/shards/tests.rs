//! The sharded buckets under threads: cascades on shared parents from many threads keep
//! exact totals, lock their two shards in either order without deadlock, and eviction
//! still finds every shard's buckets.

use std::sync::mpsc;
use std::time::Duration;

use super::{shard_of, SHARDS};
use crate::bucket::{BucketParams, MILLI};
use crate::store::{ApplyOutcome, BucketChange, BucketKey, LimitChange, Store, WriteOp};
use crate::{ManualClock, MemoryStore, NewEntity, RateLimiter};

const T0: i64 = 1_767_225_600_000;

fn take(entity: &str, capacity: u64, n: i128) -> BucketChange {
    BucketChange {
        key: BucketKey::new(entity, "api"),
        limits: vec![LimitChange {
            name: "rpm".into(),
            params: BucketParams::new(capacity, capacity, 60_000),
            version: 0,
            amount: n * MILLI,
            checked: true,
            counted: true,
        }],
    }
}

/// Run `f(thread)` on `threads` OS threads, each with a runtime of its own; panics if they
/// are not all done within a minute (a deadlock).
fn on_threads(threads: usize, f: impl Fn(usize) + Send + Sync + Clone + 'static) {
    let (done, finished) = mpsc::channel();
    for t in 0..threads {
        let (f, done) = (f.clone(), done.clone());
        std::thread::spawn(move || {
            f(t);
            done.send(()).expect("the test waits");
        });
    }
    for _ in 0..threads {
        finished
            .recv_timeout(Duration::from_secs(60))
            .expect("every thread finishes: no deadlock");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Children whose shard is below the parent's and above it: both lock orders occur.
fn children_both_sides(parent: &str, n: usize) -> Vec<String> {
    let p = shard_of(parent);
    let kids: Vec<String> = (0..n).map(|i| format!("kid-{i}")).collect();
    assert!(kids.iter().any(|k| shard_of(k) < p) && kids.iter().any(|k| shard_of(k) > p));
    kids
}

#[test]
fn cascades_on_a_shared_parent_from_threads_keep_exact_totals() {
    let store = MemoryStore::new();
    let kids = children_both_sides("parent", 16);
    let rounds = 300;
    let capacity = 1_000_000;
    let s = store.clone();
    let k = kids.clone();
    on_threads(4, move |t| {
        runtime().block_on(async {
            for r in 0..rounds {
                let kid = &k[(t * 4 + r) % k.len()];
                // child first, then parent, or the other way: the store sorts the locks
                let changes = if r % 2 == 0 {
                    [take(kid, capacity, 1), take("parent", capacity, 1)]
                } else {
                    [take("parent", capacity, 1), take(kid, capacity, 1)]
                };
                let op = WriteOp::unique("acquire", false);
                let out = s.apply(&changes, T0, &op).await.expect("applied");
                assert!(matches!(out, ApplyOutcome::Applied(_)));
            }
        })
    });
    runtime().block_on(async {
        let parent = store.get_bucket(&BucketKey::new("parent", "api")).await;
        let parent = parent.expect("read").expect("written");
        assert_eq!(parent.limits["rpm"].consumed, 4 * rounds as i128 * MILLI);
        let mut kids_total = 0;
        for kid in &kids {
            if let Some(b) = store.get_bucket(&BucketKey::new(kid, "api")).await.unwrap() {
                kids_total += b.limits["rpm"].consumed;
            }
        }
        assert_eq!(kids_total, 4 * rounds as i128 * MILLI);
    });
}

#[test]
fn a_shared_parent_admits_exactly_its_capacity_across_threads() {
    let clock = ManualClock::new(T0);
    let limiter = RateLimiter::builder(MemoryStore::new())
        .clock(clock)
        .build();
    let kids = children_both_sides("org", 16);
    let rt = runtime();
    rt.block_on(async {
        limiter.create_entity(NewEntity::new("org")).await.unwrap();
        for kid in &kids {
            let e = NewEntity::new(kid.as_str()).parent("org").cascade(true);
            limiter.create_entity(e).await.unwrap();
        }
    });
    let capacity = 500;
    let admitted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (l, a, k) = (limiter.clone(), admitted.clone(), kids.clone());
    on_threads(4, move |t| {
        runtime().block_on(async {
            for r in 0..400 {
                let kid = &k[(t * 7 + r) % k.len()];
                // each child may take 1_000; the parent only 500 in all
                let lease = l
                    .acquire(kid.as_str(), "api")
                    .limits([crate::Limit::per_minute("rpm", 1_000)])
                    .parent_limits([crate::Limit::per_minute("rpm", capacity)])
                    .consume([("rpm", 1)])
                    .await;
                match lease {
                    Ok(lease) => {
                        lease.commit().await.expect("committed");
                        a.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(crate::Error::RateLimited(_)) => {}
                    Err(e) => panic!("unexpected: {e}"),
                }
            }
        })
    });
    let n = admitted.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(n, capacity);
    let left =
        rt.block_on(limiter.available("org", "api", &[crate::Limit::per_minute("rpm", capacity)]));
    assert_eq!(left.unwrap()["rpm"], 0);
}

#[test]
fn eviction_finds_the_buckets_of_every_shard() {
    let store = MemoryStore::new();
    let ids: Vec<String> = (0..4 * SHARDS).map(|i| format!("u{i}")).collect();
    let used: std::collections::BTreeSet<usize> = ids.iter().map(|i| shard_of(i)).collect();
    assert!(used.len() > SHARDS / 2, "ids over many shards");
    let s = store.clone();
    let all = ids.clone();
    on_threads(2, move |t| {
        runtime().block_on(async {
            for id in all.iter().skip(t).step_by(2) {
                let op = WriteOp::unique("acquire", false);
                s.apply(&[take(id, 10, 1)], T0, &op).await.expect("applied");
            }
        })
    });
    assert_eq!(store.bucket_count(), ids.len());
    // full again after 6 s, plus the grace
    let later = T0 + 6_000 + MemoryStore::EVICTION_GRACE_MS;
    assert_eq!(store.evict_expired(later - 1), 0);
    assert_eq!(store.evict_expired(later), ids.len());
    assert_eq!(store.bucket_count(), 0);
}
