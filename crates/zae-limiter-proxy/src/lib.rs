//! A fault-injecting HTTP/1.1 proxy between a test's client and DynamoDB Local (DESIGN §7),
//! used by `zae-limiter`'s failure-mode tests (`crates/zae-limiter/tests/faults.rs`).
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
#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Largest request or response head the proxy accepts.
const MAX_HEAD: usize = 64 * 1024;
/// Largest body the proxy accepts (DynamoDB's own request limit is 16 MB).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// What the proxy does to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Forward it (the default).
    Pass,
    /// Wait this long, then forward it.
    Latency(Duration),
    /// Read it and never answer; the connection stays open until the fault changes (then it
    /// is closed, still unanswered) or the client closes it.
    BlackHole,
    /// Close the connection with a TCP reset (`SO_LINGER` 0), without answering.
    Reset,
    /// Answer with this HTTP status and a DynamoDB-style JSON error, without forwarding
    /// (503 → `ServiceUnavailable`, anything else → `InternalServerError`).
    Status(u16),
    /// Answer with this HTTP status and DynamoDB error type (e.g. 400
    /// `TransactionConflictException`, `ThrottlingException`, `ValidationException`), without
    /// forwarding.
    Error {
        /// HTTP status.
        status: u16,
        /// The `__type` suffix DynamoDB would send.
        kind: &'static str,
    },
    /// Forward the request and read DynamoDB's answer, but hold it until the fault changes,
    /// then close without sending it: every attempt lands, the client hears nothing.
    HoldResponse,
    /// Forward the next `count` requests, read DynamoDB's full answer, then close the client
    /// connection without sending it: the write landed, the client never hears. After
    /// `count` such requests the proxy passes again.
    DropResponse {
        /// How many responses to swallow.
        count: usize,
    },
}

#[derive(Debug)]
struct Rule {
    fault: Fault,
    /// Only requests of this operation (`X-Amz-Target` suffix); `None` = every request.
    only: Option<String>,
}

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
    /// Bumped on every change of the rule: wakes black-holed connections.
    generation: watch::Sender<u64>,
    request_ids: std::sync::atomic::AtomicU64,
}

impl Shared {
    /// Count a request of `op` and decide what to do with it. Marks the current rule as seen
    /// by `generation` (under the rule's lock, so a later change always wakes it).
    fn decide(&self, op: &str, generation: &mut watch::Receiver<u64>) -> Fault {
        *self.counters.lock().seen.entry(op.to_string()).or_default() += 1;
        let mut rule = self.rule.lock();
        generation.borrow_and_update();
        if rule.only.as_deref().is_some_and(|o| o != op) {
            return Fault::Pass;
        }
        match &mut rule.fault {
            Fault::DropResponse { count: 0 } => Fault::Pass,
            Fault::DropResponse { count } => {
                *count -= 1;
                if *count == 0 {
                    rule.fault = Fault::Pass;
                    rule.only = None;
                }
                Fault::DropResponse { count: 1 }
            }
            f => f.clone(),
        }
    }
}

