//! Stored data: config versions, entity updates and deletion with children, namespace
//! scoping, and (on DynamoDB Local, feature `dynamodb-local-tests`) corrupt items written
//! straight into the table.
mod common;

use std::sync::Arc;

use zae_limiter::{
    AuditAction, ConfigScope, Error, Limit, ManualClock, NewEntity, RateLimiter, Store,
    StoredConfig,
};

use common::conformance::T0;

fn limiter(store: Arc<dyn Store>) -> (RateLimiter, ManualClock) {
    let clock = ManualClock::new(T0);
    let l = RateLimiter::builder_shared(store)
        .clock(clock.clone())
        .build();
    (l, clock)
}

fn rpm(n: u64) -> StoredConfig {
    StoredConfig::limits([Limit::per_minute("rpm", n)])
}

async fn actions(l: &RateLimiter, entity: &str) -> Vec<AuditAction> {
    let page = l.audit_events(entity, 100, None).await.unwrap();
    page.events.into_iter().map(|e| e.action).collect()
}

async fn rpm_left(l: &RateLimiter, entity: &str) -> i64 {
    l.available(entity, "gpt-4", &[Limit::per_minute("rpm", 10)])
        .await
        .unwrap()["rpm"]
}

/// Each change at a scope gets a strictly larger version, even when the clock stands still
/// or goes back; the audit records it.
pub async fn config_versions_strictly_increase(store: Arc<dyn Store>) {
    let (l, clock) = limiter(store);
    let scope = ConfigScope::Resource {
        resource: "gpt-4".into(),
    };
    let version = |l: RateLimiter, scope: ConfigScope| async move {
        l.get_config(&scope).await.unwrap().unwrap().version
    };
    // whatever the caller passes is replaced
    let mut c = rpm(10);
    c.version = 42;
    l.set_config(&scope, c).await.unwrap();
    assert_eq!(version(l.clone(), scope.clone()).await, T0);
    l.set_config(&scope, rpm(20)).await.unwrap();
    assert_eq!(version(l.clone(), scope.clone()).await, T0 + 1);
    clock.set(T0 - 60_000);
    l.set_config(&scope, rpm(30)).await.unwrap();
    assert_eq!(
        version(l.clone(), scope.clone()).await,
        T0 + 2,
        "clock behind"
    );
    clock.set(T0 + 5_000);
    l.set_config(&scope, rpm(40)).await.unwrap();
    assert_eq!(version(l.clone(), scope.clone()).await, T0 + 5_000);
    // another scope has its own sequence
    l.set_config(&ConfigScope::System, rpm(5)).await.unwrap();
    assert_eq!(version(l.clone(), ConfigScope::System).await, T0 + 5_000);
    let audit = l.audit_events("$RESOURCE:gpt-4", 1, None).await.unwrap();
    let d = &audit.events[0].details;
    assert_eq!(d["old"]["version"], T0 + 2);
    assert_eq!(d["new"]["version"], T0 + 5_000);
    assert_eq!(d["new"]["limits"][0]["capacity"], 40);
}

