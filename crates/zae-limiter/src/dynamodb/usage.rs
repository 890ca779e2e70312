//! Usage snapshots in the table.
//!
//! | key / attribute | value |
//! |---|---|
//! | `PK` | `{ns}/ENTITY#{entity}` |
//! | `SK` | `#USAGE#{H\|D}#{window start, 13-digit ms}#{resource}` |
//! | `GSI2PK` / `GSI2SK` | `{ns}/RESOURCE#{resource}` / `USAGE#{H\|D}#{start}#{entity}` (by resource) |
//! | `GSI4PK` / `GSI4SK` | `{ns}` / `PK` (namespace purge) |
//! | `entity_id`, `resource`, `win`, `ws` | S, S, `hourly`/`daily`, N (ms) |
//! | `u_{L}` | N: net millitokens consumed by limit `L` |
//! | `ev` | N: bucket writes counted |
//! | `sq_{shard}` | S: last applied stream sequence number of bucket shard `shard` (40 digits) |
//! | `ttl` | N: end of the window plus the retention (epoch seconds) |
//!
//! A write is one `UpdateItem` (`ADD` the deltas and the event count, `SET` the sequence
//! number) conditioned on `sq_{shard}` being absent or below the update's first record:
//! a replay fails the condition and changes nothing. When it fails, the stored sequence
//! number is read back and only the records after it are written (a batch retried from the
//! middle), conditioned on that exact number.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;

use super::items::{n, s, Item};
use super::{sdk_err, DynamoStore};
use crate::error::StoreError;
use crate::usage::{
    SeqNo, Snapshot, SnapshotUpdate, UsageCursor, UsagePage, UsageQuery, UsageSelector, UsageStore,
    Window, WriteUsage,
};

fn sk(window: Window, start_ms: i64, resource: &str) -> String {
    format!("#USAGE#{}#{start_ms:013}#{resource}", window.code())
}

fn gsi2sk(window: Window, start_ms: i64, entity: &str) -> String {
    format!("USAGE#{}#{start_ms:013}#{entity}", window.code())
}

/// Read a snapshot item, validating it like user input.
pub(crate) fn parse_snapshot(item: &Item) -> Result<Snapshot, StoreError> {
    let pk = item
        .get("PK")
        .and_then(|v| v.as_s().ok())
        .map(String::as_str);
    let bad = |what: &str| {
        StoreError::Malformed(format!(
            "corrupt usage snapshot {}: {what}",
            pk.unwrap_or("?")
        ))
    };
    let text = |k: &str| -> Result<String, StoreError> {
        item.get(k)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .ok_or_else(|| bad(&format!("{k} is not a string")))
    };
    let number = |v: &AttributeValue, k: &str| -> Result<i128, StoreError> {
        v.as_n()
            .ok()
            .and_then(|n| n.parse::<i128>().ok())
            .ok_or_else(|| bad(&format!("{k} is not an integer")))
    };
    let window = Window::parse(&text("win")?).ok_or_else(|| bad("win is not hourly/daily"))?;
    let ws = number(item.get("ws").ok_or_else(|| bad("ws is missing"))?, "ws")?;
    let ws = i64::try_from(ws).map_err(|_| bad("ws is out of range"))?;
    let events = match item.get("ev") {
        Some(v) => u64::try_from(number(v, "ev")?).map_err(|_| bad("ev is out of range"))?,
        None => 0,
    };
    let mut limits = BTreeMap::new();
    for (k, v) in item {
        if let Some(name) = k.strip_prefix("u_") {
            crate::limit::validate_limit_name(name).map_err(|e| bad(&e.to_string()))?;
            let x = number(v, k)?;
            if x != 0 {
                limits.insert(name.to_string(), x);
            }
        }
    }
    Ok(Snapshot {
        entity_id: text("entity_id")?,
        resource: text("resource")?,
        window,
        window_start_ms: ws,
        limits,
        events,
    })
}

