use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::json;

use super::plan::diff;
use super::*;
use crate::config::ProvisionerState;

const SEED: &str = "\
namespace: default
system:
  on_unavailable: block
  limits:
    rpm:
      capacity: 1000
    tpm:
      capacity: 100000
resources:
  gpt-4:
    limits:
      rpm:
        capacity: 500
      tpm:
        capacity: 50000
  gpt-3.5-turbo:
    limits:
      rpm: {capacity: 2000}
      tpm: {capacity: 500000}
entities:
  user-premium:
    resources:
      gpt-4:
        limits:
          rpm:
            capacity: 1000
            refill_amount: 100
            refill_period: 6
";

fn parse(text: &str) -> Manifest {
    Manifest::from_yaml(text).unwrap_or_else(|e| panic!("{e} at {:?}", e.location))
}

fn err(text: &str) -> ManifestError {
    Manifest::from_yaml(text).expect_err("must be rejected")
}

#[test]
fn the_seed_manifest_and_its_defaults() {
    let m = parse(SEED);
    assert_eq!(m.namespace(), "default");
    let system = m.system.as_ref().unwrap();
    assert_eq!(system.on_unavailable, Some(OnUnavailable::Block));
    // refill_amount = capacity, refill_period = 60 s
    assert_eq!(system.limits[0], Limit::per_minute("rpm", 1000));
    assert_eq!(
        m.resources["gpt-3.5-turbo"][1],
        Limit::per_minute("tpm", 500_000)
    );
    let premium = &m.entities["user-premium"]["gpt-4"][0];
    assert_eq!(
        *premium,
        Limit::custom("rpm", 1000, 100, Duration::from_secs(6))
    );
    let desired = m.desired();
    assert_eq!(desired.len(), 4);
    assert_eq!(desired[0].0, ConfigScope::System);
    assert_eq!(
        desired[3].0,
        ConfigScope::Entity {
            entity_id: "user-premium".into(),
            resource: "gpt-4".into()
        }
    );
}

