//! `aggregator run`: a reader of the table's DynamoDB stream (DescribeStream,
//! GetShardIterator, GetRecords), for DynamoDB Local and for running without Lambda.
//!
//! Shards are read parents first (a child only once its parent is closed and read to its
//! end, or gone). After each page of records is aggregated and archived, the shard's
//! checkpoint moves to the page's last record; a failed page is not checkpointed and is
//! read again (the snapshot writes are idempotent, so a replay counts nothing twice).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodbstreams::types::{AttributeValue, OperationType, Record, ShardIteratorType};
use serde_json::{json, Map, Value};

use super::checkpoint::{is_checkpoint, Checkpoint, Checkpoints};
use super::{process, Sinks, StreamRecord};

/// Consecutive empty pages after which an open shard counts as read up to its end.
const EMPTY_PAGES: usize = 3;

/// The reader's totals.
#[derive(Debug, Default, Clone)]
pub struct Totals {
    /// Records read.
    pub records: u64,
    /// Bucket changes among them.
    pub bucket_changes: u64,
    /// Snapshot writes applied.
    pub snapshot_writes: u64,
    /// Replayed snapshot writes (nothing written).
    pub duplicates: u64,
    /// Audit items archived.
    pub archived: u64,
    /// Lag of the last record read (ms behind now), when known.
    pub lag_ms: Option<i64>,
}

/// A reader of one stream.
pub struct Reader<'a> {
    /// The streams client.
    pub streams: aws_sdk_dynamodbstreams::Client,
    /// The stream.
    pub stream_arn: String,
    /// Where the checkpoints live.
    pub checkpoints: Checkpoints,
    /// Where the aggregator writes.
    pub sinks: Sinks<'a>,
    /// Set to stop after the current page.
    pub stop: Arc<AtomicBool>,
    /// Whether to print a progress line to stderr every few seconds.
    pub progress: bool,
    /// Records per GetRecords call (1 to 1000).
    pub page: i32,
    /// DynamoDB Local's endpoint, when reading from it: see [`raw_get_records`].
    pub local_endpoint: Option<String>,
}

/// GetRecords as plain JSON over HTTP, for DynamoDB Local only. Local writes an empty map
/// attribute (an entity without metadata) as `{}` instead of `{"M": {}}` in stream images
/// (measured with 3.3.0), which the SDK refuses to parse, so one such record would block
/// the shard. Local does not check signatures; AWS never sends that shape, so this path is
/// never taken against AWS.
async fn raw_get_records(
    endpoint: &str,
    iterator: &str,
    limit: i32,
) -> Result<(Vec<StreamRecord>, Option<String>), String> {
    let resp = reqwest::Client::new()
        .post(endpoint)
        .header("Content-Type", "application/x-amz-json-1.0")
        .header("X-Amz-Target", "DynamoDBStreams_20120810.GetRecords")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/dynamodb/aws4_request, \
             SignedHeaders=host, Signature=0",
        )
        .body(json!({"ShardIterator": iterator, "Limit": limit}).to_string())
        .send()
        .await
        .map_err(|e| format!("GetRecords (raw): {e}"))?;
    let status = resp.status();
    let body = resp
        .text()
        .await
        .map_err(|e| format!("GetRecords (raw): {e}"))?;
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("GetRecords (raw): {e}"))?;
    if !status.is_success() {
        return Err(format!("GetRecords (raw): {status}: {v}"));
    }
    let mut out = Vec::new();
    for r in v
        .get("Records")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.push(StreamRecord::from_lambda(r).map_err(|e| format!("GetRecords (raw): {e}"))?);
    }
    let next = v
        .get("NextShardIterator")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok((out, next))
}

fn to_json(v: &AttributeValue) -> Value {
    match v {
        AttributeValue::S(s) => json!({"S": s}),
        AttributeValue::N(n) => json!({"N": n}),
        AttributeValue::Bool(b) => json!({"BOOL": b}),
        AttributeValue::Null(_) => json!({"NULL": true}),
        AttributeValue::Ss(x) => json!({"SS": x}),
        AttributeValue::Ns(x) => json!({"NS": x}),
        AttributeValue::M(m) => json!({"M": image(m)}),
        AttributeValue::L(l) => json!({"L": l.iter().map(to_json).collect::<Vec<_>>()}),
        _ => json!({"NULL": true}),
    }
}

