//! The conformance suite and the round-trip budget on DynamoDB Local.
//! Run through `scripts/test.sh`, which starts the server.
mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use zae_limiter::{
    ConfigScope, DynamoStore, Error, Limit, ManualClock, NewEntity, OnUnavailable, RateLimiter,
    Store, StoreConfig, StoredConfig,
};

conformance_suite!(common::dynamo_store);

fn calls(store: &DynamoStore) -> BTreeMap<String, u64> {
    let c = store.call_counts();
    store.reset_call_counts();
    c
}

fn only(op: &str, n: u64) -> BTreeMap<String, u64> {
    BTreeMap::from([(op.to_string(), n)])
}

/// The hot path of DESIGN §5, asserted call by call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_per_operation() {
    let store = common::dynamo().await;
    let clock = ManualClock::new(common::conformance::T0);
    // entity metadata stays cached across the day skipped below
    let l = RateLimiter::builder(store.clone())
        .clock(clock.clone())
        .config_cache_ttl(Duration::from_secs(7 * 86_400))
        .build();
    let lim = vec![
        Limit::per_minute("rpm", 100),
        Limit::per_minute("tpm", 10_000),
        Limit::per_day("tpd", 1_000_000),
    ];
    let acq = |e: &'static str, tpm: u64| {
        l.acquire(e, "gpt-4")
            .limits(lim.clone())
            .consume([("rpm", 1), ("tpm", tpm)])
    };
    // a new table: the first call of this client looks up the namespace id and registers
    // `default` (GetItem, GetItem, TransactWriteItems), once
    l.available("warm-up", "gpt-4", &lim).await.unwrap();
    store.reset_call_counts();

    // first acquire of an unknown entity: one BatchGetItem (entity + the four config levels,
    // then cached) + one write creating the bucket; the first write of a handle also reads
    // the schema record (one GetItem, once per handle: an older client must not write)
    let lease = acq("key-1", 500).await.unwrap();
    assert_eq!(
        calls(&store),
        BTreeMap::from([
            ("BatchGetItem".into(), 1),
            ("GetItem".into(), 1),
            ("UpdateItem".into(), 1)
        ])
    );
    // commit without adjustments writes nothing
    lease.commit().await.unwrap();
    assert_eq!(calls(&store), BTreeMap::new());

    // warm acquire with three limits: exactly one UpdateItem, no read
    let lease = acq("key-1", 500).await.unwrap();
    assert_eq!(calls(&store), only("UpdateItem", 1));
    // adjustments: one exactly-once write at commit (an idempotent one-item transaction, so
    // a retried request whose response was lost is not applied twice)
    lease.adjust("tpm", 312).unwrap();
    lease.commit().await.unwrap();
    assert_eq!(calls(&store), only("TransactWriteItems", 1));
    // rollback: one exactly-once write
    let lease = acq("key-1", 500).await.unwrap();
    lease.rollback().await.unwrap();
    assert_eq!(
        calls(&store),
        BTreeMap::from([("UpdateItem".into(), 1), ("TransactWriteItems".into(), 1)])
    );

    // a newly added limit on an existing bucket: still one call
    let mut more = lim.clone();
    more.push(Limit::per_minute("images", 5));
    common::take(&l, "key-1", "gpt-4", &more, &[("images", 1)]).await;
    assert_eq!(calls(&store), only("UpdateItem", 1));

    // a new resource: its configs are resolved once (one BatchGetItem), then one write
    common::take(&l, "key-1", "embeddings", &lim, &[("rpm", 1)]).await;
    assert_eq!(
        calls(&store),
        BTreeMap::from([("BatchGetItem".into(), 1), ("UpdateItem".into(), 1)])
    );
    common::take(&l, "key-1", "embeddings", &lim, &[("rpm", 1)]).await;
    assert_eq!(calls(&store), only("UpdateItem", 1));

    // limits resolved from a stored default, warm cache: still one UpdateItem
    l.set_config(
        &ConfigScope::System,
        StoredConfig::limits([Limit::per_minute("rpm", 1_000)]),
    )
    .await
    .unwrap();
    l.acquire("key-9", "gpt-4")
        .consume([("rpm", 1)])
        .await
        .unwrap()
        .commit()
        .await
        .unwrap();
    calls(&store);
    l.acquire("key-9", "gpt-4")
        .consume([("rpm", 1)])
        .await
        .unwrap()
        .commit()
        .await
        .unwrap();
    assert_eq!(calls(&store), only("UpdateItem", 1));
    l.delete_config(&ConfigScope::System).await.unwrap();
    acq("key-1", 1).await.unwrap().commit().await.unwrap(); // re-resolve after the change
    calls(&store);

    // a rejection the last state seen already proves costs no call at all (local refusal;
    // `local_refusals_cost_no_write` below); one the table decides needs no further call
    let e = acq("key-1", 9_500).await.unwrap_err();
    assert!(matches!(e, Error::RateLimited(_)), "{e}");
    assert_eq!(calls(&store), BTreeMap::new());

    // available(): one GetItem
    l.available("key-1", "gpt-4", &lim).await.unwrap();
    assert_eq!(calls(&store), only("GetItem", 1));

    // cascade: one TransactWriteItems per acquire, one for a commit with adjustments
    l.create_entity(NewEntity::new("proj")).await.unwrap();
    l.create_entity(NewEntity::new("key-2").parent("proj").cascade(true))
        .await
        .unwrap();
    acq("key-2", 100).await.unwrap().commit().await.unwrap(); // warms the entity cache
    calls(&store);
    let lease = acq("key-2", 100).await.unwrap();
    assert_eq!(calls(&store), only("TransactWriteItems", 1));
    lease.adjust("tpm", 50).unwrap();
    lease.commit().await.unwrap();
    assert_eq!(calls(&store), only("TransactWriteItems", 1));

    // after a long idle period the cached level, read at the new time, already says "full
    // again": the guess stays right and the acquire stays one call
    clock.advance(Duration::from_secs(3_600 * 24));
    acq("key-1", 1).await.unwrap().commit().await.unwrap();
    assert_eq!(calls(&store), only("UpdateItem", 1));
    acq("key-1", 1).await.unwrap().commit().await.unwrap();
    assert_eq!(calls(&store), only("UpdateItem", 1));
}

