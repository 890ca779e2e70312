//! Round trips (write form -> parse -> equal) and corrupt items with their messages; the
//! fixtures are shared with the property tests.

use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::{BTreeMap, HashMap};

use super::*;
use crate::config::{AuditAction, ConfigScope, OnUnavailable, StoredConfig};
use crate::error::StoreError;
use crate::limit::{Limit, MAX_AMOUNT, MAX_PERIOD};
use crate::namespace::NamespaceStatus;

pub(super) const NS: &str = "AbCdEfGhIjK";

pub(super) fn entity(parent: bool) -> Entity {
    Entity {
        id: "key-1".into(),
        name: Some("Web key".into()),
        parent_id: parent.then(|| "proj".to_string()),
        cascade: parent,
        metadata: BTreeMap::from([("tier".into(), "gold".into()), ("x".into(), "".into())]),
        created_at_ms: 1_700_000_000_000,
    }
}

pub(super) fn scopes() -> Vec<ConfigScope> {
    vec![
        ConfigScope::Entity {
            entity_id: "key-1".into(),
            resource: "gpt-4".into(),
        },
        ConfigScope::EntityDefault {
            entity_id: "key-1".into(),
        },
        ConfigScope::Resource {
            resource: "openai/gpt-4o".into(),
        },
        ConfigScope::System,
    ]
}

pub(super) fn config(system: bool) -> StoredConfig {
    StoredConfig {
        limits: vec![
            Limit::per_minute("rpm", 100),
            Limit::custom("tpd", MAX_AMOUNT, 1, MAX_PERIOD),
        ],
        on_unavailable: system.then_some(OnUnavailable::Allow),
        version: 1_700_000_000_123,
    }
}

pub(super) fn audit(entity_id: &str) -> AuditEvent {
    AuditEvent {
        event_id: "1700000000000-000001-0a1b2c3d".into(),
        timestamp_ms: 1_700_000_000_000,
        action: AuditAction::EntityUpdated,
        entity_id: entity_id.into(),
        resource: Some("_default_".into()),
        principal: Some("arn:aws:iam::123456789012:user/ops".into()),
        details: serde_json::json!({"old": null, "new": {"a": [1, 2]}}),
        expires_at_ms: Some(1_707_776_000_000),
    }
}

pub(super) fn namespace(status: NamespaceStatus) -> NamespaceInfo {
    NamespaceInfo {
        name: "tenant-a".into(),
        id: NS.into(),
        status,
        created_at_ms: 5,
        deleted_at_ms: (status != NamespaceStatus::Active).then_some(9),
    }
}

#[test]
fn round_trips() {
    for parent in [false, true] {
        let e = entity(parent);
        assert_eq!(parse_entity(&entity_item(NS, &e)).unwrap(), e);
    }
    let bare = Entity {
        name: None,
        metadata: BTreeMap::new(),
        ..entity(false)
    };
    assert_eq!(parse_entity(&entity_item(NS, &bare)).unwrap(), bare);
    for scope in scopes() {
        let c = config(scope == ConfigScope::System);
        let item = config_item(NS, &scope, &c);
        assert_eq!(parse_config(&item, &scope).unwrap(), c, "{scope:?}");
    }
    let policy_only = StoredConfig {
        limits: vec![],
        on_unavailable: Some(OnUnavailable::Block),
        version: 0,
    };
    let item = config_item(NS, &ConfigScope::System, &policy_only);
    assert_eq!(
        parse_config(&item, &ConfigScope::System).unwrap(),
        policy_only
    );
    for who in ["key-1", "$SYSTEM", "$RESOURCE:gpt-4", "$NAMESPACE"] {
        let mut e = audit(who);
        assert_eq!(parse_audit(&audit_item(NS, &e)).unwrap(), e, "{who}");
        (e.resource, e.principal, e.expires_at_ms) = (None, None, None);
        assert_eq!(parse_audit(&audit_item(NS, &e)).unwrap(), e, "{who}");
    }
    use NamespaceStatus::*;
    for status in [Active, Deleted, Purging] {
        let n = namespace(status);
        assert_eq!(
            parse_namespace(&namespace_item(reverse_sk(NS), &n)).unwrap(),
            n
        );
    }
    let n = namespace(Active);
    let fwd = namespace_item(forward_sk("tenant-a"), &n);
    assert_eq!(parse_namespace(&fwd).unwrap(), n);
}

pub(super) fn err(r: Result<impl std::fmt::Debug, StoreError>) -> String {
    match r {
        Err(StoreError::Malformed(m)) => m,
        other => panic!("expected a corrupt-item error, got {other:?}"),
    }
}

/// `item` with attribute `k` set to `v` (removed for `None`), parsed: the error message.
fn corrupt_with<T: std::fmt::Debug>(
    item: &Item,
    k: &str,
    v: Option<AttributeValue>,
    parse: impl Fn(&Item) -> Result<T, StoreError>,
) -> String {
    let mut i = item.clone();
    match v {
        Some(v) => i.insert(k.to_string(), v),
        None => i.remove(k),
    };
    err(parse(&i))
}