impl DynamoStore {
    /// One conditional write of `u`; `Ok(false)` when the condition failed.
    async fn put_usage(
        &self,
        u: &SnapshotUpdate,
        retention_ms: i64,
        expected: Option<&SeqNo>,
    ) -> Result<bool, StoreError> {
        let (Some(first), Some(last)) = (u.first_seq(), u.last_seq()) else {
            return Ok(true);
        };
        let pk = super::keys::entity_pk(&u.namespace, &u.entity_id);
        let ttl_s = u
            .window_start_ms
            .saturating_add(u.window.len_ms())
            .saturating_add(retention_ms)
            / 1000;
        let set = [
            "entity_id = :e",
            "#res = :r",
            "win = :w",
            "ws = :ws",
            "GSI2PK = :g2p",
            "GSI2SK = :g2s",
            "GSI4PK = :ns",
            "GSI4SK = :pk",
            "#ttl = if_not_exists(#ttl, :ttl)",
            "#sq = :last",
        ]
        .join(", ");
        let mut add = vec!["ev :ev".to_string()];
        let mut req = self
            .client
            .update_item()
            .table_name(&*self.table)
            .key("PK", s(&pk))
            .key("SK", s(sk(u.window, u.window_start_ms, &u.resource)))
            .expression_attribute_names("#res", "resource")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_names("#sq", format!("sq_{}", u.shard))
            .expression_attribute_values(":e", s(&u.entity_id))
            .expression_attribute_values(":r", s(&u.resource))
            .expression_attribute_values(":w", s(u.window.as_str()))
            .expression_attribute_values(":ws", n(u.window_start_ms))
            .expression_attribute_values(
                ":g2p",
                s(format!("{}/RESOURCE#{}", u.namespace, u.resource)),
            )
            .expression_attribute_values(
                ":g2s",
                s(gsi2sk(u.window, u.window_start_ms, &u.entity_id)),
            )
            .expression_attribute_values(":ns", s(&u.namespace))
            .expression_attribute_values(":pk", s(&pk))
            .expression_attribute_values(":ttl", n(ttl_s))
            .expression_attribute_values(":last", s(last.padded()))
            .expression_attribute_values(":ev", n(u.events()));
        for (i, (name, delta)) in u.deltas().iter().enumerate() {
            add.push(format!("#u{i} :u{i}"));
            req = req
                .expression_attribute_names(format!("#u{i}"), format!("u_{name}"))
                .expression_attribute_values(format!(":u{i}"), n(delta));
        }
        let set = format!("SET {set} ADD {}", add.join(", "));
        req = match expected {
            None => req
                .condition_expression("attribute_not_exists(#sq) OR #sq < :first")
                .expression_attribute_values(":first", s(first.padded())),
            Some(seen) => req
                .condition_expression("#sq = :seen")
                .expression_attribute_values(":seen", s(seen.padded())),
        };
        match req.update_expression(set).send().await {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(se)) if se.err().is_conditional_check_failed_exception() => {
                Ok(false)
            }
            Err(e) => Err(sdk_err(e)),
        }
    }

    /// The sequence number stored for `u`'s bucket shard.
    async fn applied_seq(&self, u: &SnapshotUpdate) -> Result<Option<SeqNo>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&*self.table)
            .key("PK", s(super::keys::entity_pk(&u.namespace, &u.entity_id)))
            .key("SK", s(sk(u.window, u.window_start_ms, &u.resource)))
            .consistent_read(true)
            .projection_expression("#sq")
            .expression_attribute_names("#sq", format!("sq_{}", u.shard))
            .send()
            .await
            .map_err(sdk_err)?;
        let attr = format!("sq_{}", u.shard);
        match out.item().and_then(|i| i.get(&attr)) {
            None => Ok(None),
            Some(v) => v
                .as_s()
                .ok()
                .and_then(|t| SeqNo::parse(t))
                .map(Some)
                .ok_or_else(|| {
                    StoreError::Malformed(format!(
                        "usage snapshot: {attr} is not a sequence number"
                    ))
                }),
        }
    }
}

#[async_trait]
impl UsageStore for DynamoStore {
    async fn write_usage(
        &self,
        update: &SnapshotUpdate,
        retention_ms: i64,
    ) -> Result<WriteUsage, StoreError> {
        self.writable().await?;
        if self.put_usage(update, retention_ms, None).await? {
            return Ok(WriteUsage::Applied);
        }
        // a replay: write what the snapshot does not hold yet (bounded: concurrent
        // aggregators of one stream shard do not exist, but never loop forever)
        for _ in 0..5 {
            let Some(seen) = self.applied_seq(update).await? else {
                // the condition failed on an existing value that is gone now: start over
                if self.put_usage(update, retention_ms, None).await? {
                    return Ok(WriteUsage::Applied);
                }
                continue;
            };
            let Some(rest) = update.after(&seen) else {
                return Ok(WriteUsage::Duplicate);
            };
            if self.put_usage(&rest, retention_ms, Some(&seen)).await? {
                return Ok(WriteUsage::Partial);
            }
        }
        Err(StoreError::Conflict(
            "the usage snapshot kept changing under the aggregator".into(),
        ))
    }

