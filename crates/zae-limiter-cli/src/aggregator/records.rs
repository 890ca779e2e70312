//! Stream records in one shape (DynamoDB JSON images), from a Lambda event or from the
//! DynamoDB Streams API, and what each one is.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use zae_limiter::usage::{parse_bucket_pk, BucketRecord, ChangeKind, SeqNo};

/// One stream record.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamRecord {
    /// `INSERT`, `MODIFY`, `REMOVE`, or what the source said (DynamoDB Local reports TTL
    /// deletions under an unknown name).
    pub event_name: String,
    /// The sequence number, as given.
    pub seq: String,
    /// Approximate creation time (ms), when given.
    pub time_ms: Option<i64>,
    /// Keys, old and new image, in DynamoDB JSON (`{"S": "..."}`).
    pub keys: Map<String, Value>,
    /// The item before.
    pub old: Option<Map<String, Value>>,
    /// The item after.
    pub new: Option<Map<String, Value>>,
    /// `userIdentity` (type, principal), when given.
    pub identity: Option<(String, String)>,
}

impl StreamRecord {
    /// A record of a Lambda DynamoDB stream event (`Records[i]`).
    pub fn from_lambda(raw: &Value) -> Result<StreamRecord, String> {
        let d = raw.get("dynamodb").ok_or("no dynamodb member")?;
        let seq = d
            .get("SequenceNumber")
            .and_then(Value::as_str)
            .ok_or("no SequenceNumber")?
            .to_string();
        let map = |v: Option<&Value>| -> Result<Option<Map<String, Value>>, String> {
            match v {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Object(m)) => Ok(Some(m.clone())),
                Some(_) => Err("an image is not a map".into()),
            }
        };
        let time_ms = d
            .get("ApproximateCreationDateTime")
            .and_then(Value::as_f64)
            .map(|s| (s * 1000.0) as i64);
        let identity = raw.get("userIdentity").and_then(|u| {
            Some((
                u.get("type")?.as_str()?.to_string(),
                u.get("principalId")?.as_str()?.to_string(),
            ))
        });
        Ok(StreamRecord {
            event_name: raw
                .get("eventName")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            seq,
            time_ms,
            keys: map(d.get("Keys"))?.ok_or("no Keys")?,
            old: map(d.get("OldImage"))?,
            new: map(d.get("NewImage"))?,
            identity,
        })
    }

    fn key_s(&self, k: &str) -> Option<&str> {
        self.keys.get(k)?.get("S")?.as_str()
    }
}

/// What a record is to the aggregator.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A bucket item changed.
    Bucket(BucketRecord),
    /// An audit item expired by TTL: its old image, as plain JSON.
    AuditExpired(Map<String, Value>),
    /// Anything else (other items, a user's delete of an audit item).
    Other,
}

/// Whether a deletion was made by the TTL service: AWS says REMOVE with userIdentity
/// `Service` / `dynamodb.amazonaws.com`; DynamoDB Local uses an event name outside the
/// three known ones and no identity, with the old image only.
pub fn is_ttl_delete(r: &StreamRecord) -> bool {
    match (&r.identity, r.event_name.as_str()) {
        (Some((t, p)), "REMOVE") => t == "Service" && p == "dynamodb.amazonaws.com",
        (None, "INSERT" | "MODIFY" | "REMOVE") => false,
        (None, _) => r.old.is_some() && r.new.is_none(),
        _ => false,
    }
}

fn consumed(image: Option<&Map<String, Value>>) -> Result<BTreeMap<String, i128>, String> {
    let mut out = BTreeMap::new();
    for (k, v) in image.into_iter().flatten() {
        if let Some(name) = k.strip_prefix("tc_") {
            let n = v
                .get("N")
                .and_then(Value::as_str)
                .and_then(|n| n.parse::<i128>().ok())
                .ok_or_else(|| format!("{k} is not an integer"))?;
            out.insert(name.to_string(), n);
        }
    }
    Ok(out)
}

