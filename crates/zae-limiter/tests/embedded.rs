//! The embedded store beyond the conformance suite: as strict as DynamoDB, and bounded
//! (buckets full again and expired audit events are dropped).

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use zae_limiter::bucket::{BucketParams, MILLI};
use zae_limiter::store::{
    apply_exact, ApplyOutcome, BucketChange, BucketKey, BucketState, LimitChange, WriteOp,
};
use zae_limiter::{
    AuditAction, AuditEvent, Clock, Entity, Error, Limit, ManualClock, MemoryStore, NewEntity,
    RateLimiter, Store, StoreError,
};

/// 2026-01-01T00:00:00Z
const T0: i64 = 1_767_225_600_000;
const GRACE: i64 = MemoryStore::EVICTION_GRACE_MS;

fn setup() -> (MemoryStore, RateLimiter, ManualClock) {
    let store = MemoryStore::new();
    let clock = ManualClock::new(T0);
    let limiter = RateLimiter::builder(store.clone())
        .clock(clock.clone())
        .build();
    (store, limiter, clock)
}

fn op() -> WriteOp {
    WriteOp::unique("test", false)
}

fn limit_change(name: &str, amount: i128, checked: bool) -> LimitChange {
    LimitChange {
        name: name.into(),
        params: BucketParams::new(10, 10, 60_000),
        version: 0,
        amount,
        checked,
        counted: true,
    }
}

fn change(entity: &str, limits: Vec<LimitChange>) -> BucketChange {
    BucketChange {
        key: BucketKey::new(entity, "api"),
        limits,
    }
}

fn refused(r: Result<impl std::fmt::Debug, StoreError>) -> String {
    match r {
        Err(StoreError::Refused(m)) => m,
        other => panic!("expected Refused, got {other:?}"),
    }
}

fn invalid_request(r: Result<impl std::fmt::Debug, Error>) -> String {
    match r {
        Err(Error::Validation { field, reason }) => {
            assert_eq!(field, "request", "{reason}");
            reason
        }
        other => panic!("expected a validation error, got {other:?}"),
    }
}

async fn take(l: &RateLimiter, entity: &str, limits: &[Limit], consume: &[(&str, u64)]) {
    l.acquire(entity, "api")
        .limits(limits.to_vec())
        .consume(consume.iter().copied())
        .await
        .expect("admitted")
        .commit()
        .await
        .expect("committed");
}

// ---------------------------------------------------------------------------------------
// Strictness
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn an_empty_change_is_refused() {
    let (store, _, _) = setup();
    let m = refused(store.apply(&[], T0, &op()).await);
    assert_eq!(m, "an empty change");
    let m = refused(store.apply(&[change("e", vec![])], T0, &op()).await);
    assert_eq!(m, "the change of bucket e/api names no limit");
    assert_eq!(store.bucket_count(), 0);
}

#[tokio::test]
async fn forty_limits_are_refused() {
    let (store, limiter, _) = setup();
    let forty: Vec<LimitChange> = (0..40)
        .map(|i| limit_change(&format!("l{i}"), MILLI, true))
        .collect();
    let m = refused(store.apply(&[change("e", forty)], T0, &op()).await);
    assert_eq!(m, "40 limits on bucket e/api; one bucket holds at most 32");
    // the limiter refuses them before the store
    let limits: Vec<Limit> = (0..40)
        .map(|i| Limit::per_minute(format!("l{i}"), 10))
        .collect();
    match limiter.acquire("e", "api").limits(limits).await {
        Err(Error::Validation { field, .. }) => assert_eq!(field, "limits"),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.bucket_count(), 0);
}

