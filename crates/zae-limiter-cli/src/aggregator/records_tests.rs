use super::*;
use serde_json::json;

fn audit(name: &str, identity: Option<Value>) -> StreamRecord {
    let old = json!({
        "PK": {"S": "ns1/AUDIT#key-1"}, "SK": {"S": "#AUDIT#01J"}, "event_id": {"S": "01J"},
        "timestamp_ms": {"N": "1893456000000"}, "action": {"S": "entity_created"},
        "entity_id": {"S": "key-1"}, "details": {"S": "{\"a\":1}"},
        "GSI4PK": {"S": "ns1"}, "GSI4SK": {"S": "ns1/AUDIT#key-1"}, "ttl": {"N": "1"},
    });
    let mut raw = json!({
        "eventName": name,
        "dynamodb": {"Keys": {"PK": old["PK"], "SK": old["SK"]}, "OldImage": old, "SequenceNumber": "7"},
    });
    if let Some(i) = identity {
        raw["userIdentity"] = i;
    }
    StreamRecord::from_lambda(&raw).unwrap()
}

#[test]
fn ttl_deletions_in_both_shapes_and_user_deletes() {
    let service = json!({"type": "Service", "principalId": "dynamodb.amazonaws.com"});
    let user = json!({"type": "User", "principalId": "AIDAEXAMPLE"});
    let cases = [
        ("AWS TTL", audit("REMOVE", Some(service)), true),
        ("Local TTL", audit("UNKNOWN_TO_SDK_VERSION", None), true),
        ("user delete", audit("REMOVE", None), false),
        ("user identity", audit("REMOVE", Some(user)), false),
    ];
    for (name, r, expired) in cases {
        match classify(&r).unwrap() {
            Kind::AuditExpired(item) => {
                assert!(expired, "{name}");
                assert_eq!(item["event_id"], "01J");
                assert_eq!(item["timestamp_ms"], 1_893_456_000_000i64);
                assert_eq!(item["details"], json!({"a": 1}));
                assert_eq!(item["namespace_id"], "ns1");
                assert!(!item.contains_key("GSI4PK"));
            }
            other => assert!(!expired, "{name}: {other:?}"),
        }
    }
}

#[test]
fn bucket_records_and_bad_counters() {
    let raw = json!({
        "eventName": "INSERT",
        "dynamodb": {
            "Keys": {"PK": {"S": "ns1/BUCKET#k#r#2"}, "SK": {"S": "#STATE"}},
            "NewImage": {"tc_rpm": {"N": "1000"}, "z_rpm": {"N": "5"}},
            "SequenceNumber": "42", "ApproximateCreationDateTime": 1893456000.5
        }
    });
    let Kind::Bucket(b) = classify(&StreamRecord::from_lambda(&raw).unwrap()).unwrap() else {
        panic!("a bucket record");
    };
    assert_eq!((b.shard.as_str(), b.time_ms), ("2", 1_893_456_000_500));
    assert_eq!(b.deltas()["rpm"], 1000);
    let mut bad = raw.clone();
    bad["dynamodb"]["NewImage"]["tc_rpm"] = json!({"S": "x"});
    assert!(classify(&StreamRecord::from_lambda(&bad).unwrap()).is_err());
    // other items and bucket removals are skipped
    let mut other = raw.clone();
    other["dynamodb"]["Keys"]["SK"] = json!({"S": "#META"});
    assert_eq!(
        classify(&StreamRecord::from_lambda(&other).unwrap()).unwrap(),
        Kind::Other
    );
    let mut removed = raw;
    removed["eventName"] = json!("REMOVE");
    assert_eq!(
        classify(&StreamRecord::from_lambda(&removed).unwrap()).unwrap(),
        Kind::Other
    );
}

#[test]
fn plain_json_of_dynamodb_values() {
    let v = json!({"M": {"a": {"N": "12"}, "b": {"L": [{"S": "x"}, {"BOOL": true}, {"NULL": true}]},
                         "c": {"N": "123456789012345678901234567890"}, "d": {"N": "1.5"}}});
    assert_eq!(
        plain(&v).unwrap(),
        json!({"a": 12, "b": ["x", true, null], "c": "123456789012345678901234567890", "d": 1.5})
    );
    assert!(plain(&json!({"Q": 1})).is_err());
}