/// `update_entity` changes what it is told to, validates like `create_entity`, audits, and
/// the limiter's next acquire sees the new hierarchy.
pub async fn update_entity_follows_the_hierarchy_rules(store: Arc<dyn Store>) {
    let (l, _) = limiter(store);
    for e in [
        NewEntity::new("proj").metadata("tier", "gold"),
        NewEntity::new("proj-2"),
        NewEntity::new("key-1").name("Key one"),
        NewEntity::new("key-2").parent("proj-2"),
    ] {
        l.create_entity(e).await.unwrap();
    }
    let lim = [Limit::per_minute("rpm", 10)];
    // warm the cache: key-1 is top-level
    common::take(&l, "key-1", "gpt-4", &lim, &[("rpm", 1)]).await;
    assert_eq!(rpm_left(&l, "proj").await, 10);

    let e = l
        .update_entity("key-1")
        .parent("proj")
        .cascade(true)
        .name("Web key")
        .metadata("env", "prod")
        .await
        .unwrap();
    assert_eq!(
        (e.parent_id.as_deref(), e.cascade, e.name.as_deref()),
        (Some("proj"), true, Some("Web key"))
    );
    assert_eq!(l.get_entity("key-1").await.unwrap(), Some(e.clone()));
    assert_eq!(l.children("proj").await.unwrap(), std::slice::from_ref(&e));
    // the cached resolution of key-1 was dropped: this acquire cascades
    common::take(&l, "key-1", "gpt-4", &lim, &[("rpm", 1)]).await;
    assert_eq!(rpm_left(&l, "proj").await, 9);
    let events = l.audit_events("key-1", 10, None).await.unwrap().events;
    assert_eq!(events[0].action, AuditAction::EntityUpdated);
    assert_eq!(
        events[0].details["old"]["parent_id"],
        serde_json::Value::Null
    );
    assert_eq!(events[0].details["new"]["parent_id"], "proj");

    // nothing changes: nothing written
    let same = l.update_entity("key-1").name("Web key").await.unwrap();
    assert_eq!(same, e);
    assert_eq!(actions(&l, "key-1").await.len(), 2, "created + one update");

    let fails = |r: zae_limiter::Result<zae_limiter::Entity>| r.unwrap_err();
    let err = fails(l.update_entity("nobody").name("x").await);
    assert!(
        matches!(err, Error::EntityNotFound(ref id) if id == "nobody"),
        "{err}"
    );
    let err = fails(l.update_entity("key-1").parent("ghost").await);
    assert!(
        matches!(err, Error::EntityNotFound(ref id) if id == "ghost"),
        "{err}"
    );
    let err = fails(l.update_entity("key-1").parent("key-2").await);
    assert!(err.to_string().contains("is itself a child"), "{err}");
    let err = fails(l.update_entity("proj").parent("proj").await);
    assert!(err.to_string().contains("own parent"), "{err}");
    let err = fails(l.update_entity("proj").cascade(true).await);
    assert!(err.to_string().contains("cascade needs a parent"), "{err}");
    let err = fails(l.update_entity("proj").parent("proj-2").await);
    assert!(
        matches!(&err, Error::Conflict(m) if m.contains("has 1 child (key-1)")),
        "{err}"
    );
    let err = fails(l.update_entity("proj").name("").await);
    assert!(
        matches!(err, Error::Validation { field: "name", .. }),
        "{err}"
    );
    let err = fails(l.update_entity("bad#id").name("x").await);
    assert!(matches!(err, Error::Validation { .. }), "{err}");

    // detach; metadata edits
    let e = l
        .update_entity("key-1")
        .clear_parent()
        .remove_metadata("env")
        .clear_name()
        .await
        .unwrap();
    assert_eq!((e.parent_id, e.cascade, e.name), (None, false, None));
    assert!(e.metadata.is_empty());
    common::take(&l, "key-1", "gpt-4", &lim, &[("rpm", 1)]).await;
    assert_eq!(rpm_left(&l, "proj").await, 9, "no longer cascades");
    let p = l
        .update_entity("proj")
        .clear_metadata()
        .metadata("a", "1")
        .await
        .unwrap();
    assert_eq!(p.metadata.len(), 1);
    // a top-level entity without children may become a child
    let p2 = l.update_entity("proj").parent("proj-2").await.unwrap();
    assert_eq!(p2.parent_id.as_deref(), Some("proj-2"));
}

