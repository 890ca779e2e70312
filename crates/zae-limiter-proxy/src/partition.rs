//! DynamoDB's per-partition write limit, emulated: a token bucket per partition-key value.
//!
//! A write request (`UpdateItem`, `PutItem`, `DeleteItem`, `TransactWriteItems`,
//! `BatchWriteItem`) is parsed for the partition key (attribute `PK`, type `S`) of every item
//! it writes; each item costs one write of its partition's bucket. The request is forwarded
//! only if every partition it touches has the writes it needs; otherwise nothing is charged
//! and the proxy answers the way DynamoDB does (see [`Refusal::answer`]).

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};
use tokio::time::Instant;

/// The DynamoDB message of a throttled on-demand write, hot key hint included.
pub const THROTTLING_MESSAGE: &str = "Throughput exceeds the current capacity of your table or \
     index. DynamoDB is automatically scaling your table or index so please try again shortly. \
     If exceptions persist, check if you have a hot key: \
     https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html";

/// The `__type` prefix of DynamoDB's JSON errors.
const ERROR_PREFIX: &str = "com.amazonaws.dynamodb.v20120810#";

/// A per-partition write limit: `writes_per_sec` writes per second for each partition-key
/// value, with a burst of as many. Real DynamoDB allows about 1,000 write units per second
/// per partition ([`PartitionLimit::DYNAMODB`]).
///
/// Every item written costs one write, whatever its size, in a transaction or not (DynamoDB
/// charges one write unit per KB, two for a transactional write); a throttled request costs
/// nothing. Refill is continuous and follows tokio's clock ([`tokio::time::Instant`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLimit {
    /// Writes per second and burst, per partition-key value (at least 1).
    pub writes_per_sec: u32,
}

impl PartitionLimit {
    /// DynamoDB's documented per-partition write throughput: 1,000 writes per second.
    pub const DYNAMODB: PartitionLimit = PartitionLimit {
        writes_per_sec: 1_000,
    };

    /// `n` writes per second per partition-key value (`n` is raised to 1).
    pub fn writes_per_sec(n: u32) -> Self {
        PartitionLimit {
            writes_per_sec: n.max(1),
        }
    }
}

/// What happened to the writes of one partition-key value
/// ([`Faults::partition_counts`](crate::Faults::partition_counts)). Each counts items, not
/// requests: a transaction of two items on one partition counts two.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionCount {
    /// Written: the request was forwarded (and charged).
    pub admitted: u64,
    /// Refused because this partition was over its limit.
    pub throttled: u64,
    /// Refused, with room on this partition, because another item of the same request was
    /// throttled (a transaction or batch is refused whole).
    pub cancelled: u64,
}

/// Which write operation a request is, as far as the answers go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteKind {
    /// `UpdateItem`, `PutItem`, `DeleteItem`.
    Single,
    /// `TransactWriteItems`.
    Transaction,
    /// `BatchWriteItem`.
    Batch,
}

/// The items a write request writes: table and partition key of each, in request order
/// (`None` where the item has no `PK` of type `S`: not charged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Write {
    pub(crate) kind: WriteKind,
    pub(crate) items: Vec<(Option<String>, Option<String>)>,
}

/// The `S` value of attribute `PK` of a key or item.
fn pk(attributes: Option<&Value>) -> Option<String> {
    attributes?.get("PK")?.get("S")?.as_str().map(str::to_owned)
}

fn table(v: &Value) -> Option<String> {
    v.get("TableName")?.as_str().map(str::to_owned)
}

