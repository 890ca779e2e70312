//! The management items (entities, stored configs, audit events, namespace records): their
//! write form and their parsers, side by side.
//!
//! What is read from the table is validated like user input (see [`read`]).

#[cfg(test)]
mod proptests;
mod read;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::keys::{self, ENTITY_SK};
use crate::config::{AuditEvent, ConfigScope, OnUnavailable, ProvisionerState, StoredConfig};
use crate::entity::Entity;
use crate::error::StoreError;
use crate::namespace::{NamespaceInfo, NAMESPACE_AUDIT_ENTITY, SYSTEM_NAMESPACE};

pub(crate) use read::parse_entity;
pub(super) use read::{parse_audit, parse_config, parse_namespace, parse_provisioner};

/// A DynamoDB item.
pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// The table key `{PK, SK}`.
pub(super) fn key(pk: String, sk: String) -> Item {
    HashMap::from([("PK".to_string(), s(pk)), ("SK".to_string(), s(sk))])
}

/// Partition of the namespace registry.
pub(super) fn registry_pk() -> String {
    format!("{SYSTEM_NAMESPACE}/SYSTEM#")
}

/// Registry record by name (active namespaces only).
pub(super) fn forward_sk(name: &str) -> String {
    format!("#NAMESPACE#{name}")
}

/// Registry record by id (every state).
pub(super) fn reverse_sk(id: &str) -> String {
    format!("#NSID#{id}")
}

/// The namespace's own copy of its status, inside its key space (`{ns}/SYSTEM#` /
/// `#STATUS`): a tenant whose IAM policy reaches only `{ns}/*` can still see that its
/// namespace was deleted, without reading the table-level registry of every tenant. Purge
/// deletes it with everything else (it carries the GSI4 keys).
pub(super) fn status_key(ns: &str) -> (String, String) {
    (format!("{ns}/SYSTEM#"), "#STATUS".to_string())
}

/// The status marker item of namespace `ns`.
pub(super) fn status_item(ns: &str, status: crate::namespace::NamespaceStatus) -> Item {
    let (pk, sk) = status_key(ns);
    let mut item = key(pk.clone(), sk);
    item.extend([
        ("status".to_string(), s(status.as_str())),
        ("GSI4PK".to_string(), s(ns)),
        ("GSI4SK".to_string(), s(pk)),
    ]);
    item
}

/// Whether a status marker says the namespace is active (a corrupt marker is an error).
pub(super) fn marker_active(item: &Item) -> Result<bool, StoreError> {
    let status = item.get("status").and_then(|v| v.as_s().ok());
    match status.and_then(|v| crate::namespace::NamespaceStatus::parse(v)) {
        Some(st) => Ok(st == crate::namespace::NamespaceStatus::Active),
        None => Err(StoreError::Malformed(format!(
            "corrupt namespace status item: status is {status:?}"
        ))),
    }
}

pub(super) fn entity_item(ns: &str, e: &Entity) -> Item {
    let pk = keys::entity_pk(ns, &e.id);
    let mut item = key(pk.clone(), ENTITY_SK.to_string());
    let metadata = e.metadata.iter().map(|(k, v)| (k.clone(), s(v))).collect();
    item.extend([
        ("entity_id".to_string(), s(&e.id)),
        ("cascade".to_string(), AttributeValue::Bool(e.cascade)),
        ("created_at_ms".to_string(), n(e.created_at_ms)),
        ("metadata".to_string(), AttributeValue::M(metadata)),
        ("GSI4PK".to_string(), s(ns)),
        ("GSI4SK".to_string(), s(pk)),
    ]);
    if let Some(name) = &e.name {
        item.insert("name".to_string(), s(name));
    }
    if let Some(p) = &e.parent_id {
        item.insert("parent_id".to_string(), s(p));
        let (g1pk, g1sk) = keys::parent_gsi(ns, p, &e.id);
        item.insert("GSI1PK".to_string(), s(g1pk));
        item.insert("GSI1SK".to_string(), s(g1sk));
    }
    item
}

pub(super) fn config_item(ns: &str, scope: &ConfigScope, c: &StoredConfig) -> Item {
    let (pk, sk) = keys::config_key(ns, scope);
    let mut item = key(pk.clone(), sk);
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
    item.extend([
        ("level".to_string(), s(scope.level())),
        ("limits".to_string(), AttributeValue::L(limits)),
        ("version".to_string(), n(c.version)),
        ("GSI4PK".to_string(), s(ns)),
        ("GSI4SK".to_string(), s(pk)),
    ]);
    if let Some(p) = c.on_unavailable {
        let v = match p {
            OnUnavailable::Block => "block",
            OnUnavailable::Allow => "allow",
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
            item.insert("GSI3PK".to_string(), s(entity_config_gsi(ns, resource)));
            item.insert("GSI3SK".to_string(), s(entity_id));
        }
        ConfigScope::EntityDefault { entity_id } => {
            item.insert("entity_id".to_string(), s(entity_id));
        }
        ConfigScope::Resource { .. } | ConfigScope::System => {}
    }
    item
}

