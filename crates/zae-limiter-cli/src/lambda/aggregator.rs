//! The aggregator handler: one DynamoDB stream batch in, a partial-batch answer
//! (`batchItemFailures`) out.
//!
//! Bucket changes are aggregated into usage snapshots, TTL-expired audit items archived to
//! S3 (`ZAEL_ARCHIVE_BUCKET`), by the shared code of [`crate::aggregator`]. Every record
//! that did not parse and the first record of every write that failed are reported by
//! sequence number, so Lambda retries from there (and bisects, and finally sends the
//! batch to the DLQ); the snapshot writes are idempotent, so the retry counts nothing
//! twice. A record without a sequence number fails the whole batch.
//!
//! Environment: `ZAEL_TABLE_NAME`, `ZAEL_USAGE_RETENTION_DAYS` (default 90),
//! `ZAEL_ARCHIVE_BUCKET` (archival off when unset), `ZAEL_ENDPOINT_URL` (another DynamoDB
//! endpoint, for tests).

use std::collections::BTreeMap;

use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use serde_json::Value;
use tokio::sync::OnceCell;
use zae_limiter::usage::DEFAULT_USAGE_RETENTION_MS;
use zae_limiter::{DynamoStore, StoreConfig};

use super::HandlerFuture;
use crate::aggregator::{archive::Archive, process, Outcome, Sinks, StreamRecord};

/// (sequence number, why) of the records that failed.
pub type Failures = Vec<(String, String)>;

/// Parse the event's records; unparsable ones become failures.
pub fn parse_event(event: &Value) -> Result<(Vec<StreamRecord>, Failures), String> {
    let records = event
        .get("Records")
        .and_then(Value::as_array)
        .ok_or("not a DynamoDB stream event: no Records array")?;
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for raw in records {
        match StreamRecord::from_lambda(raw) {
            Ok(r) => ok.push(r),
            Err(e) => {
                let seq = raw
                    .get("dynamodb")
                    .and_then(|d| d.get("SequenceNumber"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        format!("a record without a sequence number does not parse ({e})")
                    })?;
                failed.push((seq.to_string(), e));
            }
        }
    }
    Ok((ok, failed))
}

/// Handle one event with `sinks`: the answer and what was done.
pub async fn handle_with(
    event: &Value,
    sinks: &Sinks<'_>,
) -> Result<(DynamoDbEventResponse, Outcome), String> {
    let (records, bad) = parse_event(event)?;
    let mut o = process(&records, sinks).await;
    o.records += bad.len();
    o.failures.extend(bad);
    let mut resp = DynamoDbEventResponse::default();
    let mut seqs: Vec<&str> = o.failures.iter().map(|(s, _)| s.as_str()).collect();
    seqs.sort();
    seqs.dedup();
    resp.batch_item_failures = seqs
        .into_iter()
        .map(|s| {
            let mut f = DynamoDbBatchItemFailure::default();
            f.item_identifier = Some(s.to_string());
            f
        })
        .collect();
    Ok((resp, o))
}

struct Env {
    store: DynamoStore,
    archive: Option<Archive>,
    retention_ms: i64,
}

static ENV: OnceCell<Env> = OnceCell::const_new();

async fn env() -> Result<&'static Env, String> {
    ENV.get_or_try_init(|| async {
        let table = std::env::var("ZAEL_TABLE_NAME").map_err(|_| "ZAEL_TABLE_NAME is not set")?;
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let store = DynamoStore::connect(StoreConfig::new(table).sdk_config(sdk.clone()))
            .await
            .map_err(|e| e.to_string())?;
        let retention_ms = match std::env::var("ZAEL_USAGE_RETENTION_DAYS") {
            Ok(d) => {
                d.trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|d| (1..=3650).contains(d))
                    .ok_or(format!(
                        "ZAEL_USAGE_RETENTION_DAYS={d:?} is not 1 to 3650 days"
                    ))?
                    * 86_400_000
            }
            Err(_) => DEFAULT_USAGE_RETENTION_MS,
        };
        let archive = std::env::var("ZAEL_ARCHIVE_BUCKET")
            .ok()
            .filter(|b| !b.is_empty())
            .map(|b| Archive::new(Archive::client(&sdk, None), b));
        Ok::<_, String>(Env {
            store,
            archive,
            retention_ms,
        })
    })
    .await
}

/// The Lambda handler ([`super::Handler`]).
pub fn handle(event: Value) -> HandlerFuture {
    Box::pin(async move {
        let env = env().await?;
        let sinks = Sinks {
            usage: &env.store,
            retention_ms: env.retention_ms,
            archive: env.archive.as_ref(),
        };
        let (resp, o) = handle_with(&event, &sinks).await?;
        println!(
            "{}",
            crate::aggregator::log_line("aggregator batch", &o, BTreeMap::new())
        );
        serde_json::to_value(resp).map_err(|e| e.to_string())
    })
}

#[cfg(test)]
#[path = "aggregator_tests.rs"]
mod tests;
