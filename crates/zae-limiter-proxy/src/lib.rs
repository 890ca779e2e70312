//! A fault-injecting HTTP/1.1 proxy between a DynamoDB client and DynamoDB Local, for the
//! failure-mode tests of `zae-limiter` (`crates/zae-limiter/tests/faults.rs`) and for
//! benchmarks (DESIGN §7).
//!
//! [`Proxy::start`] listens on `127.0.0.1:0` and forwards to the upstream URL (only loopback
//! is accepted). It understands just enough HTTP/1.1 to act per request: a message is a head
//! (start line and headers up to the empty line) followed by exactly `Content-Length` bytes
//! of body. The AWS SDK sends `Content-Length` and DynamoDB Local answers with it; a chunked
//! message is refused (the connection is closed and the problem printed on stderr).
//!
//! The [`Faults`] handle (cheap to clone) sets the current [`Fault`], which applies to the
//! requests that *arrive* while it is set, optionally only to one operation (the suffix of the
//! `X-Amz-Target` header, e.g. `UpdateItem`); every other request passes. Each request is
//! forwarded on a fresh upstream connection, so no stale keep-alive state can blur a test.
//! Dropping the [`Proxy`] aborts the listener and every connection task.
//!
//! # DynamoDB's per-partition write limit
//!
//! DynamoDB Local never throttles; real DynamoDB throttles the writes to one partition above
//! about 1,000 per second. [`Faults::set_partition_limit`] emulates that: every write request
//! (`UpdateItem`, `PutItem`, `DeleteItem`, `TransactWriteItems`, `BatchWriteItem`) is charged
//! one write per item to a token bucket per partition-key value (attribute `PK`, type `S`; see
//! [`PartitionLimit`]). A request that would take a partition over its limit is not forwarded
//! and gets DynamoDB's answer: HTTP 400 `ThrottlingException` ([`THROTTLING_MESSAGE`]) for a
//! single-item write or a batch, HTTP 400 `TransactionCanceledException` with a cancellation
//! reason per item (`ThrottlingError` for the throttled ones, `None` for the others) for a
//! transaction. The AWS SDK retries a `ThrottlingException` (each retry is charged again) and
//! not a cancelled transaction. Reads are never limited. The limit is checked when a request
//! would be forwarded, after any [`Fault::Latency`]; a request the current fault answers or
//! swallows without forwarding is not charged.
//!
//! ```no_run
//! use zae_limiter_proxy::{PartitionLimit, Proxy};
//!
//! # async fn f() {
//! let proxy = Proxy::start("http://127.0.0.1:8000").await;
//! let faults = proxy.faults();
//! faults.set_partition_limit(Some(PartitionLimit::writes_per_sec(20)));
//! // ... point the DynamoDB client at proxy.url() and write ...
//! for (pk, c) in faults.partition_counts() {
//!     println!("{pk}: {} written, {} throttled", c.admitted, c.throttled);
//! }
//! # }
//! ```
#![warn(missing_docs)]

mod fault;
mod http;
mod partition;

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

pub use fault::Fault;
pub use partition::{PartitionCount, PartitionLimit, THROTTLING_MESSAGE};

use fault::Rule;
use http::{answer, error_response, forward, read_message, write_message, Message};
use partition::{parse_write, Partitions};

#[derive(Debug, Default)]
struct Counters {
    seen: BTreeMap<String, u64>,
    dropped: u64,
}

#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    rule: Mutex<Rule>,
    counters: Mutex<Counters>,
    partitions: Mutex<Partitions>,
    /// Bumped on every change of the rule: wakes black-holed connections.
    generation: watch::Sender<u64>,
    request_ids: AtomicU64,
}

impl Shared {
    /// Count a request of `op` and decide what to do with it. Marks the current rule as seen
    /// by `generation` (under the rule's lock, so a later change always wakes it).
    fn decide(&self, op: &str, generation: &mut watch::Receiver<u64>) -> Fault {
        *self.counters.lock().seen.entry(op.to_string()).or_default() += 1;
        let mut rule = self.rule.lock();
        generation.borrow_and_update();
        rule.take(op)
    }

