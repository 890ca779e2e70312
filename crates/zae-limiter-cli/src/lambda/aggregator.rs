//! The aggregator handler: one DynamoDB stream batch in, a partial-batch answer
//! (`batchItemFailures`) out.
//!
//! What it does today: every record is parsed as a DynamoDB stream record and classified
//! (bucket state change, removed audit item, other). A record that does not parse is
//! reported in `batchItemFailures` by its sequence number, so Lambda retries from there
//! (and bisects) and finally sends it to the DLQ; a record without a sequence number fails
//! the whole batch. The usage aggregation and the audit archival themselves are issue 10:
//! the well-formed records are acknowledged and counted in the log line, nothing is
//! written.

use aws_lambda_events::event::dynamodb::EventRecord;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use serde_json::Value;

use super::HandlerFuture;

/// What one batch held.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Bucket items (`SK = #STATE`) inserted or modified: usage deltas.
    pub bucket_changes: usize,
    /// Audit items removed (TTL expiry): to archive.
    pub audit_removals: usize,
    /// Anything else the filter let through.
    pub other: usize,
    /// Records that did not parse (reported as failures).
    pub failed: usize,
}

fn sk(r: &EventRecord) -> Option<String> {
    let v = serde_json::to_value(&r.change.keys).ok()?;
    v.get("SK")?.get("S")?.as_str().map(str::to_string)
}

/// Handle one stream event: the answer and what it held.
pub fn process(event: &Value) -> Result<(DynamoDbEventResponse, Counts), String> {
    let records = event
        .get("Records")
        .and_then(Value::as_array)
        .ok_or("not a DynamoDB stream event: no Records array")?;
    let mut counts = Counts::default();
    let mut failures = Vec::new();
    for raw in records {
        match serde_json::from_value::<EventRecord>(raw.clone()) {
            Ok(r) => {
                let sk = sk(&r).unwrap_or_default();
                // DynamoDB Local reports TTL deletions as an unknown event name
                let removed = r.event_name == "REMOVE" || r.event_name.starts_with("UNKNOWN");
                if sk == zae_limiter::dynamodb::keys::BUCKET_SK && !removed {
                    counts.bucket_changes += 1;
                } else if sk.starts_with("#AUDIT#") && removed {
                    counts.audit_removals += 1;
                } else {
                    counts.other += 1;
                }
            }
            Err(e) => {
                let seq = raw
                    .get("dynamodb")
                    .and_then(|d| d.get("SequenceNumber"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        format!("a record without a sequence number does not parse ({e})")
                    })?;
                counts.failed += 1;
                let mut f = DynamoDbBatchItemFailure::default();
                f.item_identifier = Some(seq.to_string());
                failures.push(f);
            }
        }
    }
    let mut resp = DynamoDbEventResponse::default();
    resp.batch_item_failures = failures;
    Ok((resp, counts))
}

/// The Lambda handler ([`super::Handler`]).
pub fn handle(event: Value) -> HandlerFuture {
    Box::pin(async move {
        let (resp, c) = process(&event)?;
        println!(
            "{}",
            serde_json::json!({
                "handler": "aggregator",
                "bucket_changes": c.bucket_changes,
                "audit_removals": c.audit_removals,
                "other": c.other,
                "failed": c.failed,
                "note": "aggregation and archival are not implemented yet (issue 10): records acknowledged",
            })
        );
        serde_json::to_value(resp).map_err(|e| e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(seq: &str, name: &str, sk: &str) -> Value {
        json!({
            "eventID": "e", "eventName": name, "eventVersion": "1.1", "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "dynamodb": {
                "Keys": {"PK": {"S": "ns/BUCKET#k#r#0"}, "SK": {"S": sk}},
                "SequenceNumber": seq, "SizeBytes": 10, "StreamViewType": "NEW_AND_OLD_IMAGES"
            },
            "eventSourceARN": "arn:aws:dynamodb:us-east-1:1:table/t/stream/x"
        })
    }

    #[test]
    fn classifies_and_reports_bad_records() {
        let mut bad = record("102", "MODIFY", "#STATE");
        bad["dynamodb"]["Keys"] = json!("not a map");
        let ev = json!({"Records": [
            record("100", "MODIFY", "#STATE"),
            record("101", "REMOVE", "#AUDIT#01H"),
            bad,
            record("103", "INSERT", "#META"),
        ]});
        let (resp, c) = process(&ev).unwrap();
        assert_eq!(
            c,
            Counts {
                bucket_changes: 1,
                audit_removals: 1,
                other: 1,
                failed: 1
            }
        );
        assert_eq!(
            serde_json::to_value(resp).unwrap(),
            json!({"batchItemFailures": [{"itemIdentifier": "102"}]})
        );
        assert!(process(&json!({"x": 1})).is_err());
        let mut noseq = record("1", "MODIFY", "#STATE");
        noseq["dynamodb"] = json!({"Keys": 3});
        assert!(process(&json!({"Records": [noseq]})).is_err());
    }
}