/// The write of a request of operation `op` with JSON `body`; `None` for a read, another
/// operation or a body that is not a JSON object (forwarded as it is).
pub(crate) fn parse_write(op: &str, body: &[u8]) -> Option<Write> {
    let kind = match op {
        "UpdateItem" | "PutItem" | "DeleteItem" => WriteKind::Single,
        "TransactWriteItems" => WriteKind::Transaction,
        "BatchWriteItem" => WriteKind::Batch,
        _ => return None,
    };
    let v: Value = serde_json::from_slice(body).ok()?;
    let items = match kind {
        WriteKind::Single => {
            let attributes = if op == "PutItem" { "Item" } else { "Key" };
            vec![(table(&v), pk(v.get(attributes)))]
        }
        WriteKind::Transaction => v
            .get("TransactItems")?
            .as_array()?
            .iter()
            .map(|t| {
                let action = [
                    ("Update", "Key"),
                    ("Put", "Item"),
                    ("Delete", "Key"),
                    ("ConditionCheck", "Key"),
                ]
                .into_iter()
                .find_map(|(action, attributes)| t.get(action).map(|a| (a, attributes)));
                match action {
                    Some((a, attributes)) => (table(a), pk(a.get(attributes))),
                    None => (None, None),
                }
            })
            .collect(),
        WriteKind::Batch => v
            .get("RequestItems")?
            .as_object()?
            .iter()
            .flat_map(|(table, requests)| {
                requests.as_array().into_iter().flatten().map(move |r| {
                    let key = pk(r.get("PutRequest").and_then(|p| p.get("Item")))
                        .or_else(|| pk(r.get("DeleteRequest").and_then(|d| d.get("Key"))));
                    (Some(table.clone()), key)
                })
            })
            .collect(),
    };
    Some(Write { kind, items })
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets and counters of the emulated limit.
#[derive(Debug, Default)]
pub(crate) struct Partitions {
    limit: Option<PartitionLimit>,
    buckets: HashMap<String, Bucket>,
    counts: BTreeMap<String, PartitionCount>,
}

/// A write refused by the limit: what the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    kind: WriteKind,
    /// Per item: its table and whether its partition was over the limit.
    items: Vec<(Option<String>, bool)>,
}

impl Partitions {
    pub(crate) fn limit(&self) -> Option<PartitionLimit> {
        self.limit
    }

    /// Install `limit` (`None`: no limit); every bucket starts again full. Counters stay.
    pub(crate) fn set_limit(&mut self, limit: Option<PartitionLimit>) {
        self.limit = limit.map(|l| PartitionLimit::writes_per_sec(l.writes_per_sec));
        self.buckets.clear();
    }

    pub(crate) fn counts(&self) -> BTreeMap<String, PartitionCount> {
        self.counts.clone()
    }

    /// Charge `write` at `now`: every partition it touches must have a write per item, or
    /// nothing is charged and the request is refused.
    pub(crate) fn charge(&mut self, write: &Write, now: Instant) -> Result<(), Refusal> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        let rate = f64::from(limit.writes_per_sec);
        let mut needed: BTreeMap<&str, u64> = BTreeMap::new();
        for pk in write.items.iter().filter_map(|(_, pk)| pk.as_deref()) {
            *needed.entry(pk).or_default() += 1;
        }
        let mut over = Vec::new();
        for (&pk, &n) in &needed {
            let b = self.buckets.entry(pk.to_owned()).or_insert(Bucket {
                tokens: rate,
                at: now,
            });
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            b.tokens = (b.tokens + elapsed * rate).min(rate);
            b.at = b.at.max(now);
            if b.tokens < n as f64 {
                over.push(pk);
            }
        }
        for (&pk, &n) in &needed {
            let c = self.counts.entry(pk.to_owned()).or_default();
            if over.is_empty() {
                c.admitted += n;
                self.buckets.get_mut(pk).expect("refilled above").tokens -= n as f64;
            } else if over.contains(&pk) {
                c.throttled += n;
            } else {
                c.cancelled += n;
            }
        }
        if over.is_empty() {
            return Ok(());
        }
        Err(Refusal {
            kind: write.kind,
            items: write
                .items
                .iter()
                .map(|(table, pk)| {
                    let throttled = pk.as_deref().is_some_and(|pk| over.contains(&pk));
                    (table.clone(), throttled)
                })
                .collect(),
        })
    }
}

