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
use crate::entity::Entity;
use crate::error::StoreError;
use crate::keys;
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

/// The `#PROVISIONER` record: the managed set (a bool, a list of resources, a map of entity
/// to resources), hash, time, principal, revision, GSI4 keys.
pub(crate) fn provisioner_item(ns: &str, p: &crate::config::ProvisionerState) -> usize {
    let (pk, sk) = keys::provisioner_key(ns);
    let resources = list(p.resources.iter().map(|r| r.len()));
    let entities = map(p
        .entities
        .iter()
        .map(|(e, rs)| (e.as_str(), list(rs.iter().map(|r| r.len())))));
    Item::default()
        .key(&pk, &sk)
        .bool("managed_system")
        .value("managed_resources", resources)
        .value("managed_entities", entities)
        .s("applied_hash", &p.applied_hash)
        .n("applied_at_ms", p.applied_at_ms.into())
        .opt_s("principal", p.principal.as_deref())
        .n("revision", p.revision.into())
        .s("GSI4PK", ns)
        .s("GSI4SK", &pk)
        .0
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
    let pk = keys::bucket_pk(ns, &key.entity_id, &key.resource, key.shard);
    let (g2pk, g2sk) = keys::resource_gsi(ns, &key.entity_id, &key.resource, key.shard);
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

// compares the counts with the SDK's attribute values
#[cfg(all(test, feature = "dynamodb"))]
mod tests;
