//! Item sizes against the documented count over the SDK's attribute values.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;

use super::*;
use crate::bucket::BucketParams;
use crate::config::AuditAction;
use crate::limit::Limit;
use crate::store::LimitState;

const NS: &str = "AbCdEfGhIjK";

/// DynamoDB's documented count (numbers: ceil(significant digits / 2) + 1), over the
/// SDK's attribute values: what our counts must never be below.
fn documented(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => {
            let digits = n
                .trim_start_matches('-')
                .replace('.', "")
                .trim_start_matches('0')
                .trim_end_matches('0')
                .len();
            digits.div_ceil(2) + 1
        }
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, v)| k.len() + documented(v) + 1)
                .sum::<usize>()
        }
        AttributeValue::L(l) => 3 + l.iter().map(|v| documented(v) + 1).sum::<usize>(),
        other => panic!("not used by the store: {other:?}"),
    }
}

fn documented_item(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter().map(|(k, v)| k.len() + documented(v)).sum()
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}
fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// The entity item as `DynamoStore::entity_item` (src/dynamodb/admin.rs) builds it.
fn sdk_entity(ns: &str, e: &Entity) -> HashMap<String, AttributeValue> {
    let pk = keys::entity_pk(ns, &e.id);
    let mut item = HashMap::from([
        ("PK".to_string(), s(&pk)),
        ("SK".to_string(), s(keys::ENTITY_SK)),
        ("entity_id".to_string(), s(&e.id)),
        ("cascade".to_string(), AttributeValue::Bool(e.cascade)),
        ("created_at_ms".to_string(), n(e.created_at_ms)),
        (
            "metadata".to_string(),
            AttributeValue::M(e.metadata.iter().map(|(k, v)| (k.clone(), s(v))).collect()),
        ),
        ("GSI4PK".to_string(), s(ns)),
        ("GSI4SK".to_string(), s(&pk)),
    ]);
    if let Some(name) = &e.name {
        item.insert("name".to_string(), s(name));
    }
    if let Some(p) = &e.parent_id {
        item.insert("parent_id".to_string(), s(p));
        let (a, b) = keys::parent_gsi(ns, p, &e.id);
        item.insert("GSI1PK".to_string(), s(&a));
        item.insert("GSI1SK".to_string(), s(&b));
    }
    item
}

/// The config item as `DynamoStore::config_item` builds it, plus `version`.
fn sdk_config(ns: &str, scope: &ConfigScope, c: &StoredConfig) -> HashMap<String, AttributeValue> {
    let (pk, sk) = keys::config_key(ns, scope);
    let limits = c
        .limits
        .iter()
        .map(|l| {
            AttributeValue::M(HashMap::from([
                ("name".to_string(), s(l.name())),
                ("capacity".to_string(), n(l.capacity())),
                ("refill_amount".to_string(), n(l.refill_amount())),
                ("refill_period_ms".to_string(), n(l.refill_period_ms())),
            ]))
        })
        .collect();
    let mut item = HashMap::from([
        ("PK".to_string(), s(&pk)),
        ("SK".to_string(), s(&sk)),
        ("level".to_string(), s(scope.level())),
        ("limits".to_string(), AttributeValue::L(limits)),
        ("GSI4PK".to_string(), s(ns)),
        ("GSI4SK".to_string(), s(&pk)),
        ("version".to_string(), n(c.version)),
    ]);
    if let Some(p) = c.on_unavailable {
        let v = if p == OnUnavailable::Block {
            "block"
        } else {
            "allow"
        };
        item.insert("on_unavailable".to_string(), s(v));
    }
    if let Some(r) = scope.resource() {
        item.insert("resource".to_string(), s(r));
    }
    match scope {
        ConfigScope::Entity {
            entity_id,
            resource,
        } => {
            item.insert("entity_id".to_string(), s(entity_id));
            item.insert(
                "GSI3PK".to_string(),
                s(&format!("{ns}/ENTITY_CONFIG#{resource}")),
            );
            item.insert("GSI3SK".to_string(), s(entity_id));
        }
        ConfigScope::EntityDefault { entity_id } => {
            item.insert("entity_id".to_string(), s(entity_id));
        }
        _ => {}
    }
    item
}

