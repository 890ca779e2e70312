//! Failure modes on DynamoDB Local, through the fault-injecting proxy (`zae-limiter-proxy`,
//! re-exported as `common::proxy`):
//! outages (black hole, reset, 5xx) under both `on_unavailable` policies, latency, and
//! responses dropped after the write landed. Token counts are read through a second store
//! that bypasses the proxy, on a frozen clock, so every number is exact.
//! Run through `scripts/test.sh` (or `scripts/dynamodb-local.sh cargo nextest run ...`).
mod common;

use std::time::{Duration, Instant};

use common::proxy::{Fault, Faults, PartitionLimit, Proxy};
use zae_limiter::store::BucketKey;
use zae_limiter::{
    Clock, DynamoStore, Error, Lease, Limit, ManualClock, NewEntity, OnUnavailable, RateLimiter,
    RunError, Store, StoreConfig, SystemClock,
};

/// The limiter's deadline in the outage tests.
const TIMEOUT: Duration = Duration::from_millis(800);
/// Allowance on top of the deadline: a bound that proves the call returns, not a benchmark.
const SLACK: Duration = Duration::from_secs(3);
/// The deadline where a dropped response must leave the client time to retry (the SDK's
/// first retry waits up to 1 s).
const RETRY_TIMEOUT: Duration = Duration::from_secs(5);

const RES: &str = "gpt-4";

/// Every outage the proxy can stage.
const OUTAGES: [Fault; 4] = [
    Fault::BlackHole,
    Fault::Reset,
    Fault::Status(500),
    Fault::Status(503),
];

struct Bed {
    /// Held for its lifetime: dropping it ends every connection.
    _proxy: Proxy,
    faults: Faults,
    /// Straight to DynamoDB Local: the referee.
    direct: DynamoStore,
    /// The same table through the proxy.
    proxied: DynamoStore,
    /// Frozen: nothing refills while a test runs.
    clock: ManualClock,
}

/// A fresh table, a proxy in front of DynamoDB Local, and a store through it whose namespace
/// lookup is already done (so faults hit only the calls under test).
async fn bed() -> Bed {
    let direct = common::dynamo().await;
    let proxy = Proxy::start(&common::dynamodb_endpoint()).await;
    let proxied = DynamoStore::connect(
        StoreConfig::new(direct.table_name())
            .endpoint_url(proxy.url())
            .static_credentials("test", "test"),
    )
    .await
    .expect("connect through the proxy");
    proxied
        .get_bucket(&BucketKey::new("warm-up", RES))
        .await
        .expect("warm-up through the proxy");
    Bed {
        faults: proxy.faults(),
        _proxy: proxy,
        direct,
        proxied,
        clock: ManualClock::new(SystemClock.now_ms()),
    }
}

impl Bed {
    /// A limiter over the proxied store.
    fn limiter(&self, policy: OnUnavailable, timeout: Duration) -> RateLimiter {
        RateLimiter::builder(self.proxied.clone())
            .clock(self.clock.clone())
            .on_unavailable(policy)
            .timeout(timeout)
            .build()
    }

    /// Net millitokens consumed from `limit` of the bucket, read past the proxy.
    async fn consumed(&self, entity: &str, limit: &str) -> i128 {
        let state = self
            .direct
            .get_bucket(&BucketKey::new(entity, RES))
            .await
            .expect("read the bucket directly")
            .unwrap_or_else(|| panic!("no bucket for {entity}"));
        state.limits[limit].consumed
    }

    /// Whole tokens available now per limit, read past the proxy.
    async fn available(&self, entity: &str, limits: &[Limit], limit: &str) -> i64 {
        RateLimiter::builder(self.direct.clone())
            .clock(self.clock.clone())
            .build()
            .available(entity, RES, limits)
            .await
            .expect("available, directly")[limit]
    }
}

async fn acquire(l: &RateLimiter, entity: &str, limits: &[Limit], n: u64) -> Result<Lease, Error> {
    l.acquire(entity, RES)
        .limits(limits.to_vec())
        .consume([("rpm", n)])
        .await
}

fn rpm(capacity: u64) -> Vec<Limit> {
    vec![Limit::per_minute("rpm", capacity)]
}

