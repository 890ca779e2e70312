//! The conformance suite: every function here runs against every store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use zae_limiter::store::BucketKey;
use zae_limiter::{Error, Limit, ManualClock, NewEntity, RateLimiter, RunError, Store};

/// 2026-01-01T00:00:00Z
pub const T0: i64 = 1_767_225_600_000;

pub fn limiter(store: Arc<dyn Store>) -> (RateLimiter, ManualClock) {
    let clock = ManualClock::new(T0);
    let l = RateLimiter::builder_shared(store)
        .clock(clock.clone())
        .build();
    (l, clock)
}

fn rpm_tpm() -> Vec<Limit> {
    vec![
        Limit::per_minute("rpm", 10),
        Limit::per_minute("tpm", 1_000).burst(1_500),
    ]
}

async fn avail(l: &RateLimiter, entity: &str, limits: &[Limit]) -> BTreeMap<String, i64> {
    l.available(entity, "gpt-4", limits)
        .await
        .expect("available")
}

fn map(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn rate_limited(r: zae_limiter::Result<zae_limiter::Lease>) -> Box<zae_limiter::RateLimitExceeded> {
    match r {
        Err(Error::RateLimited(e)) => e,
        Err(other) => panic!("expected RateLimited, got {other}"),
        Ok(_) => panic!("expected RateLimited, got a lease"),
    }
}

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

async fn family(l: &RateLimiter) {
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
    let (l, _) = limiter(store);
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
    assert_eq!(
        avail(&l, "key-b", &lim).await,
        map(&[("rpm", 10), ("tpm", 1_500)])
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
    assert_eq!(avail(&l, "key-b", &lim).await["rph"], 3);
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
    super::take(&l, "k", "gpt-4", &rpm, &[("rpm", 3)]).await;
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
    super::take(&l, "k", "api", &lim, &[("rpm", 60), ("tpm", 100)]).await;
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

fn stored(limits: &[Limit]) -> zae_limiter::StoredConfig {
    zae_limiter::StoredConfig::limits(limits.iter().cloned())
}

fn scopes(entity: &str, resource: &str) -> [zae_limiter::ConfigScope; 4] {
    zae_limiter::ConfigScope::chain(entity, resource)
}

async fn resolved_capacity(l: &RateLimiter, entity: &str) -> zae_limiter::Result<i64> {
    Ok(l.available(entity, "gpt-4", &[]).await?["rpm"])
}

pub async fn each_config_level_wins_in_turn(store: Arc<dyn Store>) {
    let (l, _) = limiter(store);
    let [entity, entity_default, resource, system] = scopes("key-1", "gpt-4");
    // nothing stored, nothing passed: a clear error naming entity and resource
    let e = resolved_capacity(&l, "key-1")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("'key-1'") && e.contains("'gpt-4'"), "{e}");
    let e = l
        .acquire("key-1", "gpt-4")
        .consume([("rpm", 1)])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no limits given or stored"), "{e}");
    // limits in code are the fallback when nothing is stored
    assert_eq!(
        l.available("key-1", "gpt-4", &[Limit::per_minute("rpm", 5)])
            .await
            .unwrap()["rpm"],
        5
    );
    // each more specific level wins over the ones below it
    for (scope, cap) in [
        (&system, 10),
        (&resource, 20),
        (&entity_default, 30),
        (&entity, 40),
    ] {
        l.set_config(scope, stored(&[Limit::per_minute("rpm", cap)]))
            .await
            .unwrap();
        assert_eq!(
            resolved_capacity(&l, "key-1").await.unwrap(),
            cap as i64,
            "{scope:?}"
        );
        // stored limits win over limits passed in code
        assert_eq!(
            l.available("key-1", "gpt-4", &[Limit::per_minute("rpm", 5)])
                .await
                .unwrap()["rpm"],
            cap as i64
        );
    }
    // another entity only sees the resource and system levels
    assert_eq!(resolved_capacity(&l, "key-2").await.unwrap(), 20);
    // deleting falls back level by level
    for (scope, cap) in [(&entity, 30), (&entity_default, 20), (&resource, 10)] {
        assert!(l.delete_config(scope).await.unwrap());
        assert_eq!(resolved_capacity(&l, "key-1").await.unwrap(), cap);
    }
    assert!(!l.delete_config(&entity).await.unwrap(), "already gone");
    // an acquire without limits uses the resolved ones
    let lease = l
        .acquire("key-1", "gpt-4")
        .consume([("rpm", 4)])
        .await
        .unwrap();
    lease.commit().await.unwrap();
    assert_eq!(resolved_capacity(&l, "key-1").await.unwrap(), 6);
    let e = l
        .acquire("key-1", "gpt-4")
        .consume([("tpm", 1)])
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("'tpm' is not one of the limits [rpm]"),
        "{e}"
    );
    assert_eq!(
        l.get_config(&system).await.unwrap().map(|c| c.limits),
        Some(stored(&[Limit::per_minute("rpm", 10)]).limits)
    );
    assert_eq!(l.get_config(&resource).await.unwrap(), None);
}

pub async fn stored_config_validation_and_policy(store: Arc<dyn Store>) {
    use zae_limiter::{ConfigScope, OnUnavailable, StoredConfig};
    let (l, _) = limiter(store);
    let policy_only = StoredConfig {
        limits: vec![],
        on_unavailable: Some(OnUnavailable::Allow),
        ..Default::default()
    };
    l.set_config(&ConfigScope::System, policy_only.clone())
        .await
        .unwrap();
    let got = l.get_config(&ConfigScope::System).await.unwrap().unwrap();
    assert_eq!(
        (got.limits, got.on_unavailable),
        (policy_only.limits.clone(), policy_only.on_unavailable)
    );
    // every change at a scope gets a strictly larger version, whatever the clock says
    l.set_config(&ConfigScope::System, policy_only.clone())
        .await
        .unwrap();
    let again = l.get_config(&ConfigScope::System).await.unwrap().unwrap();
    assert_eq!(again.version, got.version + 1);
    let bad = [
        (
            ConfigScope::Resource {
                resource: "gpt-4".into(),
            },
            policy_only.clone(),
            "on_unavailable",
        ),
        (
            ConfigScope::Resource {
                resource: "gpt-4".into(),
            },
            StoredConfig::default(),
            "nothing to store",
        ),
        (
            ConfigScope::Resource {
                resource: "bad resource".into(),
            },
            stored(&[Limit::per_minute("rpm", 1)]),
            "resource",
        ),
        (
            ConfigScope::EntityDefault {
                entity_id: "a#b".into(),
            },
            stored(&[Limit::per_minute("rpm", 1)]),
            "entity_id",
        ),
        (
            ConfigScope::System,
            stored(&[Limit::per_minute("rpm", 0)]),
            "capacity",
        ),
    ];
    for (scope, config, want) in bad {
        let e = l.set_config(&scope, config).await.unwrap_err();
        assert!(
            matches!(e, Error::Validation { .. }) && e.to_string().contains(want),
            "{e}"
        );
    }
    // a system policy without limits does not count as a level holding limits
    let e = l
        .acquire("k", "gpt-4")
        .consume([("rpm", 1)])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no limits"), "{e}");
}

pub async fn cascade_uses_the_parents_stored_limits(store: Arc<dyn Store>) {
    use zae_limiter::ConfigScope;
    let (l, _) = limiter(store);
    family(&l).await;
    l.set_config(
        &ConfigScope::EntityDefault {
            entity_id: "proj".into(),
        },
        stored(&[Limit::per_hour("rph", 3)]),
    )
    .await
    .unwrap();
    let own = [Limit::per_hour("rph", 100)];
    for _ in 0..3 {
        super::take(&l, "key-a", "gpt-4", &own, &[("rph", 1)]).await;
    }
    let e = rate_limited(
        l.acquire("key-b", "gpt-4")
            .limits(own.clone())
            .consume([("rph", 1)])
            .await,
    );
    let v = e.primary_violation().unwrap();
    assert_eq!((v.entity_id.as_str(), v.limit.capacity()), ("proj", 3));
    assert_eq!(avail(&l, "key-a", &own).await["rph"], 97);
}

pub async fn config_cache_hits_misses_ttl_and_invalidation(store: Arc<dyn Store>) {
    use zae_limiter::ConfigScope;
    let clock = ManualClock::new(T0);
    let reader = RateLimiter::builder_shared(store.clone())
        .clock(clock.clone())
        .config_cache_ttl(Duration::from_secs(60))
        .build();
    let writer = RateLimiter::builder_shared(store.clone())
        .clock(clock.clone())
        .build();
    let sys = ConfigScope::System;
    writer
        .set_config(&sys, stored(&[Limit::per_minute("rpm", 10)]))
        .await
        .unwrap();
    assert_eq!(resolved_capacity(&reader, "k").await.unwrap(), 10);
    assert_eq!(resolved_capacity(&reader, "k").await.unwrap(), 10);
    let s = reader.cache_stats();
    assert_eq!(
        (s.hits, s.misses, s.size, s.ttl),
        (1, 1, 1, Duration::from_secs(60))
    );
    // another client changes the config: this one keeps its cached copy until the TTL ends
    writer
        .set_config(&sys, stored(&[Limit::per_minute("rpm", 20)]))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(59));
    assert_eq!(resolved_capacity(&reader, "k").await.unwrap(), 10);
    clock.advance(Duration::from_secs(1));
    assert_eq!(resolved_capacity(&reader, "k").await.unwrap(), 20);
    // explicit invalidation
    writer
        .set_config(&sys, stored(&[Limit::per_minute("rpm", 30)]))
        .await
        .unwrap();
    assert_eq!(resolved_capacity(&reader, "k").await.unwrap(), 20);
    reader.invalidate_config_cache();
    assert_eq!(reader.cache_stats().size, 0);
    assert_eq!(resolved_capacity(&reader, "k").await.unwrap(), 30);
    // "nothing stored" is cached too
    writer.delete_config(&sys).await.unwrap();
    reader.invalidate_config_cache();
    assert!(resolved_capacity(&reader, "k").await.is_err());
    writer
        .set_config(&sys, stored(&[Limit::per_minute("rpm", 40)]))
        .await
        .unwrap();
    assert!(
        resolved_capacity(&reader, "k").await.is_err(),
        "negative result cached"
    );
    let s = reader.cache_stats();
    assert_eq!((s.hits, s.misses), (4, 4));
    // TTL zero disables caching
    let uncached = RateLimiter::builder_shared(store)
        .clock(clock)
        .config_cache_ttl(Duration::ZERO)
        .build();
    assert_eq!(resolved_capacity(&uncached, "k").await.unwrap(), 40);
    assert_eq!(resolved_capacity(&uncached, "k").await.unwrap(), 40);
    let s = uncached.cache_stats();
    assert_eq!((s.hits, s.misses, s.size), (0, 2, 0));
}

