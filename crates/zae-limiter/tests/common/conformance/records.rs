//! Records: the audit log, entity deletion and listings, namespaces.

use std::sync::Arc;
use std::time::Duration;

use zae_limiter::store::BucketKey;
use zae_limiter::{Error, Limit, ManualClock, NewEntity, RateLimiter, Store};

#[allow(unused_imports)]
use super::{avail, limiter, map, rate_limited, rpm_tpm, T0};

#[allow(unused_imports)]
use super::buckets::family;
#[allow(unused_imports)]
use super::stored::{resolved_capacity, scopes, stored};

pub async fn audit_records_every_change_newest_first(store: Arc<dyn Store>) {
    use zae_limiter::{AuditAction, ConfigScope};
    let clock = ManualClock::new(T0);
    let l = RateLimiter::builder_shared(store)
        .clock(clock.clone())
        .principal("ops@example.com")
        .build();
    l.create_entity(NewEntity::new("key-1").name("Key one"))
        .await
        .unwrap();
    let scope = ConfigScope::Entity {
        entity_id: "key-1".into(),
        resource: "gpt-4".into(),
    };
    for cap in [10, 20, 30] {
        clock.advance(Duration::from_secs(1));
        l.set_config(&scope, stored(&[Limit::per_minute("rpm", cap)]))
            .await
            .unwrap();
    }
    clock.advance(Duration::from_secs(1));
    l.delete_config(&scope).await.unwrap();
    l.set_config(&ConfigScope::System, stored(&[Limit::per_minute("rpm", 1)]))
        .await
        .unwrap();
    l.set_config(
        &ConfigScope::Resource {
            resource: "gpt-4".into(),
        },
        stored(&[Limit::per_minute("rpm", 2)]),
    )
    .await
    .unwrap();

    let all = l.audit_events("key-1", 100, None).await.unwrap();
    let actions: Vec<AuditAction> = all.events.iter().map(|e| e.action).collect();
    use AuditAction::*;
    assert_eq!(
        actions,
        [
            LimitsDeleted,
            LimitsSet,
            LimitsSet,
            LimitsSet,
            EntityCreated
        ]
    );
    assert_eq!(all.next, None);
    let newest = &all.events[0];
    assert_eq!(newest.principal.as_deref(), Some("ops@example.com"));
    assert_eq!(newest.resource.as_deref(), Some("gpt-4"));
    assert_eq!(newest.timestamp_ms, T0 + 4_000);
    assert_eq!(newest.details["old"]["limits"][0]["capacity"], 30);
    assert!(newest.details["new"].is_null());
    assert_eq!(all.events[1].details["old"]["limits"][0]["capacity"], 20);
    assert_eq!(all.events[4].details["new"]["name"], "Key one");
    assert!(all.events.windows(2).all(|w| w[0].event_id > w[1].event_id));
    // pagination: 2 + 2 + 1, then the end
    let mut seen = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let page = l.audit_events("key-1", 2, before.as_deref()).await.unwrap();
        seen.extend(page.events.iter().map(|e| e.event_id.clone()));
        match page.next {
            Some(n) => before = Some(n),
            None => break,
        }
    }
    assert_eq!(
        seen,
        all.events
            .iter()
            .map(|e| e.event_id.clone())
            .collect::<Vec<_>>()
    );
    // defaults are filed under $SYSTEM and $RESOURCE:{resource}
    assert_eq!(
        l.audit_events("$SYSTEM", 10, None)
            .await
            .unwrap()
            .events
            .len(),
        1
    );
    let r = l.audit_events("$RESOURCE:gpt-4", 10, None).await.unwrap();
    assert_eq!((r.events.len(), r.events[0].action), (1, LimitsSet));
    assert!(l
        .audit_events("nobody", 10, None)
        .await
        .unwrap()
        .events
        .is_empty());
    assert!(l.audit_events("key-1", 0, None).await.is_err());
    assert!(l.audit_events("bad#id", 10, None).await.is_err());
}