/// Classify `r`; an error names what did not parse.
pub fn classify(r: &StreamRecord) -> Result<Kind, String> {
    let sk = r.key_s("SK").unwrap_or("");
    if sk == zae_limiter::keys::BUCKET_SK {
        let pk = r.key_s("PK").ok_or("a bucket record without PK")?;
        let Some((ns, entity, resource, shard)) = parse_bucket_pk(pk) else {
            return Ok(Kind::Other);
        };
        let kind = match r.event_name.as_str() {
            "INSERT" => ChangeKind::Insert,
            "MODIFY" => ChangeKind::Modify,
            _ => ChangeKind::Remove,
        };
        if kind == ChangeKind::Remove {
            return Ok(Kind::Other);
        }
        let seq = SeqNo::parse(&r.seq).ok_or("bad sequence number")?;
        let time_ms = r
            .time_ms
            .ok_or("a bucket record without ApproximateCreationDateTime")?;
        return Ok(Kind::Bucket(BucketRecord {
            kind,
            namespace: ns.to_string(),
            entity_id: entity.to_string(),
            resource: resource.to_string(),
            shard: shard.to_string(),
            old_consumed: consumed(r.old.as_ref())?,
            new_consumed: consumed(r.new.as_ref())?,
            time_ms,
            seq,
        }));
    }
    if sk.starts_with("#AUDIT#") && is_ttl_delete(r) {
        let old = r
            .old
            .as_ref()
            .ok_or("an expired audit item without OldImage")?;
        return Ok(Kind::AuditExpired(audit_json(old)?));
    }
    Ok(Kind::Other)
}

/// An audit item as plain JSON: its attributes (index keys left out), `details` parsed,
/// and `namespace_id` from the key.
fn audit_json(image: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (k, v) in image {
        if k.starts_with("GSI") {
            continue;
        }
        out.insert(k.clone(), plain(v)?);
    }
    if let Some(Value::String(d)) = out.get("details") {
        if let Ok(parsed) = serde_json::from_str::<Value>(d) {
            out.insert("details".into(), parsed);
        }
    }
    if let Some(ns) = out
        .get("PK")
        .and_then(Value::as_str)
        .and_then(|pk| pk.split_once('/'))
        .map(|(ns, _)| ns.to_string())
    {
        out.insert("namespace_id".into(), Value::String(ns));
    }
    Ok(out)
}

/// DynamoDB JSON to plain JSON (numbers stay exact: integers as numbers when they fit, else
/// strings).
pub fn plain(v: &Value) -> Result<Value, String> {
    // DynamoDB Local's stream images write an empty map as `{}`
    if v.as_object().is_some_and(|m| m.is_empty()) {
        return Ok(Value::Object(Map::new()));
    }
    let obj = v
        .as_object()
        .filter(|m| m.len() == 1)
        .ok_or("not a DynamoDB value")?;
    let (t, x) = obj.iter().next().expect("one entry");
    Ok(match (t.as_str(), x) {
        ("S", Value::String(s)) => Value::String(s.clone()),
        ("N", Value::String(n)) => match (n.parse::<i64>(), n.parse::<f64>()) {
            (Ok(i), _) => Value::from(i),
            (_, Ok(f)) if f.is_finite() && !n.contains(['e', 'E']) && n.len() < 16 => {
                Value::from(f)
            }
            _ => Value::String(n.clone()),
        },
        ("BOOL", Value::Bool(b)) => Value::Bool(*b),
        ("NULL", _) => Value::Null,
        ("M", Value::Object(m)) => Value::Object(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), plain(v)?)))
                .collect::<Result<_, String>>()?,
        ),
        ("L", Value::Array(a)) => Value::Array(a.iter().map(plain).collect::<Result<_, _>>()?),
        ("SS" | "NS" | "BS" | "B", x) => x.clone(),
        _ => return Err(format!("unsupported DynamoDB value type {t}")),
    })
}

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;
