//! Write sharding: a bucket split into shards admits exactly what it would unsplit, however
//! many clients, whatever they know of the split (see `zae_limiter::shard`).

use std::sync::Arc;
use std::time::Duration;

use zae_limiter::shard::level_of;
use zae_limiter::store::BucketKey;
use zae_limiter::{Error, Limit, NewEntity, RateLimiter, Store};

#[allow(unused_imports)]
use super::{avail, limiter, map, rate_limited, T0};

/// Acquire `n` once; whether it was admitted (committed at once).
async fn once(l: &RateLimiter, entity: &str, limits: &[Limit], consume: &[(&str, u64)]) -> bool {
    match l
        .acquire(entity, "gpt-4")
        .limits(limits.to_vec())
        .consume(consume.iter().copied())
        .await
    {
        Ok(lease) => {
            lease.commit().await.unwrap();
            true
        }
        Err(Error::RateLimited(_)) => false,
        Err(e) => panic!("acquire failed: {e}"),
    }
}

/// The stored shard states of `entity`'s bucket (`count` shards).
async fn shard_states(
    store: &Arc<dyn Store>,
    entity: &str,
    count: u16,
) -> Vec<Option<zae_limiter::store::BucketState>> {
    let key = BucketKey::new(entity, "gpt-4");
    let mut out = Vec::new();
    for i in 0..count {
        out.push(store.get_bucket(&key.with_shard(i)).await.unwrap());
    }
    out
}

pub async fn sharded_bucket_admits_exactly_its_capacity(store: Arc<dyn Store>) {
    let (l, clock) = limiter(store.clone());
    let rpm = [Limit::per_minute("rpm", 80)];
    assert_eq!(l.shard_bucket("hot", "gpt-4", &rpm, 4).await.unwrap(), 4);
    // a fresh bucket split in four: shard 0 keeps its share (20), the new shards start
    // empty, so splitting never adds tokens
    assert_eq!(avail(&l, "hot", &rpm).await, map(&[("rpm", 20)]));
    // splitting again to the same count changes nothing
    assert_eq!(l.shard_bucket("hot", "gpt-4", &rpm, 4).await.unwrap(), 4);
    assert_eq!(avail(&l, "hot", &rpm).await, map(&[("rpm", 20)]));
    // a minute refills every shard to its share: 80 in all, the bucket's capacity
    clock.advance(Duration::from_secs(60));
    assert_eq!(avail(&l, "hot", &rpm).await, map(&[("rpm", 80)]));
    let mut admitted = 0;
    for _ in 0..200 {
        admitted += usize::from(once(&l, "hot", &rpm, &[("rpm", 1)]).await);
    }
    assert_eq!(admitted, 80, "exactly the capacity, spread over the shards");
    assert_eq!(avail(&l, "hot", &rpm).await, map(&[("rpm", 0)]));
    let states = shard_states(&store, "hot", 4).await;
    for (i, s) in states.iter().enumerate() {
        let s = s.as_ref().expect("every shard was written");
        let rpm = s.limits["rpm"];
        assert_eq!(level_of(rpm.version), 2, "shard {i}");
        assert_eq!(rpm.params.capacity, 20_000, "shard {i}: a quarter");
        assert_eq!(
            rpm.params.refill, 20_000,
            "shard {i}: a quarter of the refill"
        );
        assert_eq!(rpm.consumed, 20_000, "shard {i}: drained");
    }
    // refused requests report the whole limit and when this shard refills
    let e = rate_limited(
        l.acquire("hot", "gpt-4")
            .limits(rpm.clone())
            .consume([("rpm", 1)])
            .await,
    );
    assert_eq!(e.statuses()[0].limit.capacity(), 80);
    assert_eq!(
        e.retry_after(),
        Some(Duration::from_secs(3)),
        "1 token per 3 s per shard"
    );
    assert_eq!(
        l.time_until_available("hot", "gpt-4", &rpm, [("rpm", 1)])
            .await
            .unwrap(),
        Duration::from_secs(3)
    );
    // a request larger than a shard can never pass
    let err = l
        .time_until_available("hot", "gpt-4", &rpm, [("rpm", 21)])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("shared by 4 shards"), "{err}");
}

pub async fn a_stale_client_adopts_the_split_and_nothing_is_over_admitted(store: Arc<dyn Store>) {
    let (a, clock) = limiter(store.clone());
    let b = RateLimiter::builder_shared(store.clone())
        .clock(clock.clone())
        .build();
    let rpm = [Limit::per_minute("rpm", 10)];
    // a takes 3 from the unsplit bucket, then b splits it in two behind a's back
    for _ in 0..3 {
        assert!(once(&a, "k", &rpm, &[("rpm", 1)]).await);
    }
    assert_eq!(b.shard_bucket("k", "gpt-4", &rpm, 2).await.unwrap(), 2);
    // 7 were left: shard 0 keeps its share (5), shard 1 starts empty
    assert_eq!(avail(&b, "k", &rpm).await, map(&[("rpm", 5)]));
    // a still thinks the bucket is whole: its write adopts shard 0's parameters
    let mut admitted = 0;
    for i in 0..20 {
        let l = if i % 2 == 0 { &a } else { &b };
        admitted += usize::from(once(l, "k", &rpm, &[("rpm", 1)]).await);
    }
    assert_eq!(admitted, 5, "what the shards held, no more");
    // a learned the split: its reads cover both shards
    clock.advance(Duration::from_secs(60));
    assert_eq!(avail(&a, "k", &rpm).await, map(&[("rpm", 10)]));
    let states = shard_states(&store, "k", 2).await;
    let consumed: i128 = states
        .iter()
        .flatten()
        .map(|s| s.limits["rpm"].consumed)
        .sum();
    assert_eq!(consumed, 8_000, "3 before the split, 5 after");
}

