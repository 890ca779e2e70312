//! The stream aggregator, shared by the Lambda handler and `aggregator run`: stream records
//! (DynamoDB JSON, whichever source) are classified, bucket changes go through the
//! library's pure [`aggregate`] into snapshot writes, TTL-expired audit items are archived
//! to S3. Every failure is reported per record (its sequence number) so that the caller
//! retries from there: Lambda through `batchItemFailures`, the reader by not advancing its
//! checkpoint.

pub mod archive;
pub mod checkpoint;
pub mod records;
pub mod streams;

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use zae_limiter::usage::{aggregate, SeqNo, UsageStore, Window, WriteUsage};

pub use records::{classify, Kind, StreamRecord};

/// What one batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Records in the batch.
    pub records: usize,
    /// Bucket changes among them.
    pub bucket_changes: usize,
    /// Snapshot writes applied (wholly or in part).
    pub snapshot_writes: usize,
    /// Snapshot writes that were replays (nothing written).
    pub duplicates: usize,
    /// Audit items archived.
    pub archived: usize,
    /// S3 objects written.
    pub objects: usize,
    /// Records skipped (other items, user deletes of audit items).
    pub skipped: usize,
    /// Sequence numbers to retry from (as given), with the reason: unparsable records,
    /// failed writes (their first record).
    pub failures: Vec<(String, String)>,
}

/// Where the aggregator writes.
pub struct Sinks<'a> {
    /// The snapshot store.
    pub usage: &'a (dyn UsageStore + 'a),
    /// Snapshot retention after the end of the window (ms).
    pub retention_ms: i64,
    /// The audit archive, when archival is on.
    pub archive: Option<&'a archive::Archive>,
}

/// Process one batch of stream records (in stream order).
pub async fn process(batch: &[StreamRecord], sinks: &Sinks<'_>) -> Outcome {
    let mut out = Outcome {
        records: batch.len(),
        ..Outcome::default()
    };
    let mut buckets = Vec::new();
    let mut expired: Vec<(SeqNo, Map<String, Value>)> = Vec::new();
    for r in batch {
        match classify(r) {
            Ok(Kind::Bucket(b)) => buckets.push(b),
            Ok(Kind::AuditExpired(item)) => match SeqNo::parse(&r.seq) {
                Some(s) => expired.push((s, item)),
                None => out
                    .failures
                    .push((r.seq.clone(), "bad sequence number".into())),
            },
            Ok(Kind::Other) => out.skipped += 1,
            Err(e) => out.failures.push((r.seq.clone(), e)),
        }
    }
    out.bucket_changes = buckets.len();
    // one write per (bucket item, window); they touch different items: run them together
    let updates = aggregate(&buckets, &Window::ALL);
    let mut writes = Vec::with_capacity(updates.len());
    for u in &updates {
        writes.push(sinks.usage.write_usage(u, sinks.retention_ms));
    }
    let results = futures_join(writes).await;
    for (u, res) in updates.iter().zip(results) {
        match res {
            Ok(WriteUsage::Duplicate) => out.duplicates += 1,
            Ok(_) => out.snapshot_writes += 1,
            Err(e) => {
                let seq = u.first_seq().map(|s| s.as_given().to_string());
                out.failures.push((seq.unwrap_or_default(), e.to_string()));
            }
        }
    }
    if !expired.is_empty() {
        match sinks.archive {
            None => out.skipped += expired.len(),
            Some(a) => match a.put(&expired).await {
                Ok(n) => {
                    out.archived += expired.len();
                    out.objects += n;
                }
                Err(e) => {
                    let first = expired[0].0.as_given().to_string();
                    out.failures.push((first, format!("archive: {e}")));
                }
            },
        }
    }
    out
}

/// Await every future, at most 16 at a time, keeping the order of the results.
async fn futures_join<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    use futures_util::stream::StreamExt;
    futures_util::stream::iter(futs)
        .buffered(16)
        .collect()
        .await
}

/// The batch's counts as one JSON log line.
pub fn log_line(what: &str, o: &Outcome, extra: BTreeMap<&str, Value>) -> String {
    let mut v = serde_json::json!({
        "msg": what,
        "records": o.records,
        "bucket_changes": o.bucket_changes,
        "snapshot_writes": o.snapshot_writes,
        "duplicates": o.duplicates,
        "archived": o.archived,
        "objects": o.objects,
        "skipped": o.skipped,
        "failures": o.failures.len(),
    });
    if let Some(f) = o.failures.first() {
        v["first_error"] = Value::String(format!("{}: {}", f.0, f.1));
    }
    for (k, x) in extra {
        v[k] = x;
    }
    v.to_string()
}
