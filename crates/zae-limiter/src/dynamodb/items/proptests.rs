//! Property tests over arbitrary attribute maps for every parser: never a panic; a parse
//! that succeeds yields values passing validation; valid items round-trip and survive (or
//! are refused after) random mutations.

use std::time::Duration;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use proptest::prelude::*;

use super::tests::{audit, err, namespace, scopes, NS};
use super::*;
use crate::config::{ConfigScope, OnUnavailable, StoredConfig};
use crate::limit::{validate_entity_id, validate_resource, Limit, MAX_AMOUNT, MAX_PERIOD};
use crate::namespace::{validate_namespace_id, validate_namespace_name, NamespaceStatus};

const NAMES: &[&str] = &[
    "PK",
    "SK",
    "entity_id",
    "name",
    "parent_id",
    "cascade",
    "metadata",
    "created_at_ms",
    "GSI1PK",
    "GSI1SK",
    "GSI3PK",
    "GSI3SK",
    "GSI4PK",
    "GSI4SK",
    "level",
    "limits",
    "resource",
    "on_unavailable",
    "version",
    "event_id",
    "timestamp_ms",
    "action",
    "details",
    "principal",
    "ttl",
    "namespace_id",
    "namespace_name",
    "status",
    "deleted_at_ms",
    "capacity",
    "refill_amount",
    "refill_period_ms",
    "junk",
    "",
];

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "key-1",
            "proj",
            "gpt-4",
            "rpm",
            "tenant-a",
            NS,
            "_",
            "",
            "#META",
            "#CONFIG",
            "_/SYSTEM#",
            "block",
            "allow",
            "active",
            "deleted",
            "purging",
            "entity_updated",
            "resource",
            "system",
            "{}",
            "null",
            "\"x\"",
            "_default_",
            "$NAMESPACE",
        ])
        .prop_map(str::to_string),
        "\\PC{0,80}",
        ".{0,8}",
        Just("x".repeat(70_000)),
    ]
}

fn arb_number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        any::<i128>().prop_map(|v| v.to_string()),
        (0i64..=2_000_000_000_000).prop_map(|v| v.to_string()),
        prop::sample::select(vec![
            "0",
            "-0",
            "1",
            "-1",
            "1.5",
            "1e3",
            "1e400",
            "",
            " 7",
            "+7",
            "NaN",
            "0x10",
            "99999999999999999999999999999999999999",
        ])
        .prop_map(str::to_string),
    ]
}

fn arb_value() -> impl Strategy<Value = AttributeValue> {
    let leaf = prop_oneof![
        arb_string().prop_map(AttributeValue::S),
        arb_number().prop_map(AttributeValue::N),
        any::<bool>().prop_map(AttributeValue::Bool),
        Just(AttributeValue::Null(true)),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(|b| AttributeValue::B(Blob::new(b))),
        prop::collection::vec(arb_string(), 0..3).prop_map(AttributeValue::Ss),
        prop::collection::vec(arb_number(), 0..3).prop_map(AttributeValue::Ns),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::hash_map(
                prop::sample::select(NAMES).prop_map(str::to_string),
                inner.clone(),
                0..5
            )
            .prop_map(AttributeValue::M),
            prop::collection::vec(inner, 0..4).prop_map(AttributeValue::L),
        ]
    })
}

fn arb_map() -> impl Strategy<Value = Item> {
    prop::collection::hash_map(
        prop_oneof![
            prop::sample::select(NAMES).prop_map(str::to_string),
            "\\PC{0,10}"
        ],
        arb_value(),
        0..12,
    )
}

#[derive(Debug, Clone)]
enum Mutation {
    Remove(usize),
    Set(usize, AttributeValue),
    Junk(String, AttributeValue),
}

fn arb_mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(
        prop_oneof![
            any::<usize>().prop_map(Mutation::Remove),
            (any::<usize>(), arb_value()).prop_map(|(i, v)| Mutation::Set(i, v)),
            ("\\PC{0,10}", arb_value()).prop_map(|(k, v)| Mutation::Junk(k, v)),
        ],
        0..3,
    )
}

/// A valid item with a few random changes: parses often succeed, so both sides are tested.
fn mutate(mut item: Item, ms: &[Mutation]) -> Item {
    let mut keys: Vec<String> = item.keys().cloned().collect();
    keys.sort();
    for m in ms {
        match m {
            Mutation::Remove(i) => {
                item.remove(&keys[i % keys.len()]);
            }
            Mutation::Set(i, v) => {
                item.insert(keys[i % keys.len()].clone(), v.clone());
            }
            Mutation::Junk(k, v) => {
                item.insert(k.clone(), v.clone());
            }
        }
    }
    item
}

fn arb_entity() -> impl Strategy<Value = Entity> {
    (
        "[a-z0-9][a-z0-9_.@:-]{0,20}",
        proptest::option::of("\\PC{1,30}"),
        proptest::option::of("[A-Z0-9][a-z0-9]{0,8}"),
        any::<bool>(),
        prop::collection::btree_map("[a-z]{1,6}", "\\PC{0,12}", 0..4),
        0i64..=i64::MAX,
    )
        .prop_map(
            |(id, name, parent_id, cascade, metadata, created_at_ms)| Entity {
                cascade: cascade && parent_id.is_some(),
                id,
                name: name.filter(|n| !n.chars().any(char::is_control)),
                parent_id,
                metadata,
                created_at_ms,
            },
        )
}