/// Under `fault`, with the default `Block` policy, acquires on a warm entity (the write
/// fails) and on a cold one (the config read fails) are refused with `Unavailable` within
/// the deadline; once the fault ends both succeed and the counts are exact.
async fn block_under(fault: Fault) {
    let b = bed().await;
    let l = b.limiter(OnUnavailable::Block, TIMEOUT);
    let lim = rpm(100);
    acquire(&l, "warm", &lim, 1)
        .await
        .unwrap()
        .commit()
        .await
        .unwrap();

    b.faults.set(fault.clone());
    for entity in ["warm", "cold"] {
        let started = Instant::now();
        let r = acquire(&l, entity, &lim, 1).await;
        let elapsed = started.elapsed();
        assert!(
            matches!(r, Err(Error::Unavailable { .. })),
            "{fault:?} on {entity}: {r:?}"
        );
        assert!(
            elapsed < TIMEOUT + SLACK,
            "{fault:?} on {entity}: returned after {elapsed:?}"
        );
    }
    assert!(
        b.faults.seen("UpdateItem") >= 2,
        "{:?}",
        b.faults.seen_all()
    );
    assert!(
        b.faults.seen("BatchGetItem") >= 2,
        "{:?}",
        b.faults.seen_all()
    );

    b.faults.pass();
    for entity in ["warm", "cold"] {
        acquire(&l, entity, &lim, 1)
            .await
            .unwrap_or_else(|e| panic!("after {fault:?} on {entity}: {e}"))
            .commit()
            .await
            .unwrap();
    }
    assert_eq!(b.consumed("warm", "rpm").await, 2_000);
    assert_eq!(b.consumed("cold", "rpm").await, 1_000);
    assert_eq!(b.available("warm", &lim, "rpm").await, 98);
    assert_eq!(b.available("cold", &lim, "rpm").await, 99);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_under_black_hole() {
    block_under(Fault::BlackHole).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_under_reset() {
    block_under(Fault::Reset).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_under_http_500() {
    block_under(Fault::Status(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_under_http_503() {
    block_under(Fault::Status(503)).await;
}

/// `Allow` admits with a no-op lease during every outage and writes nothing; it never turns
/// a rate-limit rejection into an admission.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_admits_noop_leases_during_outages_but_never_past_a_rejection() {
    let b = bed().await;
    let l = b.limiter(OnUnavailable::Allow, TIMEOUT);
    let lim = rpm(2);
    acquire(&l, "k", &lim, 1)
        .await
        .unwrap()
        .commit()
        .await
        .unwrap();

    for fault in OUTAGES {
        b.faults.set(fault.clone());
        let started = Instant::now();
        let lease = acquire(&l, "k", &lim, 1)
            .await
            .unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        assert!(started.elapsed() < TIMEOUT + SLACK, "{fault:?}");
        assert!(lease.is_noop(), "{fault:?}: {lease:?}");
        lease.adjust("rpm", 5).unwrap();
        lease.commit().await.unwrap();
    }
    b.faults.pass();
    // the no-op leases wrote nothing: one token is left, and this takes it
    assert_eq!(b.consumed("k", "rpm").await, 1_000);
    acquire(&l, "k", &lim, 1)
        .await
        .unwrap()
        .commit()
        .await
        .unwrap();
    assert_eq!(b.consumed("k", "rpm").await, 2_000);

    // exhausted: a rejection, not an outage
    let r = acquire(&l, "k", &lim, 1).await;
    assert!(matches!(r, Err(Error::RateLimited(_))), "{r:?}");
    // an outage now: the last state seen proves the bucket empty, so the refusal stands
    // without a call (`StoreConfig::local_refusals`)
    b.faults.set(Fault::Status(503));
    let r = acquire(&l, "k", &lim, 1).await;
    assert!(matches!(r, Err(Error::RateLimited(_))), "{r:?}");
    // a client that knows nothing of the bucket fails open
    b.proxied.clear_state_cache();
    assert!(acquire(&l, "k", &lim, 1).await.unwrap().is_noop());
    // the outage ends: the bucket is still empty and the answer is a rejection again
    b.faults.pass();
    let r = acquire(&l, "k", &lim, 1).await;
    assert!(matches!(r, Err(Error::RateLimited(_))), "{r:?}");
    assert_eq!(b.consumed("k", "rpm").await, 2_000);
    assert_eq!(b.available("k", &lim, "rpm").await, 0);
}

/// Latency below the deadline slows the calls down but they succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_below_the_deadline_still_succeeds() {
    let b = bed().await;
    let l = b.limiter(OnUnavailable::Block, TIMEOUT);
    let lim = rpm(100);
    let delay = Duration::from_millis(200);
    b.faults.set(Fault::Latency(delay));
    for _ in 0..3 {
        let started = Instant::now();
        acquire(&l, "k", &lim, 1)
            .await
            .unwrap()
            .commit()
            .await
            .unwrap();
        assert!(started.elapsed() >= delay, "the latency was not applied");
    }
    b.faults.pass();
    assert_eq!(b.consumed("k", "rpm").await, 3_000);
    assert_eq!(b.available("k", &lim, "rpm").await, 97);
}

/// A write that landed but whose response was lost is counted once: afterwards the bucket
/// holds exactly what the acquires that returned `Ok` took. Covers the first write of a new
/// bucket (the `SET` form) and a write on a partial bucket (the `ADD` form).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_acquire_response_is_counted_once() {
    let b = bed().await;
    let l = b.limiter(OnUnavailable::Block, RETRY_TIMEOUT);
    let lim = rpm(100);
    let mut admitted = 0;
    let mut outcomes = Vec::new();
    for drop in [true, false, true, false] {
        if drop {
            b.faults
                .set_for("UpdateItem", Fault::DropResponse { count: 1 });
        }
        let r = acquire(&l, "k", &lim, 1).await;
        outcomes.push(format!("{:?}", r.as_ref().map(|_| "Ok")));
        if let Ok(lease) = r {
            admitted += 1;
            lease.commit().await.unwrap();
        }
    }
    assert_eq!(b.faults.dropped(), 2);
    let consumed = b.consumed("k", "rpm").await;
    assert_eq!(
        consumed,
        admitted * 1_000,
        "consumed {consumed} millitokens, admitted {admitted} tokens; acquires: {outcomes:?}; \
         requests: {:?}",
        b.faults.seen_all()
    );
    assert_eq!(b.available("k", &lim, "rpm").await, 100 - admitted as i64);
}

/// The same for a cascade, whose write is one `TransactWriteItems` over child and parent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_cascade_response_is_counted_once() {
    let b = bed().await;
    let l = b.limiter(OnUnavailable::Block, RETRY_TIMEOUT);
    l.create_entity(NewEntity::new("proj")).await.unwrap();
    l.create_entity(NewEntity::new("key").parent("proj").cascade(true))
        .await
        .unwrap();
    let lim = rpm(100);
    let mut admitted = 0;
    let mut outcomes = Vec::new();
    for drop in [true, false, true] {
        if drop {
            b.faults
                .set_for("TransactWriteItems", Fault::DropResponse { count: 1 });
        }
        let r = acquire(&l, "key", &lim, 1).await;
        outcomes.push(format!("{:?}", r.as_ref().map(|_| "Ok")));
        if let Ok(lease) = r {
            admitted += 1;
            lease.commit().await.unwrap();
        }
    }
    assert_eq!(b.faults.dropped(), 2);
    for entity in ["key", "proj"] {
        let consumed = b.consumed(entity, "rpm").await;
        assert_eq!(
            consumed,
            admitted * 1_000,
            "{entity}: consumed {consumed} millitokens, admitted {admitted} tokens; \
             acquires: {outcomes:?}; requests: {:?}",
            b.faults.seen_all()
        );
    }
}

/// A commit's adjustment whose response was lost is applied exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_commit_response_applies_the_adjustment_once() {
    let b = bed().await;
    let l = b.limiter(OnUnavailable::Block, RETRY_TIMEOUT);
    let lim = vec![
        Limit::per_minute("rpm", 100),
        Limit::per_minute("tpm", 10_000),
    ];
    let lease = l
        .acquire("k", RES)
        .limits(lim.clone())
        .consume([("rpm", 1), ("tpm", 500)])
        .await
        .unwrap();
    lease.adjust("tpm", 300).unwrap();
    // commit and rollback are exactly-once writes: idempotent one-item transactions
    b.faults
        .set_for("TransactWriteItems", Fault::DropResponse { count: 1 });
    let committed = lease.commit().await;
    assert_eq!(b.faults.dropped(), 1);
    let tpm = b.consumed("k", "tpm").await;
    assert_eq!(
        tpm,
        800_000,
        "adjustment of 300 tokens applied {} times (commit returned {committed:?}; requests: {:?})",
        (tpm - 500_000) as f64 / 300_000.0,
        b.faults.seen_all()
    );
    assert_eq!(b.consumed("k", "rpm").await, 1_000);
    assert_eq!(b.available("k", &lim, "tpm").await, 10_000 - 800);
}

/// A rollback whose response was lost gives back exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_rollback_response_gives_back_once() {
    let b = bed().await;
    let l = b.limiter(OnUnavailable::Block, RETRY_TIMEOUT);
    let lim = vec![
        Limit::per_minute("rpm", 100),
        Limit::per_minute("tpm", 10_000),
    ];
    let take = || {
        l.acquire("k", RES)
            .limits(lim.clone())
            .consume([("rpm", 1), ("tpm", 500)])
    };
    // one lease kept, so a second refund would show in the token count too
    take().await.unwrap().commit().await.unwrap();
    let lease = take().await.unwrap();
    b.faults
        .set_for("TransactWriteItems", Fault::DropResponse { count: 1 });
    let rolled_back = lease.rollback().await;
    assert_eq!(b.faults.dropped(), 1);
    let tpm = b.consumed("k", "tpm").await;
    assert_eq!(
        tpm,
        500_000,
        "refund of 500 tokens given {} times (rollback returned {rolled_back:?}; requests: {:?})",
        (1_000_000 - tpm) as f64 / 500_000.0,
        b.faults.seen_all()
    );
    assert_eq!(b.consumed("k", "rpm").await, 1_000);
    assert_eq!(b.available("k", &lim, "tpm").await, 10_000 - 500);
    assert_eq!(b.available("k", &lim, "rpm").await, 99);
}

