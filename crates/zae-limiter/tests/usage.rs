//! Usage snapshots: one suite against both stores (the DynamoDB cases need DynamoDB Local),
//! and the embedded store's change feed end to end.

use std::collections::BTreeMap;
use std::sync::Arc;

use zae_limiter::usage::{
    aggregate, summarize, BucketRecord, ChangeKind, SeqNo, UsageQuery, UsageSelector, UsageStore,
    Window, WriteUsage, DEFAULT_USAGE_RETENTION_MS,
};
use zae_limiter::{Limit, ManualClock, MemoryStore, RateLimiter, Store};

/// 2030-01-01T00:00:00Z (snapshots' TTL is in the future).
const T0: i64 = 1_893_456_000_000;
const H: i64 = 3_600_000;

fn rec(
    ns: &str,
    entity: &str,
    resource: &str,
    seq: u128,
    t: i64,
    old: i128,
    new: i128,
) -> BucketRecord {
    BucketRecord {
        kind: if old == 0 {
            ChangeKind::Insert
        } else {
            ChangeKind::Modify
        },
        namespace: ns.into(),
        entity_id: entity.into(),
        resource: resource.into(),
        shard: "0".into(),
        old_consumed: if old == 0 {
            BTreeMap::new()
        } else {
            BTreeMap::from([("tpm".into(), old)])
        },
        new_consumed: BTreeMap::from([("tpm".into(), new)]),
        time_ms: t,
        seq: SeqNo::from_u128(seq),
    }
}

fn q(sel: UsageSelector, w: Window) -> UsageQuery {
    let mut q = UsageQuery::new(sel);
    q.window = w;
    q
}

async fn write_all<S: UsageStore + ?Sized>(s: &S, recs: &[BucketRecord]) -> Vec<WriteUsage> {
    let mut out = Vec::new();
    for u in aggregate(recs, &Window::ALL) {
        out.push(
            s.write_usage(&u, DEFAULT_USAGE_RETENTION_MS)
                .await
                .expect("write"),
        );
    }
    out
}