/// The audit item as `DynamoStore::audit_item` builds it.
fn sdk_audit(ns: &str, e: &AuditEvent) -> HashMap<String, AttributeValue> {
    let ns = if e.entity_id == NAMESPACE_AUDIT_ENTITY {
        SYSTEM_NAMESPACE
    } else {
        ns
    };
    let (pk, sk) = keys::audit_key(ns, &e.entity_id, &e.event_id);
    let mut item = HashMap::from([
        ("PK".to_string(), s(&pk)),
        ("SK".to_string(), s(&sk)),
        ("event_id".to_string(), s(&e.event_id)),
        ("timestamp_ms".to_string(), n(e.timestamp_ms)),
        ("action".to_string(), s(e.action.as_str())),
        ("entity_id".to_string(), s(&e.entity_id)),
        ("details".to_string(), s(&e.details.to_string())),
        ("GSI4PK".to_string(), s(ns)),
        ("GSI4SK".to_string(), s(&pk)),
    ]);
    if let Some(r) = &e.resource {
        item.insert("resource".to_string(), s(r));
    }
    if let Some(p) = &e.principal {
        item.insert("principal".to_string(), s(p));
    }
    if let Some(x) = e.expires_at_ms {
        item.insert("ttl".to_string(), n(x / 1000));
    }
    item
}

fn entity(metadata: usize) -> Entity {
    Entity {
        id: "key-1".into(),
        name: Some("Key ✓ one".into()),
        parent_id: Some("proj".into()),
        cascade: true,
        metadata: (0..metadata)
            .map(|i| (format!("k{i}"), "é".repeat(i % 50)))
            .collect(),
        created_at_ms: 1_767_225_600_123,
    }
}

fn audit(details: serde_json::Value) -> AuditEvent {
    AuditEvent {
        event_id: "1767225600123-000001-abcdef".into(),
        timestamp_ms: 1_767_225_600_123,
        action: AuditAction::EntityCreated,
        entity_id: "key-1".into(),
        resource: Some("gpt-4".into()),
        principal: Some("arn:aws:iam::123456789012:user/ops".into()),
        details,
        expires_at_ms: Some(1_774_999_999_999),
    }
}

#[test]
fn numbers_are_never_below_the_documented_size() {
    for v in [
        0i128,
        1,
        9,
        10,
        12,
        120,
        123,
        1_000,
        1_001,
        12_345,
        -1,
        -12,
        -120_000,
        1_767_225_600_123,
        i64::MAX.into(),
        i128::MAX / 1000,
        -(10i128.pow(37)),
    ] {
        let doc = documented(&n(v));
        let ours = number(v);
        assert!(ours >= doc, "{v}: {ours} < {doc}");
        assert!(ours <= doc + 2, "{v}: {ours} is far above {doc}");
    }
    assert_eq!(number(12_345), 4);
    assert_eq!(number(120), 3);
}

#[test]
fn entity_size_is_conservative_and_tight() {
    for meta in [0, 1, 10, 500] {
        let mut e = entity(meta);
        for parent in [true, false] {
            if !parent {
                e.parent_id = None;
                e.name = None;
            }
            let doc = documented_item(&sdk_entity(NS, &e));
            let ours = entity_item(NS, &e);
            assert!(ours >= doc, "{ours} < {doc}");
            assert!(ours <= doc + 4, "{ours} vs {doc}");
        }
    }
}

#[test]
fn config_size_is_conservative_and_tight() {
    let scopes = [
        ConfigScope::Entity {
            entity_id: "key-1".into(),
            resource: "gpt-4".into(),
        },
        ConfigScope::EntityDefault {
            entity_id: "key-1".into(),
        },
        ConfigScope::Resource {
            resource: "gpt-4".into(),
        },
        ConfigScope::System,
    ];
    for scope in &scopes {
        for count in [0, 1, 32] {
            let c = StoredConfig {
                limits: (0..count)
                    .map(|i| Limit::per_minute(format!("limit-{i}"), 1_000 + i).burst(15_000))
                    .collect(),
                on_unavailable: (*scope == ConfigScope::System).then_some(OnUnavailable::Allow),
                version: 17,
            };
            let doc = documented_item(&sdk_config(NS, scope, &c));
            let ours = config_item(NS, scope, &c);
            assert!(ours >= doc, "{scope:?}: {ours} < {doc}");
            assert!(
                ours <= doc + 4 * count as usize + 4,
                "{scope:?}: {ours} vs {doc}"
            );
        }
    }
}