fn image(m: &HashMap<String, AttributeValue>) -> Map<String, Value> {
    m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()
}

/// A Streams API record in the aggregator's shape.
pub fn convert(r: &Record) -> Option<StreamRecord> {
    let d = r.dynamodb()?;
    let event_name = match r.event_name() {
        Some(OperationType::Insert) => "INSERT".to_string(),
        Some(OperationType::Modify) => "MODIFY".to_string(),
        Some(OperationType::Remove) => "REMOVE".to_string(),
        Some(other) => format!("UNKNOWN:{}", other.as_str()),
        None => "UNKNOWN".to_string(),
    };
    let time_ms = d
        .approximate_creation_date_time()
        .map(|t| t.secs() * 1000 + i64::from(t.subsec_nanos() / 1_000_000));
    Some(StreamRecord {
        event_name,
        seq: d.sequence_number()?.to_string(),
        time_ms,
        keys: d.keys().map(image).unwrap_or_default(),
        old: d.old_image().map(image),
        new: d.new_image().map(image),
        identity: r.user_identity().map(|i| {
            (
                i.r#type().unwrap_or_default().to_string(),
                i.principal_id().unwrap_or_default().to_string(),
            )
        }),
    })
}

fn sdk<E: std::error::Error>(what: &str, e: E) -> String {
    format!(
        "{what}: {}",
        aws_sdk_dynamodbstreams::error::DisplayErrorContext(&e)
    )
}

struct ShardInfo {
    id: String,
    parent: Option<String>,
}