/// Send one raw request of operation `op` on `conn`; read the answer as (status, headers
/// lowercased, body), or the I/O error / end of stream that ended the connection.
async fn raw_call(
    conn: &mut tokio::io::BufReader<tokio::net::TcpStream>,
    op: &str,
) -> std::io::Result<(u16, String, String)> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let req = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: DynamoDB_20120810.{op}\r\n\
         Content-Type: application/x-amz-json-1.0\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    conn.get_mut().write_all(req.as_bytes()).await?;
    let mut head = String::new();
    loop {
        let before = head.len();
        if conn.read_line(&mut head).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if head[before..].trim().is_empty() {
            break;
        }
    }
    let head = head.to_ascii_lowercase();
    let status = head[9..12].parse().expect("status code");
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse::<usize>().expect("length"))
        .expect("a Content-Length");
    let mut body = vec![0; length];
    conn.read_exact(&mut body).await?;
    Ok((status, head, String::from_utf8(body).expect("utf-8 body")))
}

/// The proxy itself, on the wire: injected answers, the operation filter, reset, black hole,
/// dropped response, counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_does_what_it_is_told() {
    use tokio::io::{AsyncReadExt, BufReader};
    use tokio::net::TcpStream;
    use tokio::time::timeout;
    let proxy = Proxy::start(&common::dynamodb_endpoint()).await;
    let faults = proxy.faults();
    let addr = proxy.url().strip_prefix("http://").unwrap().to_string();
    let connect = || async { BufReader::new(TcpStream::connect(&addr).await.unwrap()) };
    let bound = Duration::from_secs(5);

    // injected errors, then a forwarded call, on one keep-alive connection
    let mut c = connect().await;
    faults.set(Fault::Status(503));
    let (status, head, body) = timeout(bound, raw_call(&mut c, "ListTables"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 503);
    assert!(head.contains("x-amzn-requestid: injected-"), "{head}");
    assert!(
        head.contains("content-type: application/x-amz-json-1.0"),
        "{head}"
    );
    assert_eq!(
        body,
        r#"{"__type":"com.amazonaws.dynamodb.v20120810#ServiceUnavailable","message":"injected"}"#
    );
    faults.set(Fault::Status(500));
    let (status, _, body) = timeout(bound, raw_call(&mut c, "ListTables"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 500);
    assert!(body.contains("#InternalServerError"), "{body}");
    // a fault for another operation: this one reaches DynamoDB Local (which answers it,
    // unsigned as it is, with an error of its own)
    faults.set_for("UpdateItem", Fault::Status(500));
    let (_, _, body) = timeout(bound, raw_call(&mut c, "ListTables"))
        .await
        .unwrap()
        .unwrap();
    assert!(!body.contains("injected"), "{body}");

    // reset: the client reads ECONNRESET, no answer
    faults.set(Fault::Reset);
    let mut c = connect().await;
    let e = timeout(bound, raw_call(&mut c, "ListTables"))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");

    // black hole: nothing comes back until the fault changes, then the connection closes
    faults.set(Fault::BlackHole);
    let mut c = connect().await;
    let call = tokio::spawn(async move { raw_call(&mut c, "ListTables").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!call.is_finished(), "a black hole answered");
    faults.pass();
    let e = timeout(bound, call).await.unwrap().unwrap().unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");

    // dropped response: forwarded and answered upstream, then the connection closes
    faults.set(Fault::DropResponse { count: 1 });
    let mut c = connect().await;
    let e = timeout(bound, raw_call(&mut c, "ListTables"))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
    assert_eq!(faults.dropped(), 1);
    // after `count` drops it passes again
    let mut c = connect().await;
    timeout(bound, raw_call(&mut c, "ListTables"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(faults.dropped(), 1);
    assert_eq!(faults.seen("ListTables"), 7);
    assert_eq!(faults.seen_all().len(), 1);
    // dropping the proxy closes its connections
    drop(proxy);
    let mut rest = Vec::new();
    let n = timeout(bound, c.read_to_end(&mut rest)).await.unwrap();
    assert_eq!(n.unwrap(), 0);
}

/// `timeout` bounds the whole acquire, not each call: a cold acquire is two calls (config
/// resolution, then the write), each slower than half the deadline, so it must give up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_deadline_for_the_whole_acquire() {
    let b = bed().await;
    let l = b.limiter(OnUnavailable::Block, TIMEOUT);
    b.faults.set(Fault::Latency(TIMEOUT * 6 / 10));
    let started = Instant::now();
    let r = acquire(&l, "cold", &rpm(10), 1).await;
    assert!(matches!(r, Err(Error::Unavailable { .. })), "{r:?}");
    assert!(started.elapsed() < TIMEOUT + SLACK);
    b.faults.set(Fault::Pass);
    acquire(&l, "cold", &rpm(10), 1)
        .await
        .unwrap()
        .commit()
        .await
        .unwrap();
}

/// `run` never loses the work's value: when the commit fails, the value comes back with
/// the commit error; the capacity taken at acquire stays taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_returns_the_value_when_the_commit_fails() {
    let b = bed().await;
    let l = b.limiter(OnUnavailable::Block, TIMEOUT);
    let faults = b.faults.clone();
    let r = l
        .acquire("k", RES)
        .limits(rpm(10))
        .consume([("rpm", 1)])
        .run(async |lease| {
            lease.adjust("rpm", 2)?;
            // the store goes away while the work runs
            faults.set(Fault::BlackHole);
            Ok::<_, Error>("answer")
        })
        .await;
    b.faults.set(Fault::Pass);
    match r {
        Err(RunError::Commit { value, error }) => {
            assert_eq!(value, "answer");
            assert!(matches!(error, Error::Unavailable { .. }), "{error}");
        }
        other => panic!("expected the value with the commit error, got {other:?}"),
    }
    assert_eq!(b.consumed("k", "rpm").await, 1_000);
}

/// What `Allow` does with each kind of failure of the write: a real outage (throttling after
/// the SDK's retries) admits; contention, a validation error and an access error never do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_fails_open_only_for_real_outages() {
    let b = bed().await;
    let l = b.limiter(OnUnavailable::Allow, TIMEOUT);
    // warm the config cache so only the write meets the fault
    acquire(&l, "k", &rpm(10), 1)
        .await
        .unwrap()
        .commit()
        .await
        .unwrap();
    type Expect = fn(&Result<Lease, Error>) -> bool;
    let cases: [(&str, Expect); 4] = [
        ("ThrottlingException", |r| matches!(r, Ok(l) if l.is_noop())),
        ("TransactionConflictException", |r| {
            matches!(r, Err(Error::Contended { .. }))
        }),
        ("ValidationException", |r| {
            matches!(r, Err(Error::InvalidRequest { .. }))
        }),
        ("AccessDeniedException", |r| {
            matches!(r, Err(Error::AccessDenied { .. }))
        }),
    ];
    for (kind, expected) in cases {
        b.faults
            .set_for("UpdateItem", Fault::Error { status: 400, kind });
        let started = Instant::now();
        let r = acquire(&l, "k", &rpm(10), 1).await;
        assert!(expected(&r), "{kind}: {r:?}");
        assert!(
            started.elapsed() < TIMEOUT + SLACK,
            "{kind}: {:?}",
            started.elapsed()
        );
        if let Ok(lease) = r {
            lease.commit().await.unwrap();
        }
    }
    b.faults.set(Fault::Pass);
    // only the first acquire took a token: nothing was admitted blind but the throttled one
    // (a no-op lease), and nothing was written twice
    assert_eq!(b.consumed("k", "rpm").await, 1_000);
}

/// An acquire abandoned at its deadline while its write was in flight: the write landed
/// (nobody was admitted for it), the limiter finds its op id still on the item and gives
/// the tokens back, exactly once; `flush` waits for that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_acquire_that_landed_is_given_back() {
    let b = bed().await;
    let l = b.limiter(OnUnavailable::Block, TIMEOUT);
    acquire(&l, "k", &rpm(10), 1)
        .await
        .unwrap()
        .commit()
        .await
        .unwrap();
    b.faults.set_for("UpdateItem", Fault::HoldResponse);
    let r = acquire(&l, "k", &rpm(10), 3).await;
    assert!(matches!(r, Err(Error::Unavailable { .. })), "{r:?}");
    assert!(b.faults.dropped() >= 1, "the write reached DynamoDB");
    l.flush().await;
    b.faults.set(Fault::Pass);
    assert_eq!(
        b.consumed("k", "rpm").await,
        1_000,
        "only the first acquire stays taken"
    );
    assert_eq!(b.available("k", &rpm(10), "rpm").await, 9);
}