/// A fresh client (no cached state) on a bucket that is not full guesses "full", learns the
/// truth from the failed write, and succeeds on the second call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_client_on_partial_bucket_costs_one_retry() {
    let store = common::dynamo().await;
    let clock = ManualClock::new(common::conformance::T0);
    let lim = vec![Limit::per_minute("rpm", 100)];
    let l = RateLimiter::builder(store.clone())
        .clock(clock.clone())
        .build();
    common::take(&l, "k", "api", &lim, &[("rpm", 10)]).await;
    store.clear_state_cache();
    store.reset_call_counts();
    common::take(&l, "k", "api", &lim, &[("rpm", 10)]).await;
    assert_eq!(calls(&store), only("UpdateItem", 2));
    assert_eq!(l.available("k", "api", &lim).await.unwrap()["rpm"], 80);
}

async fn unreachable(policy: OnUnavailable) -> RateLimiter {
    // nothing listens on port 9 of loopback: every call fails fast
    let store = DynamoStore::connect(
        StoreConfig::new("t")
            .endpoint_url("http://127.0.0.1:9")
            .static_credentials("a", "b"),
    )
    .await
    .unwrap();
    RateLimiter::builder(store)
        .on_unavailable(policy)
        .timeout(Duration::from_secs(3))
        .build()
}

