//! Least privilege, proven: the DynamoDB actions each role of use really issues on DynamoDB
//! Local (recorded by an SDK interceptor that maps every operation to the IAM actions it
//! needs, item by item for transactions) are exactly the actions its policy grants.
//! Run through scripts/test.sh (DynamoDB Local).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemInput;
use aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemInput;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemInput;
use aws_sdk_dynamodb::operation::get_item::GetItemInput;
use aws_sdk_dynamodb::operation::put_item::PutItemInput;
use aws_sdk_dynamodb::operation::query::QueryInput;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsInput;
use aws_sdk_dynamodb::operation::update_item::UpdateItemInput;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use zae_limiter::{
    ConfigScope, DynamoStore, Error, Limit, NewEntity, RateLimiter, StoreConfig, StoredConfig,
};
use zae_limiter_infra::iam::{self, POLICIES, REGISTRY_PARTITION};

/// What one phase issued: IAM actions, and the partition keys of item-level requests.
#[derive(Debug, Default)]
struct Seen {
    actions: BTreeSet<String>,
    /// (IAM action, partition key) of every item-level request (Query: its key values).
    partitions: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default)]
struct Recorder(Arc<Mutex<Seen>>);

impl Recorder {
    fn take(&self) -> Seen {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn pk(key: Option<&std::collections::HashMap<String, AttributeValue>>) -> String {
    key.and_then(|k| k.get("PK"))
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default()
}

impl Intercept for Recorder {
    fn name(&self) -> &'static str {
        "least-privilege-recorder"
    }

    fn read_before_serialization(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let op = cfg
            .load::<Metadata>()
            .map_or("unknown", |m| m.name())
            .to_string();
        let input = context.input();
        let mut seen = self.0.lock().unwrap();
        let mut item = |action: &str, pk: String| {
            seen.actions.insert(format!("dynamodb:{action}"));
            seen.partitions.push((format!("dynamodb:{action}"), pk));
        };
        match op.as_str() {
            "TransactWriteItems" => {
                let i = input.downcast_ref::<TransactWriteItemsInput>().unwrap();
                for t in i.transact_items() {
                    if let Some(u) = t.update() {
                        item("UpdateItem", pk(Some(u.key())));
                    }
                    if let Some(p) = t.put() {
                        item("PutItem", pk(Some(p.item())));
                    }
                    if let Some(d) = t.delete() {
                        item("DeleteItem", pk(Some(d.key())));
                    }
                    if let Some(c) = t.condition_check() {
                        item("ConditionCheckItem", pk(Some(c.key())));
                    }
                }
            }
            "GetItem" => item(
                "GetItem",
                pk(input.downcast_ref::<GetItemInput>().unwrap().key()),
            ),
            "UpdateItem" => item(
                "UpdateItem",
                pk(input.downcast_ref::<UpdateItemInput>().unwrap().key()),
            ),
            "PutItem" => item(
                "PutItem",
                pk(input.downcast_ref::<PutItemInput>().unwrap().item()),
            ),
            "DeleteItem" => item(
                "DeleteItem",
                pk(input.downcast_ref::<DeleteItemInput>().unwrap().key()),
            ),
            "BatchGetItem" => {
                let i = input.downcast_ref::<BatchGetItemInput>().unwrap();
                for ka in i.request_items().into_iter().flat_map(|m| m.values()) {
                    for k in ka.keys() {
                        item("BatchGetItem", pk(Some(k)));
                    }
                }
            }
            "BatchWriteItem" => {
                let i = input.downcast_ref::<BatchWriteItemInput>().unwrap();
                for w in i
                    .request_items()
                    .into_iter()
                    .flat_map(|m| m.values())
                    .flatten()
                {
                    if let Some(p) = w.put_request() {
                        item("BatchWriteItem", pk(Some(p.item())));
                    }
                    if let Some(d) = w.delete_request() {
                        item("BatchWriteItem", pk(Some(d.key())));
                    }
                }
            }
            "Query" => {
                let i = input.downcast_ref::<QueryInput>().unwrap();
                // the partition key value of the key condition (the only value with a '/'
                // or, for the namespace index, the namespace id itself)
                let key = i
                    .expression_attribute_values()
                    .into_iter()
                    .flat_map(|m| m.values())
                    .filter_map(|v| v.as_s().ok())
                    .find(|s| s.contains('/'))
                    .cloned()
                    .unwrap_or_default();
                item("Query", key);
            }
            other => {
                seen.actions.insert(format!("dynamodb:{other}"));
            }
        }
        Ok(())
    }
}

async fn store(table: &str, namespace: &str, rec: &Recorder) -> DynamoStore {
    let endpoint = std::env::var("ZAEL_TEST_DYNAMODB_ENDPOINT")
        .expect("ZAEL_TEST_DYNAMODB_ENDPOINT is not set: run through scripts/dynamodb-local.sh");
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await;
    let conf = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .interceptor(rec.clone())
        .timeout_config(
            aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_secs(20))
                .build(),
        )
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(conf);
    DynamoStore::from_client(client, StoreConfig::new(table).namespace(namespace)).unwrap()
}

