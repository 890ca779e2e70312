//! Multi-item reads and writes: every page of a query, `BatchGetItem` and `BatchWriteItem`
//! in chunks, retrying what DynamoDB leaves unprocessed.

use aws_sdk_dynamodb::types::KeysAndAttributes;

use super::errors::build_err;
use super::items::{s, Item};
use super::{sdk_err, DynamoStore, Io};
use crate::error::StoreError;

impl DynamoStore {
    /// Every item a query returns (all pages).
    /// `consistent` applies to table queries only (indexes are eventually consistent).
    pub(super) async fn query_all(
        &self,
        index: Option<&str>,
        condition: &str,
        values: &[(&str, String)],
    ) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&*self.table)
                .set_index_name(index.map(str::to_string))
                .consistent_read(index.is_none())
                .key_condition_expression(condition)
                .set_exclusive_start_key(start.take());
            for (k, v) in values {
                q = q.expression_attribute_values(*k, s(v.clone()));
            }
            let page = q.send().await.map_err(sdk_err)?;
            out.extend(page.items().iter().cloned());
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }

    /// Read items by key (strongly consistent), 100 per `BatchGetItem`, retrying what
    /// DynamoDB leaves unprocessed. Absent items are simply not returned.
    pub(super) async fn batch_get(&self, wanted: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        for chunk in wanted.chunks(100) {
            let req = KeysAndAttributes::builder()
                .set_keys(Some(chunk.to_vec()))
                .consistent_read(true)
                .build()
                .map_err(build_err)?;
            let mut pending = Some(req);
            for attempt in 0.. {
                let Some(req) = pending.take() else { break };
                if attempt >= 10 {
                    return Err(StoreError::unavailable(
                        "BatchGetItem kept returning unprocessed keys",
                    ));
                }
                if attempt > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(10 << attempt.min(5)))
                        .await;
                }
                let got = self
                    .client
                    .batch_get_item()
                    .request_items(&*self.table, req)
                    .set_return_consumed_capacity(self.rcc())
                    .send()
                    .await
                    .map_err(sdk_err)?;
                self.track(Io::Read, got.consumed_capacity());
                if let Some(items) = got.responses().and_then(|r| r.get(&*self.table)) {
                    out.extend(items.iter().cloned());
                }
                pending = got
                    .unprocessed_keys()
                    .and_then(|u| u.get(&*self.table))
                    .filter(|k| !k.keys().is_empty())
                    .cloned();
            }
        }
        Ok(out)
    }

    /// Delete (and put) items in batches of 25, retrying what DynamoDB leaves unprocessed.
    pub(super) async fn batch_write(
        &self,
        requests: Vec<aws_sdk_dynamodb::types::WriteRequest>,
    ) -> Result<(), StoreError> {
        for chunk in requests.chunks(25) {
            let mut pending = chunk.to_vec();
            for attempt in 0.. {
                if pending.is_empty() {
                    break;
                }
                if attempt >= 10 {
                    return Err(StoreError::unavailable(
                        "BatchWriteItem kept returning unprocessed items",
                    ));
                }
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&*self.table, pending)
                    .send()
                    .await
                    .map_err(sdk_err)?;
                pending = out
                    .unprocessed_items()
                    .and_then(|u| u.get(&*self.table))
                    .cloned()
                    .unwrap_or_default();
                if !pending.is_empty() {
                    tokio::time::sleep(std::time::Duration::from_millis(20 << attempt.min(5)))
                        .await;
                }
            }
        }
        Ok(())
    }
}