#[tokio::test]
async fn unavailable_store_blocks_by_default_and_allows_when_asked() {
    let lim = [Limit::per_minute("rpm", 1)];
    let block = unreachable(OnUnavailable::Block).await;
    let e = block
        .acquire("k", "api")
        .limits(lim.clone())
        .consume([("rpm", 1)])
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e}");
    assert!(e.to_string().contains("entity=k, resource=api"), "{e}");

    // per-call override
    let lease = block
        .acquire("k", "api")
        .limits(lim.clone())
        .consume([("rpm", 1)])
        .on_unavailable(OnUnavailable::Allow)
        .await
        .unwrap();
    assert!(lease.is_noop());
    lease.adjust("rpm", 5).unwrap();
    lease.commit().await.unwrap();

    let allow = unreachable(OnUnavailable::Allow).await;
    let lease = allow
        .acquire("k", "api")
        .limits(lim.clone())
        .consume([("rpm", 1)])
        .await
        .unwrap();
    assert!(lease.is_noop());
    // bad input is still an error, whatever the policy
    assert!(matches!(
        allow.acquire("k#", "api").limits(lim).await,
        Err(Error::Validation { .. })
    ));
}

#[tokio::test]
async fn timeout_bounds_a_silent_store() {
    // a listener that accepts and never answers
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let store = DynamoStore::connect(
        StoreConfig::new("t")
            .endpoint_url(format!("http://{addr}"))
            .static_credentials("a", "b"),
    )
    .await
    .unwrap();
    let l = RateLimiter::builder(store)
        .timeout(Duration::from_millis(300))
        .build();
    let started = std::time::Instant::now();
    let e = l
        .acquire("k", "api")
        .limits([Limit::per_minute("rpm", 1)])
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e}");
    assert!(e.to_string().contains("within"), "{e}");
    // generous bound: the point is that it returns at all instead of hanging
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_api_on_dynamodb() {
    let endpoint = common::dynamodb_endpoint();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store = rt.block_on(async {
            let s = DynamoStore::connect(
                StoreConfig::new("blocking-t")
                    .endpoint_url(endpoint)
                    .static_credentials("a", "b"),
            )
            .await
            .unwrap();
            s.create_table().await.unwrap();
            s
        });
        drop(rt);
        let l =
            zae_limiter::blocking::RateLimiter::new(RateLimiter::builder(store).build()).unwrap();
        let lim = [Limit::per_minute("rpm", 5)];
        let r = l
            .acquire("k", "api")
            .limits(lim.clone())
            .consume([("rpm", 2)])
            .run(|lease| {
                lease.adjust("rpm", 1)?;
                Ok::<_, Error>(1)
            });
        assert_eq!(r.unwrap(), 1);
        assert_eq!(l.available("k", "api", &lim).unwrap()["rpm"], 2);
    })
    .join()
    .unwrap();
    let _ = Arc::new(()); // keep imports honest across cfgs
}

/// With tracking on, DynamoDB's own capacity report: a warm acquire of a small bucket is 1 WCU,
/// `available` is one strongly consistent read (1 RCU). A cascade writes 2 items in a
/// transaction: DynamoDB Local reports 2 WCU; DynamoDB itself bills transactional writes
/// double (4 WCU), see docs/performance.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumed_capacity_per_operation() {
    let table = format!("zael-cap-{}", std::process::id());
    let store = DynamoStore::connect(
        StoreConfig::new(table)
            .endpoint_url(common::dynamodb_endpoint())
            .static_credentials("test", "test")
            .attempt_timeout(Duration::from_secs(20))
            .track_consumed_capacity(true),
    )
    .await
    .unwrap();
    store.create_table().await.unwrap();
    let l = RateLimiter::builder(store.clone()).build();
    let lim = vec![
        Limit::per_minute("rpm", 1_000),
        Limit::per_minute("tpm", 100_000),
    ];
    l.create_entity(NewEntity::new("p")).await.unwrap();
    l.create_entity(NewEntity::new("c").parent("p").cascade(true))
        .await
        .unwrap();
    for e in ["k", "c"] {
        common::take(&l, e, "api", &lim, &[("rpm", 1)]).await;
    }
    store.reset_consumed_capacity();
    common::take(&l, "k", "api", &lim, &[("rpm", 1), ("tpm", 10)]).await;
    assert_eq!(
        store.consumed_capacity(),
        zae_limiter::ConsumedCapacity {
            read: 0.0,
            write: 1.0
        }
    );
    store.reset_consumed_capacity();
    common::take(&l, "c", "api", &lim, &[("rpm", 1)]).await;
    assert_eq!(
        store.consumed_capacity(),
        zae_limiter::ConsumedCapacity {
            read: 0.0,
            write: 2.0
        }
    );
    store.reset_consumed_capacity();
    l.available("k", "api", &lim).await.unwrap();
    assert_eq!(
        store.consumed_capacity(),
        zae_limiter::ConsumedCapacity {
            read: 1.0,
            write: 0.0
        }
    );
}

