//! Buckets and leases: exact accounting, debt, cascades, concurrency, lease lifecycle.

use std::sync::Arc;
use std::time::Duration;

use zae_limiter::store::BucketKey;
use zae_limiter::{Error, Limit, NewEntity, RateLimiter, RunError, Store};

#[allow(unused_imports)]
use super::{avail, limiter, map, rate_limited, rpm_tpm, T0};

pub async fn exact_token_accounting(store: Arc<dyn Store>) {
    let (l, clock) = limiter(store.clone());
    let lim = rpm_tpm();
    let acq = |tpm: u64| {
        l.acquire("key-1", "gpt-4")
            .limits(lim.clone())
            .consume([("rpm", 1), ("tpm", tpm)])
    };
    // full bucket, estimate 500
    let lease = acq(500).await.unwrap();
    assert_eq!(
        avail(&l, "key-1", &lim).await,
        map(&[("rpm", 9), ("tpm", 1_000)])
    );
    lease.adjust("tpm", 300).unwrap(); // really used 800
    assert_eq!(lease.consumed(), map(&[("rpm", 1), ("tpm", 800)]));
    lease.commit().await.unwrap();
    assert_eq!(
        avail(&l, "key-1", &lim).await,
        map(&[("rpm", 9), ("tpm", 700)])
    );
    // rollback gives everything back, pending adjustments included
    let lease = acq(200).await.unwrap();
    lease.adjust("tpm", 50).unwrap();
    lease.rollback().await.unwrap();
    assert_eq!(
        avail(&l, "key-1", &lim).await,
        map(&[("rpm", 9), ("tpm", 700)])
    );
    // checked consume inside a lease
    let lease = acq(100).await.unwrap();
    lease.consume("tpm", 50).await.unwrap();
    let e = lease.consume("tpm", 551).await.unwrap_err();
    assert!(matches!(e, Error::RateLimited(_)), "{e}");
    lease.commit().await.unwrap();
    assert_eq!(
        avail(&l, "key-1", &lim).await,
        map(&[("rpm", 8), ("tpm", 550)])
    );
    // refill: 6 s = 1 request and 100 tokens
    clock.advance(Duration::from_secs(6));
    assert_eq!(
        avail(&l, "key-1", &lim).await,
        map(&[("rpm", 9), ("tpm", 650)])
    );
    // capped at capacity (burst 1500) after a long wait
    clock.advance(Duration::from_secs(3_600));
    assert_eq!(
        avail(&l, "key-1", &lim).await,
        map(&[("rpm", 10), ("tpm", 1_500)])
    );
    // the consumed counter holds the net consumption: 1+1+1 requests, 800+150 tokens
    let b = store
        .get_bucket(&BucketKey::new("key-1", "gpt-4"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        b.limits["rpm"].consumed, 2_000,
        "rolled-back request not counted"
    );
    assert_eq!(b.limits["tpm"].consumed, 950_000);
}

pub async fn adjust_into_debt_then_recovery(store: Arc<dyn Store>) {
    let (l, clock) = limiter(store);
    let lim = vec![Limit::per_minute("tpm", 1_000)];
    let lease = l
        .acquire("k", "gpt-4")
        .limits(lim.clone())
        .consume([("tpm", 1_000)])
        .await
        .unwrap();
    lease.adjust("tpm", 500).unwrap();
    lease.commit().await.unwrap();
    assert_eq!(avail(&l, "k", &lim).await["tpm"], -500);
    let e = rate_limited(
        l.acquire("k", "gpt-4")
            .limits(lim.clone())
            .consume([("tpm", 1)])
            .await,
    );
    let v = e.primary_violation().unwrap();
    assert_eq!((v.available, v.requested), (-500, 1));
    // 501 tokens at 1000/min = 30.06 s
    assert_eq!(e.retry_after(), Some(Duration::from_millis(30_060)));
    clock.advance(Duration::from_millis(30_059));
    rate_limited(
        l.acquire("k", "gpt-4")
            .limits(lim.clone())
            .consume([("tpm", 1)])
            .await,
    );
    clock.advance(Duration::from_millis(1));
    let lease = l
        .acquire("k", "gpt-4")
        .limits(lim.clone())
        .consume([("tpm", 1)])
        .await
        .unwrap();
    lease.commit().await.unwrap();
    assert_eq!(avail(&l, "k", &lim).await["tpm"], 0);
}

pub(super) async fn family(l: &RateLimiter) {
    l.create_entity(NewEntity::new("proj").name("Production"))
        .await
        .unwrap();
    for k in ["key-a", "key-b"] {
        l.create_entity(NewEntity::new(k).parent("proj").cascade(true))
            .await
            .unwrap();
    }
}

pub async fn cascade_consumes_both(store: Arc<dyn Store>) {
    let (l, _) = limiter(store.clone());
    family(&l).await;
    let lim = rpm_tpm();
    let lease = l
        .acquire("key-a", "gpt-4")
        .limits(lim.clone())
        .consume([("rpm", 1), ("tpm", 100)])
        .await
        .unwrap();
    lease.adjust("tpm", 20).unwrap();
    lease.commit().await.unwrap();
    for e in ["key-a", "proj"] {
        assert_eq!(
            avail(&l, e, &lim).await,
            map(&[("rpm", 9), ("tpm", 1_380)]),
            "{e}"
        );
    }
    let lease = l
        .acquire("key-b", "gpt-4")
        .limits(lim.clone())
        .consume([("rpm", 1), ("tpm", 100)])
        .await
        .unwrap();
    lease.rollback().await.unwrap();
    assert_eq!(
        avail(&l, "proj", &lim).await,
        map(&[("rpm", 9), ("tpm", 1_380)])
    );
    // key-b's own bucket was given back; what it may take is bounded by the parent
    let b = store
        .get_bucket(&BucketKey::new("key-b", "gpt-4"))
        .await
        .unwrap()
        .unwrap();
    assert!(b.limits.values().all(|l| l.consumed == 0), "{b:?}");
    assert_eq!(
        avail(&l, "key-b", &lim).await,
        map(&[("rpm", 9), ("tpm", 1_380)])
    );
}

pub async fn cascade_parent_rejects_leaves_child_untouched(store: Arc<dyn Store>) {
    let (l, _) = limiter(store);
    family(&l).await;
    let lim = vec![Limit::per_hour("rph", 5)];
    let take = |e: &'static str, n: u64| {
        l.acquire(e, "gpt-4")
            .limits(lim.clone())
            .consume([("rph", n)])
    };
    take("key-a", 3).await.unwrap().commit().await.unwrap();
    take("key-b", 2).await.unwrap().commit().await.unwrap();
    // the parent is empty, key-b still has 3
    let e = rate_limited(take("key-b", 1).await);
    let v: Vec<_> = e.violations().map(|s| s.entity_id.as_str()).collect();
    assert_eq!(v, ["proj"]);
    let passed: Vec<_> = e
        .passed()
        .map(|s| (s.entity_id.as_str(), s.available))
        .collect();
    assert_eq!(passed, [("key-b", 3)]);
    // key-b's own bucket has 3, but the empty parent is what an acquire meets
    assert_eq!(avail(&l, "key-b", &lim).await["rph"], 0);
    assert_eq!(avail(&l, "proj", &lim).await["rph"], 0);
}

