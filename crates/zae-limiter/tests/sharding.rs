//! Write sharding on DynamoDB Local behind the proxy's emulation of DynamoDB's per-partition
//! write limit: a throttled hot bucket is split, a bucket that all clients together write
//! near the limit is split before anything is throttled, and however the split races the
//! writers, nothing is over-admitted and every admitted token is counted exactly once.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::proxy::{PartitionLimit, Proxy};
use zae_limiter::shard::level_of;
use zae_limiter::store::BucketKey;
use zae_limiter::{DynamoStore, Error, Limit, RateLimiter, Store, StoreConfig};

const RES: &str = "gpt-4";

/// A store on `table` through `proxy`, with few SDK retries so throttling shows quickly,
/// and attempts that may take long: CI runs this next to heavy tests on two cores, where
/// DynamoDB Local once took over the default 1 s to answer (stalled attempts are
/// tests/faults.rs's subject).
async fn through(proxy: &Proxy, table: &str) -> DynamoStore {
    DynamoStore::connect(
        StoreConfig::new(table)
            .endpoint_url(proxy.url())
            .static_credentials("test", "test")
            .attempt_timeout(Duration::from_secs(20))
            .max_attempts(2),
    )
    .await
    .expect("connect through the proxy")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_throttled_hot_bucket_is_split_and_nothing_is_over_admitted() {
    let direct = common::dynamo().await;
    let proxy = Proxy::start(&common::dynamodb_endpoint()).await;
    let store = through(&proxy, direct.table_name()).await;
    // warm the namespace lookup before the limit is on
    store
        .get_bucket(&BucketKey::new("warm-up", RES))
        .await
        .unwrap();
    proxy
        .faults()
        .set_partition_limit(Some(PartitionLimit::writes_per_sec(10)));
    // only throttling splits here (the write-rate trigger is the next test's); 10 writes/s,
    // so that eight writers go over it however slow the machine is
    let limiter = RateLimiter::builder(store)
        .timeout(Duration::from_secs(5))
        .split_at_writes_per_sec(None)
        .build();
    // 150 per minute: the writers want far more, and the partition takes 10 writes/s
    let lim = vec![Limit::per_minute("rpm", 150)];
    // `unknown`: no answer within the 5 s deadline on a loaded machine. Such a write may
    // have landed; the limiter then gives its tokens back later, unless it cannot tell
    let (admitted, refused, throttled, unknown) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let started = Instant::now();
    let window = Duration::from_secs(3);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (l, lim) = (limiter.clone(), lim.clone());
        let (a, r, t, u) = (
            admitted.clone(),
            refused.clone(),
            throttled.clone(),
            unknown.clone(),
        );
        tasks.push(tokio::spawn(async move {
            // bounded: by time, and by count
            for _ in 0..400 {
                if started.elapsed() > window {
                    break;
                }
                match l
                    .acquire("hot", RES)
                    .limits(lim.clone())
                    .consume([("rpm", 1)])
                    .await
                {
                    Ok(lease) => {
                        lease.commit().await.expect("commit writes nothing");
                        a.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(Error::RateLimited(_)) => {
                        r.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(Error::Throttled { .. }) => {
                        t.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(Error::Unavailable { .. }) => {
                        u.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => panic!("unexpected: {e}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    proxy.faults().set_partition_limit(None);
    limiter.flush().await;
    let admitted = admitted.load(Ordering::Relaxed);
    let unknown = unknown.load(Ordering::Relaxed);

    // the bucket was split: shard 0 tells the level, read past the proxy
    let key = BucketKey::new("hot", RES);
    let s0 = direct
        .get_bucket(&key)
        .await
        .unwrap()
        .expect("shard 0 exists");
    let level = level_of(s0.version());
    assert!(
        level >= 1,
        "throttling split the bucket: level {level}; admitted {admitted}, refused {}, \
         throttled {}, partition counts {:?}",
        refused.load(Ordering::Relaxed),
        throttled.load(Ordering::Relaxed),
        proxy.faults().partition_counts()
    );
    // every admitted request is counted once, on exactly one shard; an unanswered one at
    // most once, and not at all when its tokens were given back
    let mut consumed = 0;
    for i in 0..1u16 << level {
        if let Some(s) = direct.get_bucket(&key.with_shard(i)).await.unwrap() {
            consumed += s.limits["rpm"].consumed;
        }
    }
    let counted = i128::from(admitted) * 1000..=i128::from(admitted + unknown) * 1000;
    assert!(
        counted.contains(&consumed),
        "consumed {consumed}: admitted {admitted}, unanswered {unknown}"
    );
    // never more than the capacity plus what refilled while the test ran
    let refilled = (150.0 * elapsed.as_secs_f64() / 60.0).ceil() as u64;
    assert!(
        admitted <= 150 + refilled,
        "admitted {admitted} > 150 + {refilled} in {elapsed:?}"
    );
    let counts = proxy.faults().partition_counts();
    let throttled_writes: u64 = counts.values().map(|c| c.throttled).sum();
    assert!(
        throttled_writes > 0,
        "the emulated limit was reached: {counts:?}"
    );
    eprintln!(
        "admitted {admitted}, refused {}, throttled {}, unanswered {unknown}, level {level}, \
         {elapsed:?}, partition counts {counts:?}",
        refused.load(Ordering::Relaxed),
        throttled.load(Ordering::Relaxed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_limiter_that_may_not_split_reports_the_throttling() {
    let direct = common::dynamo().await;
    let proxy = Proxy::start(&common::dynamodb_endpoint()).await;
    let store = through(&proxy, direct.table_name()).await;
    store
        .get_bucket(&BucketKey::new("warm-up", RES))
        .await
        .unwrap();
    proxy
        .faults()
        .set_partition_limit(Some(PartitionLimit::writes_per_sec(1)));
    let limiter = RateLimiter::builder(store).max_shards(1).build();
    let lim = vec![Limit::per_minute("rpm", 100)];
    let mut throttled = false;
    for _ in 0..5 {
        match limiter
            .acquire("solo", RES)
            .limits(lim.clone())
            .consume([("rpm", 1)])
            .await
        {
            Ok(lease) => lease.commit().await.unwrap(),
            Err(Error::Throttled { .. }) => {
                throttled = true;
                break;
            }
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert!(throttled);
    let s0 = direct
        .get_bucket(&BucketKey::new("solo", RES))
        .await
        .unwrap()
        .expect("written");
    assert_eq!(level_of(s0.version()), 0, "max_shards(1): never split");
    assert!(direct
        .get_bucket(&BucketKey::new("solo", RES).with_shard(1))
        .await
        .unwrap()
        .is_none());
}

/// `clients` limiters of their own (own stores, caches and meters), each making `per_sec`
/// acquire + commit per second on the bucket `entity` for `secs`; the admitted count.
async fn paced(clients: &[RateLimiter], entity: &'static str, per_sec: u32, secs: f64) -> u64 {
    let mut tasks = Vec::new();
    for l in clients {
        let l = l.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1) / per_sec);
            // never faster than the pace: after a stall (a loaded machine) no burst makes up
            // for it, so a client's rate stays at most `per_sec`
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut admitted = 0;
            // bounded by count
            for _ in 0..(f64::from(per_sec) * secs) as u32 {
                tick.tick().await;
                let lease = l
                    .acquire(entity, RES)
                    .limits([Limit::per_minute("rpm", 1_000_000)])
                    .consume([("rpm", 1)])
                    .await
                    .expect("nothing refuses or throttles here");
                lease.commit().await.unwrap();
                admitted += 1;
            }
            admitted
        }));
    }
    let mut admitted = 0;
    for t in tasks {
        admitted += t.await.unwrap();
    }
    admitted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bucket_all_clients_write_near_the_limit_is_split_before_any_throttling() {
    let direct = common::dynamo().await;
    let proxy = Proxy::start(&common::dynamodb_endpoint()).await;
    // the partition takes 100 writes/s; clients split at an estimated 25/s
    proxy
        .faults()
        .set_partition_limit(Some(PartitionLimit::writes_per_sec(100)));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let store = through(&proxy, direct.table_name()).await;
        clients.push(
            RateLimiter::builder(store)
                // nothing may fail here: a loaded machine gets time to answer
                .timeout(Duration::from_secs(30))
                .split_at_writes_per_sec(Some(25))
                .build(),
        );
    }
    let key = BucketKey::new("warm", RES);
    let level = || async {
        direct
            .get_bucket(&key)
            .await
            .unwrap()
            .map_or(0, |s| level_of(s.version()))
    };
    // one client at (at most) 20 writes/s: below the split rate, as it measures itself
    let mut admitted = paced(&clients[..1], "warm", 20, 2.5).await;
    assert_eq!(level().await, 0, "one client at 20/s does not split");
    // four clients at 20/s each: no one of them writes 25/s, together up to 80/s, and
    // still over 25/s when a loaded machine slows each to a third of its pace
    admitted += paced(&clients, "warm", 20, 3.0).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while level().await == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reached = level().await;
    assert!(
        reached >= 1,
        "the estimated writes/s of four clients split the bucket"
    );
    for c in &clients {
        c.flush().await;
    }
    let counts = proxy.faults().partition_counts();
    let throttled: u64 = counts.values().map(|c| c.throttled).sum();
    assert_eq!(throttled, 0, "split before the partition limit: {counts:?}");
    // every admitted request counted once, on exactly one shard
    let mut consumed = 0;
    for i in 0..1u16 << reached {
        if let Some(s) = direct.get_bucket(&key.with_shard(i)).await.unwrap() {
            consumed += s.limits["rpm"].consumed;
        }
    }
    assert_eq!(consumed, i128::from(admitted) * 1000, "admitted {admitted}");
}