pub async fn leases_on_a_shard_settle_on_that_shard(store: Arc<dyn Store>) {
    let (l, clock) = limiter(store.clone());
    let lim = vec![
        Limit::per_minute("rpm", 10),
        Limit::per_minute("tpm", 1_000),
    ];
    assert_eq!(l.shard_bucket("k", "gpt-4", &lim, 2).await.unwrap(), 2);
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        avail(&l, "k", &lim).await,
        map(&[("rpm", 10), ("tpm", 1_000)])
    );
    let lease = l
        .acquire("k", "gpt-4")
        .limits(lim.clone())
        .consume([("rpm", 1), ("tpm", 300)])
        .await
        .unwrap();
    lease.adjust("tpm", 100).unwrap();
    lease.commit().await.unwrap();
    assert_eq!(avail(&l, "k", &lim).await, map(&[("rpm", 9), ("tpm", 600)]));
    let lease = l
        .acquire("k", "gpt-4")
        .limits(lim.clone())
        .consume([("rpm", 1), ("tpm", 200)])
        .await
        .unwrap();
    lease.rollback().await.unwrap();
    assert_eq!(avail(&l, "k", &lim).await, map(&[("rpm", 9), ("tpm", 600)]));
    // a shard holds 500 tokens: 400 on one, never split over two
    let states = shard_states(&store, "k", 2).await;
    let tpm: Vec<i128> = states
        .iter()
        .map(|s| s.as_ref().map_or(0, |s| s.limits["tpm"].consumed))
        .collect();
    assert_eq!(tpm.iter().sum::<i128>(), 400_000);
    assert!(
        tpm.contains(&400_000),
        "the adjustment went to the lease's shard: {tpm:?}"
    );
}

pub async fn cascade_into_a_sharded_parent_with_other_limit_names(store: Arc<dyn Store>) {
    let (l, clock) = limiter(store.clone());
    l.create_entity(NewEntity::new("org")).await.unwrap();
    l.create_entity(NewEntity::new("key").parent("org").cascade(true))
        .await
        .unwrap();
    let child = [
        Limit::per_minute("rpm", 100),
        Limit::per_minute("tpm", 1_000),
    ];
    let parent = [Limit::per_minute("tpm", 40)];
    let org = zae_limiter::ConfigScope::Entity {
        entity_id: "org".into(),
        resource: "gpt-4".into(),
    };
    l.set_config(&org, zae_limiter::StoredConfig::limits(parent.clone()))
        .await
        .unwrap();
    assert_eq!(l.shard_bucket("org", "gpt-4", &parent, 4).await.unwrap(), 4);
    clock.advance(Duration::from_secs(60));
    assert_eq!(avail(&l, "org", &parent).await, map(&[("tpm", 40)]));
    // the child's rpm is not the parent's: each bucket checks its own limits
    let mut admitted = 0;
    for _ in 0..30 {
        admitted += usize::from(once(&l, "key", &child, &[("rpm", 1)]).await);
    }
    assert_eq!(
        admitted, 30,
        "the parent has no rpm: nothing to take from it"
    );
    assert_eq!(avail(&l, "org", &parent).await, map(&[("tpm", 40)]));
    let mut admitted = 0;
    for _ in 0..60 {
        admitted += usize::from(once(&l, "key", &child, &[("rpm", 1), ("tpm", 2)]).await);
    }
    assert_eq!(admitted, 20, "40 tpm in 4 shards of 10, 2 per request");
    assert_eq!(avail(&l, "org", &parent).await, map(&[("tpm", 0)]));
    // the child paid for the 50 admitted requests; its tpm is bounded by the parent's
    assert_eq!(
        avail(&l, "key", &child).await,
        map(&[("rpm", 50), ("tpm", 0)])
    );
}

pub async fn concurrent_splits_split_once(store: Arc<dyn Store>) {
    let (a, clock) = limiter(store.clone());
    let b = RateLimiter::builder_shared(store.clone())
        .clock(clock.clone())
        .build();
    let rpm = [Limit::per_minute("rpm", 100)];
    assert!(once(&a, "k", &rpm, &[("rpm", 10)]).await);
    let (x, y) = tokio::join!(
        a.shard_bucket("k", "gpt-4", &rpm, 2),
        b.shard_bucket("k", "gpt-4", &rpm, 2)
    );
    assert_eq!((x.unwrap(), y.unwrap()), (2, 2));
    // 90 were left: shard 0 keeps 50, shard 1 was emptied once, not twice (never in debt)
    assert_eq!(avail(&a, "k", &rpm).await, map(&[("rpm", 50)]));
    let states = shard_states(&store, "k", 2).await;
    let s1 = states[1].as_ref().expect("shard 1 exists");
    assert_eq!(s1.limits["rpm"].params.capacity, 50_000);
    clock.advance(Duration::from_secs(60));
    assert_eq!(avail(&b, "k", &rpm).await, map(&[("rpm", 100)]));
    // bad shard counts are refused before any write
    for bad in [0u16, 3, 32] {
        let e = a.shard_bucket("k", "gpt-4", &rpm, bad).await.unwrap_err();
        assert!(matches!(e, Error::Validation { .. }), "{bad}: {e}");
    }
    let tiny = [Limit::per_minute("rpm", 4)];
    let e = a.shard_bucket("t", "gpt-4", &tiny, 8).await.unwrap_err();
    assert!(e.to_string().contains("less than one token"), "{e}");
    let _ = T0;
}