/// A parent with children is not deleted unless forced; forcing detaches the children.
pub async fn deleting_a_parent_needs_force(store: Arc<dyn Store>) {
    let (l, _) = limiter(store.clone());
    l.create_entity(NewEntity::new("proj")).await.unwrap();
    for k in ["key-a", "key-b"] {
        l.create_entity(NewEntity::new(k).parent("proj").cascade(true))
            .await
            .unwrap();
    }
    let lim = [Limit::per_minute("rpm", 10)];
    common::take(&l, "key-a", "gpt-4", &lim, &[("rpm", 2)]).await;
    assert_eq!(rpm_left(&l, "proj").await, 8);

    let err = l.delete_entity("proj").await.unwrap_err();
    assert!(
        matches!(&err, Error::Conflict(m) if m.contains("2 children (key-a, key-b)")),
        "{err}"
    );
    assert!(l.get_entity("proj").await.unwrap().is_some(), "not deleted");

    assert!(l.delete_entity_forced("proj").await.unwrap());
    assert!(l.get_entity("proj").await.unwrap().is_none());
    for k in ["key-a", "key-b"] {
        let e = l.get_entity(k).await.unwrap().unwrap();
        assert_eq!((e.parent_id, e.cascade), (None, false), "{k}");
        assert_eq!(actions(&l, k).await[0], AuditAction::EntityUpdated, "{k}");
    }
    let deleted = l.audit_events("proj", 1, None).await.unwrap().events;
    assert_eq!(deleted[0].action, AuditAction::EntityDeleted);
    assert_eq!(
        deleted[0].details["detached_children"],
        serde_json::json!(["key-a", "key-b"])
    );
    // the child keeps working on its own, without a ghost parent bucket
    common::take(&l, "key-a", "gpt-4", &lim, &[("rpm", 1)]).await;
    assert_eq!(rpm_left(&l, "key-a").await, 7);
    assert!(store
        .get_bucket(&zae_limiter::store::BucketKey::new("proj", "gpt-4"))
        .await
        .unwrap()
        .is_none());
    assert!(!l.delete_entity_forced("proj").await.unwrap(), "gone");
    // a childless entity needs no force
    assert!(l.delete_entity("key-b").await.unwrap());
}

/// A tenant's limiter cannot read the table-level namespace audit.
pub async fn tenants_do_not_read_the_namespace_audit(store: Arc<dyn Store>) {
    let (l, _) = limiter(store);
    l.register_namespace("tenant-a").await.unwrap();
    assert_eq!(
        actions(&l, "$NAMESPACE").await,
        [AuditAction::NamespaceRegistered]
    );
    let t = l.namespace("tenant-a").await.unwrap();
    let err = t.audit_events("$NAMESPACE", 10, None).await.unwrap_err();
    assert!(
        matches!(&err, Error::Validation { field: "entity_id", reason } if reason.contains("table-level")),
        "{err}"
    );
    // the default namespace, also when reached through `namespace("default")`
    let d = l.namespace("default").await.unwrap();
    assert_eq!(actions(&d, "$NAMESPACE").await.len(), 1);
}

/// Bad cursors and ids are refused before the store is asked.
pub async fn ids_and_cursors_are_validated(store: Arc<dyn Store>) {
    let (l, _) = limiter(store);
    for bad in ["a#b", "", "x".repeat(65).as_str()] {
        assert!(matches!(
            l.audit_events("key-1", 10, Some(bad)).await,
            Err(Error::Validation { .. })
        ));
    }
    assert!(l.audit_events("$RESOURCE:9x", 10, None).await.is_err());
    for bad in ["_", "a/b", "-x", ""] {
        assert!(matches!(
            l.recover_namespace(bad).await,
            Err(Error::Validation { .. })
        ));
        assert!(matches!(
            l.purge_namespace(bad, |_| {}).await,
            Err(Error::Validation { .. })
        ));
    }
}

macro_rules! on_store {
    ($factory:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name($factory().await).await;
            }
        )*
    };
}

mod memory {
    on_store!(crate::common::memory_store;
        config_versions_strictly_increase,
        update_entity_follows_the_hierarchy_rules,
        deleting_a_parent_needs_force,
        ids_and_cursors_are_validated,
    );

    #[tokio::test]
    async fn tenants_do_not_read_the_namespace_audit() {
        super::tenants_do_not_read_the_namespace_audit(crate::common::memory_store().await).await;
    }
}

#[cfg(feature = "dynamodb-local-tests")]
mod dynamo {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;
    use zae_limiter::{DynamoStore, StoreConfig, StoreError};

    on_store!(crate::common::dynamo_store;
        config_versions_strictly_increase,
        update_entity_follows_the_hierarchy_rules,
        deleting_a_parent_needs_force,
        tenants_do_not_read_the_namespace_audit,
        ids_and_cursors_are_validated,
    );