pub async fn audit_records_every_change_newest_first(store: Arc<dyn Store>) {
    use zae_limiter::{AuditAction, ConfigScope};
    let clock = ManualClock::new(T0);
    let l = RateLimiter::builder_shared(store)
        .clock(clock.clone())
        .principal("ops@example.com")
        .build();
    l.create_entity(NewEntity::new("key-1").name("Key one"))
        .await
        .unwrap();
    let scope = ConfigScope::Entity {
        entity_id: "key-1".into(),
        resource: "gpt-4".into(),
    };
    for cap in [10, 20, 30] {
        clock.advance(Duration::from_secs(1));
        l.set_config(&scope, stored(&[Limit::per_minute("rpm", cap)]))
            .await
            .unwrap();
    }
    clock.advance(Duration::from_secs(1));
    l.delete_config(&scope).await.unwrap();
    l.set_config(&ConfigScope::System, stored(&[Limit::per_minute("rpm", 1)]))
        .await
        .unwrap();
    l.set_config(
        &ConfigScope::Resource {
            resource: "gpt-4".into(),
        },
        stored(&[Limit::per_minute("rpm", 2)]),
    )
    .await
    .unwrap();

    let all = l.audit_events("key-1", 100, None).await.unwrap();
    let actions: Vec<AuditAction> = all.events.iter().map(|e| e.action).collect();
    use AuditAction::*;
    assert_eq!(
        actions,
        [
            LimitsDeleted,
            LimitsSet,
            LimitsSet,
            LimitsSet,
            EntityCreated
        ]
    );
    assert_eq!(all.next, None);
    let newest = &all.events[0];
    assert_eq!(newest.principal.as_deref(), Some("ops@example.com"));
    assert_eq!(newest.resource.as_deref(), Some("gpt-4"));
    assert_eq!(newest.timestamp_ms, T0 + 4_000);
    assert_eq!(newest.details["old"]["limits"][0]["capacity"], 30);
    assert!(newest.details["new"].is_null());
    assert_eq!(all.events[1].details["old"]["limits"][0]["capacity"], 20);
    assert_eq!(all.events[4].details["new"]["name"], "Key one");
    assert!(all.events.windows(2).all(|w| w[0].event_id > w[1].event_id));
    // pagination: 2 + 2 + 1, then the end
    let mut seen = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let page = l.audit_events("key-1", 2, before.as_deref()).await.unwrap();
        seen.extend(page.events.iter().map(|e| e.event_id.clone()));
        match page.next {
            Some(n) => before = Some(n),
            None => break,
        }
    }
    assert_eq!(
        seen,
        all.events
            .iter()
            .map(|e| e.event_id.clone())
            .collect::<Vec<_>>()
    );
    // defaults are filed under $SYSTEM and $RESOURCE:{resource}
    assert_eq!(
        l.audit_events("$SYSTEM", 10, None)
            .await
            .unwrap()
            .events
            .len(),
        1
    );
    let r = l.audit_events("$RESOURCE:gpt-4", 10, None).await.unwrap();
    assert_eq!((r.events.len(), r.events[0].action), (1, LimitsSet));
    assert!(l
        .audit_events("nobody", 10, None)
        .await
        .unwrap()
        .events
        .is_empty());
    assert!(l.audit_events("key-1", 0, None).await.is_err());
    assert!(l.audit_events("bad#id", 10, None).await.is_err());
}

