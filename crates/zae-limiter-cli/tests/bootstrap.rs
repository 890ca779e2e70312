//! The binary as a Lambda `bootstrap`: it is started with `AWS_LAMBDA_RUNTIME_API` pointing
//! at a small stand-in for the Lambda Runtime API written here (127.0.0.1, HTTP/1.1 with
//! keep-alive: `/2018-06-01/runtime/invocation/next`, `…/{id}/response`, `…/{id}/error`),
//! gets a DynamoDB stream event and a CloudFormation custom-resource event, and its answers
//! are checked. Runs the debug binary (the same code as the packaged release `bootstrap`),
//! or the binary named by `ZAEL_TEST_BOOTSTRAP` (e.g. `target/lambda/bootstrap`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct Api {
    /// Invocations still to hand out: (request id, event).
    pending: VecDeque<(String, Value)>,
    /// What the function posted: (path, body).
    posted: Vec<(String, Value)>,
}

type Shared = Arc<Mutex<Api>>;

async fn respond(
    s: &mut TcpStream,
    status: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\ncontent-type: application/json\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await?;
    s.write_all(body).await?;
    s.flush().await
}

/// One connection: requests one after the other (keep-alive), at most 100.
async fn serve(stream: TcpStream, api: Shared) -> std::io::Result<()> {
    let mut r = BufReader::new(stream);
    for _ in 0..100 {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            r.read_line(&mut h).await?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; len.min(10 << 20)];
        r.read_exact(&mut body).await?;
        let s = r.get_mut();
        if method == "GET" && path == "/2018-06-01/runtime/invocation/next" {
            let next = api.lock().unwrap().pending.pop_front();
            match next {
                Some((id, event)) => {
                    let deadline = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_millis()
                        + 30_000;
                    respond(
                        s,
                        "200 OK",
                        &[
                            ("lambda-runtime-aws-request-id", id),
                            ("lambda-runtime-deadline-ms", deadline.to_string()),
                            (
                                "lambda-runtime-invoked-function-arn",
                                "arn:aws:lambda:us-east-1:123456789012:function:t-aggregator"
                                    .into(),
                            ),
                            (
                                "lambda-runtime-trace-id",
                                "Root=1-00000000-000000000000000000000000".into(),
                            ),
                        ],
                        event.to_string().as_bytes(),
                    )
                    .await?;
                }
                // no more work: hold the request (as Lambda does until the next event);
                // the test stops the process
                None => tokio::time::sleep(Duration::from_secs(120)).await,
            }
        } else if method == "POST" {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            api.lock().unwrap().posted.push((path, v));
            respond(s, "202 Accepted", &[], b"{}").await?;
        } else {
            respond(s, "404 Not Found", &[], b"{}").await?;
        }
    }
    Ok(())
}