/// Purge on DynamoDB leaves no item of the namespace in the table (checked with a scan),
/// and touches no other namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_leaves_no_item_behind() {
    let store = common::dynamo().await;
    let l = RateLimiter::builder(store.clone()).build();
    let lim = [Limit::per_minute("rpm", 10)];
    let info = l.register_namespace("gone").await.unwrap();
    let gone = l.namespace("gone").await.unwrap();
    gone.create_entity(NewEntity::new("p")).await.unwrap();
    gone.create_entity(NewEntity::new("c").parent("p").cascade(true))
        .await
        .unwrap();
    for i in 0..40 {
        common::take(&gone, "c", &format!("r{i}"), &lim, &[("rpm", 1)]).await;
    }
    gone.set_config(&ConfigScope::System, StoredConfig::limits(lim.clone()))
        .await
        .unwrap();
    common::take(&l, "c", "r0", &lim, &[("rpm", 1)]).await; // same ids in default
    l.delete_namespace("gone").await.unwrap();

    let count = |prefix: String| {
        let store = store.clone();
        async move {
            let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new("us-east-1"))
                .endpoint_url(common::dynamodb_endpoint())
                // DynamoDB Local keeps one database per access key: use the store's
                .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                    "test", "test", None, None, "t",
                ))
                .load()
                .await;
            let client = aws_sdk_dynamodb::Client::new(&sdk);
            let out = client
                .scan()
                .table_name(store.table_name())
                .send()
                .await
                .unwrap();
            out.items()
                .iter()
                .filter(|i| i["PK"].as_s().unwrap().starts_with(&prefix))
                .count()
        }
    };
    let before = count(format!("{}/", info.id)).await;
    assert!(before >= 40 + 2 + 2, "{before}");
    let n = l.purge_namespace(&info.id, |_| {}).await.unwrap();
    assert_eq!(n, before);
    assert_eq!(count(format!("{}/", info.id)).await, 0);
    // the default namespace still has its bucket
    assert_eq!(l.available("c", "r0", &lim).await.unwrap()["rpm"], 9);
}

/// With no principal given, audit events carry the caller identity from STS (moto here);
/// when STS cannot be reached they carry none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_principal_falls_back_to_the_sts_caller_identity() {
    let moto = std::env::var("ZAEL_TEST_MOTO_ENDPOINT")
        .expect("ZAEL_TEST_MOTO_ENDPOINT is not set: run the suite with scripts/test.sh");
    let table = common::dynamo().await.table_name().to_string();
    let connect = |sts: Option<String>| {
        let table = table.clone();
        async move {
            let mut c = StoreConfig::new(table)
                .endpoint_url(common::dynamodb_endpoint())
                .static_credentials("test", "test")
                .attempt_timeout(Duration::from_secs(20));
            if let Some(s) = sts {
                c = c.sts_endpoint_url(s);
            }
            DynamoStore::connect(c).await.unwrap()
        }
    };
    // moto answers its first STS call slowly while other tests keep it busy: the lookup is
    // bounded by the limiter's timeout, so give it room (the subject is the fallback)
    let with_sts = RateLimiter::builder(connect(Some(moto)).await)
        .timeout(Duration::from_secs(30))
        .build();
    with_sts.create_entity(NewEntity::new("a")).await.unwrap();
    let ev = with_sts.audit_events("a", 1, None).await.unwrap().events;
    let who = ev[0].principal.as_deref().unwrap_or_default();
    assert!(who.starts_with("arn:aws:"), "{who}");
    // STS at the DynamoDB Local endpoint does not answer GetCallerIdentity: no principal
    let without = RateLimiter::builder(connect(None).await).build();
    without.create_entity(NewEntity::new("b")).await.unwrap();
    let ev = without.audit_events("b", 1, None).await.unwrap().events;
    assert_eq!(ev[0].principal, None);
    // an explicit principal wins
    let explicit = RateLimiter::builder(connect(None).await)
        .principal("ops")
        .build();
    explicit.create_entity(NewEntity::new("c")).await.unwrap();
    let ev = explicit.audit_events("c", 1, None).await.unwrap().events;
    assert_eq!(ev[0].principal.as_deref(), Some("ops"));
}