pub async fn delete_entity_children_and_listings(store: Arc<dyn Store>) {
    use zae_limiter::{AuditAction, ConfigScope};
    let (l, _) = limiter(store.clone());
    family(&l).await;
    l.create_entity(NewEntity::new("key-c").parent("proj"))
        .await
        .unwrap();
    l.create_entity(NewEntity::new("other")).await.unwrap();
    let kids: Vec<String> = l
        .children("proj")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(kids, ["key-a", "key-b", "key-c"]);
    assert!(l.children("key-a").await.unwrap().is_empty());

    let lim = [Limit::per_minute("rpm", 10)];
    for r in ["gpt-4", "embeddings"] {
        l.set_config(
            &ConfigScope::Entity {
                entity_id: "key-a".into(),
                resource: r.into(),
            },
            stored(&lim),
        )
        .await
        .unwrap();
        super::take(&l, "key-a", r, &lim, &[("rpm", 3)]).await;
    }
    l.set_config(
        &ConfigScope::EntityDefault {
            entity_id: "key-a".into(),
        },
        stored(&lim),
    )
    .await
    .unwrap();
    l.set_config(
        &ConfigScope::Entity {
            entity_id: "other".into(),
            resource: "gpt-4".into(),
        },
        stored(&lim),
    )
    .await
    .unwrap();
    for r in ["gpt-4", "dall-e"] {
        l.set_config(&ConfigScope::Resource { resource: r.into() }, stored(&lim))
            .await
            .unwrap();
    }
    assert_eq!(
        l.resources_with_defaults().await.unwrap(),
        ["dall-e", "gpt-4"]
    );
    assert_eq!(
        l.entities_with_limits("gpt-4", 100, None)
            .await
            .unwrap()
            .ids,
        ["key-a", "other"]
    );
    assert_eq!(
        l.entities_with_limits("embeddings", 100, None)
            .await
            .unwrap()
            .ids,
        ["key-a"]
    );

    assert!(l.delete_entity("key-a").await.unwrap());
    assert!(
        !l.delete_entity("key-a").await.unwrap(),
        "second delete finds nothing"
    );
    assert!(l.get_entity("key-a").await.unwrap().is_none());
    for r in ["gpt-4", "embeddings"] {
        assert!(
            store
                .get_bucket(&BucketKey::new("key-a", r))
                .await
                .unwrap()
                .is_none(),
            "{r} bucket"
        );
        assert!(l
            .get_config(&ConfigScope::Entity {
                entity_id: "key-a".into(),
                resource: r.into()
            })
            .await
            .unwrap()
            .is_none());
    }
    assert!(l
        .get_config(&ConfigScope::EntityDefault {
            entity_id: "key-a".into()
        })
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        l.entities_with_limits("gpt-4", 100, None)
            .await
            .unwrap()
            .ids,
        ["other"]
    );
    // the parent's bucket and the other entities are untouched
    assert_eq!(avail(&l, "proj", &lim).await["rpm"], 7);
    assert!(l.get_entity("other").await.unwrap().is_some());
    let kids: Vec<String> = l
        .children("proj")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(kids, ["key-b", "key-c"]);
    // a fresh entity with the same id starts from a full bucket
    l.create_entity(NewEntity::new("key-a")).await.unwrap();
    assert_eq!(avail(&l, "key-a", &lim).await["rpm"], 10);
    let events = l.audit_events("key-a", 10, None).await.unwrap().events;
    assert_eq!(events[0].action, AuditAction::EntityCreated);
    assert_eq!(events[1].action, AuditAction::EntityDeleted);
    assert!(matches!(
        l.delete_entity("bad#id").await,
        Err(Error::Validation { .. })
    ));
}