    async fn query_usage(&self, q: &UsageQuery) -> Result<UsagePage, StoreError> {
        q.check()?;
        let ns = self.ns().await?;
        let (lo, hi) = q.range();
        let c = q.window.code();
        let (index, pk_attr, sk_attr, pk, from, to) = match &q.selector {
            UsageSelector::Entity(e) => (
                None,
                "PK",
                "SK",
                super::keys::entity_pk(&ns, e),
                format!("#USAGE#{c}#{lo:013}#"),
                format!("#USAGE#{c}#{hi:013}$"),
            ),
            UsageSelector::Resource(r) => (
                Some("GSI2"),
                "GSI2PK",
                "GSI2SK",
                format!("{ns}/RESOURCE#{r}"),
                format!("USAGE#{c}#{lo:013}#"),
                format!("USAGE#{c}#{hi:013}$"),
            ),
        };
        let start = match &q.after {
            None => None,
            Some(cur) => Some(decode_cursor(cur, index.is_some(), &pk, &from, &to)?),
        };
        let out = self
            .client
            .query()
            .table_name(&*self.table)
            .set_index_name(index.map(str::to_string))
            .consistent_read(index.is_none())
            .key_condition_expression(format!(
                "{pk_attr} = :pk AND {sk_attr} BETWEEN :from AND :to"
            ))
            .expression_attribute_values(":pk", s(&pk))
            .expression_attribute_values(":from", s(&from))
            .expression_attribute_values(":to", s(&to))
            .limit(q.limit as i32)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(sdk_err)?;
        let items: Vec<Item> = if index.is_some() {
            // the index is keys only: read the snapshots, then put them back in index order
            let keys: Vec<Item> = out.items().iter().map(super::items::key_of).collect();
            let mut got: HashMap<(String, String), Item> = HashMap::new();
            for i in self.batch_get(keys.clone()).await? {
                let k = (str_of(&i, "PK"), str_of(&i, "SK"));
                got.insert(k, i);
            }
            keys.iter()
                .filter_map(|k| got.remove(&(str_of(k, "PK"), str_of(k, "SK"))))
                .collect()
        } else {
            out.items().to_vec()
        };
        let snapshots = items
            .iter()
            .map(parse_snapshot)
            .collect::<Result<Vec<_>, _>>()?;
        let next = match out.last_evaluated_key() {
            Some(k) if !k.is_empty() => Some(encode_cursor(k)),
            _ => None,
        };
        Ok(UsagePage { snapshots, next })
    }
}

fn str_of(i: &Item, k: &str) -> String {
    i.get(k)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default()
}

/// The last evaluated key as text: `SK` of the table, or `PK␟SK␟GSI2SK` of the index.
fn encode_cursor(k: &Item) -> UsageCursor {
    match k.get("GSI2SK") {
        None => UsageCursor(str_of(k, "SK")),
        Some(_) => UsageCursor(format!(
            "{}\u{1f}{}\u{1f}{}",
            str_of(k, "PK"),
            str_of(k, "SK"),
            str_of(k, "GSI2SK")
        )),
    }
}

/// A cursor back into a start key, refused unless it lies within the query's range.
fn decode_cursor(
    c: &UsageCursor,
    by_resource: bool,
    pk: &str,
    from: &str,
    to: &str,
) -> Result<Item, StoreError> {
    let bad = || {
        StoreError::Refused(format!(
            "not a cursor of this usage query: {:.120}",
            c.as_str()
        ))
    };
    let in_range = |k: &str| k >= from && k <= to;
    if !by_resource {
        if !in_range(c.as_str()) {
            return Err(bad());
        }
        return Ok(HashMap::from([
            ("PK".to_string(), s(pk)),
            ("SK".to_string(), s(c.as_str())),
        ]));
    }
    let parts: Vec<&str> = c.as_str().split('\u{1f}').collect();
    let [tpk, tsk, g2sk] = parts[..] else {
        return Err(bad());
    };
    if !in_range(g2sk) || !tsk.starts_with("#USAGE#") {
        return Err(bad());
    }
    Ok(HashMap::from([
        ("PK".to_string(), s(tpk)),
        ("SK".to_string(), s(tsk)),
        ("GSI2PK".to_string(), s(pk)),
        ("GSI2SK".to_string(), s(g2sk)),
    ]))
}