/// Limits resolved from stored config (none in code): a write that stalls past the deadline
/// still fails open under `Allow`, since the request was resolved and checked before it was
/// sent; a request that could not even be resolved is refused instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_admits_a_resolved_request_whose_write_stalls() {
    let b = bed().await;
    let l = b.limiter(OnUnavailable::Allow, TIMEOUT);
    let scope = zae_limiter::ConfigScope::Resource {
        resource: RES.into(),
    };
    l.set_config(&scope, zae_limiter::StoredConfig::limits(rpm(10)))
        .await
        .unwrap();
    let take = |e: &'static str| l.acquire(e, RES).consume([("rpm", 1)]);
    take("k").await.unwrap().commit().await.unwrap(); // resolution cached
    b.faults.set_for("UpdateItem", Fault::BlackHole);
    let lease = take("k").await.unwrap();
    assert!(lease.is_noop());
    // a new entity needs a resolution read first: under a full outage nothing is known
    b.faults.set(Fault::BlackHole);
    let r = take("fresh").await;
    assert!(matches!(r, Err(Error::Unavailable { .. })), "{r:?}");
    b.faults.set(Fault::Pass);
}

/// Each kind of DynamoDB failure is its own `Error` variant under `Block`, keeps the SDK's
/// error as its `source`, and is counted by outcome; retried conflicts are counted as
/// retries. The SDK does not retry here (`max_attempts(1)`), so each case is one request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failure_has_its_kind_its_cause_and_its_count() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use std::error::Error as _;
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // nextest runs each test in its own process: the global recorder is this test's
    recorder
        .install()
        .expect("the only recorder of this process");

    let b = bed().await;
    let proxy = Proxy::start(&common::dynamodb_endpoint()).await;
    let store = DynamoStore::connect(
        StoreConfig::new(b.direct.table_name())
            .endpoint_url(proxy.url())
            .static_credentials("test", "test")
            .max_attempts(1),
    )
    .await
    .expect("connect through the proxy");
    // no splitting on throttling: this test is about how each failure is reported
    let l = RateLimiter::builder(store)
        .clock(b.clock.clone())
        .on_unavailable(OnUnavailable::Block)
        .timeout(RETRY_TIMEOUT)
        .max_shards(1)
        .build();
    // warm the config cache so only the write meets the fault
    acquire(&l, "k", &rpm(10), 1)
        .await
        .unwrap()
        .commit()
        .await
        .unwrap();
    type Expect = fn(&Error) -> bool;
    let cases: [(Fault, &str, Expect); 7] = [
        (
            Fault::Error {
                status: 400,
                kind: "ThrottlingException",
            },
            "ThrottlingException",
            |e| matches!(e, Error::Throttled { .. }),
        ),
        (
            Fault::Error {
                status: 400,
                kind: "ProvisionedThroughputExceededException",
            },
            "ProvisionedThroughputExceededException",
            |e| matches!(e, Error::Throttled { .. }),
        ),
        (Fault::Status(503), "ServiceUnavailable", |e| {
            matches!(e, Error::Unavailable { .. })
        }),
        (
            Fault::Error {
                status: 400,
                kind: "AccessDeniedException",
            },
            "AccessDeniedException",
            |e| matches!(e, Error::AccessDenied { message, .. } if message.contains("IAM policy")),
        ),
        (
            Fault::Error {
                status: 400,
                kind: "ResourceNotFoundException",
            },
            "ResourceNotFoundException",
            |e| matches!(e, Error::TableNotFound { message, .. } if message.contains("table create")),
        ),
        (
            Fault::Error {
                status: 400,
                kind: "ValidationException",
            },
            "ValidationException",
            |e| matches!(e, Error::InvalidRequest { .. }),
        ),
        (
            Fault::Error {
                status: 400,
                kind: "TransactionConflictException",
            },
            "TransactionConflictException",
            |e| matches!(e, Error::Contended { .. }),
        ),
    ];
    for (fault, code, expected) in cases {
        proxy.faults().set_for("UpdateItem", fault);
        let e = acquire(&l, "k", &rpm(10), 1)
            .await
            .expect_err("the write fails");
        assert!(expected(&e), "{code}: {e:?}");
        // the SDK's error is the cause, with the service's error code
        let cause = e
            .source()
            .unwrap_or_else(|| panic!("{code}: no source: {e:?}"));
        assert!(format!("{cause:?}").contains(code), "{code}: {cause:?}");
        assert!(e.to_string().contains(code), "{code}: {e}");
    }
    proxy.faults().set(Fault::Pass);
    // only the first acquire took a token
    assert_eq!(b.consumed("k", "rpm").await, 1_000);

    let mut decisions = std::collections::BTreeMap::new();
    let mut conflict_retries = 0;
    for (ck, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = ck.key();
        let label = key.labels().next().map(|l| l.value().to_string());
        match (key.name(), value) {
            ("zae_limiter_decisions_total", DebugValue::Counter(n)) => {
                decisions.insert(label.unwrap_or_default(), n);
            }
            ("zae_limiter_store_retries_total", DebugValue::Counter(n))
                if label.as_deref() == Some("conflict") =>
            {
                conflict_retries = n
            }
            _ => {}
        }
    }
    let count = |o: &str| decisions.get(o).copied().unwrap_or(0);
    assert_eq!(count("admitted"), 1, "{decisions:?}");
    // two throttled, one 503
    assert_eq!(count("unavailable"), 3, "{decisions:?}");
    assert_eq!(count("contended"), 1, "{decisions:?}");
    // access denied, missing table, validation
    assert_eq!(count("error"), 3, "{decisions:?}");
    assert!(
        conflict_retries >= 1,
        "the conflict was retried: {conflict_retries}"
    );
}

