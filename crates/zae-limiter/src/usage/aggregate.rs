//! The pure core of the aggregator: bucket change records in, snapshot updates out. No I/O.

use std::collections::BTreeMap;

use super::Window;

/// A stream sequence number: decimal digits (DynamoDB gives up to 40), kept zero-padded to
/// 40 so that comparing the strings compares the numbers (in Rust and in a DynamoDB
/// condition alike).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeqNo(String);

impl SeqNo {
    /// Digits the padded form holds.
    pub const WIDTH: usize = 40;

    /// Parse a sequence number; `None` unless it is 1 to 40 ASCII digits.
    pub fn parse(s: &str) -> Option<SeqNo> {
        if s.is_empty() || s.len() > Self::WIDTH || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(SeqNo(format!("{s:0>40}")))
    }

    /// The number `n` (in-process feeds count their changes).
    pub fn from_u128(n: u128) -> SeqNo {
        SeqNo(format!("{n:040}"))
    }

    /// The zero-padded form (40 digits).
    pub fn padded(&self) -> &str {
        &self.0
    }

    /// The number as given (without leading zeros; `0` for zero).
    pub fn as_given(&self) -> &str {
        let t = self.0.trim_start_matches('0');
        if t.is_empty() {
            "0"
        } else {
            t
        }
    }
}

/// The kind of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// The bucket was created (its first write).
    Insert,
    /// The bucket was written again.
    Modify,
    /// The bucket was deleted (TTL or entity deletion): consumes nothing.
    Remove,
}

/// One change of a bucket item, as the stream (or the embedded feed) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketRecord {
    /// INSERT, MODIFY or REMOVE.
    pub kind: ChangeKind,
    /// Namespace id (from the key).
    pub namespace: String,
    /// Entity id.
    pub entity_id: String,
    /// Resource.
    pub resource: String,
    /// Shard of the bucket item (the last segment of its key).
    pub shard: String,
    /// `tc_{limit}` of the old image (empty for an INSERT).
    pub old_consumed: BTreeMap<String, i128>,
    /// `tc_{limit}` of the new image (empty for a REMOVE).
    pub new_consumed: BTreeMap<String, i128>,
    /// When the change happened (ms; the stream's approximate creation time).
    pub time_ms: i64,
    /// The record's sequence number (increasing per bucket item).
    pub seq: SeqNo,
}

impl BucketRecord {
    /// Net millitokens per limit this change consumed (zero deltas left out).
    pub fn deltas(&self) -> BTreeMap<String, i128> {
        if self.kind == ChangeKind::Remove {
            return BTreeMap::new();
        }
        let mut d = BTreeMap::new();
        for (name, new) in &self.new_consumed {
            let old = match self.kind {
                ChangeKind::Insert => 0,
                _ => self.old_consumed.get(name).copied().unwrap_or(0),
            };
            let delta = new.saturating_sub(old);
            if delta != 0 {
                d.insert(name.clone(), delta);
            }
        }
        d
    }
}

/// One record's part of an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contribution {
    /// The record's sequence number.
    pub seq: SeqNo,
    /// Its deltas per limit.
    pub deltas: BTreeMap<String, i128>,
}

/// What to add to one snapshot for one bucket item: the coalesced changes of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotUpdate {
    /// Namespace id.
    pub namespace: String,
    /// Entity id.
    pub entity_id: String,
    /// Resource.
    pub resource: String,
    /// Shard of the bucket item the changes came from.
    pub shard: String,
    /// Hourly or daily.
    pub window: Window,
    /// Start of the window (ms).
    pub window_start_ms: i64,
    /// The records, in increasing sequence order.
    pub contributions: Vec<Contribution>,
}

impl SnapshotUpdate {
    /// Millitokens per limit, summed over the contributions.
    pub fn deltas(&self) -> BTreeMap<String, i128> {
        let mut d: BTreeMap<String, i128> = BTreeMap::new();
        for c in &self.contributions {
            for (k, v) in &c.deltas {
                let e = d.entry(k.clone()).or_default();
                *e = e.saturating_add(*v);
            }
        }
        d.retain(|_, v| *v != 0);
        d
    }

    /// How many records it adds (the snapshot's event count).
    pub fn events(&self) -> u64 {
        self.contributions.len() as u64
    }

    /// Sequence number of the first record.
    pub fn first_seq(&self) -> Option<&SeqNo> {
        self.contributions.first().map(|c| &c.seq)
    }

    /// Sequence number of the last record.
    pub fn last_seq(&self) -> Option<&SeqNo> {
        self.contributions.last().map(|c| &c.seq)
    }

    /// The part of this update after `applied` (the last record the snapshot already
    /// holds from this bucket item), `None` when nothing is left.
    pub fn after(&self, applied: &SeqNo) -> Option<SnapshotUpdate> {
        let rest: Vec<Contribution> = self
            .contributions
            .iter()
            .filter(|c| c.seq > *applied)
            .cloned()
            .collect();
        (!rest.is_empty()).then(|| SnapshotUpdate {
            contributions: rest,
            ..self.clone()
        })
    }
}

/// Parse a bucket key `{ns}/BUCKET#{entity}#{resource}#{shard}` into (ns, entity,
/// resource, shard); `None` for any other key.
pub fn parse_bucket_pk(pk: &str) -> Option<(&str, &str, &str, &str)> {
    let (ns, rest) = pk.split_once('/')?;
    let rest = rest.strip_prefix("BUCKET#")?;
    let (er, shard) = rest.rsplit_once('#')?;
    let (entity, resource) = er.split_once('#')?;
    let ok = [ns, entity, resource, shard].iter().all(|s| !s.is_empty());
    ok.then_some((ns, entity, resource, shard))
}

/// Turn a batch of bucket changes into snapshot updates: one per (bucket item, window kind,
/// window start), each holding the records that consumed something, in sequence order. The
/// window of a record is taken from its own time. Records that consumed nothing (a refused
/// acquire, a REMOVE) contribute nothing; a record seen twice in the batch counts once.
pub fn aggregate(records: &[BucketRecord], windows: &[Window]) -> Vec<SnapshotUpdate> {
    type Key<'a> = (&'a str, &'a str, &'a str, &'a str, Window, i64);
    let mut out: BTreeMap<Key<'_>, Vec<Contribution>> = BTreeMap::new();
    for r in records {
        let deltas = r.deltas();
        if deltas.is_empty() {
            continue;
        }
        for w in windows {
            let key = (
                r.namespace.as_str(),
                r.entity_id.as_str(),
                r.resource.as_str(),
                r.shard.as_str(),
                *w,
                w.start_of(r.time_ms),
            );
            out.entry(key).or_default().push(Contribution {
                seq: r.seq.clone(),
                deltas: deltas.clone(),
            });
        }
    }
    out.into_iter()
        .map(|((ns, e, res, shard, window, start), mut contributions)| {
            contributions.sort_by(|a, b| a.seq.cmp(&b.seq));
            contributions.dedup_by(|a, b| a.seq == b.seq);
            SnapshotUpdate {
                namespace: ns.to_string(),
                entity_id: e.to_string(),
                resource: res.to_string(),
                shard: shard.to_string(),
                window,
                window_start_ms: start,
                contributions,
            }
        })
        .collect()
}

#[cfg(test)]
#[path = "aggregate_tests.rs"]
mod tests;