/// Writes, replays (whole and partial), queries by entity and resource, pages, summary.
async fn suite<S: UsageStore + ?Sized>(s: &S, ns: &str) {
    // key-1: 3 records in hour 0, 1 in hour 1; key-2: 1 record in hour 0
    let batch = vec![
        rec(ns, "key-1", "gpt-4", 10, T0 + 1, 0, 5_000),
        rec(ns, "key-1", "gpt-4", 11, T0 + 2, 5_000, 8_000),
        rec(ns, "key-2", "gpt-4", 12, T0 + 3, 0, 1_000),
        rec(ns, "key-1", "gpt-4", 13, T0 + H + 5, 8_000, 6_000),
        rec(ns, "key-1", "claude", 14, T0 + 5, 0, 700),
    ];
    let first = write_all(s, &batch[..3]).await;
    assert!(first.iter().all(|w| *w == WriteUsage::Applied), "{first:?}");
    // the whole batch retried: the first part is a replay, the rest is new
    let again = write_all(s, &batch).await;
    assert!(again.contains(&WriteUsage::Partial), "{again:?}");
    // and once more: nothing changes
    let third = write_all(s, &batch).await;
    assert!(
        third.iter().all(|w| *w == WriteUsage::Duplicate),
        "{third:?}"
    );

    let hourly = s
        .query_usage(&q(UsageSelector::Entity("key-1".into()), Window::Hourly))
        .await
        .unwrap();
    let got: Vec<(i64, &str, i128, u64)> = hourly
        .snapshots
        .iter()
        .map(|x| {
            (
                x.window_start_ms,
                x.resource.as_str(),
                x.limits.get("tpm").copied().unwrap_or(0),
                x.events,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (T0, "claude", 700, 1),
            (T0, "gpt-4", 8_000, 2),
            (T0 + H, "gpt-4", -2_000, 1)
        ]
    );
    assert_eq!(hourly.next, None);
    let daily = s
        .query_usage(&q(UsageSelector::Entity("key-1".into()), Window::Daily))
        .await
        .unwrap();
    let d: Vec<(&str, i128, u64)> = daily
        .snapshots
        .iter()
        .map(|x| (x.resource.as_str(), x.limits["tpm"], x.events))
        .collect();
    assert_eq!(d, vec![("claude", 700, 1), ("gpt-4", 6_000, 3)]);

    // by resource, with a time range in the key condition
    let mut byres = q(UsageSelector::Resource("gpt-4".into()), Window::Hourly);
    byres.until_ms = Some(T0);
    let r = s.query_usage(&byres).await.unwrap();
    let who: Vec<(&str, i128)> = r
        .snapshots
        .iter()
        .map(|x| (x.entity_id.as_str(), x.limits["tpm"]))
        .collect();
    assert_eq!(who, vec![("key-1", 8_000), ("key-2", 1_000)]);
    byres.since_ms = Some(T0 + 1);
    byres.until_ms = None;
    let r = s.query_usage(&byres).await.unwrap();
    assert_eq!(r.snapshots.len(), 1);
    assert_eq!(r.snapshots[0].window_start_ms, T0 + H);

    // pages of one
    for sel in [
        UsageSelector::Entity("key-1".into()),
        UsageSelector::Resource("gpt-4".into()),
    ] {
        let mut pq = q(sel.clone(), Window::Hourly);
        pq.limit = 1;
        let mut seen = Vec::new();
        for _ in 0..10 {
            let p = s.query_usage(&pq).await.unwrap();
            seen.extend(
                p.snapshots
                    .iter()
                    .map(|x| (x.entity_id.clone(), x.resource.clone(), x.window_start_ms)),
            );
            match p.next {
                Some(n) => pq.after = Some(n),
                None => break,
            }
        }
        seen.dedup();
        assert_eq!(seen.len(), 3, "{sel:?}: {seen:?}");
    }
    // a cursor of another query is refused, not followed
    let mut bad = q(UsageSelector::Entity("key-1".into()), Window::Daily);
    bad.after = Some(zae_limiter::usage::UsageCursor::from_text(
        "#USAGE#H#0000000000000#x",
    ));
    assert!(s.query_usage(&bad).await.is_err());

    let sum = summarize(s, &q(UsageSelector::Entity("key-1".into()), Window::Hourly))
        .await
        .unwrap();
    assert_eq!((sum.snapshots, sum.events), (3, 4));
    assert_eq!(sum.total["tpm"], 6_700);
    assert!((sum.average["tpm"] - 6_700.0 / 3.0).abs() < 1e-9);
    assert_eq!(
        (sum.first_window_ms, sum.last_window_ms),
        (Some(T0), Some(T0 + H))
    );
}

#[tokio::test]
async fn usage_suite_on_the_embedded_store() {
    let s = MemoryStore::new();
    let ns = s.register_namespace("default", T0).await.unwrap().id;
    suite(&s, &ns).await;
}

/// The embedded store feeds its own writes through the aggregator: acquire, adjust,
/// rollback, refusals, across an hour boundary.
#[tokio::test]
async fn embedded_store_counts_usage_without_aws() {
    let store = MemoryStore::new().with_usage_feed();
    let clock = ManualClock::new(T0 + H - 2_000);
    let l = RateLimiter::builder_shared(Arc::new(store.clone()) as Arc<dyn Store>)
        .clock(clock.clone())
        .build();
    let limits = [
        Limit::per_minute("rpm", 100),
        Limit::per_minute("tpm", 10_000),
    ];
    // 1: +1 rpm +500 tpm, adjusted +300 tpm, committed
    let a = l
        .acquire("key-1", "gpt-4")
        .limits(limits.clone())
        .consume([("rpm", 1), ("tpm", 500)])
        .await
        .unwrap();
    a.adjust("tpm", 300).unwrap();
    a.commit().await.unwrap();
    // 2: +1 rpm +200 tpm, rolled back
    let b = l
        .acquire("key-1", "gpt-4")
        .limits(limits.clone())
        .consume([("rpm", 1), ("tpm", 200)])
        .await
        .unwrap();
    b.rollback().await.unwrap();
    // 3: refused (nothing consumed)
    assert!(l
        .acquire("key-1", "gpt-4")
        .limits(limits.clone())
        .consume([("tpm", 50_000)])
        .await
        .is_err());
    // 4: next hour, +1 rpm +1000 tpm
    clock.advance(std::time::Duration::from_secs(5));
    let c = l
        .acquire("key-1", "gpt-4")
        .limits(limits.clone())
        .consume([("rpm", 1), ("tpm", 1000)])
        .await
        .unwrap();
    c.commit().await.unwrap();

    let hourly = store
        .query_usage(&q(UsageSelector::Entity("key-1".into()), Window::Hourly))
        .await
        .unwrap();
    let got: Vec<(i64, BTreeMap<String, i128>, u64)> = hourly
        .snapshots
        .iter()
        .map(|s| (s.window_start_ms, s.limits.clone(), s.events))
        .collect();
    let m = |r: i128, t: i128| BTreeMap::from([("rpm".to_string(), r), ("tpm".to_string(), t)]);
    // hour 0: acquire (1, 500), adjust (0, 300), acquire (1, 200), rollback (-1, -200)
    assert_eq!(
        got,
        vec![(T0, m(1_000, 800_000), 4), (T0 + H, m(1_000, 1_000_000), 1)]
    );
    let daily = store
        .query_usage(&q(UsageSelector::Resource("gpt-4".into()), Window::Daily))
        .await
        .unwrap();
    assert_eq!(daily.snapshots.len(), 1);
    assert_eq!(daily.snapshots[0].limits, m(2_000, 1_800_000));
    assert_eq!(daily.snapshots[0].events, 5);
}

/// A split bucket: usage sums the shards, and the tokens a split discards (the new shards
/// start empty) are not counted as consumption.
#[tokio::test]
async fn usage_of_a_split_bucket_counts_what_was_taken_on_every_shard() {
    let store = MemoryStore::new().with_usage_feed();
    let clock = ManualClock::new(T0 + 60_000);
    let l = RateLimiter::builder_shared(Arc::new(store.clone()) as Arc<dyn Store>)
        .clock(clock.clone())
        .build();
    let rpm = [Limit::per_minute("rpm", 80)];
    // 3 taken whole, then split in four, refilled, then 40 more spread over the shards
    for _ in 0..3 {
        l.acquire("hot", "gpt-4")
            .limits(rpm.clone())
            .consume([("rpm", 1)])
            .await
            .unwrap()
            .commit()
            .await
            .unwrap();
    }
    assert_eq!(l.shard_bucket("hot", "gpt-4", &rpm, 4).await.unwrap(), 4);
    clock.advance(std::time::Duration::from_secs(60));
    let mut taken = 3;
    for _ in 0..200 {
        if taken == 43 {
            break;
        }
        if let Ok(lease) = l
            .acquire("hot", "gpt-4")
            .limits(rpm.clone())
            .consume([("rpm", 1)])
            .await
        {
            lease.commit().await.unwrap();
            taken += 1;
        }
    }
    assert_eq!(taken, 43);
    let hourly = store
        .query_usage(&q(UsageSelector::Entity("hot".into()), Window::Hourly))
        .await
        .unwrap();
    let total: i128 = hourly.snapshots.iter().map(|s| s.limits["rpm"]).sum();
    assert_eq!(total, 43_000, "{:?}", hourly.snapshots);
}

#[cfg(feature = "dynamodb-local-tests")]
mod common;

#[cfg(feature = "dynamodb-local-tests")]
#[tokio::test]
async fn usage_suite_on_dynamodb_local() {
    let s = common::dynamo().await;
    s.create_table().await.unwrap();
    let ns = s.register_namespace("default", T0).await.unwrap().id;
    suite(&s, &ns).await;
}