impl Refusal {
    /// The JSON body DynamoDB sends (always with HTTP 400): `ThrottlingException` for a
    /// single-item write or a batch, `TransactionCanceledException` with one cancellation
    /// reason per item (`ThrottlingError` for a throttled one, `None` for the others) for a
    /// transaction.
    pub(crate) fn answer(&self) -> String {
        let arn = |table: &Option<String>| {
            format!(
                "arn:aws:dynamodb:ddblocal:000000000000:table/{}",
                table.as_deref().unwrap_or("-")
            )
        };
        match self.kind {
            WriteKind::Single | WriteKind::Batch => {
                let mut tables: Vec<&Option<String>> = self
                    .items
                    .iter()
                    .filter(|(_, throttled)| *throttled)
                    .map(|(table, _)| table)
                    .collect();
                tables.sort_unstable();
                tables.dedup();
                let reasons: Vec<Value> = tables
                    .into_iter()
                    .map(|t| json!({"reason": "TableWriteKeyRangeThroughputExceeded", "resource": arn(t)}))
                    .collect();
                json!({
                    "__type": format!("{ERROR_PREFIX}ThrottlingException"),
                    "message": THROTTLING_MESSAGE,
                    "ThrottlingReasons": reasons,
                })
                .to_string()
            }
            WriteKind::Transaction => {
                let codes: Vec<&str> = self
                    .items
                    .iter()
                    .map(|(_, t)| if *t { "ThrottlingError" } else { "None" })
                    .collect();
                let reasons: Vec<Value> = codes
                    .iter()
                    .map(|&code| match code {
                        "None" => json!({"Code": "None"}),
                        _ => json!({"Code": code, "Message": THROTTLING_MESSAGE}),
                    })
                    .collect();
                json!({
                    "__type": format!("{ERROR_PREFIX}TransactionCanceledException"),
                    "Message": format!(
                        "Transaction cancelled, please refer cancellation reasons for specific \
                         reasons [{}]",
                        codes.join(", ")
                    ),
                    "CancellationReasons": reasons,
                })
                .to_string()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn items(w: &Write) -> Vec<(Option<&str>, Option<&str>)> {
        w.items
            .iter()
            .map(|(t, p)| (t.as_deref(), p.as_deref()))
            .collect()
    }

    #[test]
    fn partition_keys_of_every_write_shape() {
        let key = |pk: &str| json!({"PK": {"S": pk}, "SK": {"S": "#STATE"}});
        for (op, field) in [
            ("UpdateItem", "Key"),
            ("DeleteItem", "Key"),
            ("PutItem", "Item"),
        ] {
            let body = json!({"TableName": "t", field: key("a")}).to_string();
            let w = parse_write(op, body.as_bytes()).unwrap();
            assert_eq!(w.kind, WriteKind::Single);
            assert_eq!(items(&w), [(Some("t"), Some("a"))], "{op}");
        }
        // the wrong field for the operation, a number key, no key: nothing to charge
        let body = json!({"TableName": "t", "Item": key("a")}).to_string();
        assert_eq!(
            items(&parse_write("UpdateItem", body.as_bytes()).unwrap()),
            [(Some("t"), None)]
        );
        let body = json!({"TableName": "t", "Key": {"PK": {"N": "1"}}}).to_string();
        assert_eq!(
            items(&parse_write("DeleteItem", body.as_bytes()).unwrap()),
            [(Some("t"), None)]
        );

        let body = json!({"TransactItems": [
            {"Update": {"TableName": "t", "Key": key("a")}},
            {"Put": {"TableName": "u", "Item": key("b")}},
            {"Delete": {"TableName": "t", "Key": key("c")}},
            {"ConditionCheck": {"TableName": "t", "Key": key("a")}},
            {"Unknown": {}},
        ]})
        .to_string();
        let w = parse_write("TransactWriteItems", body.as_bytes()).unwrap();
        assert_eq!(w.kind, WriteKind::Transaction);
        assert_eq!(
            items(&w),
            [
                (Some("t"), Some("a")),
                (Some("u"), Some("b")),
                (Some("t"), Some("c")),
                (Some("t"), Some("a")),
                (None, None),
            ]
        );

        let body = json!({"RequestItems": {"t": [
            {"PutRequest": {"Item": key("a")}},
            {"DeleteRequest": {"Key": key("b")}},
        ]}})
        .to_string();
        let w = parse_write("BatchWriteItem", body.as_bytes()).unwrap();
        assert_eq!(w.kind, WriteKind::Batch);
        assert_eq!(items(&w), [(Some("t"), Some("a")), (Some("t"), Some("b"))]);

        // reads, other operations and bodies that are not JSON are not writes
        let body = json!({"TableName": "t", "Key": key("a")}).to_string();
        for op in ["GetItem", "Query", "BatchGetItem", "TransactGetItems", "-"] {
            assert_eq!(parse_write(op, body.as_bytes()), None, "{op}");
        }
        assert_eq!(parse_write("UpdateItem", b"not json"), None);
        assert_eq!(parse_write("TransactWriteItems", b"{}"), None);
    }

    fn write(kind: WriteKind, pks: &[&str]) -> Write {
        Write {
            kind,
            items: pks
                .iter()
                .map(|pk| (Some("t".to_string()), Some(pk.to_string())))
                .collect(),
        }
    }

    #[test]
    fn buckets_burst_refill_and_refuse_whole_requests() {
        let mut p = Partitions::default();
        let t0 = Instant::now();
        let one = write(WriteKind::Single, &["a"]);
        // no limit: everything passes, nothing is counted
        assert_eq!(p.charge(&one, t0), Ok(()));
        assert!(p.counts().is_empty());

        p.set_limit(Some(PartitionLimit::writes_per_sec(4)));
        for _ in 0..4 {
            assert_eq!(p.charge(&one, t0), Ok(()));
        }
        let refusal = p.charge(&one, t0).unwrap_err();
        assert_eq!(refusal.items, [(Some("t".to_string()), true)]);
        // a quarter of a second refills one write, no more
        let t1 = t0 + Duration::from_millis(250);
        assert_eq!(p.charge(&one, t1), Ok(()));
        assert!(p.charge(&one, t1).is_err());

        // a transaction over a throttled and a free partition: refused whole, nothing charged
        let tx = write(WriteKind::Transaction, &["a", "b"]);
        let refusal = p.charge(&tx, t1).unwrap_err();
        assert_eq!(
            refusal.items,
            [
                (Some("t".to_string()), true),
                (Some("t".to_string()), false)
            ]
        );
        // n items of one partition need n writes
        let five_b = write(WriteKind::Batch, &["b", "b", "b", "b", "b"]);
        assert!(p.charge(&five_b, t1).is_err());
        let four_b = write(WriteKind::Batch, &["b", "b", "b", "b"]);
        assert_eq!(p.charge(&four_b, t1), Ok(()));

        let counts = p.counts();
        assert_eq!(
            counts["a"],
            PartitionCount {
                admitted: 5,
                throttled: 3,
                cancelled: 0
            }
        );
        assert_eq!(
            counts["b"],
            PartitionCount {
                admitted: 4,
                throttled: 5,
                cancelled: 1
            }
        );

        // a refill never goes above the burst; a new limit starts every bucket full
        let later = t1 + Duration::from_secs(60);
        for _ in 0..4 {
            assert_eq!(p.charge(&one, later), Ok(()));
        }
        assert!(p.charge(&one, later).is_err());
        p.set_limit(Some(PartitionLimit::writes_per_sec(1)));
        assert_eq!(p.charge(&one, later), Ok(()));
        assert!(p.charge(&one, later).is_err());
        p.set_limit(None);
        assert_eq!(p.charge(&one, later), Ok(()));
        assert_eq!(p.counts()["a"].admitted, 10);
    }

    #[test]
    fn answers_are_dynamodbs() {
        let single = Refusal {
            kind: WriteKind::Single,
            items: vec![(Some("t".into()), true)],
        };
        let v: Value = serde_json::from_str(&single.answer()).unwrap();
        assert_eq!(
            v["__type"],
            "com.amazonaws.dynamodb.v20120810#ThrottlingException"
        );
        assert_eq!(v["message"], THROTTLING_MESSAGE);
        assert_eq!(
            v["ThrottlingReasons"],
            json!([{"reason": "TableWriteKeyRangeThroughputExceeded",
                    "resource": "arn:aws:dynamodb:ddblocal:000000000000:table/t"}])
        );
        let tx = Refusal {
            kind: WriteKind::Transaction,
            items: vec![(Some("t".into()), false), (Some("t".into()), true)],
        };
        let v: Value = serde_json::from_str(&tx.answer()).unwrap();
        assert_eq!(
            v["__type"],
            "com.amazonaws.dynamodb.v20120810#TransactionCanceledException"
        );
        assert_eq!(
            v["Message"],
            "Transaction cancelled, please refer cancellation reasons for specific reasons \
             [None, ThrottlingError]"
        );
        assert_eq!(
            v["CancellationReasons"],
            json!([{"Code": "None"}, {"Code": "ThrottlingError", "Message": THROTTLING_MESSAGE}])
        );
    }
}
