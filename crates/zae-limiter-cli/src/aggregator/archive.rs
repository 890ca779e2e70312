//! Audit archival: expired audit items to S3 as gzip JSON Lines, one object per batch (and
//! day), under `audit/year=YYYY/month=MM/day=DD/` (Hive-style partitions for Athena). The
//! object name carries the batch's first and last sequence numbers, so a retried batch
//! overwrites its object instead of archiving the events twice.

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::{Map, Value};
use zae_limiter::usage::SeqNo;

/// An expired audit item: its record's sequence number and the item as plain JSON.
pub type Expired = (SeqNo, Map<String, Value>);

/// The archive bucket and its client.
#[derive(Debug, Clone)]
pub struct Archive {
    client: aws_sdk_s3::Client,
    bucket: String,
}

/// The date partition (`year=YYYY/month=MM/day=DD`) of an event time (ms).
pub fn partition(ms: i64) -> String {
    let t = jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let s = t.to_string(); // 2026-12-02T03:04:05Z
    format!("year={}/month={}/day={}", &s[0..4], &s[5..7], &s[8..10])
}

/// Gzip JSON Lines of `events` (one compact object per line, trailing newline).
pub fn encode(events: &[&Map<String, Value>]) -> Result<Vec<u8>, String> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for e in events {
        serde_json::to_writer(&mut gz, e).map_err(|e| e.to_string())?;
        gz.write_all(b"\n").map_err(|e| e.to_string())?;
    }
    gz.finish().map_err(|e| e.to_string())
}

impl Archive {
    /// Archive into `bucket` with `client`.
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Archive {
            client,
            bucket: bucket.into(),
        }
    }

    /// An S3 client from `sdk`, path-style when `endpoint_url` is given (moto, MinIO).
    pub fn client(sdk: &aws_config::SdkConfig, endpoint_url: Option<&str>) -> aws_sdk_s3::Client {
        let mut b = aws_sdk_s3::config::Builder::from(sdk);
        if let Some(url) = endpoint_url {
            b = b.endpoint_url(url).force_path_style(true);
        }
        aws_sdk_s3::Client::from_conf(b.build())
    }

    /// Write `events` (sequence number, plain JSON item); returns the objects written.
    pub async fn put(&self, events: &[Expired]) -> Result<usize, String> {
        let mut by_day: BTreeMap<String, Vec<&Expired>> = BTreeMap::new();
        for e in events {
            let ms = e.1.get("timestamp_ms").and_then(Value::as_i64).unwrap_or(0);
            by_day.entry(partition(ms)).or_default().push(e);
        }
        for (day, evs) in &by_day {
            let first = evs.iter().map(|e| &e.0).min().expect("non-empty");
            let last = evs.iter().map(|e| &e.0).max().expect("non-empty");
            let key = format!(
                "audit/{day}/audit-{}-{}.jsonl.gz",
                first.as_given(),
                last.as_given()
            );
            let body = encode(&evs.iter().map(|e| &e.1).collect::<Vec<_>>())?;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .content_type("application/x-ndjson")
                .content_encoding("gzip")
                .body(body.into())
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "PutObject s3://{}/{key}: {}",
                        self.bucket,
                        aws_sdk_s3::error::DisplayErrorContext(&e)
                    )
                })?;
        }
        Ok(by_day.len())
    }
}