#[test]
fn aliases_spec_strings_periods_and_json() {
    let m = parse(
        "resources:\n  r:\n    limits:\n      a: {burst: 10}\n      b: \"100/min:150\"\n      \
         c: {capacity: 5, refill_period: \"1500ms\"}\n      d: {capacity: 5, refill_period: hour}\n",
    );
    let l = &m.resources["r"];
    assert_eq!(l[0], Limit::per_minute("a", 10));
    assert_eq!(l[1], Limit::per_minute("b", 100).burst(150));
    assert_eq!(l[2].refill_period_ms(), 1_500);
    assert_eq!(l[3], Limit::per_hour("d", 5));
    // JSON is YAML too; CloudFormation-style numeric strings are numbers
    let j =
        parse(r#"{"namespace": "t-1", "resources": {"r": {"limits": {"a": {"capacity": "7"}}}}}"#);
    assert_eq!(j.namespace(), "t-1");
    assert_eq!(j.resources["r"][0], Limit::per_minute("a", 7));
    // an entity's default for every resource
    let d = parse("entities: {e1: {resources: {_default_: {limits: {rpm: {capacity: 3}}}}}}");
    assert_eq!(
        d.desired()[0].0,
        ConfigScope::EntityDefault {
            entity_id: "e1".into()
        }
    );
    // system with only the policy; an empty document is an empty manifest
    let p = parse("system: {on_unavailable: allow}");
    assert!(p.system.unwrap().limits.is_empty());
    assert_eq!(parse("").desired(), vec![]);
    assert_eq!(parse("# nothing yet\n").desired(), vec![]);
}

#[test]
fn every_kind_of_error_names_its_path() {
    let long = "x".repeat(300);
    let cases: Vec<(String, &str, &str)> = vec![
        (
            "entities:\n  user-premium:\n    resources:\n      gpt-4:\n        limits:\n          rpm:\n            capacity: 0\n".into(),
            "entities.user-premium.resources.gpt-4.limits.rpm.capacity",
            "must be > 0",
        ),
        ("resources: {r: {limits: {rpm: {capacity: -3}}}}".into(), "resources.r.limits.rpm.capacity", "must be > 0"),
        ("resources: {r: {limits: {rpm: {capacity: 1.5}}}}".into(), "resources.r.limits.rpm.capacity", "whole number"),
        ("resources: {r: {limits: {rpm: {capacity: 2000000000000}}}}".into(), "resources.r.limits.rpm.capacity", "at most"),
        ("resources: {r: {limits: {rpm: {capacity: ten}}}}".into(), "resources.r.limits.rpm.capacity", "positive integer"),
        ("resources: {r: {limits: {rpm: {capacity: 1, refill_amount: 0}}}}".into(), "resources.r.limits.rpm.refill_amount", "must be > 0"),
        ("resources: {r: {limits: {rpm: {capacity: 1, refill_period: 0}}}}".into(), "resources.r.limits.rpm.refill_period", "between 1 ms"),
        ("resources: {r: {limits: {rpm: {capacity: 1, refill_period: fortnight}}}}".into(), "resources.r.limits.rpm.refill_period", "not a period"),
        ("resources: {r: {limits: {rpm: {capacity: 1, refill: 2}}}}".into(), "resources.r.limits.rpm.refill", "unknown field `refill`"),
        ("resources: {r: {limits: {rpm: {refill_amount: 2}}}}".into(), "resources.r.limits.rpm.capacity", "is required"),
        ("resources: {r: {limits: {rpm: {capacity: 1, burst: 2}}}}".into(), "resources.r.limits.rpm", "not both"),
        ("resources: {r: {limits: {rpm: \"100/fortnight\"}}}".into(), "resources.r.limits.rpm", "period"),
        ("resources: {r: {limits: {\"bad name\": {capacity: 1}}}}".into(), "resources.r.limits", "bad name"),
        (format!("resources: {{r: {{limits: {{{long}: {{capacity: 1}}}}}}}}"), "resources.r.limits", "xxx"),
        ("resources: {\"9lives\": {limits: {rpm: {capacity: 1}}}}".into(), "resources", "9lives"),
        ("resources:\n  r:\n    limits:\n      rpm: {capacity: 1}\n      rpm: {capacity: 2}\n".into(), "resources.r.limits", "given twice"),
        ("resources: {r: {limits: {}}}".into(), "resources.r.limits", "at least one limit"),
        ("resources: {r: {}}".into(), "resources.r.limits", "at least one limit"),
        ("resources: {r: {limit: {}}}".into(), "resources.r.limit", "unknown field `limit`"),
        ("entities: {e: {resources: {}}}".into(), "entities.e.resources", "at least one resource"),
        ("entities: {\"\": {resources: {r: {limits: {a: 1}}}}}".into(), "entities", "'' is not allowed"),
        ("system: {}".into(), "system", "give limits or on_unavailable"),
        ("system: {on_unavailable: maybe}".into(), "system.on_unavailable", "unknown variant `maybe`"),
        ("namespace: \"Bad Name!\"".into(), "namespace", "Bad Name"),
        ("namespaces: default".into(), "namespaces", "unknown field `namespaces`"),
        ("- a\n- b\n".into(), "", "expected struct"),
        ("resources: [1, 2]".into(), "resources", "a map"),
        ("resources: {r: {limits: {a: {capacity: 1}\n".into(), "resources.r.limits", "did not find expected"),
    ];
    for (text, path, message) in cases {
        let e = err(&text);
        assert_eq!(e.path, path, "{text}: {e}");
        assert!(e.message.contains(message), "{text}: {e}");
    }
    let many: String = (0..33)
        .map(|i| format!("l{i}: {{capacity: 1}}, "))
        .collect();
    let e = err(&format!("resources: {{r: {{limits: {{{many}}}}}}}"));
    assert_eq!(
        (e.path.as_str(), e.message.as_str()),
        ("resources.r.limits", "at most 32 limits, got 33")
    );
}

#[test]
fn errors_carry_the_line_and_column_the_parser_knows() {
    let e = err("resources:\n  gpt-4:\n    limits:\n      rpm: {capacity: 0}\n");
    assert_eq!(e.location, Some((4, 23)));
    assert_eq!(
        e.to_string(),
        "resources.gpt-4.limits.rpm.capacity: must be > 0"
    );
    let e = err("resources:\n  r:\n    limitz: {}\n");
    assert_eq!(e.location.map(|l| l.0), Some(3));
}

#[test]
fn canonical_form_hash_and_cfn_properties() {
    let m = parse(SEED);
    // comments, order and spelled-out defaults do not change the hash
    let same = parse(
        "# reordered\nnamespace: default\nresources:\n  gpt-3.5-turbo: {limits: {tpm: {capacity: 500000}, rpm: {capacity: 2000, refill_period: 60}}}\n  \
         gpt-4: {limits: {rpm: \"500/min\", tpm: {capacity: 50000, refill_amount: 50000}}}\n\
         entities: {user-premium: {resources: {gpt-4: {limits: {rpm: {capacity: 1000, refill_amount: 100, refill_period: 6}}}}}}\n\
         system: {limits: {tpm: {capacity: 100000}, rpm: {capacity: 1000}}, on_unavailable: block}\n",
    );
    assert_eq!(m, same);
    assert_eq!(m.hash(), same.hash());
    assert!(m.hash().starts_with("sha256:") && m.hash().len() == 7 + 64);
    assert_ne!(m.hash(), parse("resources: {r: {limits: {a: 1}}}").hash());
    // the CloudFormation resource carries the same manifest in PascalCase, as strings
    let template = m.to_cfn_template("my-app");
    let doc: serde_json::Value = serde_norway::from_str(&template).unwrap();
    let res = &doc["Resources"]["ZaeLimiterLimits"];
    assert_eq!(res["Type"], "Custom::ZaeLimiterLimits");
    let props = &res["Properties"];
    assert_eq!(
        props["ServiceToken"],
        json!({"Fn::ImportValue": "my-app-ProvisionerArn"})
    );
    assert_eq!(props["TableName"], "my-app");
    assert_eq!(props["Namespace"], "default");
    assert_eq!(props["System"]["OnUnavailable"], "block");
    assert_eq!(
        props["Resources"]["gpt-4"]["Limits"]["rpm"]["Capacity"],
        500
    );
    assert_eq!(
        props["Entities"]["user-premium"]["Resources"]["gpt-4"]["Limits"]["rpm"]["RefillPeriod"],
        6
    );
    // CloudFormation hands every value over as a string
    fn stringify(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Number(n) => json!(n.to_string()),
            serde_json::Value::Object(m) => {
                json!(m
                    .iter()
                    .map(|(k, v)| (k.clone(), stringify(v)))
                    .collect::<serde_json::Map<_, _>>())
            }
            other => other.clone(),
        }
    }
    let back = Manifest::from_cfn_properties(&stringify(props)).unwrap();
    assert_eq!(back, m);
    let bad = Manifest::from_cfn_properties(
        &json!({"Resources": {"r": {"Limits": {"a": {"Capacity": "0"}}}}}),
    )
    .unwrap_err();
    assert_eq!(
        bad.to_string(),
        "resources.r.limits.a.capacity: must be > 0"
    );
}