/// Control handle of a [`Proxy`]: sets faults, reads counters. Cheap to clone.
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

    /// Back to [`Fault::Pass`] for everything.
    pub fn pass(&self) {
        self.set(Fault::Pass)
    }

    fn install(&self, fault: Fault, only: Option<String>) {
        let mut rule = self.0.rule.lock();
        *rule = Rule { fault, only };
        self.0.generation.send_modify(|g| *g += 1);
    }

    /// Requests seen so far of operation `op` (faulted or not).
    pub fn seen(&self, op: &str) -> u64 {
        self.0.counters.lock().seen.get(op).copied().unwrap_or(0)
    }

    /// Requests seen so far, by operation.
    pub fn seen_all(&self) -> BTreeMap<String, u64> {
        self.0.counters.lock().seen.clone()
    }

    /// Responses read from DynamoDB Local and not delivered ([`Fault::DropResponse`]).
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
    /// Listen on `127.0.0.1:0` in front of `upstream` (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> Proxy {
        let hostport = upstream
            .strip_prefix("http://")
            .expect("upstream must be an http:// URL")
            .trim_end_matches('/');
        let upstream: SocketAddr = hostport.parse().expect("upstream must be IP:PORT");
        assert!(
            upstream.ip().is_loopback(),
            "the proxy only ever targets loopback, not {upstream}"
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("proxy address"));
        let shared = Arc::new(Shared {
            upstream,
            rule: Mutex::new(Rule {
                fault: Fault::Pass,
                only: None,
            }),
            counters: Mutex::default(),
            generation: watch::Sender::new(0),
            request_ids: Default::default(),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        Proxy {
            url,
            faults: Faults(shared),
            task,
        }
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

/// One HTTP message as read off the wire.
struct Message {
    /// Start line and headers, including the final empty line, exactly as received.
    head: Vec<u8>,
    body: Vec<u8>,
    /// `X-Amz-Target`, if present.
    target: Option<String>,
}

/// Read one message; `None` on a clean end of stream before its first byte.
async fn read_message(r: &mut BufReader<TcpStream>) -> io::Result<Option<Message>> {
    let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    let mut head = Vec::new();
    let mut length = None;
    let mut target = None;
    loop {
        let start = head.len();
        if r.read_until(b'\n', &mut head).await? == 0 {
            return if head.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        if head.len() > MAX_HEAD {
            return Err(bad(format!("message head above {MAX_HEAD} bytes")));
        }
        let line = String::from_utf8_lossy(&head[start..]);
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            if start == 0 {
                head.clear(); // tolerate a stray CRLF between messages
                continue;
            }
            break;
        }
        if start == 0 {
            continue; // the start line
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(bad(format!("malformed header line {line:?}")));
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value
                .parse()
                .map_err(|_| bad(format!("bad Content-Length {value:?}")))?;
            if n > MAX_BODY {
                return Err(bad(format!("body of {n} bytes is above {MAX_BODY}")));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(bad(format!("Transfer-Encoding {value:?} is not supported")));
        } else if name.eq_ignore_ascii_case("x-amz-target") {
            target = Some(value.to_string());
        }
    }
    let mut body = vec![0; length.unwrap_or(0)];
    r.read_exact(&mut body).await?;
    Ok(Some(Message { head, body, target }))
}

/// Write `m` in one piece: a head and a body written apart would wait for the peer's delayed
/// ACK of the head (Nagle's algorithm), about 40 ms on Linux, on every message.
async fn write_message(w: &mut TcpStream, m: &Message) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(m.head.len() + m.body.len());
    bytes.extend_from_slice(&m.head);
    bytes.extend_from_slice(&m.body);
    w.write_all(&bytes).await?;
    w.flush().await
}

/// Send `m` upstream on a fresh connection and read the answer.
async fn forward(upstream: SocketAddr, m: &Message) -> io::Result<Message> {
    let up = TcpStream::connect(upstream).await?;
    up.set_nodelay(true)?;
    let mut up = BufReader::new(up);
    write_message(up.get_mut(), m).await?;
    read_message(&mut up)
        .await?
        .ok_or_else(|| io::ErrorKind::UnexpectedEof.into())
}

/// A DynamoDB-style error answer.
fn error_response(status: u16, request_id: u64, kind: Option<&str>) -> Vec<u8> {
    let (reason, default_kind) = match status {
        503 => ("Service Unavailable", "ServiceUnavailable"),
        500 => ("Internal Server Error", "InternalServerError"),
        400 => ("Bad Request", "ValidationException"),
        _ => ("Error", "InternalServerError"),
    };
    let kind = kind.unwrap_or(default_kind);
    let body =
        format!(r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{kind}","message":"injected"}}"#);
    format!(
        "HTTP/1.1 {status} {reason}\r\nx-amzn-RequestId: injected-{request_id}\r\n\
         Content-Type: application/x-amz-json-1.0\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
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
        let op = req
            .target
            .as_deref()
            .map(|t| t.rsplit('.').next().unwrap_or(t))
            .unwrap_or("-")
            .to_string();
        match shared.decide(&op, &mut generation) {
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
                let id = shared
                    .request_ids
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let answer = error_response(code, id, kind);
                client.get_mut().write_all(&answer).await?;
                client.get_mut().flush().await?;
                continue;
            }
            Fault::DropResponse { .. } => {
                forward(shared.upstream, &req).await?;
                shared.counters.lock().dropped += 1;
                return Ok(()); // close without answering
            }
            Fault::HoldResponse => {
                forward(shared.upstream, &req).await?;
                shared.counters.lock().dropped += 1;
                let _ = generation.changed().await;
                return Ok(());
            }
        }
        let resp = forward(shared.upstream, &req).await?;
        write_message(client.get_mut(), &resp).await?;
    }
}