pub async fn delete_entity_children_and_listings(store: Arc<dyn Store>) {
    use zae_limiter::{AuditAction, ConfigScope};
    let (l, _) = limiter(store.clone());
    family(&l).await;
    l.create_entity(NewEntity::new("key-c").parent("proj"))
        .await
        .unwrap();
    l.create_entity(NewEntity::new("other")).await.unwrap();
    let kids: Vec<String> = l
        .children("proj")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(kids, ["key-a", "key-b", "key-c"]);
    assert!(l.children("key-a").await.unwrap().is_empty());

    let lim = [Limit::per_minute("rpm", 10)];
    for r in ["gpt-4", "embeddings"] {
        l.set_config(
            &ConfigScope::Entity {
                entity_id: "key-a".into(),
                resource: r.into(),
            },
            stored(&lim),
        )
        .await
        .unwrap();
        crate::common::take(&l, "key-a", r, &lim, &[("rpm", 3)]).await;
    }
    l.set_config(
        &ConfigScope::EntityDefault {
            entity_id: "key-a".into(),
        },
        stored(&lim),
    )
    .await
    .unwrap();
    l.set_config(
        &ConfigScope::Entity {
            entity_id: "other".into(),
            resource: "gpt-4".into(),
        },
        stored(&lim),
    )
    .await
    .unwrap();
    for r in ["gpt-4", "dall-e"] {
        l.set_config(&ConfigScope::Resource { resource: r.into() }, stored(&lim))
            .await
            .unwrap();
    }
    assert_eq!(
        l.resources_with_defaults().await.unwrap(),
        ["dall-e", "gpt-4"]
    );
    assert_eq!(
        l.entities_with_limits("gpt-4", 100, None)
            .await
            .unwrap()
            .ids,
        ["key-a", "other"]
    );
    assert_eq!(
        l.entities_with_limits("embeddings", 100, None)
            .await
            .unwrap()
            .ids,
        ["key-a"]
    );

    assert!(l.delete_entity("key-a").await.unwrap());
    assert!(
        !l.delete_entity("key-a").await.unwrap(),
        "second delete finds nothing"
    );
    assert!(l.get_entity("key-a").await.unwrap().is_none());
    for r in ["gpt-4", "embeddings"] {
        assert!(
            store
                .get_bucket(&BucketKey::new("key-a", r))
                .await
                .unwrap()
                .is_none(),
            "{r} bucket"
        );
        assert!(l
            .get_config(&ConfigScope::Entity {
                entity_id: "key-a".into(),
                resource: r.into()
            })
            .await
            .unwrap()
            .is_none());
    }
    assert!(l
        .get_config(&ConfigScope::EntityDefault {
            entity_id: "key-a".into()
        })
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        l.entities_with_limits("gpt-4", 100, None)
            .await
            .unwrap()
            .ids,
        ["other"]
    );
    // the parent's bucket and the other entities are untouched
    assert_eq!(avail(&l, "proj", &lim).await["rpm"], 7);
    assert!(l.get_entity("other").await.unwrap().is_some());
    let kids: Vec<String> = l
        .children("proj")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(kids, ["key-b", "key-c"]);
    // a fresh entity with the same id starts from a full bucket
    l.create_entity(NewEntity::new("key-a")).await.unwrap();
    assert_eq!(avail(&l, "key-a", &lim).await["rpm"], 10);
    let events = l.audit_events("key-a", 10, None).await.unwrap().events;
    assert_eq!(events[0].action, AuditAction::EntityCreated);
    assert_eq!(events[1].action, AuditAction::EntityDeleted);
    assert!(matches!(
        l.delete_entity("bad#id").await,
        Err(Error::Validation { .. })
    ));
}