fn set(actions: &[&str]) -> BTreeSet<String> {
    actions.iter().map(|a| a.to_string()).collect()
}

fn policy(component: &str) -> BTreeSet<String> {
    let p = POLICIES.iter().find(|p| p.component == component).unwrap();
    p.granted().iter().map(|a| a.to_string()).collect()
}

fn lim() -> Vec<Limit> {
    vec![
        Limit::per_minute("rpm", 100),
        Limit::per_minute("tpm", 10_000),
    ]
}

/// The hot path of an application: acquire with stored limits (config resolution), a
/// cascade to the parent, adjust + commit, rollback, consume on the lease, a refusal,
/// available and time until available.
async fn acquire_workload(l: &RateLimiter) {
    let lease = l
        .acquire("key-1", "gpt-4")
        .consume([("rpm", 1), ("tpm", 100)])
        .await
        .unwrap();
    lease.adjust("tpm", 50).unwrap();
    lease.commit().await.unwrap();
    let lease = l
        .acquire("key-1", "gpt-4")
        .consume([("rpm", 1)])
        .await
        .unwrap();
    lease.consume("tpm", 10).await.unwrap();
    lease.rollback().await.unwrap();
    // cascade: the child and its parent in one transaction
    let lease = l
        .acquire("child", "gpt-4")
        .consume([("rpm", 1)])
        .await
        .unwrap();
    lease.adjust("rpm", 1).unwrap();
    lease.commit().await.unwrap();
    let lease = l
        .acquire("child", "gpt-4")
        .consume([("rpm", 1)])
        .await
        .unwrap();
    lease.rollback().await.unwrap();
    // explicit limits on an entity nothing is stored for
    let lease = l
        .acquire("adhoc", "other")
        .limits(lim())
        .consume([("rpm", 1)])
        .await
        .unwrap();
    lease.commit().await.unwrap();
    let refused = l.acquire("key-1", "gpt-4").consume([("rpm", 1000)]).await;
    assert!(matches!(refused, Err(Error::RateLimited(_))), "{refused:?}");
    l.available("key-1", "gpt-4", &lim()).await.unwrap();
    l.time_until_available("key-1", "gpt-4", &lim(), [("rpm", 1)])
        .await
        .unwrap();
}

/// Every read-only operation in a namespace (what the read-only commands call). Listing or
/// showing namespaces queries the registry partition: table-level, not a tenant's.
async fn read_workload(l: &RateLimiter) {
    l.get_entity("key-1").await.unwrap();
    l.children("parent").await.unwrap();
    for scope in [
        ConfigScope::System,
        ConfigScope::Resource {
            resource: "gpt-4".into(),
        },
        ConfigScope::Entity {
            entity_id: "key-1".into(),
            resource: "gpt-4".into(),
        },
        ConfigScope::EntityDefault {
            entity_id: "key-1".into(),
        },
    ] {
        l.get_config(&scope).await.unwrap();
    }
    l.resources_with_defaults().await.unwrap();
    l.entities_with_limits("gpt-4", 10, None).await.unwrap();
    l.audit_events("key-1", 10, None).await.unwrap();
    l.available("key-1", "gpt-4", &lim()).await.unwrap();
}

/// The management API within a namespace (entities, limits, audit).
async fn manage_in_namespace(l: &RateLimiter) {
    l.create_entity(NewEntity::new("p2")).await.unwrap();
    l.create_entity(NewEntity::new("c2").parent("p2").cascade(true))
        .await
        .unwrap();
    l.update_entity("c2").name("renamed").await.unwrap();
    let scope = ConfigScope::Entity {
        entity_id: "c2".into(),
        resource: "gpt-4".into(),
    };
    l.set_config(
        &scope,
        StoredConfig {
            limits: lim(),
            on_unavailable: None,
            version: 0,
        },
    )
    .await
    .unwrap();
    l.delete_config(&scope).await.unwrap();
    assert!(l.delete_entity("c2").await.unwrap());
    l.create_entity(NewEntity::new("c3").parent("p2"))
        .await
        .unwrap();
    assert!(l.delete_entity_forced("p2").await.unwrap());
}

/// Table-level management: namespaces.
async fn manage_namespaces(l: &RateLimiter) {
    let n = l.register_namespace("scratch").await.unwrap();
    l.namespaces().await.unwrap();
    l.get_namespace("scratch").await.unwrap();
    l.delete_namespace("scratch").await.unwrap();
    l.recover_namespace(&n.id).await.unwrap();
    l.delete_namespace_forced("scratch").await.unwrap();
    l.purge_namespace(&n.id, |_| {}).await.unwrap();
}