impl Reader<'_> {
    async fn shards(&self) -> Result<Vec<ShardInfo>, String> {
        let mut out = Vec::new();
        let mut start: Option<String> = None;
        for _ in 0..10_000 {
            let d = self
                .streams
                .describe_stream()
                .stream_arn(&self.stream_arn)
                .set_exclusive_start_shard_id(start.take())
                .send()
                .await
                .map_err(|e| sdk("DescribeStream", e))?;
            let Some(desc) = d.stream_description() else {
                break;
            };
            for s in desc.shards() {
                if let Some(id) = s.shard_id() {
                    out.push(ShardInfo {
                        id: id.to_string(),
                        parent: s.parent_shard_id().map(str::to_string),
                    });
                }
            }
            match desc.last_evaluated_shard_id() {
                Some(l) => start = Some(l.to_string()),
                None => break,
            }
        }
        Ok(out)
    }

    /// Read every shard up to its current end once (parents first). Returns whether any
    /// record was read.
    pub async fn pass(&self, totals: &mut Totals, started: Instant) -> Result<bool, String> {
        let shards = self.shards().await?;
        let ids: HashSet<&str> = shards.iter().map(|s| s.id.as_str()).collect();
        let mut cps: HashMap<String, Checkpoint> = HashMap::new();
        for s in &shards {
            cps.insert(s.id.clone(), self.checkpoints.get(&s.id).await?);
        }
        let mut read_any = false;
        let mut finished: HashSet<String> = cps
            .iter()
            .filter(|(_, c)| c.done)
            .map(|(k, _)| k.clone())
            .collect();
        // parents first: repeat over the shards whose parent is finished or unknown
        let mut progressed = true;
        let mut visited: HashSet<String> = HashSet::new();
        while progressed {
            progressed = false;
            for s in &shards {
                if finished.contains(&s.id) || visited.contains(&s.id) {
                    continue;
                }
                let parent_ready = match &s.parent {
                    Some(p) => !ids.contains(p.as_str()) || finished.contains(p),
                    None => true,
                };
                if !parent_ready {
                    continue;
                }
                visited.insert(s.id.clone());
                progressed = true;
                let (closed, any) = self.drain(&s.id, &cps[&s.id], totals, started).await?;
                read_any |= any;
                if closed {
                    finished.insert(s.id.clone());
                }
                if self.stop.load(Ordering::SeqCst) {
                    return Ok(read_any);
                }
            }
        }
        Ok(read_any)
    }

    async fn iterator(&self, shard: &str, after: Option<&str>) -> Result<Option<String>, String> {
        let mut req = self
            .streams
            .get_shard_iterator()
            .stream_arn(&self.stream_arn)
            .shard_id(shard);
        req = match after {
            Some(seq) => req
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(seq),
            None => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        match req.send().await {
            Ok(o) => Ok(o.shard_iterator().map(str::to_string)),
            Err(e)
                if after.is_some()
                    && e.as_service_error()
                        .is_some_and(|s| s.is_trimmed_data_access_exception()) =>
            {
                eprintln!(
                    "{}",
                    json!({"level": "warn", "msg": "checkpoint older than the stream's retention: reading from the oldest record", "shard": shard})
                );
                Box::pin(self.iterator(shard, None)).await
            }
            Err(e) => Err(sdk("GetShardIterator", e)),
        }
    }

    /// Read `shard` from its checkpoint to its current end: (closed and read to its end,
    /// any record read).
    async fn drain(
        &self,
        shard: &str,
        cp: &Checkpoint,
        totals: &mut Totals,
        started: Instant,
    ) -> Result<(bool, bool), String> {
        let mut last = cp.seq.clone();
        let Some(mut it) = self.iterator(shard, last.as_deref()).await? else {
            return Ok((false, false));
        };
        let mut empty = 0;
        let mut any = false;
        let mut last_report = Instant::now();
        loop {
            let got = self
                .streams
                .get_records()
                .shard_iterator(&it)
                .limit(self.page)
                .send()
                .await;
            let (recs, next): (Vec<StreamRecord>, Option<String>) = match got {
                Ok(p) => (
                    p.records().iter().filter_map(convert).collect(),
                    p.next_shard_iterator().map(str::to_string),
                ),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_expired_iterator_exception()) =>
                {
                    match self.iterator(shard, last.as_deref()).await? {
                        Some(i) => {
                            it = i;
                            continue;
                        }
                        None => return Ok((false, any)),
                    }
                }
                Err(e) => match &self.local_endpoint {
                    Some(ep) if sdk("", &e).contains("failed to parse") => {
                        raw_get_records(ep, &it, self.page).await?
                    }
                    _ => return Err(sdk("GetRecords", e)),
                },
            };
            let own_only = recs.iter().all(|r| {
                is_checkpoint(
                    r.keys
                        .get("PK")
                        .and_then(|v| v.get("S"))
                        .and_then(Value::as_str),
                    r.keys
                        .get("SK")
                        .and_then(|v| v.get("S"))
                        .and_then(Value::as_str),
                )
            });
            if !recs.is_empty() {
                any = true;
                let o = process(&recs, &self.sinks).await;
                if !o.failures.is_empty() {
                    return Err(super::log_line(
                        "batch failed; it will be read again",
                        &o,
                        Default::default(),
                    ));
                }
                totals.records += o.records as u64;
                totals.bucket_changes += o.bucket_changes as u64;
                totals.snapshot_writes += o.snapshot_writes as u64;
                totals.duplicates += o.duplicates as u64;
                totals.archived += o.archived as u64;
                if let Some(t) = recs.last().and_then(|r| r.time_ms) {
                    totals.lag_ms = Some(now_ms() - t);
                }
                last = recs.last().map(|r| r.seq.clone());
            }
            let closed = next.is_none();
            if (!recs.is_empty() && !own_only) || closed {
                self.checkpoints
                    .put(shard, last.as_deref(), closed, now_ms())
                    .await?;
            }
            if self.progress && last_report.elapsed() >= Duration::from_secs(2) {
                last_report = Instant::now();
                eprintln!("{}", progress_line(totals, started));
            }
            let Some(n) = next else {
                return Ok((true, any));
            };
            it = n;
            empty = if recs.is_empty() { empty + 1 } else { 0 };
            if empty >= EMPTY_PAGES || self.stop.load(Ordering::SeqCst) {
                return Ok((false, any));
            }
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The progress line: records read, records/s since the start, lag of the last record.
pub fn progress_line(t: &Totals, started: Instant) -> String {
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    json!({
        "msg": "progress",
        "records": t.records,
        "records_per_s": (t.records as f64 / secs * 10.0).round() / 10.0,
        "snapshot_writes": t.snapshot_writes,
        "duplicates": t.duplicates,
        "archived": t.archived,
        "lag_s": t.lag_ms.map(|l| l as f64 / 1000.0),
    })
    .to_string()
}
