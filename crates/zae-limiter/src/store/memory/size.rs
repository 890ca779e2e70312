//! DynamoDB item sizes, so that the embedded store refuses what DynamoDB refuses: an item
//! over 400 KB.
//!
//! The rules (AWS, "DynamoDB item sizes and formats"): an item's size is the sum over its
//! attributes of the attribute name's UTF-8 length plus the value's size. A string counts its
//! UTF-8 length; a number about one byte per two significant digits plus one; a boolean or a
//! null one byte; a list or a map 3 bytes plus its elements, each element one byte more (a
//! map entry also counts its key).
//!
//! The count here is **conservative**: never below DynamoDB's for the items
//! `src/dynamodb/admin.rs` writes. A number counts one byte more than the approximation when
//! its digit count is even (digits that do not pair up with the decimal point take a byte of
//! their own) and one more when negative. Optional attributes DynamoDB may or may not carry
//! (a config's `version`) are counted.

use crate::config::{AuditEvent, ConfigScope, OnUnavailable, StoredConfig};
use crate::dynamodb::keys;
use crate::entity::Entity;
use crate::error::StoreError;
use crate::namespace::{NAMESPACE_AUDIT_ENTITY, SYSTEM_NAMESPACE};
use crate::store::{BucketKey, BucketState};

/// DynamoDB's item size limit.
pub(crate) const MAX_ITEM_BYTES: usize = 400 * 1024;

/// Room for the bucket attributes the write path adds beyond the limits and keys (bucket
/// time, `ttl`, write guards): the bucket size is an estimate of that layout.
const BUCKET_ALLOWANCE: usize = 1024;

/// The size of a number value (its name not included): one byte per two significant digits,
/// rounded up to a byte for an unpaired digit, plus one, plus one for a sign.
pub(crate) fn number(v: i128) -> usize {
    let mut u = v.unsigned_abs();
    if u == 0 {
        return 2;
    }
    while u % 10 == 0 {
        u /= 10;
    }
    let digits = u.ilog10() as usize + 1;
    digits / 2 + 2 + usize::from(v < 0)
}

/// The size of a map value from its entries (key, value size).
fn map<'a>(entries: impl IntoIterator<Item = (&'a str, usize)>) -> usize {
    3 + entries
        .into_iter()
        .map(|(k, v)| k.len() + v + 1)
        .sum::<usize>()
}

/// The size of a list value from its elements' sizes.
fn list(elements: impl IntoIterator<Item = usize>) -> usize {
    3 + elements.into_iter().map(|v| v + 1).sum::<usize>()
}

/// An item's size, attribute by attribute.
#[derive(Debug, Default, Clone, Copy)]
struct Item(usize);

impl Item {
    fn s(self, name: &str, value: &str) -> Self {
        Item(self.0 + name.len() + value.len())
    }
    fn opt_s(self, name: &str, value: Option<&str>) -> Self {
        match value {
            Some(v) => self.s(name, v),
            None => self,
        }
    }
    fn n(self, name: &str, value: i128) -> Self {
        Item(self.0 + name.len() + number(value))
    }
    fn bool(self, name: &str) -> Self {
        Item(self.0 + name.len() + 1)
    }
    fn value(self, name: &str, size: usize) -> Self {
        Item(self.0 + name.len() + size)
    }
    fn key(self, pk: &str, sk: &str) -> Self {
        self.s("PK", pk).s("SK", sk)
    }
}

/// The entity item (`{ns}/ENTITY#{id}`, `#META`): id, cascade, creation time, metadata, name,
/// parent with its GSI1 keys, GSI4 keys.
pub(crate) fn entity_item(ns: &str, e: &Entity) -> usize {
    let pk = keys::entity_pk(ns, &e.id);
    let mut item = Item::default()
        .key(&pk, keys::ENTITY_SK)
        .s("entity_id", &e.id)
        .bool("cascade")
        .n("created_at_ms", e.created_at_ms.into())
        .value(
            "metadata",
            map(e.metadata.iter().map(|(k, v)| (k.as_str(), v.len()))),
        )
        .s("GSI4PK", ns)
        .s("GSI4SK", &pk)
        .opt_s("name", e.name.as_deref())
        .opt_s("parent_id", e.parent_id.as_deref());
    if let Some(p) = &e.parent_id {
        let (g1pk, g1sk) = keys::parent_gsi(ns, p, &e.id);
        item = item.s("GSI1PK", &g1pk).s("GSI1SK", &g1sk);
    }
    item.0
}

/// A stored config item: level, limits (a list of maps), policy, resource, entity id and
/// GSI3 keys for entity configs, GSI4 keys, version.
pub(crate) fn config_item(ns: &str, scope: &ConfigScope, c: &StoredConfig) -> usize {
    let (pk, sk) = keys::config_key(ns, scope);
    let limits = list(c.limits.iter().map(|l| {
        map([
            ("name", l.name().len()),
            ("capacity", number(l.capacity().into())),
            ("refill_amount", number(l.refill_amount().into())),
            ("refill_period_ms", number(l.refill_period_ms().into())),
        ])
    }));
    let policy = c.on_unavailable.map(|p| match p {
        OnUnavailable::Block => "block",
        OnUnavailable::Allow => "allow",
    });
    let mut item = Item::default()
        .key(&pk, &sk)
        .s("level", scope.level())
        .value("limits", limits)
        .s("GSI4PK", ns)
        .s("GSI4SK", &pk)
        .n("version", c.version.into())
        .opt_s("on_unavailable", policy)
        .opt_s("resource", scope.resource());
    match scope {
        ConfigScope::Entity {
            entity_id,
            resource,
        } => {
            item = item
                .s("entity_id", entity_id)
                .s("GSI3PK", &format!("{ns}/ENTITY_CONFIG#{resource}"))
                .s("GSI3SK", entity_id);
        }
        ConfigScope::EntityDefault { entity_id } => item = item.s("entity_id", entity_id),
        ConfigScope::Resource { .. } | ConfigScope::System => {}
    }
    item.0
}