    /// The answer of the emulated partition limit to `req` if it refuses it (nothing is
    /// forwarded then); `None` to forward it (its writes are charged).
    fn refusal(&self, req: &Message) -> Option<Vec<u8>> {
        // no limit: no need to parse the body
        self.partitions.lock().limit()?;
        let write = parse_write(req.operation(), &req.body)?;
        let refusal = self
            .partitions
            .lock()
            .charge(&write, tokio::time::Instant::now())
            .err()?;
        let id = self.request_ids.fetch_add(1, Ordering::Relaxed);
        Some(answer(400, &format!("throttled-{id}"), &refusal.answer()))
    }
}

/// Control handle of a [`Proxy`]: sets faults and the partition limit, reads counters. Cheap
/// to clone.
#[derive(Debug, Clone)]
pub struct Faults(Arc<Shared>);

impl Faults {
    /// Apply `fault` to every request from now on.
    pub fn set(&self, fault: Fault) {
        self.install(fault, None)
    }

    /// Apply `fault` only to requests of operation `op` (`UpdateItem`, `TransactWriteItems`,
    /// ... : the part of `X-Amz-Target` after the dot); the others pass.
    pub fn set_for(&self, op: &str, fault: Fault) {
        self.install(fault, Some(op.to_string()))
    }

    /// Back to [`Fault::Pass`] for everything (the partition limit stays).
    pub fn pass(&self) {
        self.set(Fault::Pass)
    }

    fn install(&self, fault: Fault, only: Option<String>) {
        let mut rule = self.0.rule.lock();
        *rule = Rule { fault, only };
        self.0.generation.send_modify(|g| *g += 1);
    }

    /// Emulate DynamoDB's per-partition write limit from now on (`None`: no limit, the
    /// default); see the [crate documentation](crate#dynamodbs-per-partition-write-limit).
    /// Every partition starts with a full burst; the counters of
    /// [`partition_counts`](Self::partition_counts) are kept.
    pub fn set_partition_limit(&self, limit: Option<PartitionLimit>) {
        self.0.partitions.lock().set_limit(limit);
    }

    /// The partition limit in force.
    pub fn partition_limit(&self) -> Option<PartitionLimit> {
        self.0.partitions.lock().limit()
    }

    /// Writes admitted, throttled and cancelled so far, by partition-key value. Only writes
    /// charged while a limit was set are counted.
    pub fn partition_counts(&self) -> BTreeMap<String, PartitionCount> {
        self.0.partitions.lock().counts()
    }

    /// Requests seen so far of operation `op` (faulted or not).
    pub fn seen(&self, op: &str) -> u64 {
        self.0.counters.lock().seen.get(op).copied().unwrap_or(0)
    }

    /// Requests seen so far, by operation.
    pub fn seen_all(&self) -> BTreeMap<String, u64> {
        self.0.counters.lock().seen.clone()
    }

    /// Responses read from DynamoDB Local and not delivered ([`Fault::DropResponse`],
    /// [`Fault::HoldResponse`]).
    pub fn dropped(&self) -> u64 {
        self.0.counters.lock().dropped
    }
}

/// The running proxy. Dropping it stops the listener and every connection.
#[derive(Debug)]
pub struct Proxy {
    url: String,
    faults: Faults,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Listen on `127.0.0.1:0` in front of `upstream` (`http://127.0.0.1:PORT`), inside the
    /// current tokio runtime. Panics where [`try_start`](Self::try_start) fails.
    pub async fn start(upstream: &str) -> Proxy {
        match Proxy::try_start(upstream).await {
            Ok(p) => p,
            Err(e) => panic!("fault proxy: {e}"),
        }
    }