#[tokio::test]
async fn a_bucket_never_holds_more_than_32_limits() {
    let (store, limiter, _) = setup();
    let a: Vec<Limit> = (0..20)
        .map(|i| Limit::per_minute(format!("a{i}"), 10))
        .collect();
    let b: Vec<Limit> = (0..20)
        .map(|i| Limit::per_minute(format!("b{i}"), 10))
        .collect();
    take(&limiter, "e", &a, &[("a0", 1)]).await;
    // 20 more would make 40 stored: refused, nothing written
    let m = invalid_request(limiter.acquire("e", "api").limits(b.clone()).await);
    assert_eq!(
        m,
        "bucket e/api would hold 40 limits; one bucket holds at most 32"
    );
    let stored = store
        .get_bucket(&BucketKey::new("e", "api"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.limits.len(), 20);
    assert_eq!(limiter.available("e", "api", &a).await.unwrap()["a0"], 9);
    // 12 more is exactly the maximum
    take(&limiter, "e", &b[..12], &[("b0", 1)]).await;
    let stored = store
        .get_bucket(&BucketKey::new("e", "api"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.limits.len(), 32);
}

#[tokio::test]
async fn oversized_metadata_is_refused() {
    let (store, limiter, _) = setup();
    // the limiter bounds metadata long before an item could reach 400 KB
    let r = limiter
        .create_entity(NewEntity::new("big").metadata("blob", "x".repeat(2_000)))
        .await;
    assert!(
        matches!(
            &r,
            Err(Error::Validation {
                field: "metadata",
                ..
            })
        ),
        "{r:?}"
    );
    // the store itself refuses an item DynamoDB would refuse, whoever calls it
    let entity = |id: &str, len: usize| Entity {
        id: id.into(),
        name: None,
        parent_id: None,
        cascade: false,
        metadata: [("blob".to_string(), "x".repeat(len))].into(),
        created_at_ms: T0,
    };
    let audit = |id: &str, details: serde_json::Value| AuditEvent {
        event_id: format!("1767225600000-000001-{id}"),
        timestamp_ms: T0,
        action: AuditAction::EntityCreated,
        entity_id: id.into(),
        resource: None,
        principal: None,
        details,
        expires_at_ms: None,
    };
    let big = entity("big", 400 * 1024);
    let m = refused(
        store
            .create_entity(&big, &audit("big", serde_json::Value::Null))
            .await,
    );
    assert!(m.starts_with("the item of entity 'big' would be 4"), "{m}");
    assert!(m.ends_with("a DynamoDB item holds at most 409600"), "{m}");
    assert_eq!(store.get_entity("big").await.unwrap(), None);
    assert_eq!(store.audit_event_count(), 0, "nothing recorded");
    // the entity item fits, but its audit event carries the metadata too (plus the keys)
    let almost = entity("almost", 400 * 1024 - 200);
    let details = serde_json::json!({ "new": &almost });
    let m = refused(
        store
            .create_entity(&almost, &audit("almost", details))
            .await,
    );
    assert!(m.starts_with("the audit event '"), "{m}");
    assert!(m.contains("' of 'almost' would be "), "{m}");
    assert_eq!(store.get_entity("almost").await.unwrap(), None);
    // well below: fine
    let ok = entity("ok", 300 * 1024);
    store
        .create_entity(&ok, &audit("ok", serde_json::Value::Null))
        .await
        .unwrap();
    assert_eq!(store.audit_event_count(), 1);
}

#[tokio::test]
async fn an_oversized_audit_event_is_refused() {
    let (store, _, _) = setup();
    let event = AuditEvent {
        event_id: "1767225600000-000001-abc".into(),
        timestamp_ms: T0,
        action: AuditAction::LimitsSet,
        entity_id: "$SYSTEM".into(),
        resource: None,
        principal: None,
        details: serde_json::json!({ "note": "y".repeat(410 * 1024) }),
        expires_at_ms: None,
    };
    let m = refused(store.record_audit(&event).await);
    assert!(
        m.starts_with("the audit event '1767225600000-000001-abc' of '$SYSTEM' would be "),
        "{m}"
    );
    assert_eq!(store.audit_event_count(), 0);
}

// ---------------------------------------------------------------------------------------
// Eviction
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_bucket_full_again_is_dropped() {
    let (store, limiter, clock) = setup();
    let rpm = [Limit::per_minute("rpm", 10)];
    take(&limiter, "a", &rpm, &[("rpm", 1)]).await; // full again in 6 s
    assert_eq!(store.bucket_count(), 1);
    // one ms before the end of the grace: kept
    clock.set(T0 + 6_000 + GRACE - 1);
    take(&limiter, "b", &rpm, &[("rpm", 1)]).await;
    assert_eq!(store.bucket_count(), 2);
    assert!(store
        .get_bucket(&BucketKey::new("a", "api"))
        .await
        .unwrap()
        .is_some());
    // then the next apply drops it
    clock.set(T0 + 6_000 + GRACE);
    take(&limiter, "c", &rpm, &[("rpm", 1)]).await;
    assert_eq!(store.bucket_count(), 2, "b and c");
    assert_eq!(
        store.get_bucket(&BucketKey::new("a", "api")).await.unwrap(),
        None
    );
    assert_eq!(
        limiter.available("a", "api", &rpm).await.unwrap()["rpm"],
        10
    );
    // and everything goes once full again
    clock.advance(Duration::from_secs(60));
    assert_eq!(store.evict_expired(clock.now_ms()), 2);
    assert_eq!(store.bucket_count(), 0);
}

#[tokio::test]
async fn a_bucket_in_debt_stays_until_repaid() {
    let (store, limiter, clock) = setup();
    let tpm = [Limit::per_minute("tpm", 100)];
    let lease = limiter
        .acquire("debtor", "api")
        .limits(tpm.to_vec())
        .consume([("tpm", 10)])
        .await
        .unwrap();
    lease.adjust("tpm", 190).unwrap(); // 200 used: 100 in debt, full again in 2 min
    lease.commit().await.unwrap();
    let avail = |l: RateLimiter| async move {
        l.available("debtor", "api", &[Limit::per_minute("tpm", 100)])
            .await
            .unwrap()["tpm"]
    };
    assert_eq!(avail(limiter.clone()).await, -100);
    // a minute later the debt is repaid but the bucket is not full: kept
    clock.advance(Duration::from_secs(60) + Duration::from_millis(GRACE as u64));
    assert_eq!(store.evict_expired(clock.now_ms()), 0);
    take(&limiter, "other", &tpm, &[("tpm", 1)]).await;
    assert!(store
        .get_bucket(&BucketKey::new("debtor", "api"))
        .await
        .unwrap()
        .is_some());
    assert_eq!(avail(limiter.clone()).await, 1);
    // full again at 2 min: dropped by the next apply, and it still reads as full
    clock.set(T0 + 120_000 + GRACE);
    take(&limiter, "third", &tpm, &[("tpm", 1)]).await;
    assert_eq!(
        store
            .get_bucket(&BucketKey::new("debtor", "api"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(avail(limiter.clone()).await, 100);
}

#[tokio::test]
async fn expired_audit_events_are_dropped() {
    let store = MemoryStore::new();
    let clock = ManualClock::new(T0);
    let limiter = RateLimiter::builder(store.clone())
        .clock(clock.clone())
        .audit_retention(Duration::from_secs(86_400))
        .build();
    limiter.create_entity(NewEntity::new("e1")).await.unwrap();
    clock.advance(Duration::from_secs(3_600));
    limiter.create_entity(NewEntity::new("e2")).await.unwrap();
    assert_eq!(store.audit_event_count(), 2);
    // a day and a minute later, once the store sees the time, e1's event is gone
    clock.set(T0 + 86_400_000 + 60_000);
    let page = limiter.audit_events("e1", 10, None).await.unwrap();
    assert_eq!(page.events.len(), 1, "the store has not seen the time yet");
    take(
        &limiter,
        "e2",
        &[Limit::per_minute("rpm", 10)],
        &[("rpm", 1)],
    )
    .await;
    assert_eq!(store.audit_event_count(), 1);
    assert!(limiter
        .audit_events("e1", 10, None)
        .await
        .unwrap()
        .events
        .is_empty());
    assert_eq!(
        limiter.audit_events("e2", 10, None).await.unwrap().events[0].action,
        AuditAction::EntityCreated
    );
    // e2's expires an hour later; a recorded event's own time also counts as seen
    clock.set(T0 + 86_400_000 + 3_600_000 + 1);
    limiter.create_entity(NewEntity::new("e3")).await.unwrap();
    assert_eq!(store.audit_event_count(), 1, "only e3's");
}

#[tokio::test]
async fn sweeping_is_bounded_per_apply() {
    let (store, limiter, clock) = setup();
    let rpm = [Limit::per_minute("rpm", 10)];
    let n = 3 * MemoryStore::SWEEP_PER_APPLY + 5;
    for i in 0..n {
        take(&limiter, &format!("u{i}"), &rpm, &[("rpm", 1)]).await;
    }
    clock.advance(Duration::from_secs(10));
    // each apply looks at SWEEP_PER_APPLY entities
    for k in 1..=3 {
        take(&limiter, "probe", &rpm, &[("rpm", 1)]).await;
        assert_eq!(
            store.bucket_count(),
            n + 1 - k * MemoryStore::SWEEP_PER_APPLY
        );
    }
    take(&limiter, "probe", &rpm, &[("rpm", 1)]).await;
    assert_eq!(store.bucket_count(), 1, "the probe");
}

#[tokio::test]
async fn a_deleted_entity_takes_its_buckets_and_may_come_back() {
    let (store, limiter, clock) = setup();
    let rpm = [Limit::per_minute("rpm", 10)];
    limiter.create_entity(NewEntity::new("e")).await.unwrap();
    take(&limiter, "e", &rpm, &[("rpm", 5)]).await;
    assert!(limiter.delete_entity("e").await.unwrap());
    assert_eq!(store.bucket_count(), 0);
    // new buckets for the same id are scheduled again; the old schedule is ignored
    take(&limiter, "e", &rpm, &[("rpm", 1)]).await;
    clock.advance(Duration::from_secs(30) + Duration::from_millis(GRACE as u64));
    take(&limiter, "x", &rpm, &[("rpm", 1)]).await;
    assert_eq!(store.bucket_count(), 1, "x only");
}

#[tokio::test]
async fn available_reads_the_same_before_and_after_eviction() {
    let (store, limiter, clock) = setup();
    let limits = [
        Limit::per_minute("rpm", 10),
        Limit::per_minute("tpm", 1_000).burst(1_500),
    ];
    // light use, a drained bucket, one in debt
    take(&limiter, "light", &limits, &[("rpm", 1), ("tpm", 10)]).await;
    take(&limiter, "drained", &limits, &[("rpm", 10), ("tpm", 1_500)]).await;
    let lease = limiter
        .acquire("debtor", "api")
        .limits(limits.to_vec())
        .consume([("tpm", 100)])
        .await
        .unwrap();
    lease.adjust("tpm", 3_000).unwrap();
    lease.commit().await.unwrap();
    let ids = ["light", "drained", "debtor", "never"];
    let mut dropped = 0;
    for step_ms in [500, 1_000, 5_000, 30_000, 60_000, 60_000, 120_000, 300_000] {
        clock.advance(Duration::from_millis(step_ms));
        let mut before = Vec::new();
        for id in ids {
            before.push((
                limiter.available(id, "api", &limits).await.unwrap(),
                limiter
                    .time_until_available(id, "api", &limits, [("rpm", 1), ("tpm", 500)])
                    .await
                    .unwrap(),
            ));
        }
        dropped += store.evict_expired(clock.now_ms());
        for (id, want) in ids.iter().zip(&before) {
            let have = (
                limiter.available(id, "api", &limits).await.unwrap(),
                limiter
                    .time_until_available(id, "api", &limits, [("rpm", 1), ("tpm", 500)])
                    .await
                    .unwrap(),
            );
            assert_eq!(&have, want, "{id} at +{step_ms} ms");
        }
    }
    assert_eq!((dropped, store.bucket_count()), (3, 0));
}

/// One step of the eviction property: an apply on one of a few buckets.
#[derive(Debug, Clone)]
struct Step {
    entity: usize,
    resource: usize,
    /// ms since the previous step
    advance: i64,
    /// how far this client's clock is behind the latest one (less than the grace)
    behind: i64,
    amounts: Vec<(usize, i64, bool)>,
    evict: bool,
}

fn step() -> impl Strategy<Value = Step> {
    (
        0usize..4,
        0usize..2,
        prop_oneof![Just(0i64), 0i64..3_000, 0i64..200_000],
        0..GRACE,
        prop::collection::vec((0usize..3, -20i64..40, any::<bool>()), 1..3),
        any::<bool>(),
    )
        .prop_map(|(entity, resource, advance, behind, amounts, evict)| Step {
            entity,
            resource,
            advance,
            behind,
            amounts,
            evict,
        })
}

fn limits() -> [(&'static str, BucketParams); 3] {
    [
        ("rpm", BucketParams::new(10, 10, 60_000)),
        ("tpm", BucketParams::new(100, 50, 10_000)),
        ("rph", BucketParams::new(5, 5, 3_600_000)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Dropping buckets never changes a decision, a level read as tokens, or a retry time:
    /// the store behaves like the reference semantics over buckets that are never dropped.
    #[test]
    fn evicting_changes_nothing_observable(steps in prop::collection::vec(step(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let store = MemoryStore::new();
            let mut model: HashMap<BucketKey, BucketState> = HashMap::new();
            let mut latest = T0;
            for s in steps {
                latest += s.advance;
                let now = latest - s.behind;
                let key = BucketKey::new(format!("e{}", s.entity), format!("r{}", s.resource));
                let mut names = std::collections::BTreeSet::new();
                let lcs: Vec<LimitChange> = s
                    .amounts
                    .iter()
                    .filter(|(i, _, _)| names.insert(*i))
                    .map(|&(i, amount, checked)| LimitChange {
                        name: limits()[i].0.into(),
                        params: limits()[i].1,
                        version: 0,
                        amount: amount as i128 * MILLI,
                        checked: checked && amount > 0,
                        counted: true,
                    })
                    .collect();
                let changes = [BucketChange { key: key.clone(), limits: lcs }];
                let mut states = [model.get(&key).cloned().unwrap_or_default()];
                let admitted = apply_exact(&mut states, &changes, now);
                if !states[0].limits.is_empty() {
                    model.insert(key.clone(), states[0].clone());
                }
                let got = store.apply(&changes, now, &op()).await.unwrap();
                prop_assert_eq!(matches!(got, ApplyOutcome::Applied(_)), admitted);
                if s.evict {
                    store.evict_expired(now);
                }
                // every bucket reads the same, at any time the clients may use
                for (k, m) in &model {
                    let kept = store.get_bucket(k).await.unwrap();
                    for (name, p) in limits() {
                        let want = m.level_for(name, &p, now);
                        let have = kept.as_ref().and_then(|b| b.level_for(name, &p, now));
                        for t in [now, latest, latest + 1_000, latest + 100_000] {
                            prop_assert_eq!(p.tokens(want, t), p.tokens(have, t), "{:?} {} at {}", k, name, t);
                            prop_assert_eq!(
                                p.retry_after_ms(want, 5 * MILLI, t),
                                p.retry_after_ms(have, 5 * MILLI, t)
                            );
                        }
                    }
                }
            }
            prop_assert!(store.bucket_count() <= model.len());
            Ok(())
        })?;
    }
}

// ---------------------------------------------------------------------------------------
// Memory: a million distinct ids
// ---------------------------------------------------------------------------------------

/// Per-user buckets: one acquire on each of 1,000,000 ids, then nothing once they are full
/// again. (`cargo run --release --example embedded_memory` reports the memory this takes.)
#[tokio::test]
async fn a_million_ids_leave_nothing_behind() {
    const N: usize = 1_000_000;
    let (store, limiter, clock) = setup();
    let rpm = [Limit::per_minute("rpm", 10)];
    for i in 0..N {
        let lease = limiter
            .acquire(format!("user-{i:07}"), "api")
            .limits(rpm.clone())
            .consume([("rpm", 1)])
            .await
            .unwrap();
        lease.commit().await.unwrap();
    }
    assert_eq!(store.bucket_count(), N);
    // past the refill (6 s for one request) and the grace: every apply drops some
    clock.advance(Duration::from_millis(6_000 + GRACE as u64));
    let probe = [Limit::per_minute("rpm", 1_000)];
    for _ in 0..100 {
        take(&limiter, "probe", &probe, &[("rpm", 1)]).await;
    }
    let swept = 100 * MemoryStore::SWEEP_PER_APPLY;
    assert_eq!(store.bucket_count(), N - swept + 1);
    // and the rest at once
    assert_eq!(store.evict_expired(clock.now_ms()), N - swept);
    assert_eq!(store.bucket_count(), 1, "the probe, full again in 6 s");
    clock.advance(Duration::from_millis(6_000 + GRACE as u64));
    assert_eq!(store.evict_expired(clock.now_ms()), 1);
    assert_eq!(store.bucket_count(), 0);
    assert_eq!(
        limiter
            .available("user-0000000", "api", &rpm)
            .await
            .unwrap()["rpm"],
        10
    );
}
