//! The emulated per-partition write limit on the wire, in front of a fake upstream (a
//! loopback listener that answers every request `200 {}` and counts what reaches it): no
//! DynamoDB needed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use zae_limiter_proxy::{Fault, PartitionCount, PartitionLimit, Proxy, THROTTLING_MESSAGE};

/// Bound on any one exchange: proves the call returns, not a benchmark.
const BOUND: Duration = Duration::from_secs(10);

/// Operations (`X-Amz-Target` suffix) that reached the fake upstream, in order.
type Upstream = Arc<Mutex<Vec<String>>>;

/// Read one request or response: head (header names lower-cased), body. `None` at a clean
/// end of stream.
async fn read_one(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        if line == "\r\n" {
            break;
        }
        match line.split_once(':') {
            Some((name, value)) => {
                head.push_str(&name.to_ascii_lowercase());
                head.push(':');
                head.push_str(value);
            }
            None => head.push_str(&line),
        }
    }
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse::<usize>().expect("a length"))
        .unwrap_or(0);
    let mut body = vec![0; length];
    r.read_exact(&mut body).await?;
    Ok(Some((head, body)))
}

/// A fake DynamoDB on `127.0.0.1:0`: answers `200 {}` and records each operation.
async fn fake_upstream() -> (String, Upstream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Upstream::default();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let record = record.clone();
            tokio::spawn(async move {
                let mut r = BufReader::new(stream);
                while let Ok(Some((head, _))) = read_one(&mut r).await {
                    let op = head
                        .lines()
                        .find_map(|l| l.strip_prefix("x-amz-target:"))
                        .and_then(|t| t.trim().rsplit('.').next().map(str::to_owned))
                        .unwrap_or_default();
                    record.lock().push(op);
                    let answer = "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\n\
                                  Content-Length: 2\r\n\r\n{}";
                    if r.get_mut().write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

/// A client on one keep-alive connection to the proxy.
struct Client(BufReader<TcpStream>);

impl Client {
    async fn connect(proxy: &Proxy) -> Client {
        let addr = proxy.url().strip_prefix("http://").unwrap();
        Client(BufReader::new(TcpStream::connect(addr).await.unwrap()))
    }

    /// Send `op` with `body`; the status and the JSON answer.
    async fn call(&mut self, op: &str, body: &Value) -> (u16, Value) {
        let body = body.to_string();
        let req = format!(
            "POST / HTTP/1.1\r\nHost: dynamodb\r\nX-Amz-Target: DynamoDB_20120810.{op}\r\n\
             Content-Type: application/x-amz-json-1.0\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let exchange = async {
            self.0.get_mut().write_all(req.as_bytes()).await?;
            read_one(&mut self.0).await
        };
        let (head, body) = timeout(BOUND, exchange)
            .await
            .expect("answered in time")
            .expect("no I/O error")
            .expect("an answer");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status");
        (status, serde_json::from_slice(&body).expect("a JSON body"))
    }
}

fn key(pk: &str) -> Value {
    json!({"PK": {"S": pk}, "SK": {"S": "#STATE"}})
}

fn update(pk: &str) -> Value {
    json!({"TableName": "t", "Key": key(pk), "UpdateExpression": "SET a = :a"})
}

fn count(admitted: u64, throttled: u64, cancelled: u64) -> PartitionCount {
    PartitionCount {
        admitted,
        throttled,
        cancelled,
    }
}

fn forwarded(upstream: &Upstream, op: &str) -> usize {
    upstream.lock().iter().filter(|o| *o == op).count()
}

/// 20 writes/s: of 60 `UpdateItem`s to one key sent back to back, the burst of 20 passes plus
/// what refilled meanwhile (20/s of the time measured around them); the others get
/// DynamoDB's `ThrottlingException` and never reach upstream. Another key is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_key_is_throttled_at_its_rate_and_no_other() {
    let (url, upstream) = fake_upstream().await;
    let proxy = Proxy::start(&url).await;
    let faults = proxy.faults();
    let mut c = Client::connect(&proxy).await;

    let started = Instant::now();
    faults.set_partition_limit(Some(PartitionLimit::writes_per_sec(20)));
    let (mut ok, mut throttled) = (0u64, 0u64);
    for _ in 0..60 {
        let (status, body) = c.call("UpdateItem", &update("hot")).await;
        match status {
            200 => {
                assert_eq!(body, json!({}));
                ok += 1;
            }
            400 => {
                assert_eq!(
                    body["__type"],
                    "com.amazonaws.dynamodb.v20120810#ThrottlingException"
                );
                assert_eq!(body["message"], THROTTLING_MESSAGE);
                assert_eq!(
                    body["ThrottlingReasons"][0]["reason"],
                    "TableWriteKeyRangeThroughputExceeded"
                );
                throttled += 1;
            }
            s => panic!("status {s}: {body}"),
        }
    }
    let elapsed = started.elapsed();
    // the bucket was full (20) when the limit was set and refills 20/s: at most
    // 20 + floor(20 * elapsed) writes can have passed; at least the burst did
    let refill = (20.0 * elapsed.as_secs_f64()).floor() as u64;
    assert!(
        (20..=20 + refill).contains(&ok),
        "{ok} forwarded in {elapsed:?}"
    );
    // 60 loopback round trips take milliseconds; past a second the bound above (40) would
    // no longer show that most of them were refused
    assert!(
        elapsed < Duration::from_secs(1),
        "60 local round trips took {elapsed:?}"
    );
    assert_eq!(ok + throttled, 60);
    assert_eq!(forwarded(&upstream, "UpdateItem") as u64, ok);

    // another partition has its own full burst
    for _ in 0..20 {
        let (status, body) = c
            .call("PutItem", &json!({"TableName": "t", "Item": key("cool")}))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(forwarded(&upstream, "PutItem"), 20);

    assert_eq!(
        faults.partition_counts(),
        BTreeMap::from([
            ("hot".to_string(), count(ok, throttled, 0)),
            ("cool".to_string(), count(20, 0, 0)),
        ])
    );
    assert_eq!(faults.seen("UpdateItem"), 60);
}

/// At 1 write/s (nothing refills between two local round trips): a transaction over a
/// throttled key and a free one is cancelled whole, with DynamoDB's cancellation reasons, and
/// charges nothing; a batch is refused with `ThrottlingException`; reads always pass; no limit
/// means no refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_batches_and_reads_under_the_limit() {
    let (url, upstream) = fake_upstream().await;
    let proxy = Proxy::start(&url).await;
    let faults = proxy.faults();
    let mut c = Client::connect(&proxy).await;
    let started = Instant::now();
    faults.set_partition_limit(Some(PartitionLimit::writes_per_sec(1)));
    assert_eq!(
        faults.partition_limit(),
        Some(PartitionLimit::writes_per_sec(1))
    );

    // "a" spends its one write
    assert_eq!(c.call("UpdateItem", &update("a")).await.0, 200);
    let tx = json!({"TransactItems": [
        {"Put": {"TableName": "t", "Item": key("b")}},
        {"Update": {"TableName": "t", "Key": key("a"), "UpdateExpression": "SET a = :a"}},
        {"ConditionCheck": {"TableName": "t", "Key": key("c"), "ConditionExpression": "x"}},
    ]});
    let (status, body) = c.call("TransactWriteItems", &tx).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["__type"],
        "com.amazonaws.dynamodb.v20120810#TransactionCanceledException"
    );
    assert_eq!(
        body["CancellationReasons"],
        json!([
            {"Code": "None"},
            {"Code": "ThrottlingError", "Message": THROTTLING_MESSAGE},
            {"Code": "None"},
        ])
    );
    assert_eq!(
        body["Message"],
        "Transaction cancelled, please refer cancellation reasons for specific reasons \
         [None, ThrottlingError, None]"
    );
    assert_eq!(forwarded(&upstream, "TransactWriteItems"), 0);
    // the cancelled items were not charged: b and c still have their write
    let tx = json!({"TransactItems": [
        {"Put": {"TableName": "t", "Item": key("b")}},
        {"Delete": {"TableName": "t", "Key": key("c")}},
    ]});
    assert_eq!(c.call("TransactWriteItems", &tx).await.0, 200);
    assert_eq!(forwarded(&upstream, "TransactWriteItems"), 1);

    // a batch with one throttled item is refused whole
    let batch = json!({"RequestItems": {"t": [
        {"PutRequest": {"Item": key("d")}},
        {"DeleteRequest": {"Key": key("a")}},
    ]}});
    let (status, body) = c.call("BatchWriteItem", &batch).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["__type"],
        "com.amazonaws.dynamodb.v20120810#ThrottlingException"
    );
    assert_eq!(forwarded(&upstream, "BatchWriteItem"), 0);

    // reads pass, however many, on the hottest key
    for op in ["GetItem", "Query", "BatchGetItem", "TransactGetItems"] {
        for _ in 0..3 {
            let (status, body) = c
                .call(op, &json!({"TableName": "t", "Key": key("a")}))
                .await;
            assert_eq!(status, 200, "{op}: {body}");
        }
        assert_eq!(forwarded(&upstream, op), 3, "{op}");
    }
    // a write without a string PK is not charged
    let no_pk = json!({"TableName": "t", "Key": {"id": {"S": "a"}}});
    assert_eq!(c.call("DeleteItem", &no_pk).await.0, 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a second passed: \"a\" may have refilled, the counts below would not hold"
    );
    assert_eq!(
        faults.partition_counts(),
        BTreeMap::from([
            ("a".to_string(), count(1, 2, 0)),
            ("b".to_string(), count(1, 0, 1)),
            ("c".to_string(), count(1, 0, 1)),
            ("d".to_string(), count(0, 0, 1)),
        ])
    );

    // faults still apply first: an injected error is not charged
    faults.set_for("UpdateItem", Fault::Status(503));
    assert_eq!(c.call("UpdateItem", &update("e")).await.0, 503);
    faults.pass();
    assert!(!faults.partition_counts().contains_key("e"));
    // without a limit nothing is refused (nor counted)
    faults.set_partition_limit(None);
    for _ in 0..3 {
        assert_eq!(c.call("UpdateItem", &update("a")).await.0, 200);
    }
    assert_eq!(faults.partition_counts()["a"], count(1, 2, 0));
}

/// A throttled write whose answer is to be dropped never lands either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_answer_of_a_throttled_write_lands_nothing() {
    let (url, upstream) = fake_upstream().await;
    let proxy = Proxy::start(&url).await;
    let faults = proxy.faults();
    faults.set_partition_limit(Some(PartitionLimit::writes_per_sec(1)));
    let mut c = Client::connect(&proxy).await;
    assert_eq!(c.call("UpdateItem", &update("a")).await.0, 200);
    faults.set(Fault::DropResponse { count: 1 });
    let mut c = Client::connect(&proxy).await;
    let body = update("a").to_string();
    let req = format!(
        "POST / HTTP/1.1\r\nX-Amz-Target: DynamoDB_20120810.UpdateItem\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    c.0.get_mut().write_all(req.as_bytes()).await.unwrap();
    let mut rest = Vec::new();
    let n = timeout(BOUND, c.0.read_to_end(&mut rest)).await.unwrap();
    assert_eq!(n.unwrap(), 0, "closed without an answer");
    assert_eq!(faults.dropped(), 1);
    assert_eq!(forwarded(&upstream, "UpdateItem"), 1);
    assert_eq!(faults.partition_counts()["a"], count(1, 1, 0));
}

/// A bad upstream is an error of `try_start`, not a panic.
#[tokio::test]
async fn try_start_refuses_what_it_cannot_proxy() {
    for url in [
        "https://127.0.0.1:1",
        "http://localhost:8000",
        "http://10.0.0.1:8000",
    ] {
        let e = Proxy::try_start(url).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{url}: {e}");
    }
}
