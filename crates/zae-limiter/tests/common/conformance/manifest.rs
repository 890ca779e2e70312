//! Declarative limits: plan, apply, drift, takeover and concurrent changes, on every store.

use std::sync::Arc;

use zae_limiter::manifest::{Action, Manifest, Plan};
use zae_limiter::{ConfigScope, Error, Limit, OnUnavailable, RateLimiter, Store, StoredConfig};

#[allow(unused_imports)]
use super::limiter;

const V1: &str = "\
system:
  on_unavailable: allow
  limits:
    rpm: {capacity: 1000}
resources:
  gpt-4:
    limits:
      rpm: {capacity: 500}
      tpm: \"50000/min:75000\"
  gpt-3.5:
    limits:
      rpm: {capacity: 2000}
entities:
  user-premium:
    resources:
      gpt-4:
        limits:
          rpm: {capacity: 900, refill_amount: 100, refill_period: 6}
      _default_:
        limits:
          rpm: {capacity: 50}
  user-basic:
    resources:
      gpt-4:
        limits:
          rpm: {capacity: 5}
";

fn manifest(text: &str) -> Manifest {
    Manifest::from_yaml(text).expect("valid manifest")
}

fn actions(plan: &Plan) -> Vec<(Action, String, String)> {
    plan.changes
        .iter()
        .map(|c| {
            let target = match &c.scope {
                ConfigScope::System => "system".to_string(),
                ConfigScope::Resource { resource } => resource.clone(),
                ConfigScope::Entity {
                    entity_id,
                    resource,
                } => format!("{entity_id}/{resource}"),
                ConfigScope::EntityDefault { entity_id } => format!("{entity_id}/_default_"),
            };
            (c.action, c.scope.level().to_string(), target)
        })
        .collect()
}

async fn audit_count(l: &RateLimiter, entity: &str) -> usize {
    l.audit_events(entity, 1000, None)
        .await
        .unwrap()
        .events
        .len()
}

fn resource(r: &str) -> ConfigScope {
    ConfigScope::Resource {
        resource: r.to_string(),
    }
}

pub async fn manifest_applies_once_and_then_writes_nothing(store: Arc<dyn Store>) {
    let (l, _) = limiter(store);
    let m = manifest(V1);
    let plan = m.plan(&l).await.unwrap();
    assert!(!plan.register_namespace);
    assert_eq!(plan.count(Action::Create), 6, "{:?}", actions(&plan));
    assert_eq!(plan.changes.len(), 6);
    let report = plan.apply(&l).await.unwrap();
    assert_eq!((report.created, report.updated, report.deleted), (6, 0, 0));
    // 6 items, the record written ahead (the managed set grows) and at the end
    assert_eq!(report.writes, 8);
    assert!(report.record_written);
    // what acquire sees: each level as declared
    assert_eq!(
        l.available("user-premium", "gpt-4", &[]).await.unwrap()["rpm"],
        900
    );
    assert_eq!(
        l.available("user-premium", "other", &[]).await.unwrap()["rpm"],
        50
    );
    assert_eq!(
        l.available("user-basic", "gpt-4", &[]).await.unwrap()["rpm"],
        5
    );
    assert_eq!(
        l.available("anyone", "gpt-4", &[]).await.unwrap()["tpm"],
        75_000
    );
    assert_eq!(
        l.available("anyone", "gpt-3.5", &[]).await.unwrap()["rpm"],
        2000
    );
    assert_eq!(
        l.available("anyone", "misc", &[]).await.unwrap()["rpm"],
        1000
    );
    let system = l.get_config(&ConfigScope::System).await.unwrap().unwrap();
    assert_eq!(system.on_unavailable, Some(OnUnavailable::Allow));
    // every change was audited like an imperative one
    assert_eq!(audit_count(&l, "user-premium").await, 2);
    assert_eq!(audit_count(&l, "$RESOURCE:gpt-4").await, 1);
    assert_eq!(audit_count(&l, "$SYSTEM").await, 1);
    let record = l.provisioner_state().await.unwrap().unwrap();
    assert_eq!(record.applied_hash, m.hash());
    assert_eq!(record.revision, 2);
    assert!(record.system);
    assert_eq!(record.scopes().len(), 6);

    // the same file again: nothing to do, nothing written
    let again = m.plan(&l).await.unwrap();
    assert!(again.is_empty(), "{:?}", actions(&again));
    assert_eq!(again.unchanged, 6);
    let report = again.apply(&l).await.unwrap();
    assert_eq!(report.writes, 0);
    assert_eq!(audit_count(&l, "user-premium").await, 2);
    assert_eq!(l.provisioner_state().await.unwrap().unwrap().revision, 2);
    // the same limits spelled otherwise are the same manifest
    let reordered = manifest(&V1.replace("rpm: {capacity: 2000}", "rpm: \"2000/min\""));
    assert!(reordered.plan(&l).await.unwrap().is_empty());
}