pub async fn concurrent_acquires_admit_exactly_capacity(store: Arc<dyn Store>) {
    let (l, _) = limiter(store.clone());
    let lim = vec![Limit::per_day("x", 500)];
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (l, lim) = (l.clone(), lim.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut rejected) = (0u32, 0u32);
            for _ in 0..125 {
                match l
                    .acquire("hot", "api")
                    .limits(lim.clone())
                    .consume([("x", 1)])
                    .await
                {
                    Ok(lease) => {
                        lease.commit().await.unwrap();
                        ok += 1
                    }
                    Err(Error::RateLimited(_)) => rejected += 1,
                    Err(e) => panic!("unexpected error: {e}"),
                }
            }
            (ok, rejected)
        }));
    }
    let (mut ok, mut rejected) = (0, 0);
    for t in tasks {
        let (o, r) = t.await.unwrap();
        ok += o;
        rejected += r;
    }
    assert_eq!((ok, rejected), (500, 1_500));
    let b = store
        .get_bucket(&BucketKey::new("hot", "api"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.limits["x"].consumed, 500_000);
    assert_eq!(l.available("hot", "api", &lim).await.unwrap()["x"], 0);
}

pub async fn new_limit_on_existing_bucket(store: Arc<dyn Store>) {
    let (l, _) = limiter(store);
    let rpm = vec![Limit::per_minute("rpm", 10)];
    crate::common::take(&l, "k", "gpt-4", &rpm, &[("rpm", 3)]).await;
    let both = rpm_tpm();
    let lease = l
        .acquire("k", "gpt-4")
        .limits(both.clone())
        .consume([("rpm", 1), ("tpm", 400)])
        .await
        .unwrap();
    lease.commit().await.unwrap();
    assert_eq!(
        avail(&l, "k", &both).await,
        map(&[("rpm", 6), ("tpm", 1_100)])
    );
}