/// Run the binary with `handler` on `events`; the posts it made, once there is one per
/// event (at most 60 s).
async fn invoke(handler: &str, events: Vec<Value>) -> Vec<(String, Value)> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let api: Shared = Arc::default();
    let n = events.len();
    api.lock().unwrap().pending = events
        .into_iter()
        .enumerate()
        .map(|(i, e)| (format!("req-{i}"), e))
        .collect();
    let a = api.clone();
    let server = tokio::spawn(async move {
        for _ in 0..20 {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(serve(s, a.clone()));
        }
    });
    // ZAEL_TEST_BOOTSTRAP: run a packaged bootstrap instead (target/lambda/bootstrap)
    let bin = std::env::var_os("ZAEL_TEST_BOOTSTRAP")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_zae-limiter").into());
    let mut child = tokio::process::Command::new(bin)
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "t-aggregator")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/t-aggregator")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "s")
        .env("ZAEL_HANDLER", handler)
        .env("ZAEL_TABLE_NAME", "t")
        // nothing listens there: the aggregator's writes fail fast (and are reported)
        .env("ZAEL_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut posted = Vec::new();
    for _ in 0..600 {
        posted = api.lock().unwrap().posted.clone();
        if posted.len() >= n {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("bootstrap exited early: {status}; posts so far {posted:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().await.unwrap();
    server.abort();
    assert_eq!(posted.len(), n, "answers: {posted:?}");
    posted
}

fn record(seq: &str, name: &str, sk: &str) -> Value {
    json!({
        "eventID": format!("id-{seq}"), "eventName": name, "eventVersion": "1.1",
        "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": 1.7e9,
            "Keys": {"PK": {"S": "abc/BUCKET#key-1#gpt-4#0"}, "SK": {"S": sk}},
            "NewImage": {"PK": {"S": "abc/BUCKET#key-1#gpt-4#0"}, "SK": {"S": sk}, "tc_rpm": {"N": "3"}},
            "SequenceNumber": seq, "SizeBytes": 64, "StreamViewType": "NEW_AND_OLD_IMAGES"
        },
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-01-01T00:00:00.000"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregator_answers_stream_batches_with_partial_failures() {
    let mut bad = record("101", "MODIFY", "#STATE");
    bad["dynamodb"]["Keys"] = json!("not a map");
    let events = vec![
        json!({"Records": [record("100", "MODIFY", "#STATE"), record("99", "REMOVE", "#AUDIT#01J")]}),
        json!({"Records": [record("102", "INSERT", "#STATE"), bad]}),
        json!({"not": "a stream event"}),
    ];
    let posted = invoke("aggregator", events).await;
    assert_eq!(posted[0].0, "/2018-06-01/runtime/invocation/req-0/response");
    // no table reachable: the bucket change's snapshot writes fail and its record is
    // reported; the user's delete of an audit item (no TTL identity) is skipped
    assert_eq!(
        posted[0].1,
        json!({"batchItemFailures": [{"itemIdentifier": "100"}]})
    );
    assert_eq!(posted[1].0, "/2018-06-01/runtime/invocation/req-1/response");
    assert_eq!(
        posted[1].1,
        json!({"batchItemFailures": [{"itemIdentifier": "101"}, {"itemIdentifier": "102"}]})
    );
    // not a stream event: an invocation error (Lambda retries and bisects)
    assert_eq!(posted[2].0, "/2018-06-01/runtime/invocation/req-2/error");
    assert!(
        posted[2].1.to_string().contains("Records"),
        "{:?}",
        posted[2]
    );
}

/// A stand-in for CloudFormation's pre-signed ResponseURL: accepts one PUT on 127.0.0.1,
/// answers 200, hands over the JSON body.
async fn response_url() -> (String, tokio::task::JoinHandle<Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/cfn?X-Amz-Signature=s",
        listener.local_addr().unwrap()
    );
    let task = tokio::spawn(async move {
        let (s, _) = tokio::time::timeout(Duration::from_secs(60), listener.accept())
            .await
            .expect("the provisioner answers CloudFormation")
            .unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).await.unwrap();
        assert!(line.starts_with("PUT /cfn?X-Amz-Signature=s "), "{line}");
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            r.read_line(&mut h).await.unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0u8; len];
        r.read_exact(&mut body).await.unwrap();
        respond(r.get_mut(), "200 OK", &[], b"").await.unwrap();
        serde_json::from_slice(&body).unwrap()
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provisioner_answers_a_custom_resource_event() {
    // invalid limits (validated before any DynamoDB call): FAILED with the path, sent to
    // the ResponseURL, and the same body as the invocation's answer
    let (url, put) = response_url().await;
    let event = json!({
        "RequestType": "Create",
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:t-limits-provisioner",
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/limits/1",
        "RequestId": "r-1", "LogicalResourceId": "TenantLimits",
        "ResourceType": "Custom::ZaeLimiterLimits",
        "ResourceProperties": {"ServiceToken": "x", "TableName": "t", "Namespace": "default",
            "Resources": {"gpt-4": {"Limits": {"rpm": {"Capacity": "0"}}}}}
    });
    let posted = invoke("provisioner", vec![event]).await;
    let sent = put.await.unwrap();
    assert_eq!(sent["Status"], "FAILED");
    assert_eq!(
        sent["Reason"],
        "invalid limits: resources.gpt-4.limits.rpm.capacity: must be > 0"
    );
    assert_eq!(sent["RequestId"], "r-1");
    assert_eq!(sent["LogicalResourceId"], "TenantLimits");
    assert_eq!(posted[0].0, "/2018-06-01/runtime/invocation/req-0/response");
    assert_eq!(posted[0].1, sent);
    let posted = invoke("nonsense", vec![json!({})]).await;
    assert!(
        posted[0].1.to_string().contains("ZAEL_HANDLER"),
        "{:?}",
        posted[0]
    );
}