/// DynamoDB's per-partition write limit, emulated by the proxy at 1 write/s: past a bucket's
/// burst, the single-item write (`UpdateItem` answered `ThrottlingException`) and a cascade
/// whose parent is hot (`TransactWriteItems` cancelled with `ThrottlingError` for the parent,
/// `None` for the child) both surface as `Error::Throttled`, take nothing, and leave nothing
/// to give back. One attempt per call (`max_attempts(1)`), so every count is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_partition_surfaces_as_throttled() {
    use std::error::Error as _;
    let b = bed().await;
    let proxy = Proxy::start(&common::dynamodb_endpoint()).await;
    let faults = proxy.faults();
    let store = DynamoStore::connect(
        StoreConfig::new(b.direct.table_name())
            .endpoint_url(proxy.url())
            .static_credentials("test", "test")
            .max_attempts(1),
    )
    .await
    .expect("connect through the proxy");
    // no splitting (tests/sharding.rs has it): every write below is counted
    let l = RateLimiter::builder(store)
        .clock(b.clock.clone())
        .on_unavailable(OnUnavailable::Block)
        .timeout(RETRY_TIMEOUT)
        .max_shards(1)
        .build();
    l.create_entity(NewEntity::new("proj")).await.unwrap();
    l.create_entity(NewEntity::new("key").parent("proj").cascade(true))
        .await
        .unwrap();
    let lim = rpm(100);
    let counts = |entity: &str| {
        let bucket = format!("/BUCKET#{entity}#{RES}#");
        faults
            .partition_counts()
            .into_iter()
            .find(|(pk, _)| pk.contains(&bucket))
            .map(|(_, c)| (c.admitted, c.throttled, c.cancelled))
            .unwrap_or_default()
    };
    let expect_throttled = |e: &Error, code: &str| {
        assert!(matches!(e, Error::Throttled { .. }), "{code}: {e:?}");
        assert!(e.to_string().contains(code), "{code}: {e}");
        let cause = e.source().unwrap_or_else(|| panic!("no source: {e:?}"));
        assert!(format!("{cause:?}").contains(code), "{code}: {cause:?}");
    };

    let started = Instant::now();
    faults.set_partition_limit(Some(PartitionLimit::writes_per_sec(1)));
    let (updates, transactions) = (faults.seen("UpdateItem"), faults.seen("TransactWriteItems"));
    // one bucket: the burst (1) passes, the next write is throttled (nothing refills a whole
    // write in the few milliseconds between two calls; the loop only tolerates a slow box)
    let mut admitted = 0;
    let e = loop {
        match acquire(&l, "solo", &lim, 1).await {
            Ok(lease) => {
                lease.commit().await.unwrap();
                admitted += 1;
                assert!(
                    admitted < 5,
                    "never throttled: {:?}",
                    faults.partition_counts()
                );
            }
            Err(e) => break e,
        }
    };
    expect_throttled(&e, "ThrottlingException");
    assert_eq!(counts("solo"), (admitted, 1, 0));
    assert_eq!(
        b.consumed("solo", "rpm").await,
        1_000 * i128::from(admitted)
    );

    // a cascade whose parent's partition is spent: the transaction is cancelled whole
    acquire(&l, "proj", &lim, 1)
        .await
        .unwrap()
        .commit()
        .await
        .unwrap();
    let e = acquire(&l, "key", &lim, 1)
        .await
        .expect_err("the parent is throttled");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the buckets may have refilled: the counts below would not hold"
    );
    expect_throttled(&e, "ThrottlingError");
    assert_eq!(counts("proj"), (1, 1, 0));
    assert_eq!(counts("key"), (0, 0, 1));
    assert_eq!(b.consumed("proj", "rpm").await, 1_000);
    assert!(
        b.direct
            .get_bucket(&BucketKey::new("key", RES))
            .await
            .unwrap()
            .is_none_or(|s| s.limits.values().all(|l| l.consumed == 0)),
        "the child took nothing"
    );
    // nothing to give back: no write is left in the background
    l.flush().await;
    // solo: the admitted and the throttled one; proj: one; the cascade: one transaction
    assert_eq!(faults.seen("UpdateItem") - updates, admitted + 1 + 1);
    assert_eq!(faults.seen("TransactWriteItems") - transactions, 1);
}