pub async fn parameter_change_keeps_tokens(store: Arc<dyn Store>) {
    let (l, _) = limiter(store);
    let take = |lim: Limit, n: u64| l.acquire("k", "gpt-4").limits([lim]).consume([("rpm", n)]);
    take(Limit::per_minute("rpm", 100), 40)
        .await
        .unwrap()
        .commit()
        .await
        .unwrap();
    // raise the capacity: still 60 tokens, now out of 200
    take(Limit::per_minute("rpm", 200), 10)
        .await
        .unwrap()
        .commit()
        .await
        .unwrap();
    assert_eq!(
        avail(&l, "k", &[Limit::per_minute("rpm", 200)]).await["rpm"],
        50
    );
    // shrink it below the count: capped at the new capacity
    take(Limit::per_minute("rpm", 20), 5)
        .await
        .unwrap()
        .commit()
        .await
        .unwrap();
    assert_eq!(
        avail(&l, "k", &[Limit::per_minute("rpm", 20)]).await["rpm"],
        15
    );
}

pub async fn bad_input_is_rejected_clearly(store: Arc<dyn Store>) {
    let (l, _) = limiter(store.clone());
    let ok = vec![Limit::per_minute("rpm", 10)];
    let cases: Vec<(zae_limiter::Result<zae_limiter::Lease>, &str)> = vec![
        (
            l.acquire("bad#id", "gpt-4").limits(ok.clone()).await,
            "entity_id",
        ),
        (l.acquire("", "gpt-4").limits(ok.clone()).await, "entity_id"),
        (
            l.acquire("k", "no spaces").limits(ok.clone()).await,
            "resource",
        ),
        (l.acquire("k", "gpt-4").await, "no limits given"),
        (
            l.acquire("k", "gpt-4")
                .limits(ok.clone())
                .consume([("tpm", 1)])
                .await,
            "'tpm' is not one of the limits [rpm]",
        ),
        (
            l.acquire("k", "gpt-4")
                .limits([Limit::per_minute("rpm", 0)])
                .await,
            "capacity of limit 'rpm'",
        ),
        (
            l.acquire("k", "gpt-4")
                .limits([Limit::per_minute("r/m", 1)])
                .await,
            "limit name",
        ),
        (
            l.acquire("k", "gpt-4")
                .limits([Limit::per_minute("a", 1), Limit::per_hour("a", 1)])
                .await,
            "given twice",
        ),
        (
            l.acquire("k", "gpt-4")
                .limits(ok.clone())
                .consume([("rpm", u64::MAX)])
                .await,
            "consume",
        ),
    ];
    for (r, want) in cases {
        match r {
            Err(e @ Error::Validation { .. }) => {
                assert!(e.to_string().contains(want), "{e} lacks {want}")
            }
            Err(e) => panic!("expected a validation error containing {want}, got {e}"),
            Ok(_) => panic!("expected a validation error containing {want}, got a lease"),
        }
    }
    assert!(
        store
            .get_bucket(&BucketKey::new("k", "gpt-4"))
            .await
            .unwrap()
            .is_none(),
        "nothing written"
    );
}

pub async fn request_above_capacity_never_passes(store: Arc<dyn Store>) {
    let (l, _) = limiter(store);
    let lim = vec![Limit::per_minute("tpm", 100)];
    let e = rate_limited(
        l.acquire("k", "gpt-4")
            .limits(lim.clone())
            .consume([("tpm", 101)])
            .await,
    );
    assert_eq!(e.retry_after(), None);
    assert_eq!(e.retry_after_header(), None);
    assert_eq!(e.statuses()[0].available, 100);
    assert_eq!(avail(&l, "k", &lim).await["tpm"], 100);
}

pub async fn lease_lifecycle_errors(store: Arc<dyn Store>) {
    let (l, _) = limiter(store);
    let lease = l
        .acquire("k", "gpt-4")
        .limits(rpm_tpm())
        .consume([("rpm", 1)])
        .await
        .unwrap();
    assert!(matches!(
        lease.adjust("nope", 1),
        Err(Error::Validation { .. })
    ));
    lease.commit().await.unwrap();
    assert!(matches!(lease.commit().await, Err(Error::LeaseInactive)));
    assert!(matches!(lease.rollback().await, Err(Error::LeaseInactive)));
    assert!(matches!(lease.adjust("tpm", 1), Err(Error::LeaseInactive)));
    assert!(matches!(
        lease.consume("tpm", 1).await,
        Err(Error::LeaseInactive)
    ));
}

