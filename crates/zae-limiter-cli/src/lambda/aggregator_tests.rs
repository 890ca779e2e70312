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

/// AWS-shaped TTL deletions (REMOVE by the TTL service) fed to the handler land in S3
/// (moto, `ZAEL_TEST_MOTO_ENDPOINT`) as gzip JSON Lines; a user's REMOVE does not.
#[cfg(feature = "dynamodb-local-tests")]
#[tokio::test]
async fn aws_ttl_removals_are_archived_to_s3() {
    use std::io::Read;
    let moto = std::env::var("ZAEL_TEST_MOTO_ENDPOINT").expect("run through scripts/moto.sh");
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "t", "t", None, None, "t",
        ))
        .load()
        .await;
    let s3 = Archive::client(&sdk, Some(&moto));
    let bucket = format!("zael-lambda-archive-{}", std::process::id());
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let store = MemoryStore::new();
    let archive = Archive::new(s3.clone(), &bucket);
    let sinks = Sinks {
        usage: &store,
        retention_ms: DEFAULT_USAGE_RETENTION_MS,
        archive: Some(&archive),
    };
    let removal = |seq: &str, id: &str, identity: Value| {
        let old = json!({
            "PK": {"S": "ns1/AUDIT#key-1"}, "SK": {"S": format!("#AUDIT#{id}")},
            "event_id": {"S": id}, "timestamp_ms": {"N": "1767225600000"},
            "action": {"S": "entity_deleted"}, "entity_id": {"S": "key-1"},
            "details": {"S": "{}"}, "GSI4PK": {"S": "ns1"}, "GSI4SK": {"S": "ns1/AUDIT#key-1"},
        });
        json!({"eventName": "REMOVE", "userIdentity": identity, "dynamodb": {
            "Keys": {"PK": old["PK"], "SK": old["SK"]}, "OldImage": old,
            "SequenceNumber": seq, "ApproximateCreationDateTime": 1767225600.0}})
    };
    let ttl = json!({"type": "Service", "principalId": "dynamodb.amazonaws.com"});
    let ev = json!({"Records": [
        removal("500", "01JA", ttl.clone()),
        removal("501", "01JB", json!({"type": "User", "principalId": "alice"})),
        removal("502", "01JC", ttl),
    ]});
    let (resp, o) = handle_with(&ev, &sinks).await.unwrap();
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!((o.archived, o.objects, o.skipped), (2, 1, 1));
    let key = "audit/year=2026/month=01/day=01/audit-500-502.jsonl.gz";
    let obj = s3
        .get_object()
        .bucket(&bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    assert_eq!(obj.content_type(), Some("application/x-ndjson"));
    assert_eq!(obj.content_encoding(), Some("gzip"));
    let body = obj.body.collect().await.unwrap().into_bytes();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut text)
        .unwrap();
    let ids: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["event_id"].clone())
        .collect();
    assert_eq!(ids, vec![json!("01JA"), json!("01JC")]);
    // a retried batch overwrites its object: still one
    handle_with(&ev, &sinks).await.unwrap();
    let list = s3.list_objects_v2().bucket(&bucket).send().await.unwrap();
    assert_eq!(list.contents().len(), 1);
}