fn scope_r(r: &str) -> ConfigScope {
    ConfigScope::Resource { resource: r.into() }
}

fn stored(limits: &[Limit], version: i64) -> StoredConfig {
    StoredConfig {
        version,
        ..StoredConfig::limits(limits.iter().cloned())
    }
}

#[test]
fn the_diff_is_pure_and_complete() {
    let m = parse("resources: {a: {limits: {rpm: 10}}, b: {limits: {rpm: 20}}, c: {limits: {rpm: 30}}, d: {limits: {rpm: 40}}}");
    let desired = m.desired();
    let hash = m.hash();
    let rpm = |n| Limit::per_minute("rpm", n);
    let mut before = ProvisionerState {
        applied_hash: "sha256:old".into(),
        revision: 3,
        ..ProvisionerState::default()
    };
    for r in ["a", "b", "gone", "old"] {
        before.insert(&scope_r(r));
    }
    let live: HashMap<ConfigScope, StoredConfig> = [
        ("a", stored(&[rpm(10)], 5)),  // managed, as declared: unchanged
        ("b", stored(&[rpm(25)], 6)),  // managed, changed imperatively: update
        ("c", stored(&[rpm(30)], 7)),  // set imperatively as declared: adopt
        ("d", stored(&[rpm(1)], 8)),   // set imperatively otherwise: update, taken over
        ("old", stored(&[rpm(9)], 9)), // managed, no longer declared: delete
    ]
    .into_iter()
    .map(|(r, c)| (scope_r(r), c))
    .collect();
    let plan = diff("default", false, &desired, &hash, &live, Some(&before));
    let got: Vec<(Action, String, bool)> = plan
        .changes
        .iter()
        .map(|c| (c.action, plan::target(&c.scope), c.takeover))
        .collect();
    assert_eq!(
        got,
        vec![
            (Action::Update, "b".into(), false),
            (Action::Adopt, "c".into(), true),
            (Action::Update, "d".into(), true),
            (Action::Forget, "gone".into(), false),
            (Action::Delete, "old".into(), false),
        ]
    );
    assert_eq!(plan.unchanged, 1);
    assert_eq!(
        plan.changes[0].limit_deltas(),
        vec![LimitDelta::Changed {
            old: rpm(25),
            new: rpm(20)
        }]
    );
    // the write of b is conditioned on the version read
    assert_eq!(plan.changes[0].old.as_ref().unwrap().version, 6);
    assert_eq!(plan.drift().count(), 3);
    assert!(plan.record_stale() && !plan.is_empty());
    let after: Vec<String> = plan.after.scopes().iter().map(plan::target).collect();
    assert_eq!(after, ["a", "b", "c", "d"]);
    // the same manifest applied: nothing to do
    let mut applied = plan.after.clone();
    applied.revision = 4;
    let live: HashMap<ConfigScope, StoredConfig> = desired.iter().cloned().collect();
    let again = diff("default", false, &desired, &hash, &live, Some(&applied));
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(again.unchanged, 4);
    // an unregistered namespace: everything is created, after registering it
    let fresh = diff("t", true, &desired, &hash, &HashMap::new(), None);
    assert!(fresh.register_namespace);
    assert_eq!(fresh.count(Action::Create), 4);
    let json = fresh.to_json();
    assert_eq!(json["summary"]["create"], 4);
    assert_eq!(json["changes"][0]["new"], json!(["rpm:10/min"]));
}