#[test]
fn corrupt_items_are_named_precisely() {
    let scope = ConfigScope::Resource {
        resource: "gpt-4".into(),
    };
    let mut item = config_item(NS, &scope, &config(false));
    let AttributeValue::L(limits) = item.get_mut("limits").unwrap() else {
        unreachable!()
    };
    let second = limits[1].clone();
    let AttributeValue::M(first) = &mut limits[0] else {
        unreachable!()
    };
    first.insert("refill_period_ms".into(), n(0));
    assert_eq!(
        err(parse_config(&item, &scope)),
        format!(
            "corrupt config item {NS}/RESOURCE#gpt-4 #CONFIG: limits[0].refill_period_ms is 0, \
             outside 1..={}",
            MAX_PERIOD.as_millis()
        )
    );
    let good = config_item(NS, &scope, &config(false));
    let with =
        |k: &str, v: Option<AttributeValue>| corrupt_with(&good, k, v, |i| parse_config(i, &scope));
    assert!(with("version", None).ends_with(": version is missing"));
    assert!(
        with("version", Some(n(-1))).ends_with("version is -1, outside 0..=9223372036854775807")
    );
    assert!(with("version", Some(s("7"))).ends_with("version is a string instead of a number"));
    assert!(with("level", Some(s("system"))).contains("level is 'system', expected 'resource'"));
    assert!(with("on_unavailable", Some(s("maybe"))).contains("on_unavailable is 'maybe'"));
    assert!(with("limits", Some(AttributeValue::L(vec![]))).contains("give at least one limit"));
    assert!(with("GSI4PK", None).contains("GSI4PK is missing"));
    let twice = AttributeValue::L(vec![second.clone(), second]);
    assert!(with("limits", Some(twice)).contains("given twice"));
    let huge = AttributeValue::N("1".repeat(40));
    assert!(with("version", Some(huge)).contains("not an integer"));
    // another scope's item read at this scope
    let other = config_item(NS, &ConfigScope::System, &config(true));
    assert!(err(parse_config(&other, &scope)).contains("PK does not end with"));

    let e = entity_item(NS, &entity(true));
    let with = |k: &str, v: Option<AttributeValue>| corrupt_with(&e, k, v, parse_entity);
    let name = format!("corrupt entity item {NS}/ENTITY#key-1 #META: ");
    assert_eq!(with("cascade", None), format!("{name}cascade is missing"));
    assert_eq!(
        with("created_at_ms", None),
        format!("{name}created_at_ms is missing")
    );
    assert!(with("entity_id", Some(s("key-2"))).contains("PK does not end with '/ENTITY#key-2'"));
    assert!(with("parent_id", Some(s("key-1"))).contains("GSI1PK is"));
    assert!(with("GSI1PK", None).contains("GSI1PK is missing"));
    let meta = AttributeValue::M(HashMap::from([("k".to_string(), n(1))]));
    assert!(with("metadata", Some(meta)).ends_with("metadata.k is a number instead of a string"));
    assert!(with("name", Some(s(""))).contains("invalid name"));
    let mut orphan = entity_item(NS, &entity(false));
    orphan.insert("cascade".into(), AttributeValue::Bool(true));
    assert!(err(parse_entity(&orphan)).contains("cascade needs a parent"));

    let a = audit_item(NS, &audit("key-1"));
    let with = |k: &str, v: Option<AttributeValue>| corrupt_with(&a, k, v, parse_audit);
    assert!(with("details", Some(s("not json"))).contains("details is not JSON"));
    assert!(with("details", None).contains("details is missing"));
    assert!(with("action", Some(s("entity_exploded"))).contains("action 'entity_exploded'"));
    assert!(with("timestamp_ms", None).contains("timestamp_ms is missing"));
    assert!(with("ttl", Some(n(-5))).contains("ttl is -5"));
    assert!(with("resource", Some(s("9x"))).contains("invalid resource"));
    // a namespace event filed in a tenant's namespace
    let mut ns_event = audit_item(NS, &audit("$NAMESPACE"));
    ns_event.insert("PK".into(), s(format!("{NS}/AUDIT#$NAMESPACE")));
    assert!(err(parse_audit(&ns_event)).contains("only they"));

    let r = namespace_item(reverse_sk(NS), &namespace(NamespaceStatus::Deleted));
    let with = |k: &str, v: Option<AttributeValue>| corrupt_with(&r, k, v, parse_namespace);
    assert!(with("deleted_at_ms", None).contains("deleted_at_ms is missing"));
    assert!(with("status", Some(s("zombie"))).contains("status 'zombie'"));
    assert!(with("namespace_id", Some(s("a/b"))).contains("invalid namespace_id"));
    assert!(with("namespace_id", Some(s("OtherIdXXXX"))).contains("SK fits neither"));
    let mut fwd = namespace_item(forward_sk("tenant-a"), &namespace(NamespaceStatus::Active));
    fwd.insert("status".into(), s("deleted"));
    fwd.insert("deleted_at_ms".into(), n(1));
    assert!(err(parse_namespace(&fwd)).contains("must be active"));
}