/// A store built from a hand-made `SdkConfig` (no default chain) or from a ready client
/// works, and still counts its calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bring_your_own_sdk_config_or_client() {
    use aws_sdk_dynamodb::config::{Credentials, Region, SharedCredentialsProvider};
    let table = common::dynamo().await.table_name().to_string();
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(common::dynamodb_endpoint())
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "test",
            "test",
            None,
            None,
            "hand-made",
        )))
        .build();
    let lim = [Limit::per_minute("rpm", 10)];
    let check = |store: DynamoStore, entity: &'static str| {
        let lim = lim.clone();
        async move {
            let l = RateLimiter::builder(store.clone()).build();
            let lease = l
                .acquire(entity, "gpt-4")
                .limits(lim.clone())
                .consume([("rpm", 3)])
                .await
                .unwrap();
            assert_eq!(lease.statuses()[0].available, 7);
            lease.commit().await.unwrap();
            assert_eq!(l.available(entity, "gpt-4", &lim).await.unwrap()["rpm"], 7);
            assert!(store.call_counts().get("UpdateItem").copied().unwrap_or(0) >= 1);
        }
    };
    let from_sdk = DynamoStore::connect(StoreConfig::new(table.clone()).sdk_config(sdk.clone()))
        .await
        .unwrap();
    check(from_sdk, "via-sdk-config").await;

    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let from_client = DynamoStore::from_client(client, StoreConfig::new(table.clone())).unwrap();
    check(from_client, "via-client").await;

    // overrides of StoreConfig apply on top of the given config: a wrong endpoint fixed
    let wrong = sdk.to_builder().endpoint_url("http://127.0.0.1:9").build();
    let fixed = DynamoStore::connect(
        StoreConfig::new(table)
            .sdk_config(wrong)
            .endpoint_url(common::dynamodb_endpoint()),
    )
    .await
    .unwrap();
    check(fixed, "via-override").await;
}

/// Applying the same manifest twice: the second apply reads and writes nothing else
/// (reads only: the record and one GetItem per item, no write of any kind).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_apply_of_the_same_manifest_makes_no_write() {
    use zae_limiter::manifest::Manifest;
    let store = common::dynamo().await;
    let l = RateLimiter::builder(store.clone()).build();
    let m = Manifest::from_yaml(
        "system: {limits: {rpm: 100}}\nresources: {gpt-4: {limits: {rpm: 10, tpm: 1000}}}\n\
         entities: {k1: {resources: {gpt-4: {limits: {rpm: 5}}, _default_: {limits: {rpm: 1}}}}}",
    )
    .unwrap();
    let (_, first) = m.apply(&l).await.unwrap();
    assert_eq!(first.created, 4);
    calls(&store);
    let (plan, second) = m.apply(&l).await.unwrap();
    assert!(plan.is_empty());
    assert_eq!(second.writes, 0);
    // the namespace by name, the #PROVISIONER record, then the 4 items
    let seen = calls(&store);
    assert_eq!(seen.get("GetItem").copied(), Some(6), "{seen:?}");
    let writes: Vec<_> = seen.keys().filter(|op| op.as_str() != "GetItem").collect();
    assert!(writes.is_empty(), "{seen:?}");
}

