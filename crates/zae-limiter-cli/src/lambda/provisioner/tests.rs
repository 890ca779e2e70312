//! The provisioner on DynamoDB Local, answering a local stand-in for CloudFormation's
//! pre-signed `ResponseURL`.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use zae_limiter::{ConfigScope, DynamoStore, RateLimiter, StoreConfig};

use super::{handle_with, Env};

/// What the stand-in received: the method and path, the Content-Type header, the body.
struct Received {
    request_line: String,
    content_type: Option<String>,
    body: Value,
}

/// Accept one HTTP request on 127.0.0.1, answer 200, hand it over.
async fn response_url() -> (String, tokio::task::JoinHandle<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/cfn-response?X-Amz-Signature=abc",
        listener.local_addr().unwrap()
    );
    let task = tokio::spawn(async move {
        let (mut sock, _) = tokio::time::timeout(Duration::from_secs(30), listener.accept())
            .await
            .expect("the handler answers within 30 s")
            .unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let (head, body_start) = loop {
            let n = sock.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before the headers ended");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break (String::from_utf8_lossy(&buf[..i]).to_string(), i + 4);
            }
            assert!(buf.len() < 1 << 20, "headers too long");
        };
        let header = |name: &str| {
            head.lines().skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
        };
        let len: usize = header("content-length").unwrap().parse().unwrap();
        while buf.len() < body_start + len {
            let n = sock.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before the body ended");
            buf.extend_from_slice(&chunk[..n]);
        }
        sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        Received {
            request_line: head.lines().next().unwrap_or_default().to_string(),
            content_type: header("content-type"),
            body: serde_json::from_slice(&buf[body_start..body_start + len]).unwrap(),
        }
    });
    (url, task)
}

async fn table() -> (String, Env, RateLimiter) {
    let endpoint = std::env::var("ZAEL_TEST_DYNAMODB_ENDPOINT")
        .expect("run through scripts/test.sh, which starts DynamoDB Local");
    let table = format!("zael-prov-{}", std::process::id());
    let store = DynamoStore::connect(
        StoreConfig::new(&table)
            .endpoint_url(&endpoint)
            .static_credentials("local", "local"),
    )
    .await
    .unwrap();
    store.create_table().await.unwrap();
    let env = Env {
        table: None,
        endpoint_url: Some(endpoint),
    };
    (table, env, RateLimiter::builder(store).build())
}

fn event(request: &str, url: &str, table: &str, physical: Option<&str>, rpm: &str) -> Value {
    let mut e = json!({
        "RequestType": request,
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/limits/guid",
        "RequestId": format!("req-{request}"),
        "LogicalResourceId": "TenantLimits",
        "ResourceType": "Custom::ZaeLimiterLimits",
        "ResourceProperties": {
            "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:prov",
            "TableName": table,
            "Namespace": "default",
            "System": {"OnUnavailable": "block", "Limits": {"rpm": {"Capacity": "1000"}}},
            "Resources": {"gpt-4": {"Limits": {"rpm": {"Capacity": rpm, "RefillPeriod": "60"}}}},
            "Entities": {"user-1": {"Resources": {"gpt-4": {"Limits": {"tpm": {"Capacity": "5000"}}}}}}
        }
    });
    if let Some(p) = physical {
        e["PhysicalResourceId"] = json!(p);
    }
    e
}