pub async fn namespaces_isolate_and_have_a_lifecycle(store: Arc<dyn Store>) {
    use zae_limiter::{AuditAction, NamespaceStatus};
    let (l, _) = limiter(store);
    let lim = [Limit::per_minute("rpm", 10)];
    let a_info = l.register_namespace("tenant-a").await.unwrap();
    assert_eq!(a_info.id.len(), 11);
    assert_eq!(
        l.register_namespace("tenant-a").await.unwrap(),
        a_info,
        "idempotent"
    );
    let a = l.namespace("tenant-a").await.unwrap();
    assert!(matches!(
        l.namespace("nope").await,
        Err(Error::NamespaceNotFound(_))
    ));
    assert!(matches!(
        l.register_namespace("_").await,
        Err(Error::Validation { .. })
    ));

    // the same entity id in two namespaces is fully independent
    for ns in [&l, &a] {
        ns.create_entity(NewEntity::new("proj")).await.unwrap();
    }
    crate::common::take(&a, "key-1", "gpt-4", &lim, &[("rpm", 7)]).await;
    a.set_config(
        &zae_limiter::ConfigScope::System,
        stored(&[Limit::per_minute("rpm", 99)]),
    )
    .await
    .unwrap();
    assert_eq!(avail(&l, "key-1", &lim).await["rpm"], 10);
    assert_eq!(resolved_capacity(&a, "fresh").await.unwrap(), 99);
    assert!(
        resolved_capacity(&l, "fresh").await.is_err(),
        "no system default in default"
    );
    assert_eq!(
        l.audit_events("$SYSTEM", 10, None)
            .await
            .unwrap()
            .events
            .len(),
        0
    );
    assert_eq!(
        a.audit_events("$SYSTEM", 10, None)
            .await
            .unwrap()
            .events
            .len(),
        1
    );

    // listing shows default and tenant-a, both active
    let names: Vec<(String, NamespaceStatus)> = l
        .namespaces()
        .await
        .unwrap()
        .into_iter()
        .map(|n| (n.name, n.status))
        .collect();
    assert_eq!(
        names,
        [
            ("default".to_string(), NamespaceStatus::Active),
            ("tenant-a".to_string(), NamespaceStatus::Active)
        ]
    );

    // soft delete frees the name, keeps the data; recover brings it back
    assert!(l.delete_namespace("tenant-a").await.unwrap());
    assert!(!l.delete_namespace("tenant-a").await.unwrap());
    assert!(l.get_namespace("tenant-a").await.unwrap().is_none());
    assert!(matches!(
        l.namespace("tenant-a").await,
        Err(Error::NamespaceNotFound(_))
    ));
    let deleted = l
        .namespaces()
        .await
        .unwrap()
        .into_iter()
        .find(|n| n.id == a_info.id)
        .unwrap();
    assert_eq!(deleted.status, NamespaceStatus::Deleted);
    assert!(deleted.deleted_at_ms.is_some());
    let back = l.recover_namespace(&a_info.id).await.unwrap();
    assert_eq!(
        (back.name.as_str(), back.status),
        ("tenant-a", NamespaceStatus::Active)
    );
    let a = l.namespace("tenant-a").await.unwrap();
    assert_eq!(
        avail(&a, "key-1", &lim).await["rpm"],
        3,
        "data survived the soft delete"
    );
    assert!(
        matches!(
            l.recover_namespace(&a_info.id).await,
            Err(Error::Conflict(_))
        ),
        "already active"
    );
    assert!(
        matches!(
            l.purge_namespace(&a_info.id, |_| {}).await,
            Err(Error::Conflict(_))
        ),
        "active"
    );

    // a name re-registered while deleted blocks the recovery
    assert!(l.delete_namespace("tenant-a").await.unwrap());
    let b_info = l.register_namespace("tenant-a").await.unwrap();
    assert_ne!(b_info.id, a_info.id);
    let e = l.recover_namespace(&a_info.id).await.unwrap_err();
    assert!(e.to_string().contains("registered again"), "{e}");

    // purge removes everything of the old id, with progress, and is final
    let seen = std::sync::Mutex::new(Vec::new());
    let n = l
        .purge_namespace(&a_info.id, |k| seen.lock().unwrap().push(k))
        .await
        .unwrap();
    assert!(n >= 5, "entity, bucket, config, audit events: {n}");
    assert_eq!(seen.lock().unwrap().last(), Some(&n));
    assert!(l
        .namespaces()
        .await
        .unwrap()
        .iter()
        .all(|x| x.id != a_info.id));
    assert!(matches!(
        l.recover_namespace(&a_info.id).await,
        Err(Error::NamespaceNotFound(_))
    ));
    // the new tenant-a starts empty; default is untouched
    let b = l.namespace("tenant-a").await.unwrap();
    assert_eq!(avail(&b, "key-1", &lim).await["rpm"], 10);
    assert!(b.get_entity("proj").await.unwrap().is_none());
    assert!(l.get_entity("proj").await.unwrap().is_some());

    // every namespace change is audited, newest first
    let actions: Vec<AuditAction> = l
        .audit_events("$NAMESPACE", 50, None)
        .await
        .unwrap()
        .events
        .into_iter()
        .map(|e| e.action)
        .collect();
    use AuditAction::*;
    assert_eq!(
        actions,
        [
            NamespacePurged,
            NamespaceRegistered,
            NamespaceDeleted,
            NamespaceRecovered,
            NamespaceDeleted,
            NamespaceRegistered
        ]
    );
}

