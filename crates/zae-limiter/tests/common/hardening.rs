//! Conformance cases for the less common paths: cascades with different limit names, clock
//! skew between clients, parameter changes and stale parameters, the limit count, and
//! waiting for background rollbacks. Every function runs against every store.

use std::sync::Arc;
use std::time::Duration;

use zae_limiter::store::BucketKey;
use zae_limiter::{
    ConfigScope, Error, Limit, ManualClock, NewEntity, RateLimiter, Store, StoredConfig, MAX_LIMITS,
};

use super::conformance::T0;

fn client(store: &Arc<dyn Store>, clock: &ManualClock) -> RateLimiter {
    RateLimiter::builder_shared(store.clone())
        .clock(clock.clone())
        .config_cache_ttl(Duration::from_secs(3_600))
        .build()
}

async fn consumed(store: &Arc<dyn Store>, entity: &str, limit: &str) -> i128 {
    store
        .get_bucket(&BucketKey::new(entity, "gpt-4"))
        .await
        .unwrap()
        .map_or(0, |b| b.limits.get(limit).map_or(0, |l| l.consumed))
}

async fn tokens(l: &RateLimiter, entity: &str, limits: &[Limit], name: &str) -> i64 {
    l.available(entity, "gpt-4", limits).await.unwrap()[name]
}

/// A child with rpm + tpm cascading to a parent that only has tpm: acquire, adjust,
/// consume, commit and rollback all work, and each bucket takes only its own limits.
pub async fn cascade_with_different_limit_names(store: Arc<dyn Store>) {
    let clock = ManualClock::new(T0);
    let l = client(&store, &clock);
    l.create_entity(NewEntity::new("proj")).await.unwrap();
    l.create_entity(NewEntity::new("key").parent("proj").cascade(true))
        .await
        .unwrap();
    let child = vec![
        Limit::per_minute("rpm", 10),
        Limit::per_minute("tpm", 1_000),
    ];
    let parent = vec![Limit::per_minute("tpm", 5_000)];
    let acq = |tpm: u64| {
        l.acquire("key", "gpt-4")
            .limits(child.clone())
            .parent_limits(parent.clone())
            .consume([("rpm", 1), ("tpm", tpm)])
    };
    // an rpm-only request takes 0 from the parent: still one atomic write of both buckets
    let lease = l
        .acquire("key", "gpt-4")
        .limits(child.clone())
        .parent_limits(parent.clone())
        .consume([("rpm", 1)])
        .await
        .unwrap();
    lease.adjust("rpm", 1).unwrap(); // only the child has rpm
    lease.commit().await.unwrap();
    assert_eq!(consumed(&store, "key", "rpm").await, 2_000);
    assert_eq!(consumed(&store, "proj", "tpm").await, 0);

    let lease = acq(100).await.unwrap();
    // a name no bucket has is refused and nothing changes
    assert!(matches!(
        lease.adjust("images", 1),
        Err(Error::Validation { .. })
    ));
    lease.adjust("tpm", 50).unwrap(); // both buckets have tpm
    lease.consume("tpm", 25).await.unwrap();
    lease.commit().await.unwrap();
    assert_eq!(consumed(&store, "key", "tpm").await, 175_000);
    assert_eq!(consumed(&store, "proj", "tpm").await, 175_000);
    assert_eq!(consumed(&store, "key", "rpm").await, 3_000);

    let lease = acq(300).await.unwrap();
    lease.consume("rpm", 2).await.unwrap();
    lease.rollback().await.unwrap();
    assert_eq!(consumed(&store, "key", "rpm").await, 3_000);
    assert_eq!(consumed(&store, "proj", "tpm").await, 175_000);
    assert_eq!(tokens(&l, "proj", &parent, "tpm").await, 5_000 - 175);
    // parent_limits are validated like limits
    let bad = l
        .acquire("key", "gpt-4")
        .limits(child.clone())
        .parent_limits([Limit::per_minute("bad name", 1)])
        .consume([("rpm", 1)])
        .await;
    assert!(matches!(bad, Err(Error::Validation { .. })), "{bad:?}");
}

