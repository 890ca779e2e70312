//! The aggregator end to end on DynamoDB Local: acquires (with adjustments and rollbacks)
//! through the library, `aggregator run --once` over the table's stream, `usage list` /
//! `usage summary` / `--plot` over the snapshots; replays and a killed reader change
//! nothing. Archival: audit items expired by DynamoDB Local's real TTL land in S3 (moto,
//! `ZAEL_TEST_MOTO_ENDPOINT`) as gzip JSON Lines; a user's delete does not.
#![cfg(feature = "dynamodb-local-tests")]

use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{json, Value};
use zae_limiter::store::BucketKey;
use zae_limiter::{DynamoStore, Limit, RateLimiter, Store, StoreConfig};

mod support;
use support::LocalTable;

async fn store(t: &LocalTable) -> DynamoStore {
    DynamoStore::connect(
        StoreConfig::new(&t.name)
            .endpoint_url(&t.endpoint)
            .static_credentials("local", "local")
            .attempt_timeout(Duration::from_secs(20)),
    )
    .await
    .unwrap()
}

async fn sdk() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "local", "local", None, None, "test",
        ))
        .load()
        .await
}

async fn ddb(t: &LocalTable) -> aws_sdk_dynamodb::Client {
    let c = aws_sdk_dynamodb::config::Builder::from(&sdk().await).endpoint_url(&t.endpoint);
    aws_sdk_dynamodb::Client::from_conf(c.build())
}

/// Sum of `limit` (tokens) and of the events over a `usage list` JSON array.
fn sums(list: &Value, limit: &str) -> (i64, u64) {
    let arr = list
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"));
    let tokens = arr
        .iter()
        .map(|s| s["limits"][limit].as_i64().unwrap_or(0))
        .sum();
    let events = arr.iter().map(|s| s["events"].as_u64().unwrap()).sum();
    (tokens, events)
}

/// What the test expects per entity: (rpm, tpm, events).
type Want = BTreeMap<String, (i64, i64, u64)>;

/// 24 leases on 3 entities: plain commits, adjustments up and down, rollbacks.
async fn workload(l: &RateLimiter) -> Want {
    let limits = [
        Limit::per_minute("rpm", 1000),
        Limit::per_minute("tpm", 100_000),
    ];
    let mut want = Want::new();
    for i in 0..24 {
        let e = format!("key-{}", i % 3);
        let lease = l
            .acquire(&e, "gpt-4")
            .limits(limits.clone())
            .consume([("rpm", 1), ("tpm", 100)])
            .await
            .unwrap();
        let w = want.entry(e).or_default();
        match i % 4 {
            0 => {
                lease.commit().await.unwrap();
                *w = (w.0 + 1, w.1 + 100, w.2 + 1);
            }
            1 => {
                lease.adjust("tpm", 250).unwrap();
                lease.commit().await.unwrap();
                *w = (w.0 + 1, w.1 + 350, w.2 + 2);
            }
            2 => {
                lease.rollback().await.unwrap();
                *w = (w.0, w.1, w.2 + 2);
            }
            _ => {
                lease.adjust("tpm", -60).unwrap();
                lease.commit().await.unwrap();
                *w = (w.0 + 1, w.1 + 40, w.2 + 2);
            }
        }
    }
    want
}

fn list(t: &LocalTable, args: &[&str]) -> Value {
    let mut a = vec!["--output", "json", "usage", "list"];
    a.extend(args);
    t.run(&a).json()
}

fn check(t: &LocalTable, want: &Want) {
    for (e, (rpm, tpm, events)) in want {
        for w in ["hourly", "daily"] {
            let v = list(t, &["--entity", e, "--window", w]);
            assert_eq!(sums(&v, "rpm"), (*rpm, *events), "{e} {w}: {v}");
            assert_eq!(sums(&v, "tpm").0, *tpm, "{e} {w}: {v}");
        }
    }
}

