//! The embedded store's change feed: every admitted bucket write is turned into a
//! [`BucketRecord`] (old and new consumed counters, the write's time, a sequence number)
//! and fed through the same [`aggregate`] as the DynamoDB stream, into snapshots kept
//! here. So usage works without AWS, with the numbers the aggregator would produce.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use async_trait::async_trait;

use super::MemoryStore;
use crate::error::StoreError;
use crate::store::{BucketChange, BucketState};
use crate::usage::{
    aggregate, BucketRecord, ChangeKind, SeqNo, Snapshot, SnapshotUpdate, UsageCursor, UsagePage,
    UsageQuery, UsageSelector, UsageStore, Window, WriteUsage, DEFAULT_USAGE_RETENTION_MS,
};

/// (namespace, entity, window, window start, resource)
type EntityKey = (String, String, Window, i64, String);
/// (namespace, resource, window, window start, entity)
type ResourceKey = (String, String, Window, i64, String);

#[derive(Debug, Clone, Default)]
struct Stored {
    limits: BTreeMap<String, i128>,
    events: u64,
    /// last applied sequence number per bucket shard
    applied: BTreeMap<String, SeqNo>,
    expires_ms: i64,
}

/// Snapshots of every namespace, indexed by entity and by resource.
#[derive(Debug, Default)]
pub(super) struct Feed {
    seq: u128,
    by_entity: BTreeMap<EntityKey, Stored>,
    by_resource: BTreeSet<ResourceKey>,
}

impl Feed {
    /// Feed the admitted write of `changes` (states `before` and `after` it) at `now_ms`.
    pub(super) fn record(
        &mut self,
        ns: &str,
        changes: &[BucketChange],
        before: &[BucketState],
        after: &[BucketState],
        now_ms: i64,
    ) {
        let consumed = |s: &BucketState| -> BTreeMap<String, i128> {
            s.limits
                .iter()
                .map(|(k, l)| (k.clone(), l.consumed))
                .collect()
        };
        let mut records = Vec::with_capacity(changes.len());
        for ((c, b), a) in changes.iter().zip(before).zip(after) {
            self.seq += 1;
            records.push(BucketRecord {
                kind: if b.limits.is_empty() {
                    ChangeKind::Insert
                } else {
                    ChangeKind::Modify
                },
                namespace: ns.to_string(),
                entity_id: c.key.entity_id.clone(),
                resource: c.key.resource.clone(),
                shard: c.key.shard.to_string(),
                old_consumed: consumed(b),
                new_consumed: consumed(a),
                time_ms: now_ms,
                seq: SeqNo::from_u128(self.seq),
            });
        }
        for u in aggregate(&records, &Window::ALL) {
            self.apply(&u, DEFAULT_USAGE_RETENTION_MS);
        }
    }

    fn apply(&mut self, u: &SnapshotUpdate, retention_ms: i64) -> WriteUsage {
        let key = (
            u.namespace.clone(),
            u.entity_id.clone(),
            u.window,
            u.window_start_ms,
            u.resource.clone(),
        );
        let stored = self.by_entity.entry(key).or_insert_with(|| Stored {
            expires_ms: u
                .window_start_ms
                .saturating_add(u.window.len_ms())
                .saturating_add(retention_ms),
            ..Stored::default()
        });
        let (todo, outcome) = match stored.applied.get(&u.shard) {
            Some(seen) => match u.after(seen) {
                None => return WriteUsage::Duplicate,
                Some(rest) if rest.events() < u.events() => (rest, WriteUsage::Partial),
                Some(rest) => (rest, WriteUsage::Applied),
            },
            None => (u.clone(), WriteUsage::Applied),
        };
        for (k, v) in todo.deltas() {
            let e = stored.limits.entry(k).or_default();
            *e = e.saturating_add(v);
        }
        stored.events += todo.events();
        if let Some(last) = todo.last_seq() {
            stored.applied.insert(u.shard.clone(), last.clone());
        }
        self.by_resource.insert((
            u.namespace.clone(),
            u.resource.clone(),
            u.window,
            u.window_start_ms,
            u.entity_id.clone(),
        ));
        outcome
    }

    fn snapshot(&self, key: &EntityKey) -> Option<(Snapshot, i64)> {
        let s = self.by_entity.get(key)?;
        Some((
            Snapshot {
                entity_id: key.1.clone(),
                resource: key.4.clone(),
                window: key.2,
                window_start_ms: key.3,
                limits: s.limits.clone(),
                events: s.events,
            },
            s.expires_ms,
        ))
    }

    fn query(&self, ns: &str, q: &UsageQuery, now_ms: i64) -> Result<UsagePage, StoreError> {
        q.check()?;
        let (lo, hi) = q.range();
        let (sel, by_entity) = match &q.selector {
            UsageSelector::Entity(e) => (e.clone(), true),
            UsageSelector::Resource(r) => (r.clone(), false),
        };
        let start = match &q.after {
            None => Bound::Included((ns.to_string(), sel.clone(), q.window, lo, String::new())),
            Some(c) => {
                let (ws, other) = parse_cursor(c)?;
                Bound::Excluded((ns.to_string(), sel.clone(), q.window, ws, other))
            }
        };
        let end = Bound::Included((
            ns.to_string(),
            sel.clone(),
            q.window,
            hi,
            "\u{10ffff}".into(),
        ));
        let keys: Box<dyn Iterator<Item = EntityKey>> = if by_entity {
            Box::new(self.by_entity.range((start, end)).map(|(k, _)| k.clone()))
        } else {
            Box::new(
                self.by_resource
                    .range((start, end))
                    .map(|(n, r, w, ws, e)| (n.clone(), e.clone(), *w, *ws, r.clone())),
            )
        };
        let mut page = UsagePage::default();
        for k in keys {
            if page.snapshots.len() == q.limit {
                let last = page.snapshots.last().expect("limit >= 1");
                let other = if by_entity {
                    &last.resource
                } else {
                    &last.entity_id
                };
                page.next = Some(UsageCursor(format!("{:013}#{other}", last.window_start_ms)));
                break;
            }
            if let Some((s, expires)) = self.snapshot(&k) {
                // expired like DynamoDB's TTL would have deleted it
                if expires >= now_ms {
                    page.snapshots.push(s);
                }
            }
        }
        Ok(page)
    }
}

fn parse_cursor(c: &UsageCursor) -> Result<(i64, String), StoreError> {
    let bad = || StoreError::Refused(format!("not a usage cursor: {:.80}", c.as_str()));
    let (ws, other) = c.as_str().split_once('#').ok_or_else(bad)?;
    Ok((ws.parse().map_err(|_| bad())?, other.to_string()))
}

#[async_trait]
impl UsageStore for MemoryStore {
    async fn write_usage(
        &self,
        update: &SnapshotUpdate,
        retention_ms: i64,
    ) -> Result<WriteUsage, StoreError> {
        Ok(self.usage.lock().apply(update, retention_ms))
    }

    async fn query_usage(&self, query: &UsageQuery) -> Result<UsagePage, StoreError> {
        let latest = self.buckets.time.latest();
        self.usage.lock().query(&self.ns, query, latest)
    }
}