fn arb_config() -> impl Strategy<Value = (ConfigScope, StoredConfig)> {
    let limit = (
        1..=MAX_AMOUNT,
        1..=MAX_AMOUNT,
        1..=MAX_PERIOD.as_millis() as u64,
    );
    (
        prop::sample::select(scopes()),
        prop::collection::btree_map("[a-z._-]{1,10}", limit, 1..5),
        any::<bool>(),
        0i64..=i64::MAX,
    )
        .prop_map(|(scope, ls, policy, version)| {
            let limits = ls
                .into_iter()
                .map(|(n, (c, a, p))| Limit::custom(n, c, a, Duration::from_millis(p)))
                .collect();
            let on_unavailable =
                (policy && scope == ConfigScope::System).then_some(OnUnavailable::Block);
            (
                scope,
                StoredConfig {
                    limits,
                    on_unavailable,
                    version,
                },
            )
        })
}

/// A successful parse yields an entity passing validation; a failure is a corrupt-item error.
fn check_entity(item: &Item) {
    match parse_entity(item) {
        Ok(e) => e.validate().unwrap(),
        Err(e) => assert!(err(Err::<(), _>(e)).starts_with("corrupt entity item ")),
    }
}

fn check_config(item: &Item, scope: &ConfigScope) {
    match parse_config(item, scope) {
        Ok(c) => {
            c.validate(scope).unwrap();
            assert!(c.version >= 0);
            for l in &c.limits {
                l.validate().unwrap();
            }
        }
        Err(e) => assert!(err(Err::<(), _>(e)).starts_with("corrupt config item ")),
    }
}

fn check_audit(item: &Item) {
    match parse_audit(item) {
        Ok(a) => {
            crate::admin::validate_event_id(&a.event_id).unwrap();
            crate::admin::validate_audit_entity(&a.entity_id).unwrap();
            assert!(a.timestamp_ms >= 0 && a.expires_at_ms.is_none_or(|x| x >= 0));
            if let Some(r) = a.resource.as_deref().filter(|r| *r != "_default_") {
                validate_resource(r).unwrap();
            }
        }
        Err(e) => assert!(err(Err::<(), _>(e)).starts_with("corrupt audit item ")),
    }
}

fn check_namespace(item: &Item) {
    match parse_namespace(item) {
        Ok(n) => {
            validate_namespace_name(&n.name).unwrap();
            validate_namespace_id(&n.id).unwrap();
            assert!(n.created_at_ms >= 0);
            assert!(n.status == NamespaceStatus::Active || n.deleted_at_ms.is_some());
        }
        Err(e) => assert!(err(Err::<(), _>(e)).starts_with("corrupt namespace item ")),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn arbitrary_maps_never_panic(item in arb_map(), scope in prop::sample::select(scopes())) {
        check_entity(&item);
        check_config(&item, &scope);
        check_audit(&item);
        check_namespace(&item);
    }

    #[test]
    fn entities_round_trip_and_survive_mutation(e in arb_entity(), ms in arb_mutations()) {
        prop_assume!(validate_entity_id(&e.id).is_ok() && e.validate().is_ok());
        let item = entity_item(NS, &e);
        prop_assert_eq!(parse_entity(&item).unwrap(), e);
        check_entity(&mutate(item, &ms));
    }

    #[test]
    fn configs_round_trip_and_survive_mutation((scope, c) in arb_config(), ms in arb_mutations()) {
        let item = config_item(NS, &scope, &c);
        prop_assert_eq!(parse_config(&item, &scope).unwrap(), c);
        check_config(&mutate(item, &ms), &scope);
    }

    #[test]
    fn audits_round_trip_and_survive_mutation(
        who in prop::sample::select(vec!["key-1", "$SYSTEM", "$RESOURCE:gpt-4", "$NAMESPACE"]),
        ts in 0i64..=4_000_000_000_000,
        ttl in proptest::option::of(0i64..=4_000_000_000),
        principal in proptest::option::of("\\PC{0,40}"),
        ms in arb_mutations(),
    ) {
        let e = AuditEvent {
            timestamp_ms: ts,
            principal,
            expires_at_ms: ttl.map(|t| t * 1000),
            ..audit(who)
        };
        let item = audit_item(NS, &e);
        prop_assert_eq!(parse_audit(&item).unwrap(), e);
        check_audit(&mutate(item, &ms));
    }

    #[test]
    fn namespaces_survive_mutation(
        status in prop::sample::select(vec![
            NamespaceStatus::Active, NamespaceStatus::Deleted, NamespaceStatus::Purging,
        ]),
        by_name in any::<bool>(),
        ms in arb_mutations(),
    ) {
        let n = namespace(status);
        let sk = if by_name && status == NamespaceStatus::Active {
            forward_sk(&n.name)
        } else {
            reverse_sk(&n.id)
        };
        let item = namespace_item(sk, &n);
        prop_assert_eq!(parse_namespace(&item).unwrap(), n);
        check_namespace(&mutate(item, &ms));
    }
}