fn last_json_line(out: &str) -> Value {
    let line = out.lines().last().unwrap_or_else(|| panic!("no output"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregator_run_counts_exact_net_consumption_once() {
    let t = LocalTable::create("agg");
    let s = store(&t).await;
    let l = RateLimiter::builder(s.clone()).build();
    let want = workload(&l).await;
    // the buckets' own counters agree with the arithmetic
    for (e, (rpm, tpm, _)) in &want {
        let b = s
            .get_bucket(&BucketKey::new(e, "gpt-4"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (b.limits["rpm"].consumed, b.limits["tpm"].consumed),
            (*rpm as i128 * 1000, *tpm as i128 * 1000)
        );
    }
    let done = last_json_line(&t.run(&["aggregator", "run", "--once"]).ok());
    let total_events: u64 = want.values().map(|w| w.2).sum();
    assert_eq!(done["bucket_changes"], json!(total_events), "{done}");
    check(&t, &want);
    let before = list(&t, &["--resource", "gpt-4"]);
    // a second run reads nothing new; the snapshots stay as they are
    let again = last_json_line(&t.run(&["aggregator", "run", "--once"]).ok());
    assert_eq!(again["bucket_changes"], json!(0), "{again}");
    assert_eq!(list(&t, &["--resource", "gpt-4"]), before);
    // by resource: every entity, the same totals
    let all_rpm: i64 = want.values().map(|w| w.0).sum();
    assert_eq!(sums(&before, "rpm"), (all_rpm, total_events));
    let snap = &before[0];
    for k in [
        "entity_id",
        "resource",
        "window",
        "window_start",
        "window_end",
        "limits",
        "events",
    ] {
        assert!(snap.get(k).is_some(), "{k} missing in {snap}");
    }
    assert!(snap["window_start"]
        .as_str()
        .unwrap()
        .ends_with(":00:00.000Z"));
    assert!(snap["window_end"]
        .as_str()
        .unwrap()
        .ends_with(":59:59.999Z"));
    // summary
    let sum = t
        .run(&[
            "--output",
            "json",
            "usage",
            "summary",
            "--resource",
            "gpt-4",
            "--window",
            "daily",
        ])
        .json();
    let all_tpm: i64 = want.values().map(|w| w.1).sum();
    assert_eq!(
        sum["total"],
        json!({"rpm": all_rpm, "tpm": all_tpm}),
        "{sum}"
    );
    assert_eq!(sum["events"], json!(total_events));
    let table = t.run(&["usage", "summary", "--entity", "key-0"]).ok();
    assert!(table.contains("rpm") && table.contains("tpm"), "{table}");
    // the human table and the chart
    let human = t.run(&["usage", "list", "--entity", "key-1"]).ok();
    assert!(
        human.contains("Window start") && human.contains("gpt-4"),
        "{human}"
    );
    let plot = t
        .run(&["usage", "list", "--resource", "gpt-4", "--plot", "tpm"])
        .ok();
    assert!(
        plot.starts_with("tpm consumed per hourly window (tokens), resource gpt-4"),
        "{plot}"
    );
    assert!(
        plot.chars().any(|c| ('\u{2800}'..='\u{28ff}').contains(&c)),
        "no braille: {plot}"
    );
    eprintln!("{plot}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_reader_loses_and_doubles_nothing() {
    let t = LocalTable::create("kill");
    let s = store(&t).await;
    let l = RateLimiter::builder(s.clone()).build();
    let mut want = Want::new();
    for _ in 0..3 {
        for (k, v) in workload(&l).await {
            let w = want.entry(k).or_default();
            *w = (w.0 + v.0, w.1 + v.1, w.2 + v.2);
        }
    }
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_zae-limiter"))
        .args(["--name", &t.name, "--endpoint-url", &t.endpoint])
        .args(["aggregator", "run", "--page-size", "4"])
        .env_remove("ZAEL_ENDPOINT_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // kill it as soon as it has checkpointed once (bounded wait)
    let c = ddb(&t).await;
    let started = Instant::now();
    let mut checkpointed = false;
    while started.elapsed() < Duration::from_secs(60) {
        let q = c
            .query()
            .table_name(&t.name)
            .key_condition_expression("PK = :pk AND begins_with(SK, :p)")
            .expression_attribute_values(":pk", AttributeValue::S("_/SYSTEM#".into()))
            .expression_attribute_values(":p", AttributeValue::S("#AGGREGATOR#".into()))
            .send()
            .await
            .unwrap();
        if !q.items().is_empty() {
            checkpointed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(checkpointed, "the reader never checkpointed");
    // restart: resumes from the checkpoint; what was written but not checkpointed is
    // replayed and not counted again
    t.run(&["aggregator", "run", "--once"]).ok();
    check(&t, &want);
    t.run(&["aggregator", "run", "--once"]).ok();
    check(&t, &want);
}

fn moto() -> String {
    std::env::var("ZAEL_TEST_MOTO_ENDPOINT")
        .expect("ZAEL_TEST_MOTO_ENDPOINT is not set: run through scripts/moto.sh")
}

fn audit_item(ns: &str, id: &str, ttl: i64) -> std::collections::HashMap<String, AttributeValue> {
    let s = |v: &str| AttributeValue::S(v.to_string());
    let pk = format!("{ns}/AUDIT#key-1");
    let mut item = std::collections::HashMap::from([
        ("PK".to_string(), s(&pk)),
        ("SK".to_string(), s(&format!("#AUDIT#{id}"))),
        ("event_id".to_string(), s(id)),
        // 2030-01-01T00:00:00Z: the partition is year=2030/month=01/day=01
        (
            "timestamp_ms".to_string(),
            AttributeValue::N("1893456000000".into()),
        ),
        ("action".to_string(), s("limits_set")),
        ("entity_id".to_string(), s("key-1")),
        ("principal".to_string(), s("alice")),
        ("details".to_string(), s(&format!("{{\"n\":\"{id}\"}}"))),
        ("GSI4PK".to_string(), s(ns)),
        ("GSI4SK".to_string(), s(&pk)),
        ("ttl".to_string(), AttributeValue::N(ttl.to_string())),
    ]);
    // DynamoDB Local 3.3's TTL only deletes items that carry the keys of every GSI of the
    // table (measured: an item outside one index is never deleted). Real audit items are
    // only in GSI4, so the test gives these the other index keys too; the archive drops
    // every GSI attribute, so the archived lines are what a real audit item gives.
    for g in ["GSI1", "GSI2", "GSI3"] {
        item.insert(format!("{g}PK"), s("ttl-test"));
        item.insert(format!("{g}SK"), s(id));
    }
    item
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_items_expired_by_ttl_are_archived_and_user_deletes_are_not() {
    let t = LocalTable::create("archive");
    let s = store(&t).await;
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ns = s
        .register_namespace("default", now_s * 1000)
        .await
        .unwrap()
        .id;
    let c = ddb(&t).await;
    let expired = [
        "01JEXPIRED0000000000000001",
        "01JEXPIRED0000000000000002",
        "01JEXPIRED0000000000000003",
    ];
    for id in expired {
        c.put_item()
            .table_name(&t.name)
            .set_item(Some(audit_item(&ns, id, now_s - 60)))
            .send()
            .await
            .unwrap();
    }
    let mine = "01JUSERDELETE0000000000001";
    c.put_item()
        .table_name(&t.name)
        .set_item(Some(audit_item(&ns, mine, now_s + 86_400)))
        .send()
        .await
        .unwrap();
    c.delete_item()
        .table_name(&t.name)
        .key("PK", AttributeValue::S(format!("{ns}/AUDIT#key-1")))
        .key("SK", AttributeValue::S(format!("#AUDIT#{mine}")))
        .send()
        .await
        .unwrap();
    // DynamoDB Local's TTL deletes them within a few seconds (bounded wait)
    let started = Instant::now();
    loop {
        let q = c
            .query()
            .table_name(&t.name)
            .key_condition_expression("PK = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(format!("{ns}/AUDIT#key-1")))
            .send()
            .await
            .unwrap();
        if q.items().is_empty() {
            eprintln!("TTL deleted the audit items after {:?}", started.elapsed());
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "TTL did not delete the audit items: {:?}",
            q.items()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk().await)
            .endpoint_url(moto())
            .force_path_style(true)
            .build(),
    );
    let bucket = format!("zael-archive-{}", t.name.to_lowercase().replace('_', "-"));
    let bucket = &bucket[..bucket.len().min(63)];
    s3.create_bucket().bucket(bucket).send().await.unwrap();
    let out = t
        .run(&[
            "aggregator",
            "run",
            "--once",
            "--archive-bucket",
            bucket,
            "--s3-endpoint-url",
            &moto(),
        ])
        .ok();
    assert_eq!(last_json_line(&out)["archived"], json!(3), "{out}");
    let objects = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
    let keys: Vec<&str> = objects.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(
        keys[0].starts_with("audit/year=2030/month=01/day=01/audit-")
            && keys[0].ends_with(".jsonl.gz"),
        "{keys:?}"
    );
    let obj = s3
        .get_object()
        .bucket(bucket)
        .key(keys[0])
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
    let mut lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    lines.sort_by(|a, b| a["event_id"].as_str().cmp(&b["event_id"].as_str()));
    assert_eq!(lines.len(), 3, "{text}");
    for (line, id) in lines.iter().zip(expired) {
        assert_eq!(
            line,
            &json!({
                "PK": format!("{ns}/AUDIT#key-1"), "SK": format!("#AUDIT#{id}"),
                "event_id": id, "timestamp_ms": 1_893_456_000_000i64, "action": "limits_set",
                "entity_id": "key-1", "principal": "alice", "details": {"n": id},
                "ttl": now_s - 60, "namespace_id": ns,
            })
        );
    }
    assert!(!text.contains(mine), "a user's delete was archived: {text}");
    // a second run archives nothing more
    let again = t
        .run(&[
            "aggregator",
            "run",
            "--once",
            "--archive-bucket",
            bucket,
            "--s3-endpoint-url",
            &moto(),
        ])
        .ok();
    assert_eq!(last_json_line(&again)["archived"], json!(0), "{again}");
    assert_eq!(
        s3.list_objects_v2()
            .bucket(bucket)
            .send()
            .await
            .unwrap()
            .contents()
            .len(),
        1
    );
}