pub async fn run_commits_on_ok_and_rolls_back_on_err(store: Arc<dyn Store>) {
    let (l, _) = limiter(store);
    let lim = rpm_tpm();
    let v = l
        .acquire("k", "gpt-4")
        .limits(lim.clone())
        .consume([("rpm", 1), ("tpm", 500)])
        .run(async |lease| {
            lease.adjust("tpm", -100)?;
            Ok::<_, Error>(7)
        })
        .await
        .unwrap();
    assert_eq!(v, 7);
    assert_eq!(
        avail(&l, "k", &lim).await,
        map(&[("rpm", 9), ("tpm", 1_100)])
    );
    #[derive(Debug)]
    enum AppError {
        Upstream,
    }
    let r = l
        .acquire("k", "gpt-4")
        .limits(lim.clone())
        .consume([("rpm", 1), ("tpm", 500)])
        .run(async |_lease| Err::<(), _>(AppError::Upstream))
        .await;
    assert!(matches!(r, Err(RunError::Work(AppError::Upstream))));
    assert_eq!(
        avail(&l, "k", &lim).await,
        map(&[("rpm", 9), ("tpm", 1_100)])
    );
    let r = l
        .acquire("k", "gpt-4")
        .limits(lim.clone())
        .consume([("tpm", 5_000)])
        .run(async |_lease| Ok::<_, AppError>(()))
        .await;
    assert!(matches!(r, Err(RunError::Acquire(Error::RateLimited(_)))));
}

pub async fn dropped_lease_rolls_back(store: Arc<dyn Store>) {
    let (l, _) = limiter(store);
    let lim = rpm_tpm();
    {
        let _lease = l
            .acquire("k", "gpt-4")
            .limits(lim.clone())
            .consume([("rpm", 2), ("tpm", 300)])
            .await
            .unwrap();
        assert_eq!(
            avail(&l, "k", &lim).await,
            map(&[("rpm", 8), ("tpm", 1_200)])
        );
    }
    // the rollback runs in the background: wait for it (bounded)
    for _ in 0..200 {
        if avail(&l, "k", &lim).await == map(&[("rpm", 10), ("tpm", 1_500)]) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "dropped lease was not rolled back: {:?}",
        avail(&l, "k", &lim).await
    );
}

pub async fn entities_and_hierarchy_rules(store: Arc<dyn Store>) {
    let (l, _) = limiter(store);
    let e = l
        .create_entity(NewEntity::new("key-x").parent("missing"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::EntityNotFound(ref id) if id == "missing"),
        "{e}"
    );
    l.create_entity(NewEntity::new("proj").name("P").metadata("tier", "gold"))
        .await
        .unwrap();
    let e = l.create_entity(NewEntity::new("proj")).await.unwrap_err();
    assert!(matches!(e, Error::EntityExists(_)), "{e}");
    let e = l
        .create_entity(NewEntity::new("solo").cascade(true))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Validation { .. }), "{e}");
    let e = l
        .create_entity(NewEntity::new("self").parent("self"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Validation { .. }), "{e}");
    l.create_entity(NewEntity::new("key-1").parent("proj").cascade(true))
        .await
        .unwrap();
    let e = l
        .create_entity(NewEntity::new("grandchild").parent("key-1"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("two levels"), "{e}");
    let got = l.get_entity("key-1").await.unwrap().unwrap();
    assert_eq!(
        (got.parent_id.as_deref(), got.cascade),
        (Some("proj"), true)
    );
    let p = l.get_entity("proj").await.unwrap().unwrap();
    assert_eq!(
        (p.name.as_deref(), p.metadata["tier"].as_str()),
        (Some("P"), "gold")
    );
    assert_eq!(p.created_at_ms, T0);
    assert!(l.get_entity("nobody").await.unwrap().is_none());
}

pub async fn time_until_available_is_exact(store: Arc<dyn Store>) {
    let (l, _) = limiter(store);
    let lim = vec![Limit::per_minute("rpm", 60), Limit::per_minute("tpm", 600)];
    crate::common::take(&l, "k", "api", &lim, &[("rpm", 60), ("tpm", 100)]).await;
    let w = l
        .time_until_available("k", "api", &lim, [("rpm", 2), ("tpm", 510)])
        .await
        .unwrap();
    // rpm: 2 tokens at 1/s = 2 s; tpm: 10 more at 10/s = 1 s
    assert_eq!(w, Duration::from_secs(2));
    assert!(l
        .time_until_available("k", "api", &lim, [("rpm", 61)])
        .await
        .is_err());
    assert_eq!(
        l.time_until_available("fresh", "api", &lim, [("rpm", 60)])
            .await
            .unwrap(),
        Duration::ZERO
    );
}

pub async fn unconsumed_limit_in_debt_refuses(store: Arc<dyn Store>) {
    let (l, _) = limiter(store);
    let lim = rpm_tpm();
    let lease = l
        .acquire("k", "gpt-4")
        .limits(lim.clone())
        .consume([("tpm", 1_500)])
        .await
        .unwrap();
    lease.adjust("tpm", 100).unwrap();
    lease.commit().await.unwrap();
    let e = rate_limited(
        l.acquire("k", "gpt-4")
            .limits(lim.clone())
            .consume([("rpm", 1)])
            .await,
    );
    assert_eq!(
        e.violations().map(|s| s.name()).collect::<Vec<_>>(),
        ["tpm"]
    );
    assert_eq!(
        avail(&l, "k", &lim).await,
        map(&[("rpm", 10), ("tpm", -100)])
    );
}
