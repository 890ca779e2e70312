use super::*;
use serde_json::json;
use zae_limiter::usage::{UsageQuery, UsageSelector, UsageStore, Window};
use zae_limiter::{MemoryStore, Store};

/// 2030-01-01T00:00:00Z in seconds
const T0: i64 = 1_893_456_000;

fn bucket(seq: &str, name: &str, old: Option<i64>, new: i64, t: i64) -> Value {
    let img = |tc: i64| json!({"PK": {"S": "NSID/BUCKET#key-1#gpt-4#0"}, "SK": {"S": "#STATE"}, "tc_tpm": {"N": tc.to_string()}});
    let mut d = json!({
        "Keys": {"PK": {"S": "NSID/BUCKET#key-1#gpt-4#0"}, "SK": {"S": "#STATE"}},
        "NewImage": img(new),
        "SequenceNumber": seq, "SizeBytes": 10, "StreamViewType": "NEW_AND_OLD_IMAGES",
        "ApproximateCreationDateTime": t,
    });
    if let Some(o) = old {
        d["OldImage"] = img(o);
    }
    json!({"eventID": "e", "eventName": name, "eventSource": "aws:dynamodb", "dynamodb": d})
}

async fn hourly(store: &MemoryStore) -> Vec<(i128, u64)> {
    let mut q = UsageQuery::new(UsageSelector::Entity("key-1".into()));
    q.window = Window::Hourly;
    store
        .query_usage(&q)
        .await
        .unwrap()
        .snapshots
        .iter()
        .map(|s| (s.limits.get("tpm").copied().unwrap_or(0), s.events))
        .collect()
}

#[tokio::test]
async fn aggregates_reports_bad_records_and_ignores_replays() {
    let store = MemoryStore::new();
    let ns = store
        .register_namespace("default", T0 * 1000)
        .await
        .unwrap()
        .id;
    let fix =
        |v: Value| -> Value { serde_json::from_str(&v.to_string().replace("NSID", &ns)).unwrap() };
    let sinks = Sinks {
        usage: &store,
        retention_ms: DEFAULT_USAGE_RETENTION_MS,
        archive: None,
    };
    let mut bad = bucket("103", "MODIFY", Some(1), 2, T0);
    bad["dynamodb"]["Keys"] = json!("not a map");
    let ev = json!({"Records": [
        fix(bucket("100", "INSERT", None, 5_000, T0 + 1)),
        fix(bucket("101", "MODIFY", Some(5_000), 9_000, T0 + 2)),
        fix(bucket("102", "MODIFY", Some(9_000), 7_000, T0 + 3)),
        bad,
    ]});
    let (resp, o) = handle_with(&ev, &sinks).await.unwrap();
    assert_eq!(
        serde_json::to_value(resp).unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": "103"}]})
    );
    assert_eq!((o.records, o.bucket_changes, o.snapshot_writes), (4, 3, 2));
    assert_eq!(hourly(&store).await, vec![(7_000, 3)]);
    // Lambda retries the batch: nothing is counted twice
    let (_, o) = handle_with(&ev, &sinks).await.unwrap();
    assert_eq!((o.snapshot_writes, o.duplicates), (0, 2));
    assert_eq!(hourly(&store).await, vec![(7_000, 3)]);
    assert!(handle_with(&json!({"x": 1}), &sinks).await.is_err());
    let mut noseq = bucket("1", "MODIFY", Some(0), 1, T0);
    noseq["dynamodb"] = json!({"Keys": 3});
    assert!(handle_with(&json!({"Records": [noseq]}), &sinks)
        .await
        .is_err());
}