pub async fn manifest_updates_deletes_and_reports_drift(store: Arc<dyn Store>) {
    let (l, clock) = limiter(store);
    // set imperatively, never named by a manifest: never touched
    let outsider = StoredConfig::limits([Limit::per_minute("rpm", 7)]);
    l.set_config(&resource("imperative"), outsider.clone())
        .await
        .unwrap();
    manifest(V1).apply(&l).await.unwrap();
    clock.advance(std::time::Duration::from_secs(1));

    // one value changed: exactly one update, with old -> new
    let v2 = V1.replace("rpm: {capacity: 5}", "rpm: {capacity: 8}");
    let plan = manifest(&v2).plan(&l).await.unwrap();
    assert_eq!(
        actions(&plan),
        [(Action::Update, "entity".into(), "user-basic/gpt-4".into())]
    );
    let deltas = plan.changes[0].limit_deltas();
    assert_eq!(deltas.len(), 1, "{deltas:?}");
    let report = plan.apply(&l).await.unwrap();
    // the item and the record (new hash)
    assert_eq!((report.updated, report.writes), (1, 2));
    assert_eq!(
        l.available("user-basic", "gpt-4", &[]).await.unwrap()["rpm"],
        8
    );

    // an entity removed from the file: its item is deleted, nothing else
    let v3 = v2.replace(
        "  user-basic:\n    resources:\n      gpt-4:\n        limits:\n          rpm: {capacity: 8}\n",
        "",
    );
    let plan = manifest(&v3).plan(&l).await.unwrap();
    assert_eq!(
        actions(&plan),
        [(Action::Delete, "entity".into(), "user-basic/gpt-4".into())]
    );
    assert_eq!(plan.apply(&l).await.unwrap().deleted, 1);
    let basic = ConfigScope::Entity {
        entity_id: "user-basic".into(),
        resource: "gpt-4".into(),
    };
    assert_eq!(l.get_config(&basic).await.unwrap(), None);
    assert!(manifest(&v3).plan(&l).await.unwrap().is_empty());

    // an imperative change after the apply: the drift is exactly that
    l.set_config(
        &resource("gpt-3.5"),
        StoredConfig::limits([Limit::per_minute("rpm", 1)]),
    )
    .await
    .unwrap();
    let plan = manifest(&v3).plan(&l).await.unwrap();
    let drift: Vec<_> = plan.drift().collect();
    assert_eq!(drift.len(), 1);
    assert_eq!(drift[0].scope, resource("gpt-3.5"));
    assert_eq!(drift[0].action, Action::Update);
    assert!(!drift[0].takeover);
    plan.apply(&l).await.unwrap();
    assert_eq!(l.available("x", "gpt-3.5", &[]).await.unwrap()["rpm"], 2000);

    // everything removed: every managed item deleted, the outsider kept
    let plan = manifest("").plan(&l).await.unwrap();
    assert_eq!(plan.count(Action::Delete), 5, "{:?}", actions(&plan));
    plan.apply(&l).await.unwrap();
    assert_eq!(l.get_config(&ConfigScope::System).await.unwrap(), None);
    let kept = l
        .get_config(&resource("imperative"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.limits, outsider.limits);
    let record = l.provisioner_state().await.unwrap().unwrap();
    assert!(record.scopes().is_empty());
    assert!(manifest("").plan(&l).await.unwrap().is_empty());
}

pub async fn manifest_takes_over_and_detects_concurrent_changes(store: Arc<dyn Store>) {
    let (l, clock) = limiter(store);
    // set imperatively with the declared value, and with another one
    l.set_config(
        &resource("same"),
        StoredConfig::limits([Limit::per_minute("rpm", 10)]),
    )
    .await
    .unwrap();
    l.set_config(
        &resource("other"),
        StoredConfig::limits([Limit::per_minute("rpm", 99)]),
    )
    .await
    .unwrap();
    let m = manifest(
        "resources: {same: {limits: {rpm: 10}}, other: {limits: {rpm: 20}}, new: {limits: {rpm: 30}}}",
    );
    let plan = m.plan(&l).await.unwrap();
    let got: Vec<(Action, bool)> = plan
        .changes
        .iter()
        .map(|c| (c.action, c.takeover))
        .collect();
    // sorted by target: new, other, same
    assert_eq!(
        got,
        [
            (Action::Create, false),
            (Action::Update, true),
            (Action::Adopt, true)
        ]
    );
    let audits = audit_count(&l, "$RESOURCE:same").await;
    let report = plan.apply(&l).await.unwrap();
    assert_eq!((report.created, report.updated, report.adopted), (1, 1, 1));
    // an adopted item is not rewritten
    assert_eq!(audit_count(&l, "$RESOURCE:same").await, audits);
    assert!(m.plan(&l).await.unwrap().is_empty());

    // a change between plan and apply: the apply stops, the concurrent value stays
    clock.advance(std::time::Duration::from_secs(1));
    let m2 = manifest(
        "resources: {same: {limits: {rpm: 11}}, other: {limits: {rpm: 21}}, new: {limits: {rpm: 31}}}",
    );
    let plan = m2.plan(&l).await.unwrap();
    assert_eq!(plan.count(Action::Update), 3);
    l.set_config(
        &resource("other"),
        StoredConfig::limits([Limit::per_minute("rpm", 77)]),
    )
    .await
    .unwrap();
    let err = plan.apply(&l).await.unwrap_err();
    assert!(matches!(err.source, Error::Conflict(_)), "{err}");
    // `new` (first in order) was applied, `other` failed, `same` not attempted
    assert_eq!((err.applied, err.not_attempted), (1, 1), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("other") && text.contains("plan again"),
        "{text}"
    );
    let other = l.get_config(&resource("other")).await.unwrap().unwrap();
    assert_eq!(other.limits, [Limit::per_minute("rpm", 77)]);
    assert_eq!(l.available("x", "new", &[]).await.unwrap()["rpm"], 31);
    assert_eq!(l.available("x", "same", &[]).await.unwrap()["rpm"], 10);
    // planning again picks up where it stopped
    let plan = m2.plan(&l).await.unwrap();
    assert_eq!(plan.count(Action::Update), 2);
    plan.apply(&l).await.unwrap();
    assert!(m2.plan(&l).await.unwrap().is_empty());

    // two applies planned from the same record: the second one is refused
    let a = manifest("resources: {a1: {limits: {rpm: 1}}}");
    let b = manifest("resources: {b1: {limits: {rpm: 1}}}");
    let (pa, pb) = (a.plan(&l).await.unwrap(), b.plan(&l).await.unwrap());
    pa.apply(&l).await.unwrap();
    let err = pb.apply(&l).await.unwrap_err();
    assert!(matches!(err.source, Error::Conflict(_)), "{err}");
    assert_eq!(err.applied, 0);
    assert_eq!(l.get_config(&resource("b1")).await.unwrap(), None);
}

pub async fn manifest_registers_its_namespace_and_purge_removes_it(store: Arc<dyn Store>) {
    let (l, _) = limiter(store);
    let m = manifest("namespace: tenant-m\nresources: {gpt-4: {limits: {rpm: 3}}}");
    let plan = m.plan(&l).await.unwrap();
    assert!(plan.register_namespace);
    let report = plan.apply(&l).await.unwrap();
    assert!(report.registered_namespace);
    let tenant = l.namespace("tenant-m").await.unwrap();
    assert_eq!(tenant.available("k", "gpt-4", &[]).await.unwrap()["rpm"], 3);
    // the default namespace is untouched
    assert_eq!(l.get_config(&resource("gpt-4")).await.unwrap(), None);
    assert!(m.plan(&l).await.unwrap().is_empty());
    assert!(tenant.provisioner_state().await.unwrap().is_some());
    // a purge removes what an imperative set_config leaves, and the #PROVISIONER record
    l.register_namespace("tenant-i").await.unwrap();
    let imperative = l.namespace("tenant-i").await.unwrap();
    imperative
        .set_config(
            &resource("gpt-4"),
            StoredConfig::limits([Limit::per_minute("rpm", 3)]),
        )
        .await
        .unwrap();
    let mut removed = Vec::new();
    for ns in ["tenant-m", "tenant-i"] {
        let info = l.get_namespace(ns).await.unwrap().unwrap();
        assert!(l.delete_namespace(ns).await.unwrap());
        removed.push(l.purge_namespace(&info.id, |_| {}).await.unwrap());
    }
    assert_eq!(removed[0], removed[1] + 1, "{removed:?}");
}