    /// [`start`](Self::start), or why not: `upstream` is not `http://IP:PORT` with a loopback
    /// IP, or no port could be bound.
    pub async fn try_start(upstream: &str) -> io::Result<Proxy> {
        let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
        let hostport = upstream
            .strip_prefix("http://")
            .ok_or_else(|| invalid(format!("upstream must be an http:// URL, not {upstream}")))?
            .trim_end_matches('/');
        let upstream: SocketAddr = hostport
            .parse()
            .map_err(|_| invalid(format!("upstream must be http://IP:PORT, not {upstream}")))?;
        if !upstream.ip().is_loopback() {
            return Err(invalid(format!(
                "the proxy only ever targets loopback, not {upstream}"
            )));
        }
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let shared = Arc::new(Shared {
            upstream,
            rule: Mutex::new(Rule {
                fault: Fault::Pass,
                only: None,
            }),
            counters: Mutex::default(),
            partitions: Mutex::default(),
            generation: watch::Sender::new(0),
            request_ids: Default::default(),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(Proxy {
            url,
            faults: Faults(shared),
            task,
        })
    }

    /// The URL to give the client (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The control handle.
    pub fn faults(&self) -> Faults {
        self.faults.clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // the accept task owns the JoinSet of connections: aborting it aborts them all
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let shared = shared.clone();
                    conns.spawn(async move {
                        if let Err(e) = serve(stream, &shared).await {
                            if e.kind() == io::ErrorKind::InvalidData {
                                eprintln!("fault proxy: {e}");
                            }
                        }
                    });
                }
                Err(e) => {
                    eprintln!("fault proxy: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            // reap finished connections so the set does not grow
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Forward `req` unless the partition limit refuses it; the answer either way, undelivered
/// (a refused write never lands, like its answer).
async fn forward_and_drop(shared: &Shared, req: &Message) -> io::Result<()> {
    if shared.refusal(req).is_none() {
        forward(shared.upstream, req).await?;
    }
    shared.counters.lock().dropped += 1;
    Ok(())
}

/// Serve one client connection, request by request, until it closes or a fault ends it.
async fn serve(client: TcpStream, shared: &Shared) -> io::Result<()> {
    client.set_nodelay(true)?;
    let mut client = BufReader::new(client);
    let mut generation = shared.generation.subscribe();
    loop {
        let Some(req) = read_message(&mut client).await? else {
            return Ok(());
        };
        match shared.decide(req.operation(), &mut generation) {
            Fault::Pass => {}
            Fault::Latency(d) => tokio::time::sleep(d).await,
            Fault::BlackHole => {
                let mut buf = [0u8; 4096];
                loop {
                    tokio::select! {
                        _ = generation.changed() => return Ok(()),
                        n = client.read(&mut buf) => if n? == 0 { return Ok(()) },
                    }
                }
            }
            Fault::Reset => {
                client.get_ref().set_zero_linger()?;
                return Ok(()); // dropping the socket now sends RST
            }
            fault @ (Fault::Status(_) | Fault::Error { .. }) => {
                let (code, kind) = match fault {
                    Fault::Error { status, kind } => (status, Some(kind)),
                    Fault::Status(code) => (code, None),
                    _ => unreachable!("matched above"),
                };
                let id = shared.request_ids.fetch_add(1, Ordering::Relaxed);
                let answer = error_response(code, id, kind);
                client.get_mut().write_all(&answer).await?;
                client.get_mut().flush().await?;
                continue;
            }
            Fault::DropResponse { .. } => {
                forward_and_drop(shared, &req).await?;
                return Ok(()); // close without answering
            }
            Fault::HoldResponse => {
                forward_and_drop(shared, &req).await?;
                let _ = generation.changed().await;
                return Ok(());
            }
        }
        if let Some(refused) = shared.refusal(&req) {
            client.get_mut().write_all(&refused).await?;
            client.get_mut().flush().await?;
            continue;
        }
        let resp = forward(shared.upstream, &req).await?;
        write_message(client.get_mut(), &resp).await?;
    }
}