    /// A client of our own, to write what the library never would.
    async fn raw() -> aws_sdk_dynamodb::Client {
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(crate::common::dynamodb_endpoint())
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .load()
            .await;
        aws_sdk_dynamodb::Client::new(&conf)
    }

    fn s(v: impl Into<String>) -> AttributeValue {
        AttributeValue::S(v.into())
    }

    /// Run `update` (an UpdateExpression with `:v`; `#s` for `status`, `#c` for `cascade`)
    /// on one item.
    async fn tamper(
        store: &DynamoStore,
        pk: &str,
        sk: &str,
        update: &str,
        v: Option<AttributeValue>,
    ) {
        raw()
            .await
            .update_item()
            .table_name(store.table_name())
            .key("PK", s(pk))
            .key("SK", s(sk))
            .update_expression(update)
            // `status` and `cascade` are reserved words
            .set_expression_attribute_names({
                let names: std::collections::HashMap<String, String> =
                    [("#s", "status"), ("#c", "cascade")]
                        .into_iter()
                        .filter(|(k, _)| update.contains(k))
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                (!names.is_empty()).then_some(names)
            })
            .set_expression_attribute_values(v.map(|v| [(":v".to_string(), v)].into()))
            .condition_expression("attribute_exists(PK)")
            .send()
            .await
            .expect("tamper");
    }