/// `list_entities` pages through every entity of the namespace by id, and only of it: the
/// entities' configs (same DynamoDB partition) and other namespaces' entities are not listed.
pub async fn list_entities_pages_through_the_namespace(store: Arc<dyn Store>) {
    use zae_limiter::ConfigScope;
    let (l, _) = limiter(store);
    assert_eq!(l.list_entities(10, None).await.unwrap().entities, []);
    family(&l).await;
    for id in ["key-c", "other"] {
        l.create_entity(NewEntity::new(id)).await.unwrap();
    }
    let lim = [Limit::per_minute("rpm", 10)];
    for scope in [
        ConfigScope::EntityDefault {
            entity_id: "key-a".into(),
        },
        ConfigScope::Entity {
            entity_id: "key-a".into(),
            resource: "gpt-4".into(),
        },
    ] {
        l.set_config(&scope, stored(&lim)).await.unwrap();
    }
    let other_ns = {
        l.register_namespace("tenant-b").await.unwrap();
        l.namespace("tenant-b").await.unwrap()
    };
    other_ns
        .create_entity(NewEntity::new("key-zz"))
        .await
        .unwrap();

    let ids = |p: &zae_limiter::EntityPage| -> Vec<String> {
        p.entities.iter().map(|e| e.id.clone()).collect()
    };
    let p1 = l.list_entities(2, None).await.unwrap();
    assert_eq!(ids(&p1), ["key-a", "key-b"]);
    assert_eq!(p1.next.as_deref(), Some("key-b"));
    assert_eq!(p1.entities[0].parent_id.as_deref(), Some("proj"));
    let p2 = l.list_entities(2, p1.next.as_deref()).await.unwrap();
    assert_eq!(ids(&p2), ["key-c", "other"]);
    let p3 = l.list_entities(2, p2.next.as_deref()).await.unwrap();
    assert_eq!(ids(&p3), ["proj"]);
    assert_eq!(p3.next, None);
    assert_eq!(p3.entities[0].name.as_deref(), Some("Production"));
    // one page holding everything: no next
    let all = l.list_entities(1_000, None).await.unwrap();
    assert_eq!(ids(&all), ["key-a", "key-b", "key-c", "other", "proj"]);
    assert_eq!(all.next, None);
    // after an id that is not an entity: the ones sorting after it
    assert_eq!(
        ids(&l.list_entities(10, Some("key-b0")).await.unwrap()),
        ["key-c", "other", "proj"]
    );
    assert_eq!(
        ids(&other_ns.list_entities(10, None).await.unwrap()),
        ["key-zz"]
    );
    for bad in [0, 1_001] {
        assert!(matches!(
            l.list_entities(bad, None).await,
            Err(Error::Validation { .. })
        ));
    }
    assert!(matches!(
        l.list_entities(10, Some("a#b")).await,
        Err(Error::Validation { .. })
    ));
}