/// Counts bytes written (the audit details' JSON length without building the string).
struct Count(usize);

impl std::io::Write for Count {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The JSON length of `details` as stored (compact, like `Value::to_string`).
fn json_len(details: &serde_json::Value) -> usize {
    let mut c = Count(0);
    serde_json::to_writer(&mut c, details).expect("a JSON value always serializes");
    c.0
}

/// An audit event item in namespace `ns` (namespace events go to the table-level one): id,
/// time, action, entity, details as a JSON string, resource, principal, `ttl`, GSI4 keys.
pub(crate) fn audit_item(ns: &str, e: &AuditEvent) -> usize {
    let ns = if e.entity_id == NAMESPACE_AUDIT_ENTITY {
        SYSTEM_NAMESPACE
    } else {
        ns
    };
    let (pk, sk) = keys::audit_key(ns, &e.entity_id, &e.event_id);
    let mut item = Item::default()
        .key(&pk, &sk)
        .s("event_id", &e.event_id)
        .n("timestamp_ms", e.timestamp_ms.into())
        .s("action", e.action.as_str())
        .s("entity_id", &e.entity_id)
        .value("details", json_len(&e.details))
        .s("GSI4PK", ns)
        .s("GSI4SK", &pk)
        .opt_s("resource", e.resource.as_deref())
        .opt_s("principal", e.principal.as_deref());
    if let Some(x) = e.expires_at_ms {
        item = item.n("ttl", (x / 1000).into());
    }
    item.0
}

/// An estimate of a bucket item: keys, entity and resource, GSI2/GSI4 keys, per limit the
/// level, consumed counter, parameters and version, plus [`BUCKET_ALLOWANCE`]. Only names
/// far beyond the validated lengths can bring it near the limit.
pub(crate) fn bucket_item(ns: &str, key: &BucketKey, state: &BucketState) -> usize {
    let pk = keys::bucket_pk(ns, &key.entity_id, &key.resource);
    let (g2pk, g2sk) = keys::resource_gsi(ns, &key.entity_id, &key.resource);
    let item = Item::default()
        .key(&pk, keys::BUCKET_SK)
        .s("entity_id", &key.entity_id)
        .s("resource", &key.resource)
        .s("GSI2PK", &g2pk)
        .s("GSI2SK", &g2sk)
        .s("GSI4PK", ns)
        .s("GSI4SK", &pk);
    let limits: usize = state
        .limits
        .iter()
        .map(|(name, l)| {
            let p = &l.params;
            [l.level, l.consumed, p.capacity, p.refill, p.period]
                .into_iter()
                .map(number)
                .sum::<usize>()
                + number(l.version.into())
                // z_, tc_, cp_, ra_, rp_, v_
                + 6 * name.len()
                + 13
        })
        .sum();
    item.0 + limits + BUCKET_ALLOWANCE
}

/// A bound on [`bucket_item`] from the string lengths alone (no key built, no digit
/// counted): each of the four key strings is at most ns + entity + resource + 64 fixed
/// bytes, each number at most 22 bytes (39 digits and a sign), each attribute name at most
/// 16 bytes plus the limit's name.
fn bucket_bound(ns: &str, key: &BucketKey, state: &BucketState) -> usize {
    let strings = ns.len() + key.entity_id.len() + key.resource.len();
    5 * (strings + 64)
        + 8 * 16
        + state
            .limits
            .keys()
            .map(|name| 6 * (16 + name.len() + 22))
            .sum::<usize>()
        + BUCKET_ALLOWANCE
}

/// Refuse a bucket item over [`MAX_ITEM_BYTES`] ([`bucket_item`]). On the hot path the
/// [`bucket_bound`] settles it, unless names are far beyond the validated lengths.
pub(crate) fn check_bucket(
    ns: &str,
    key: &BucketKey,
    state: &BucketState,
) -> Result<(), StoreError> {
    if bucket_bound(ns, key, state) <= MAX_ITEM_BYTES {
        return Ok(());
    }
    check(bucket_item(ns, key, state), || {
        format!("the item of bucket {}/{}", key.entity_id, key.resource)
    })
}

/// Refuse an item of `size` bytes over [`MAX_ITEM_BYTES`]; `what` names it.
pub(crate) fn check(size: usize, what: impl FnOnce() -> String) -> Result<(), StoreError> {
    if size > MAX_ITEM_BYTES {
        return Err(StoreError::Refused(format!(
            "{} would be {size} bytes; a DynamoDB item holds at most {MAX_ITEM_BYTES}",
            what()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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
    fn sdk_config(
        ns: &str,
        scope: &ConfigScope,
        c: &StoredConfig,
    ) -> HashMap<String, AttributeValue> {
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
}
