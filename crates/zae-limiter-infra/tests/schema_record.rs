//! The schema record on DynamoDB Local: written, read back, and an older client refuses to
//! overwrite a newer schema. Run through scripts/test.sh (DynamoDB Local).

use aws_sdk_dynamodb::types::AttributeValue;
use zae_limiter::schema::{RECORD_PK, RECORD_SK, SCHEMA_VERSION};
use zae_limiter::{DynamoStore, StoreConfig};

/// A fresh store handle on `table` (its own caches: the schema is read anew).
async fn connect(table: &str, endpoint: &str) -> DynamoStore {
    DynamoStore::connect(
        StoreConfig::new(table)
            .endpoint_url(endpoint)
            .static_credentials("test", "test")
            .region("us-east-1")
            .attempt_timeout(std::time::Duration::from_secs(20)),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn written_read_and_never_downgraded() {
    let endpoint = std::env::var("ZAEL_TEST_DYNAMODB_ENDPOINT")
        .expect("ZAEL_TEST_DYNAMODB_ENDPOINT is not set: run through scripts/dynamodb-local.sh");
    let table = format!("zael-schema-{}", std::process::id());
    let store = connect(&table, &endpoint).await;
    store.create_table().await.unwrap();
    assert_eq!(store.schema_record().await.unwrap(), None);
    store.check_schema_for_write().await.unwrap();
    store.write_schema_record("0.1.0", 1_000).await.unwrap();
    let r = store.schema_record().await.unwrap().unwrap();
    assert_eq!(r.schema_version, SCHEMA_VERSION);
    assert_eq!(r.client_version, "0.1.0");
    assert_eq!(r.updated_at_ms, 1_000);

    // a newer client recorded a newer schema
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&endpoint)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "t",
        ))
        .load()
        .await;
    let raw = aws_sdk_dynamodb::Client::new(&sdk);
    raw.put_item()
        .table_name(&table)
        .item("PK", AttributeValue::S(RECORD_PK.into()))
        .item("SK", AttributeValue::S(RECORD_SK.into()))
        .item("schema_version", AttributeValue::S("1.99.0".into()))
        .item("client_version", AttributeValue::S("9.0.0".into()))
        .send()
        .await
        .unwrap();
    let e = store
        .check_schema_for_write()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("1.99.0") && e.contains("upgrade zae-limiter"),
        "{e}"
    );
    let e = store
        .write_schema_record("0.1.0", 2_000)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("newer than this client"), "{e}");
    // nothing was overwritten
    assert_eq!(
        store.schema_record().await.unwrap().unwrap().schema_version,
        "1.99.0"
    );
    // a client of this (older) schema refuses every write, on its first one, and still reads
    let old = connect(&table, &endpoint).await;
    let l = zae_limiter::RateLimiter::builder(old).build();
    let rpm = [zae_limiter::Limit::per_minute("rpm", 5)];
    let refused = l
        .acquire("k", "r")
        .limits(rpm.clone())
        .consume([("rpm", 1)])
        .await
        .unwrap_err();
    assert!(
        matches!(refused, zae_limiter::Error::Conflict(ref m) if m.contains("upgrade zae-limiter")),
        "{refused}"
    );
    let e = l
        .create_entity(zae_limiter::NewEntity::new("e1"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("newer than this client"), "{e}");
    let e = l
        .set_config(
            &zae_limiter::ConfigScope::System,
            zae_limiter::StoredConfig::limits(rpm.clone()),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("newer than this client"), "{e}");
    let e = l.register_namespace("tenant-z").await.unwrap_err();
    assert!(e.to_string().contains("newer than this client"), "{e}");
    // reads still work, and nothing was written
    assert_eq!(l.available("k", "r", &rpm).await.unwrap()["rpm"], 5);
    assert_eq!(l.get_entity("e1").await.unwrap(), None);

    // another major version
    raw.put_item()
        .table_name(&table)
        .item("PK", AttributeValue::S(RECORD_PK.into()))
        .item("SK", AttributeValue::S(RECORD_SK.into()))
        .item("schema_version", AttributeValue::S("0.9.0".into()))
        .send()
        .await
        .unwrap();
    let e = store
        .check_schema_for_write()
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("major version"), "{e}");
    store.delete_table().await.unwrap();
}