/// The parent's limits come from the parent's own stored config, whatever each child has.
pub async fn parent_limits_come_from_the_parent(store: Arc<dyn Store>) {
    let clock = ManualClock::new(T0);
    let l = client(&store, &clock);
    l.create_entity(NewEntity::new("proj")).await.unwrap();
    for k in ["a", "b"] {
        l.create_entity(NewEntity::new(k).parent("proj").cascade(true))
            .await
            .unwrap();
    }
    for (e, cap) in [("a", 100), ("b", 200), ("proj", 150)] {
        let scope = ConfigScope::Entity {
            entity_id: e.into(),
            resource: "gpt-4".into(),
        };
        l.set_config(
            &scope,
            StoredConfig::limits([Limit::per_minute("tpm", cap)]),
        )
        .await
        .unwrap();
    }
    for (e, n) in [("a", 60), ("b", 60)] {
        l.acquire(e, "gpt-4")
            .consume([("tpm", n)])
            .await
            .unwrap()
            .commit()
            .await
            .unwrap();
    }
    // the parent kept its own 150 (not 100 or 200 from a child): 30 left
    let b = store
        .get_bucket(&BucketKey::new("proj", "gpt-4"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.limits["tpm"].params.capacity, 150_000);
    let e = l.acquire("b", "gpt-4").consume([("tpm", 31)]).await;
    assert!(matches!(e, Err(Error::RateLimited(_))), "{e:?}");
}

/// Two clients whose clocks differ: a client 30 s ahead drains a 100/min bucket; a correct
/// client is told to wait the refill of one token (0.6 s), not the skew, and is admitted
/// after it. A client 60 s behind cannot refill a drained bucket a second time.
pub async fn clock_skew_neither_locks_out_nor_over_admits(store: Arc<dyn Store>) {
    let lim = [Limit::per_minute("rpm", 100)];
    let ahead = ManualClock::new(T0 + 30_000);
    let right = ManualClock::new(T0);
    let behind = ManualClock::new(T0 - 60_000);
    let (la, lr, lb) = (
        client(&store, &ahead),
        client(&store, &right),
        client(&store, &behind),
    );
    let take = |l: &RateLimiter, e: &'static str| {
        l.acquire(e, "gpt-4")
            .limits(lim.clone())
            .consume([("rpm", 1)])
    };
    for _ in 0..100 {
        take(&la, "k").await.unwrap().commit().await.unwrap();
    }
    let e = match take(&lr, "k").await {
        Err(Error::RateLimited(e)) => e,
        other => panic!("expected a rejection, got {other:?}"),
    };
    let wait = e.retry_after().unwrap();
    assert!(wait <= Duration::from_millis(600), "told to wait {wait:?}");
    right.advance(Duration::from_millis(600));
    ahead.advance(Duration::from_millis(600));
    take(&lr, "k").await.unwrap().commit().await.unwrap();
    // the client behind, on the same bucket: nothing more than the 0.6 s refill
    assert!(matches!(take(&lb, "k").await, Err(Error::RateLimited(_))));
    assert_eq!(consumed(&store, "k", "rpm").await, 101_000);

    // on a fresh bucket the client behind drains it first; the correct client then gets at
    // most the refill of the skew (one capacity), never more
    for _ in 0..100 {
        take(&lb, "j").await.unwrap().commit().await.unwrap();
    }
    let mut extra = 0;
    for _ in 0..250 {
        match take(&lr, "j").await {
            Ok(lease) => {
                lease.commit().await.unwrap();
                extra += 1;
            }
            Err(Error::RateLimited(_)) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(extra <= 100, "over-admitted: {extra} after a full drain");
    // and the client behind is refused from then on
    assert!(matches!(take(&lb, "j").await, Err(Error::RateLimited(_))));
}

/// A stored rate change takes effect on the first write that sees it, even when that write
/// is refused; a client with the older parameters adopts the newer ones (no flip-flop).
pub async fn parameter_changes_take_effect_and_never_flip_flop(store: Arc<dyn Store>) {
    let clock = ManualClock::new(T0);
    let admin = client(&store, &clock);
    let stale = client(&store, &clock); // caches the old config for an hour
    let scope = ConfigScope::Entity {
        entity_id: "k".into(),
        resource: "gpt-4".into(),
    };
    admin
        .set_config(
            &scope,
            StoredConfig::limits([Limit::per_minute("rpm", 100)]),
        )
        .await
        .unwrap();
    // 900 tokens of debt at 100/min
    let lease = stale
        .acquire("k", "gpt-4")
        .consume([("rpm", 100)])
        .await
        .unwrap();
    lease.adjust("rpm", 900).unwrap();
    lease.commit().await.unwrap();
    let old = [Limit::per_minute("rpm", 100)];
    assert_eq!(tokens(&stale, "k", &old, "rpm").await, -900);
    // raise to 1000/min: the first acquire with the new config is refused but rebases
    admin
        .set_config(
            &scope,
            StoredConfig::limits([Limit::per_minute("rpm", 1_000)]),
        )
        .await
        .unwrap();
    let r = admin.acquire("k", "gpt-4").consume([("rpm", 1)]).await;
    assert!(matches!(r, Err(Error::RateLimited(_))), "{r:?}");
    let new = [Limit::per_minute("rpm", 1_000)];
    clock.advance(Duration::from_secs(60));
    assert_eq!(tokens(&admin, "k", &new, "rpm").await, 100);
    // the stale client (old config cached) adopts the stored parameters: it is admitted by
    // the new rate and does not rebase the bucket back
    for _ in 0..50 {
        stale
            .acquire("k", "gpt-4")
            .consume([("rpm", 1)])
            .await
            .unwrap()
            .commit()
            .await
            .unwrap();
    }
    let b = store
        .get_bucket(&BucketKey::new("k", "gpt-4"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.limits["rpm"].params.capacity, 1_000_000);
    assert_eq!(tokens(&admin, "k", &new, "rpm").await, 50);
    // lowering the rate while in debt: the new rate refuses at once
    admin
        .set_config(&scope, StoredConfig::limits([Limit::per_minute("rpm", 10)]))
        .await
        .unwrap();
    let lease = admin
        .acquire("k", "gpt-4")
        .consume([("rpm", 10)])
        .await
        .unwrap();
    lease.adjust("rpm", 100).unwrap();
    lease.commit().await.unwrap();
    let admitted = {
        let mut n = 0;
        for _ in 0..20 {
            match stale.acquire("k", "gpt-4").consume([("rpm", 1)]).await {
                Ok(l) => {
                    l.commit().await.unwrap();
                    n += 1;
                }
                Err(Error::RateLimited(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
        n
    };
    assert_eq!(
        admitted, 0,
        "the stale client passed {admitted} the new rate refuses"
    );
}

/// One bucket holds at most MAX_LIMITS limits: that many work in every write form, one more
/// is refused at every entry point, on every store.
pub async fn limit_count_is_bounded_everywhere(store: Arc<dyn Store>) {
    let clock = ManualClock::new(T0);
    let l = client(&store, &clock);
    let many = |n: usize| -> Vec<Limit> {
        (0..n)
            .map(|i| Limit::per_minute(format!("limit-{i}"), 100))
            .collect()
    };
    let max = many(MAX_LIMITS);
    let all: Vec<(String, u64)> = max.iter().map(|l| (l.name().to_string(), 1)).collect();
    // create (set), then add, then adjust at commit, then rebase to new parameters
    for _ in 0..2 {
        let lease = l
            .acquire("k", "gpt-4")
            .limits(max.clone())
            .consume(all.clone())
            .await
            .unwrap();
        lease.adjust("limit-0", 1).unwrap();
        lease.commit().await.unwrap();
    }
    let bigger: Vec<Limit> = (0..MAX_LIMITS)
        .map(|i| Limit::per_minute(format!("limit-{i}"), 200))
        .collect();
    l.acquire("k", "gpt-4")
        .limits(bigger.clone())
        .consume(all.clone())
        .await
        .unwrap()
        .rollback()
        .await
        .unwrap();
    // the rebase keeps the token counts, now under capacity 200
    assert_eq!(tokens(&l, "k", &bigger, "limit-1").await, 98);
    assert_eq!(tokens(&l, "k", &bigger, "limit-0").await, 96);
    let b = store
        .get_bucket(&BucketKey::new("k", "gpt-4"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.limits.len(), MAX_LIMITS);
    assert!(b.limits.values().all(|l| l.params.capacity == 200_000));
    let over = many(MAX_LIMITS + 1);
    let r = l
        .acquire("k2", "gpt-4")
        .limits(over.clone())
        .consume([("limit-0", 1)])
        .await;
    assert!(matches!(r, Err(Error::Validation { .. })), "{r:?}");
    let scope = ConfigScope::Resource {
        resource: "gpt-4".into(),
    };
    let r = l.set_config(&scope, StoredConfig::limits(over)).await;
    assert!(matches!(r, Err(Error::Validation { .. })), "{r:?}");
}

/// Dropped leases are rolled back in the background; `flush` waits for them.
pub async fn flush_waits_for_background_rollbacks(store: Arc<dyn Store>) {
    let clock = ManualClock::new(T0);
    let l = client(&store, &clock);
    let lim = [Limit::per_minute("rpm", 50)];
    for _ in 0..10 {
        let lease = l
            .acquire("k", "gpt-4")
            .limits(lim.clone())
            .consume([("rpm", 5)])
            .await
            .unwrap();
        drop(lease);
    }
    l.flush().await;
    assert_eq!(consumed(&store, "k", "rpm").await, 0);
    assert_eq!(tokens(&l, "k", &lim, "rpm").await, 50);
}

/// A tenant handle stops writing once its namespace is deleted (within its cache TTL), and
/// writes again once it is recovered.
pub async fn a_deleted_namespace_stops_its_handles(store: Arc<dyn Store>) {
    let clock = ManualClock::new(T0);
    let admin = client(&store, &clock);
    let info = admin.register_namespace("tenant-x").await.unwrap();
    let tenant = admin.namespace("tenant-x").await.unwrap();
    let lim = [Limit::per_minute("rpm", 10)];
    let take = || {
        tenant
            .acquire("k", "gpt-4")
            .limits(lim.clone())
            .consume([("rpm", 1)])
    };
    take().await.unwrap().commit().await.unwrap();
    admin.delete_namespace("tenant-x").await.unwrap();
    // the cached resolution may still admit until its TTL (an hour here) ends
    clock.advance(Duration::from_secs(3_601));
    let r = take().await;
    assert!(
        matches!(&r, Err(Error::Conflict(m)) if m.contains("deleted or purged")),
        "{r:?}"
    );
    admin.recover_namespace(&info.id).await.unwrap();
    clock.advance(Duration::from_secs(3_601));
    take().await.unwrap().commit().await.unwrap();
}

/// `available` and `time_until_available` of a cascading child count the parent's bucket:
/// they agree with what an acquire is allowed.
pub async fn available_of_a_child_counts_its_parent(store: Arc<dyn Store>) {
    let clock = ManualClock::new(T0);
    let l = client(&store, &clock);
    l.create_entity(NewEntity::new("org")).await.unwrap();
    l.create_entity(NewEntity::new("key").parent("org").cascade(true))
        .await
        .unwrap();
    let child = [Limit::per_minute("rpm", 100)];
    let parent = [Limit::per_minute("rpm", 10)];
    let scope = ConfigScope::Entity {
        entity_id: "org".into(),
        resource: "gpt-4".into(),
    };
    l.set_config(&scope, StoredConfig::limits(parent.clone()))
        .await
        .unwrap();
    let lease = l
        .acquire("key", "gpt-4")
        .limits(child.clone())
        .consume([("rpm", 3)])
        .await
        .unwrap();
    lease.commit().await.unwrap();
    assert_eq!(tokens(&l, "key", &child, "rpm").await, 7);
    assert_eq!(tokens(&l, "org", &parent, "rpm").await, 7);
    let wait = l
        .time_until_available("key", "gpt-4", &child, [("rpm", 8)])
        .await
        .unwrap();
    assert!(wait > Duration::ZERO, "{wait:?}");
    // the parent refills 1 token per 6 s: the 8th is there after 6 s
    assert_eq!(wait, Duration::from_secs(6));
    assert!(l
        .time_until_available("key", "gpt-4", &child, [("rpm", 7)])
        .await
        .unwrap()
        .is_zero());
    let r = l
        .acquire("key", "gpt-4")
        .limits(child.clone())
        .consume([("rpm", 8)])
        .await;
    match r {
        Err(Error::RateLimited(e)) => {
            assert_eq!(e.violations().next().unwrap().entity_id, "org")
        }
        other => panic!("expected a rejection by the parent, got {other:?}"),
    }
    // a parent that is not cascaded to does not count
    l.create_entity(NewEntity::new("solo").parent("org"))
        .await
        .unwrap();
    assert_eq!(tokens(&l, "solo", &child, "rpm").await, 100);
}

/// A lease tells the limits it was granted under and every limit's status after the take.
pub async fn a_lease_reports_its_limits_and_statuses(store: Arc<dyn Store>) {
    let clock = ManualClock::new(T0);
    let l = client(&store, &clock);
    let limits = [
        Limit::per_minute("rpm", 10),
        Limit::per_minute("tpm", 1_000),
    ];
    let lease = l
        .acquire("k", "gpt-4")
        .limits(limits.clone())
        .consume([("rpm", 3)])
        .await
        .unwrap();
    assert_eq!(lease.limits(), &limits[..]);
    let s = lease.statuses();
    assert_eq!(s.len(), 2);
    assert_eq!((s[0].name(), s[0].available, s[0].requested), ("rpm", 7, 3));
    assert!(!s[0].exceeded);
    assert_eq!(s[0].retry_after, Some(Duration::ZERO));
    assert_eq!((s[1].name(), s[1].available), ("tpm", 1_000));
    assert_eq!(s[0].entity_id, "k");
    lease.commit().await.unwrap();

    // the stored config wins over the passed limits, and a cascade reports the parent too
    l.create_entity(NewEntity::new("org")).await.unwrap();
    l.create_entity(NewEntity::new("key").parent("org").cascade(true))
        .await
        .unwrap();
    let scope = ConfigScope::Entity {
        entity_id: "key".into(),
        resource: "gpt-4".into(),
    };
    l.set_config(&scope, StoredConfig::limits([Limit::per_minute("rpm", 20)]))
        .await
        .unwrap();
    let lease = l
        .acquire("key", "gpt-4")
        .limits([Limit::per_minute("rpm", 10)])
        .parent_limits([Limit::per_minute("rpm", 5)])
        .consume([("rpm", 4)])
        .await
        .unwrap();
    assert_eq!(lease.limits(), &[Limit::per_minute("rpm", 20)][..]);
    let s = lease.statuses();
    assert_eq!(s.len(), 2);
    assert_eq!((&*s[0].entity_id, s[0].available), ("key", 16));
    assert_eq!((&*s[1].entity_id, s[1].available), ("org", 1));
    // the same 4 again would be refused by the parent: 3 more tokens, 12 s each
    assert!(s[1].exceeded);
    assert_eq!(s[1].retry_after, Some(Duration::from_secs(36)));
    lease.commit().await.unwrap();
}

/// `default` is protected: deleting it needs force, a soft-deleted `default` is never
/// replaced by a fresh empty one (using or registering it points to `recover`), recovery
/// brings its data back, and only after a purge is a new `default` registered.
pub async fn the_default_namespace_is_protected(store: Arc<dyn Store>) {
    let clock = ManualClock::new(T0);
    let admin = client(&store, &clock);
    let lim = [Limit::per_minute("rpm", 10)];
    let default = admin.namespace("default").await.unwrap();
    default
        .acquire("k", "gpt-4")
        .limits(lim.clone())
        .consume([("rpm", 3)])
        .await
        .unwrap()
        .commit()
        .await
        .unwrap();
    let id = admin.get_namespace("default").await.unwrap().unwrap().id;

    let r = admin.delete_namespace("default").await;
    assert!(
        matches!(&r, Err(Error::Conflict(m)) if m.contains("protected") && m.contains("forced")),
        "{r:?}"
    );
    assert!(admin.get_namespace("default").await.unwrap().is_some());
    assert!(admin.delete_namespace_forced("default").await.unwrap());
    assert!(!admin.delete_namespace_forced("default").await.unwrap());

    // neither a handle nor a registration silently starts a new, empty `default`
    let hint = format!("namespace recover {id}");
    let r = admin.namespace("default").await.map(|_| ());
    assert!(
        matches!(&r, Err(Error::Conflict(m)) if m.contains(&hint)),
        "{r:?}"
    );
    let r = admin.register_namespace("default").await;
    assert!(
        matches!(&r, Err(Error::Conflict(m)) if m.contains(&hint)),
        "{r:?}"
    );
    let r = store.scoped("default").await.map(|_| ());
    assert!(r.is_err(), "{r:?}");
    let all = admin.namespaces().await.unwrap();
    let defaults: Vec<_> = all.iter().filter(|n| n.name == "default").collect();
    assert_eq!(defaults.len(), 1, "{all:?}");
    assert_eq!(defaults[0].id, id);
    assert_eq!(defaults[0].status, zae_limiter::NamespaceStatus::Deleted);
    // other names are unaffected
    admin.register_namespace("tenant-y").await.unwrap();

    // recovery brings the same namespace, with its data, back
    let back = admin.recover_namespace(&id).await.unwrap();
    assert_eq!(back.id, id);
    let default = admin.namespace("default").await.unwrap();
    assert_eq!(
        default.available("k", "gpt-4", &lim).await.unwrap()["rpm"],
        7
    );

    // once purged, `default` starts afresh
    assert!(admin.delete_namespace_forced("default").await.unwrap());
    admin.purge_namespace(&id, |_| {}).await.unwrap();
    let fresh = admin.register_namespace("default").await.unwrap();
    assert_ne!(fresh.id, id);
    let default = admin.namespace("default").await.unwrap();
    assert_eq!(
        default.available("k", "gpt-4", &lim).await.unwrap()["rpm"],
        10
    );
}