async fn send(event: Value, env: &Env, task: tokio::task::JoinHandle<Received>) -> Received {
    let returned = handle_with(event, env).await.expect("answered");
    let got = task.await.unwrap();
    assert_eq!(got.body, returned, "the handler returns the body it sent");
    assert!(got
        .request_line
        .starts_with("PUT /cfn-response?X-Amz-Signature=abc "));
    // signed without a content type: none (or empty) is sent
    assert!(got.content_type.as_deref().unwrap_or("").is_empty());
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resource_create_update_delete() {
    let (table, env, l) = table().await;
    let physical = format!("{table}/default/limits");
    let gpt4 = ConfigScope::Resource {
        resource: "gpt-4".into(),
    };

    let (url, task) = response_url().await;
    let got = send(event("Create", &url, &table, None, "500"), &env, task).await;
    let b = &got.body;
    assert_eq!(b["Status"], "SUCCESS", "{b}");
    assert_eq!(b["PhysicalResourceId"], physical.as_str());
    assert_eq!(b["RequestId"], "req-Create");
    assert_eq!(b["LogicalResourceId"], "TenantLimits");
    assert_eq!(b["Data"]["Created"], 3);
    assert_eq!(
        l.available("anyone", "gpt-4", &[]).await.unwrap()["rpm"],
        500
    );
    let record = l.provisioner_state().await.unwrap().unwrap();
    assert_eq!(record.principal.as_deref(), Some("zae-limiter-provisioner"));

    let (url, task) = response_url().await;
    let got = send(
        event("Update", &url, &table, Some(&physical), "600"),
        &env,
        task,
    )
    .await;
    assert_eq!(got.body["Status"], "SUCCESS");
    assert_eq!(got.body["Data"]["Updated"], 1);
    assert_eq!(got.body["Data"]["Created"], 0);
    assert_eq!(
        l.get_config(&gpt4).await.unwrap().unwrap().limits[0].capacity(),
        600
    );

    // invalid properties: FAILED with the path, nothing written
    let (url, task) = response_url().await;
    let got = send(
        event("Update", &url, &table, Some(&physical), "0"),
        &env,
        task,
    )
    .await;
    assert_eq!(got.body["Status"], "FAILED");
    assert_eq!(
        got.body["Reason"],
        "invalid limits: resources.gpt-4.limits.rpm.capacity: must be > 0"
    );
    assert_eq!(got.body["PhysicalResourceId"], physical.as_str());
    assert_eq!(
        l.get_config(&gpt4).await.unwrap().unwrap().limits[0].capacity(),
        600
    );

    let (url, task) = response_url().await;
    let got = send(
        event("Delete", &url, &table, Some(&physical), "600"),
        &env,
        task,
    )
    .await;
    assert_eq!(got.body["Status"], "SUCCESS", "{}", got.body);
    assert_eq!(got.body["Data"]["Deleted"], 3);
    assert_eq!(l.get_config(&gpt4).await.unwrap(), None);
    assert_eq!(l.get_config(&ConfigScope::System).await.unwrap(), None);

    // the Delete of a resource whose Create failed touches nothing
    l.set_config(
        &gpt4,
        zae_limiter::StoredConfig::limits([zae_limiter::Limit::per_minute("rpm", 9)]),
    )
    .await
    .unwrap();
    let (url, task) = response_url().await;
    let got = send(
        event(
            "Delete",
            &url,
            &table,
            Some("zae-limiter-limits-failed"),
            "1",
        ),
        &env,
        task,
    )
    .await;
    assert_eq!(got.body["Status"], "SUCCESS");
    assert_eq!(
        l.get_config(&gpt4).await.unwrap().unwrap().limits[0].capacity(),
        9
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_plan_and_apply_events() {
    let (table, env, l) = table().await;
    let env = Env {
        table: Some(table),
        ..env
    };
    let manifest = "resources: {gpt-4: {limits: {rpm: {capacity: 42}}}}";
    let planned = handle_with(json!({"action": "plan", "manifest": manifest}), &env)
        .await
        .unwrap();
    assert_eq!(planned["status"], "planned");
    assert_eq!(planned["plan"]["summary"]["create"], 1);
    assert_eq!(l.get_config(&ConfigScope::System).await.unwrap(), None);
    let applied = handle_with(json!({"action": "apply", "manifest": manifest}), &env)
        .await
        .unwrap();
    assert_eq!(applied["status"], "applied");
    assert_eq!(applied["applied"]["created"], 1);
    assert_eq!(l.available("k", "gpt-4", &[]).await.unwrap()["rpm"], 42);
    // the manifest as an object, in another namespace
    let object = json!({"action": "apply", "namespace": "tenant-p",
        "manifest": {"resources": {"gpt-4": {"limits": {"rpm": 7}}}}});
    let applied = handle_with(object, &env).await.unwrap();
    assert_eq!(applied["applied"]["registered_namespace"], true);
    let tenant = l.namespace("tenant-p").await.unwrap();
    assert_eq!(tenant.available("k", "gpt-4", &[]).await.unwrap()["rpm"], 7);
    let err = handle_with(json!({"action": "destroy"}), &env)
        .await
        .unwrap_err();
    assert!(err.contains("not plan or apply"), "{err}");
    let err = handle_with(json!({"manifest": "resources: {r: {limits: {}}}"}), &env)
        .await
        .unwrap_err();
    assert_eq!(err, "manifest: resources.r.limits: give at least one limit");
}