/// The management writes are transactions with their audit item (entity, config) or the
/// registry records (namespace). A partition at its write limit cancels them with a
/// `ThrottlingError` reason: `Error::Throttled` (not `Other`, not a conflict), after the
/// store's own retries (the SDK's 3 attempts per write; it does not retry a cancelled
/// transaction itself), and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_admin_writes_and_registrations_surface_as_throttled() {
    use std::error::Error as _;
    use zae_limiter::{ConfigScope, StoredConfig};
    let b = bed().await;
    let l = b.limiter(OnUnavailable::Block, RETRY_TIMEOUT);
    let expect_throttled = |what: &str, e: Error| {
        assert!(matches!(e, Error::Throttled { .. }), "{what}: {e:?}");
        assert!(e.to_string().contains("ThrottlingError"), "{what}: {e}");
        let cause = e
            .source()
            .unwrap_or_else(|| panic!("{what}: no source: {e:?}"));
        assert!(
            format!("{cause:?}").contains("TransactionCanceledException"),
            "{what}: {cause:?}"
        );
    };
    // by partition-key value: `{ns}/ENTITY#hot`, or the registry's `_/SYSTEM#` exactly
    let throttled = |pk: &str| {
        b.faults
            .partition_counts()
            .into_iter()
            .filter(|(p, _)| p == pk || (pk.starts_with('/') && p.ends_with(pk)))
            .map(|(_, c)| c.throttled)
            .sum::<u64>()
    };
    let transactions = || b.faults.seen("TransactWriteItems");
    let scope = |resource: &str| ConfigScope::Entity {
        entity_id: "hot".into(),
        resource: resource.into(),
    };
    let started = Instant::now();

    // one write per second per partition: this config write spends `ENTITY#hot` (the
    // config lives under the entity's key) and `AUDIT#hot`
    b.faults
        .set_partition_limit(Some(PartitionLimit::writes_per_sec(1)));
    l.set_config(&scope(RES), StoredConfig::limits(rpm(10)))
        .await
        .unwrap();

    // the entity's own item and its audit record: both partitions are spent
    let before = transactions();
    let e = l.create_entity(NewEntity::new("hot")).await.unwrap_err();
    expect_throttled("create_entity", e);
    assert_eq!(
        transactions() - before,
        3,
        "the store retries a throttled transaction"
    );
    assert_eq!(throttled("/ENTITY#hot"), 3);
    assert!(b.direct.get_entity("hot").await.unwrap().is_none());

    // a config write: the same partitions
    let before = transactions();
    let e = l
        .set_config(&scope("other"), StoredConfig::limits(rpm(20)))
        .await
        .unwrap_err();
    expect_throttled("set_config", e);
    assert_eq!(transactions() - before, 3);
    assert!(b
        .direct
        .get_config(&scope("other"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(throttled("/ENTITY#hot"), 6);

    // a registration writes two records under the registry's key `_/SYSTEM#` (and a
    // status marker under the new namespace's id): two writes where one is allowed per
    // second. Cancelled with `[ThrottlingError, ThrottlingError, None]`, not "taken"
    let before = transactions();
    let e = l.register_namespace("hot-ns").await.unwrap_err();
    expect_throttled("register_namespace", e);
    assert_eq!(transactions() - before, 3);
    assert_eq!(throttled("_/SYSTEM#"), 6);
    assert!(b
        .direct
        .namespaces()
        .await
        .unwrap()
        .iter()
        .all(|n| n.name != "hot-ns"));
    // all of the above within the second nothing refills in (a slow box only)
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the partitions may have refilled: the counts above would not hold"
    );

    // once the partitions may take the writes again, the very same calls pass
    b.faults.set_partition_limit(None);
    l.create_entity(NewEntity::new("hot")).await.unwrap();
    l.set_config(&scope("other"), StoredConfig::limits(rpm(20)))
        .await
        .unwrap();
    l.register_namespace("hot-ns").await.unwrap();
    assert!(b.direct.get_entity("hot").await.unwrap().is_some());
}