/// GSI3 partition: entities with an entity+resource config for `resource`.
pub(super) fn entity_config_gsi(ns: &str, resource: &str) -> String {
    format!("{ns}/ENTITY_CONFIG#{resource}")
}

/// The namespace an audit event is filed in: namespace changes go to the table level.
pub(super) fn audit_ns<'a>(ns: &'a str, entity_id: &str) -> &'a str {
    if entity_id == NAMESPACE_AUDIT_ENTITY {
        SYSTEM_NAMESPACE
    } else {
        ns
    }
}

pub(super) fn audit_item(ns: &str, e: &AuditEvent) -> Item {
    let ns = audit_ns(ns, &e.entity_id);
    let (pk, sk) = keys::audit_key(ns, &e.entity_id, &e.event_id);
    let mut item = key(pk.clone(), sk);
    item.extend([
        ("event_id".to_string(), s(&e.event_id)),
        ("timestamp_ms".to_string(), n(e.timestamp_ms)),
        ("action".to_string(), s(e.action.as_str())),
        ("entity_id".to_string(), s(&e.entity_id)),
        ("details".to_string(), s(e.details.to_string())),
        ("GSI4PK".to_string(), s(ns)),
        ("GSI4SK".to_string(), s(pk)),
    ]);
    if let Some(r) = &e.resource {
        item.insert("resource".to_string(), s(r));
    }
    if let Some(p) = &e.principal {
        item.insert("principal".to_string(), s(p));
    }
    if let Some(x) = e.expires_at_ms {
        item.insert("ttl".to_string(), n(x.div_euclid(1000)));
    }
    item
}

/// A registry record (`sk` is [`forward_sk`] or [`reverse_sk`]).
pub(super) fn namespace_item(sk: String, info: &NamespaceInfo) -> Item {
    let mut item = key(registry_pk(), sk);
    item.extend([
        ("namespace_id".to_string(), s(&info.id)),
        ("namespace_name".to_string(), s(&info.name)),
        ("status".to_string(), s(info.status.as_str())),
        ("created_at_ms".to_string(), n(info.created_at_ms)),
        ("GSI4PK".to_string(), s(SYSTEM_NAMESPACE)),
        ("GSI4SK".to_string(), s(registry_pk())),
    ]);
    if let Some(d) = info.deleted_at_ms {
        item.insert("deleted_at_ms".to_string(), n(d));
    }
    item
}

/// The table key (PK, SK) of an item, e.g. one returned by a KEYS_ONLY index.
pub(super) fn key_of(item: &Item) -> Item {
    ["PK", "SK"]
        .iter()
        .filter_map(|a| item.get(*a).map(|v| (a.to_string(), v.clone())))
        .collect()
}

/// A batch request deleting `item` (by its table key).
pub(super) fn delete_request(
    item: &Item,
) -> Result<aws_sdk_dynamodb::types::WriteRequest, StoreError> {
    use aws_sdk_dynamodb::types::{DeleteRequest, WriteRequest};
    Ok(WriteRequest::builder()
        .delete_request(
            DeleteRequest::builder()
                .set_key(Some(key_of(item)))
                .build()
                .map_err(super::errors::build_err)?,
        )
        .build())
}

fn string_list<'a>(values: impl IntoIterator<Item = &'a String>) -> AttributeValue {
    AttributeValue::L(values.into_iter().map(|v| s(v.as_str())).collect())
}

/// The `#PROVISIONER` record of namespace `ns` (see [`ProvisionerState`]).
pub(super) fn provisioner_item(ns: &str, p: &ProvisionerState) -> Item {
    let (pk, sk) = keys::provisioner_key(ns);
    let mut item = key(pk.clone(), sk);
    let entities = p
        .entities
        .iter()
        .map(|(e, rs)| (e.clone(), string_list(rs)))
        .collect();
    item.extend([
        ("managed_system".to_string(), AttributeValue::Bool(p.system)),
        ("managed_resources".to_string(), string_list(&p.resources)),
        ("managed_entities".to_string(), AttributeValue::M(entities)),
        ("applied_hash".to_string(), s(p.applied_hash.as_str())),
        ("applied_at_ms".to_string(), n(p.applied_at_ms)),
        ("revision".to_string(), n(p.revision)),
        ("GSI4PK".to_string(), s(ns)),
        ("GSI4SK".to_string(), s(pk)),
    ]);
    if let Some(who) = &p.principal {
        item.insert("principal".to_string(), s(who.as_str()));
    }
    item
}