/// Every request of a tenant's phase stays in its namespace, except reads of the registry.
/// The provisioner handler's table work: the same code as `limits apply`.
async fn provisioner_workload(l: &RateLimiter) {
    use zae_limiter::manifest::Manifest;
    let apply = |text: &str| {
        let m = Manifest::from_yaml(text).unwrap();
        async move { m.apply(l).await.unwrap() }
    };
    // create (and register the namespace), update, delete everything again
    apply("namespace: prov\nsystem: {limits: {rpm: 5}}\nresources: {r1: {limits: {rpm: 1}}}").await;
    apply("namespace: prov\nsystem: {limits: {rpm: 6}}\nresources: {r1: {limits: {rpm: 1}}}").await;
    apply("namespace: prov").await;
}

fn assert_confined(seen: &Seen, ns_id: &str, phase: &str) {
    assert!(!seen.partitions.is_empty(), "{phase}: nothing recorded");
    for (action, key) in &seen.partitions {
        let own = key.starts_with(&format!("{ns_id}/"));
        let registry =
            key == REGISTRY_PARTITION && iam::REGISTRY_ACTIONS.contains(&action.as_str());
        assert!(
            own || registry,
            "{phase}: {action} on partition {key:?} (namespace {ns_id})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_policy_grants_exactly_what_the_code_issues() {
    let table = format!("zael-lp-{}", std::process::id());
    let rec = Recorder::default();
    // setup as an operator (not recorded): table, namespace, limits, entities
    let admin_store = store(&table, "default", &rec).await;
    admin_store.create_table().await.unwrap();
    let admin = RateLimiter::builder(admin_store).build();
    let tenant = admin.register_namespace("tenant").await.unwrap();
    let setup = admin.namespace("tenant").await.unwrap();
    setup
        .set_config(
            &ConfigScope::System,
            StoredConfig {
                limits: lim(),
                on_unavailable: None,
                version: 0,
            },
        )
        .await
        .unwrap();
    setup
        .set_config(
            &ConfigScope::Resource {
                resource: "gpt-4".into(),
            },
            StoredConfig {
                limits: lim(),
                on_unavailable: None,
                version: 0,
            },
        )
        .await
        .unwrap();
    setup.create_entity(NewEntity::new("parent")).await.unwrap();
    setup
        .create_entity(NewEntity::new("child").parent("parent").cascade(true))
        .await
        .unwrap();
    setup.create_entity(NewEntity::new("key-1")).await.unwrap();
    rec.take();

    // each role runs as a fresh client (cold caches: the namespace lookup included)
    let app = RateLimiter::builder(store(&table, "tenant", &rec).await).build();
    acquire_workload(&app).await;
    let acq = rec.take();
    let reader = RateLimiter::builder(store(&table, "tenant", &rec).await).build();
    read_workload(&reader).await;
    let read = rec.take();
    let ops = RateLimiter::builder(store(&table, "tenant", &rec).await).build();
    manage_in_namespace(&ops).await;
    let manage = rec.take();
    let root = RateLimiter::builder(store(&table, "default", &rec).await).build();
    manage_namespaces(&root).await;
    let namespaces = rec.take();

    // the provisioner: what `limits apply` / the custom resource does (plan, create, update,
    // delete, a namespace registered on the way), as a fresh client on the table
    let prov = RateLimiter::builder(store(&table, "default", &rec).await).build();
    provisioner_workload(&prov).await;
    let provisioner = rec.take();
    println!("recorded provisioner: {:?}", provisioner.actions);
    assert_eq!(
        provisioner.actions,
        set(iam::PROVISIONER_TABLE_ACTIONS),
        "provisioner role"
    );

    println!("recorded -acq:  {:?}", acq.actions);
    println!("recorded -read: {:?}", read.actions);
    println!("recorded management in a namespace: {:?}", manage.actions);
    println!("recorded namespace management: {:?}", namespaces.actions);

    // -acq: exactly the hot path (the original lacked UpdateItem)
    assert_eq!(acq.actions, set(iam::ACQUIRE_ACTIONS), "-acq");
    // -read: exactly the reads
    assert_eq!(read.actions, set(iam::READ_ACTIONS), "-read");
    // -full: everything an operator issues
    let mut full: BTreeSet<String> = BTreeSet::new();
    for s in [&acq, &read, &manage, &namespaces] {
        full.extend(s.actions.iter().cloned());
    }
    assert_eq!(full, set(iam::FULL_ACTIONS), "-full");
    assert_eq!(policy("acq"), set(iam::ACQUIRE_ACTIONS));
    assert_eq!(policy("read"), set(iam::READ_ACTIONS));
    assert_eq!(policy("full"), set(iam::FULL_ACTIONS));

    // the namespace-scoped policies: a tenant's acquire, reads and management stay in its
    // namespace (plus GetItem on the registry), and each grants exactly what its phase issues
    assert_confined(&acq, &tenant.id, "acquire");
    assert_confined(&read, &tenant.id, "read");
    assert_confined(&manage, &tenant.id, "manage");
    assert_eq!(policy("ns-acq"), acq.actions, "-ns-acq");
    assert_eq!(policy("ns-read"), read.actions, "-ns-read");
    let mut ns_full = manage.actions.clone();
    ns_full.extend(acq.actions.iter().cloned());
    ns_full.extend(read.actions.iter().cloned());
    assert_eq!(policy("ns-full"), ns_full, "-ns-full");
}