fn arb_limit(name: String) -> impl Strategy<Value = Limit> {
    (
        1u64..=1_000_000,
        1u64..=1_000_000,
        prop_oneof![1u64..=86_400_000, (1u64..=366).prop_map(|d| d * 86_400_000)],
    )
        .prop_map(move |(c, r, p)| Limit::custom(name.clone(), c, r, Duration::from_millis(p)))
}

fn arb_limits() -> impl Strategy<Value = Vec<Limit>> {
    proptest::collection::btree_set("[a-z][a-z0-9_]{0,6}", 1..4)
        .prop_flat_map(|names| names.into_iter().map(arb_limit).collect::<Vec<_>>())
}

fn arb_manifest() -> impl Strategy<Value = Manifest> {
    let system = proptest::option::of((
        proptest::option::of(prop_oneof![
            Just(OnUnavailable::Block),
            Just(OnUnavailable::Allow)
        ]),
        arb_limits(),
    ));
    let resources = proptest::collection::btree_map("[a-z][a-z0-9.-]{0,8}", arb_limits(), 0..3);
    let entities = proptest::collection::btree_map(
        "[a-z][a-z0-9-]{0,8}",
        proptest::collection::btree_map(
            prop_oneof!["[a-z][a-z0-9-]{0,6}", Just("_default_".to_string())],
            arb_limits(),
            1..3,
        ),
        0..3,
    );
    (
        proptest::option::of("[a-z][a-z0-9-]{0,8}"),
        system,
        resources,
        entities,
    )
        .prop_map(|(namespace, system, resources, entities)| Manifest {
            namespace,
            system: system.map(|(on_unavailable, limits)| SystemConfig {
                on_unavailable,
                limits,
            }),
            resources,
            entities,
        })
}

proptest! {
    #[test]
    fn print_then_parse_round_trips(m in arb_manifest()) {
        let yaml = m.to_yaml();
        let back = Manifest::from_yaml(&yaml).map_err(|e| TestCaseError::fail(format!("{e}\n{yaml}")))?;
        // the canonical form always names the namespace
        let mut expected = m.clone();
        expected.namespace = Some(m.namespace().to_string());
        prop_assert_eq!(&back, &expected);
        prop_assert_eq!(back.hash(), m.hash());
        let props: serde_json::Value = serde_norway::from_str::<serde_json::Value>(&m.to_cfn_template("s"))
            .unwrap()["Resources"]["ZaeLimiterLimits"]["Properties"].clone();
        prop_assert_eq!(Manifest::from_cfn_properties(&props).unwrap(), expected);
    }
}

#[test]
fn the_documented_example_parses() {
    let m = parse(include_str!("../../../../docs/limits.example.yaml"));
    assert_eq!(m.desired().len(), 3);
    assert_eq!(
        m.resources["gpt-4"][1],
        Limit::per_minute("tpm", 50_000).burst(75_000)
    );
}