#[test]
fn audit_size_is_conservative_and_counts_the_details_json() {
    let details =
        serde_json::json!({ "new": entity(20), "old": null, "note": "ünïcode \"quoted\"" });
    let mut e = audit(details.clone());
    for variant in 0..3 {
        match variant {
            1 => {
                e.resource = None;
                e.principal = None;
                e.expires_at_ms = None;
            }
            2 => e.entity_id = NAMESPACE_AUDIT_ENTITY.into(),
            _ => {}
        }
        let doc = documented_item(&sdk_audit(NS, &e));
        let ours = audit_item(NS, &e);
        assert!(ours >= doc, "{ours} < {doc}");
        assert!(ours <= doc + 2, "{ours} vs {doc}");
    }
    assert_eq!(json_len(&details), details.to_string().len());
}

#[test]
fn bucket_estimate_covers_the_documented_attributes() {
    let mut state = BucketState {
        limits: BTreeMap::new(),
        time_ms: 1_767_225_600_000,
    };
    for i in 0..32 {
        let p = BucketParams::new(1_000_000_000_000, 1_000_000_000_000, 366 * 86_400_000);
        state.limits.insert(
            format!("{i:0>64}"),
            LimitState {
                params: p,
                version: i64::MAX,
                level: -(10i128.pow(35)),
                consumed: 10i128.pow(30),
            },
        );
    }
    let size = bucket_item(NS, &BucketKey::new("e".repeat(256), "r".repeat(64)), &state);
    // 32 limits of 64-character names stay far below the limit
    assert!(size > 32 * 6 * 64 && size < MAX_ITEM_BYTES / 10, "{size}");
}

#[test]
fn the_bucket_bound_is_never_below_the_estimate() {
    let p = BucketParams::new(1_000_000_000_000, 1, 366 * 86_400_000);
    for (name_len, count, id_len) in [
        (1, 1, 1),
        (64, 32, 256),
        (5_000, 3, 10),
        (70_000, 6, 300_000),
    ] {
        let mut state = BucketState::default();
        for i in 0..count {
            let l = LimitState {
                params: p,
                version: -1,
                level: i128::MIN / 3,
                consumed: i128::MAX / 7,
            };
            state
                .limits
                .insert(format!("{i}{}", "n".repeat(name_len)), l);
        }
        let key = BucketKey::new("e".repeat(id_len), "r");
        let size = bucket_item(NS, &key, &state);
        assert!(bucket_bound(NS, &key, &state) >= size);
        match check_bucket(NS, &key, &state) {
            Ok(()) => assert!(size <= MAX_ITEM_BYTES, "{size}"),
            Err(StoreError::Refused(m)) => {
                assert!(size > MAX_ITEM_BYTES, "{size}");
                assert!(m.starts_with("the item of bucket eee"), "{m}");
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    let mut state = BucketState::default();
    state.limits.insert(
        "n".repeat(70_000),
        LimitState {
            params: p,
            version: 0,
            level: 0,
            consumed: 0,
        },
    );
    assert!(check_bucket(NS, &BucketKey::new("e", "r"), &state).is_err());
}

#[test]
fn oversized_items_are_refused_with_their_name() {
    let mut e = entity(0);
    e.metadata.insert("blob".into(), "x".repeat(MAX_ITEM_BYTES));
    let err = check(entity_item(NS, &e), || "the item of entity 'key-1'".into()).unwrap_err();
    match err {
        StoreError::Refused(m) => {
            assert!(m.starts_with("the item of entity 'key-1' would be "), "{m}");
            assert!(m.ends_with("a DynamoDB item holds at most 409600"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    assert!(check(MAX_ITEM_BYTES, String::new).is_ok());
    assert!(check(MAX_ITEM_BYTES + 1, String::new).is_err());
}