/// A store for `table` on the test server (a second client of the same table).
async fn client_of(table: &str, local_refusals: bool) -> DynamoStore {
    DynamoStore::connect(
        StoreConfig::new(table)
            .endpoint_url(common::dynamodb_endpoint())
            .static_credentials("test", "test")
            .attempt_timeout(Duration::from_secs(20))
            .local_refusals(local_refusals),
    )
    .await
    .unwrap()
}

/// Requests the last state seen proves refused are refused without a write, with exactly
/// the statuses and retry-after the table's answer gives; a refund by another client is
/// noticed once refill alone would have allowed the request; nothing is admitted locally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_refusals_cost_no_write() {
    let a = common::dynamo().await;
    let b = client_of(a.table_name(), false).await;
    let clock = ManualClock::new(common::conformance::T0);
    let la = RateLimiter::builder(a.clone()).clock(clock.clone()).build();
    let lb = RateLimiter::builder(b.clone()).clock(clock.clone()).build();
    // 10 per minute: a token every 6 s
    let lim = vec![Limit::per_minute("rpm", 10)];
    let acq = |l: &RateLimiter, n: u64| {
        l.acquire("k", "api")
            .limits(lim.clone())
            .consume([("rpm", n)])
    };
    let held = acq(&lb, 2).await.unwrap(); // B holds 2
    acq(&la, 8).await.unwrap().commit().await.unwrap(); // A empties the bucket
    calls(&a);
    calls(&b);

    clock.advance(Duration::from_millis(1_500));
    let refused = |e: Error| match e {
        Error::RateLimited(x) => x,
        other => panic!("expected a refusal, got {other}"),
    };
    let local = refused(acq(&la, 1).await.unwrap_err());
    assert_eq!(calls(&a), BTreeMap::new(), "refused without a call");
    let remote = refused(acq(&lb, 1).await.unwrap_err());
    assert_eq!(calls(&b), only("UpdateItem", 1), "B asks the table");
    assert_eq!(local.retry_after(), Some(Duration::from_millis(4_500)));
    assert_eq!(local.statuses(), remote.statuses(), "the same answer");
    for _ in 0..5 {
        acq(&la, 1).await.unwrap_err();
    }
    assert_eq!(calls(&a), BTreeMap::new());

    // B gives its 2 back: the table now has them, A's cache does not know yet
    held.rollback().await.unwrap();
    calls(&b);
    refused(acq(&la, 1).await.unwrap_err());
    assert_eq!(
        calls(&a),
        BTreeMap::new(),
        "the refund is noticed late, by design"
    );
    // a client without local refusals sees the refund at once
    acq(&lb, 1).await.unwrap().commit().await.unwrap();
    // once refill alone would allow the request (one token, 6 s after emptying), A asks
    // the table, and its answer brings the refund into A's cache: 2 + 1 refilled - 1 by B
    clock.advance(Duration::from_millis(4_500));
    acq(&la, 1).await.unwrap().commit().await.unwrap();
    assert_eq!(calls(&a), only("UpdateItem", 1));
    // 1 token left, as A now knows: 2 is refused locally, 1 is admitted
    refused(acq(&la, 2).await.unwrap_err());
    assert_eq!(calls(&a), BTreeMap::new());
    acq(&la, 1).await.unwrap().commit().await.unwrap();
    assert_eq!(calls(&a), only("UpdateItem", 1));
    // exact accounting: 2 + 8 - 2 + 1 + 1 + 1 = 11 tokens taken in all
    let s = a
        .get_bucket(&zae_limiter::store::BucketKey::new("k", "api"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.limits["rpm"].consumed, 11_000);
}