    fn store_err<T: std::fmt::Debug>(r: zae_limiter::Result<T>) -> String {
        match r {
            Err(Error::Malformed { message }) => message,
            other => panic!("expected a store error, got {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn corrupt_items_are_refused_with_their_key() {
        let store = crate::common::dynamo().await;
        let (l, _) = limiter(Arc::new(store.clone()));
        let scope = ConfigScope::Resource {
            resource: "gpt-4".into(),
        };
        l.set_config(&scope, rpm(10)).await.unwrap();
        l.create_entity(NewEntity::new("key-1")).await.unwrap();
        let ns = l.get_namespace("default").await.unwrap().unwrap().id;
        // the version went through the table
        assert_eq!(l.get_config(&scope).await.unwrap().unwrap().version, T0);

        let cfg_pk = format!("{ns}/RESOURCE#gpt-4");
        tamper(
            &store,
            &cfg_pk,
            "#CONFIG",
            "SET limits[0].refill_period_ms = :v",
            Some(AttributeValue::N("0".into())),
        )
        .await;
        let want = format!(
            "corrupt config item {ns}/RESOURCE#gpt-4 #CONFIG: limits[0].refill_period_ms is 0, \
             outside 1..=31622400000"
        );
        assert_eq!(store_err(l.get_config(&scope).await), want);
        // the acquire path reads it too (one BatchGetItem) and refuses it the same way
        match store.load_resolution("key-1", "gpt-4").await {
            Err(StoreError::Malformed(m)) => assert_eq!(m, want),
            other => panic!("{other:?}"),
        }
        tamper(
            &store,
            &cfg_pk,
            "#CONFIG",
            "SET limits[0].refill_period_ms = :v REMOVE version",
            Some(AttributeValue::N("60000".into())),
        )
        .await;
        let m = store_err(l.get_config(&scope).await);
        assert!(m.ends_with("#CONFIG: version is missing"), "{m}");

        let ent_pk = format!("{ns}/ENTITY#key-1");
        // read through the resolution (`get_entity` uses the same parser once
        // dynamodb/mod.rs switches to it)
        let entity_err = || async {
            match store.load_resolution("key-1", "other").await {
                Err(StoreError::Malformed(m)) => m,
                other => panic!("{other:?}"),
            }
        };
        tamper(&store, &ent_pk, "#META", "REMOVE #c", None).await;
        assert_eq!(
            entity_err().await,
            format!("corrupt entity item {ns}/ENTITY#key-1 #META: cascade is missing")
        );
        tamper(&store, &ent_pk, "#META", "SET #c = :v", Some(s("yes"))).await;
        let m = entity_err().await;
        assert!(
            m.ends_with("cascade is a string instead of a boolean"),
            "{m}"
        );

        let events = raw()
            .await
            .query()
            .table_name(store.table_name())
            .key_condition_expression("PK = :pk")
            .expression_attribute_values(":pk", s(format!("{ns}/AUDIT#key-1")))
            .send()
            .await
            .unwrap();
        let sk = events.items()[0]["SK"].as_s().unwrap().clone();
        tamper(
            &store,
            &format!("{ns}/AUDIT#key-1"),
            &sk,
            "SET details = :v",
            Some(s("{oops")),
        )
        .await;
        let m = store_err(l.audit_events("key-1", 10, None).await);
        assert!(
            m.starts_with(&format!(
                "corrupt audit item {ns}/AUDIT#key-1 {sk}: details is not JSON"
            )),
            "{m}"
        );

        tamper(
            &store,
            "_/SYSTEM#",
            &format!("#NSID#{ns}"),
            "SET #s = :v",
            Some(s("zombie")),
        )
        .await;
        let m = store_err(l.namespaces().await);
        assert_eq!(
            m,
            format!("corrupt namespace item _/SYSTEM# #NSID#{ns}: status 'zombie' is unknown")
        );
    }

    /// A handle stops writing within the cache TTL once its namespace is deleted or purged:
    /// the resolution read (still one BatchGetItem) says so.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deleted_namespace_is_gone_for_its_handles() {
        let store = crate::common::dynamo().await;
        let (l, _) = limiter(Arc::new(store.clone()));
        let info = l.register_namespace("tenant-a").await.unwrap();
        let t = store.scoped("tenant-a").await.unwrap().unwrap();
        let gone = |h: Arc<dyn Store>| async move {
            h.load_resolution("key-1", "gpt-4")
                .await
                .unwrap()
                .namespace_gone
        };
        let default: Arc<dyn Store> = Arc::new(store.clone());
        assert!(!gone(default.clone()).await);
        store.reset_call_counts();
        assert!(!gone(t.clone()).await);
        assert_eq!(
            store.call_counts(),
            [("BatchGetItem".to_string(), 1)].into(),
            "one read for entity, four levels and the registry record"
        );
        assert!(l.delete_namespace("tenant-a").await.unwrap());
        assert!(gone(t.clone()).await, "deleted");
        assert!(!gone(default.clone()).await);
        l.recover_namespace(&info.id).await.unwrap();
        assert!(!gone(t.clone()).await, "recovered");
        assert!(l.delete_namespace("tenant-a").await.unwrap());
        l.purge_namespace(&info.id, |_| {}).await.unwrap();
        assert!(gone(t.clone()).await, "purged: no record at all");
        // a handle on an id that was never registered
        let stray = DynamoStore::connect(
            StoreConfig::new(store.table_name())
                .endpoint_url(crate::common::dynamodb_endpoint())
                .static_credentials("test", "test")
                .attempt_timeout(std::time::Duration::from_secs(20))
                .namespace("tenant-b")
                .namespace_id("NeverExists"),
        )
        .await
        .unwrap();
        assert!(gone(Arc::new(stray)).await);
    }

    /// A tenant handle made from its id alone (as an IAM-confined tenant would) keeps the
    /// name `default`, and still cannot read the namespace audit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_id_only_tenant_handle_is_still_a_tenant() {
        let store = crate::common::dynamo().await;
        let (l, _) = limiter(Arc::new(store.clone()));
        let info = l.register_namespace("tenant-a").await.unwrap();
        let by_id = DynamoStore::connect(
            StoreConfig::new(store.table_name())
                .endpoint_url(crate::common::dynamodb_endpoint())
                .static_credentials("test", "test")
                .attempt_timeout(std::time::Duration::from_secs(20))
                .namespace_id(info.id.clone()),
        )
        .await
        .unwrap();
        let (t, _) = limiter(Arc::new(by_id));
        t.create_entity(NewEntity::new("key-1")).await.unwrap();
        assert!(l.get_entity("key-1").await.unwrap().is_none(), "isolated");
        let err = t.audit_events("$NAMESPACE", 10, None).await.unwrap_err();
        assert!(matches!(err, Error::Validation { .. }), "{err}");
        assert_eq!(actions(&l, "$NAMESPACE").await.len(), 1);
    }
}