pub async fn namespaces_isolate_and_have_a_lifecycle(store: Arc<dyn Store>) {
    use zae_limiter::{AuditAction, NamespaceStatus};
    let (l, _) = limiter(store);
    let lim = [Limit::per_minute("rpm", 10)];
    let a_info = l.register_namespace("tenant-a").await.unwrap();
    assert_eq!(a_info.id.len(), 11);
    assert_eq!(
        l.register_namespace("tenant-a").await.unwrap(),
        a_info,
        "idempotent"
    );
    let a = l.namespace("tenant-a").await.unwrap();
    assert!(matches!(
        l.namespace("nope").await,
        Err(Error::NamespaceNotFound(_))
    ));
    assert!(matches!(
        l.register_namespace("_").await,
        Err(Error::Validation { .. })
    ));

    // the same entity id in two namespaces is fully independent
    for ns in [&l, &a] {
        ns.create_entity(NewEntity::new("proj")).await.unwrap();
    }
    super::take(&a, "key-1", "gpt-4", &lim, &[("rpm", 7)]).await;
    a.set_config(
        &zae_limiter::ConfigScope::System,
        stored(&[Limit::per_minute("rpm", 99)]),
    )
    .await
    .unwrap();
    assert_eq!(avail(&l, "key-1", &lim).await["rpm"], 10);
    assert_eq!(resolved_capacity(&a, "fresh").await.unwrap(), 99);
    assert!(
        resolved_capacity(&l, "fresh").await.is_err(),
        "no system default in default"
    );
    assert_eq!(
        l.audit_events("$SYSTEM", 10, None)
            .await
            .unwrap()
            .events
            .len(),
        0
    );
    assert_eq!(
        a.audit_events("$SYSTEM", 10, None)
            .await
            .unwrap()
            .events
            .len(),
        1
    );

    // listing shows default and tenant-a, both active
    let names: Vec<(String, NamespaceStatus)> = l
        .namespaces()
        .await
        .unwrap()
        .into_iter()
        .map(|n| (n.name, n.status))
        .collect();
    assert_eq!(
        names,
        [
            ("default".to_string(), NamespaceStatus::Active),
            ("tenant-a".to_string(), NamespaceStatus::Active)
        ]
    );

    // soft delete frees the name, keeps the data; recover brings it back
    assert!(l.delete_namespace("tenant-a").await.unwrap());
    assert!(!l.delete_namespace("tenant-a").await.unwrap());
    assert!(l.get_namespace("tenant-a").await.unwrap().is_none());
    assert!(matches!(
        l.namespace("tenant-a").await,
        Err(Error::NamespaceNotFound(_))
    ));
    let deleted = l
        .namespaces()
        .await
        .unwrap()
        .into_iter()
        .find(|n| n.id == a_info.id)
        .unwrap();
    assert_eq!(deleted.status, NamespaceStatus::Deleted);
    assert!(deleted.deleted_at_ms.is_some());
    let back = l.recover_namespace(&a_info.id).await.unwrap();
    assert_eq!(
        (back.name.as_str(), back.status),
        ("tenant-a", NamespaceStatus::Active)
    );
    let a = l.namespace("tenant-a").await.unwrap();
    assert_eq!(
        avail(&a, "key-1", &lim).await["rpm"],
        3,
        "data survived the soft delete"
    );
    assert!(
        matches!(
            l.recover_namespace(&a_info.id).await,
            Err(Error::Conflict(_))
        ),
        "already active"
    );
    assert!(
        matches!(
            l.purge_namespace(&a_info.id, |_| {}).await,
            Err(Error::Conflict(_))
        ),
        "active"
    );

    // a name re-registered while deleted blocks the recovery
    assert!(l.delete_namespace("tenant-a").await.unwrap());
    let b_info = l.register_namespace("tenant-a").await.unwrap();
    assert_ne!(b_info.id, a_info.id);
    let e = l.recover_namespace(&a_info.id).await.unwrap_err();
    assert!(e.to_string().contains("registered again"), "{e}");

    // purge removes everything of the old id, with progress, and is final
    let seen = std::sync::Mutex::new(Vec::new());
    let n = l
        .purge_namespace(&a_info.id, |k| seen.lock().unwrap().push(k))
        .await
        .unwrap();
    assert!(n >= 5, "entity, bucket, config, audit events: {n}");
    assert_eq!(seen.lock().unwrap().last(), Some(&n));
    assert!(l
        .namespaces()
        .await
        .unwrap()
        .iter()
        .all(|x| x.id != a_info.id));
    assert!(matches!(
        l.recover_namespace(&a_info.id).await,
        Err(Error::NamespaceNotFound(_))
    ));
    // the new tenant-a starts empty; default is untouched
    let b = l.namespace("tenant-a").await.unwrap();
    assert_eq!(avail(&b, "key-1", &lim).await["rpm"], 10);
    assert!(b.get_entity("proj").await.unwrap().is_none());
    assert!(l.get_entity("proj").await.unwrap().is_some());

    // every namespace change is audited, newest first
    let actions: Vec<AuditAction> = l
        .audit_events("$NAMESPACE", 50, None)
        .await
        .unwrap()
        .events
        .into_iter()
        .map(|e| e.action)
        .collect();
    use AuditAction::*;
    assert_eq!(
        actions,
        [
            NamespacePurged,
            NamespaceRegistered,
            NamespaceDeleted,
            NamespaceRecovered,
            NamespaceDeleted,
            NamespaceRegistered
        ]
    );
}
