//! The bucket write loop: plan (pure, `plan.rs`), send one conditional write (`UpdateItem`,
//! or `TransactWriteItems` for several buckets and for exactly-once writes), and act on the
//! answer: done, re-plan from the items DynamoDB returned, or back off under contention.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};

use super::bucket_item::{parse_bucket, parse_updated, BucketItem};
use super::errors::{
    build_err, cancelled_by, kind, sdk_err, service_error, throttle_pause, throttled_cancellation,
    Cancelled, Kind,
};
use super::expr;
use super::plan::{
    backoff_ms, landed_before, plan, refused_by_cache, BucketPlan, Decision, Knowledge,
};
use super::{DynamoStore, Io};
use crate::error::{BoxError, StoreError};
use crate::store::{check_changes, ApplyOutcome, BucketChange, BucketState, WriteOp};
use crate::telemetry::{self, Retry};

/// Re-plans after failed conditions (wrong guesses, concurrent changes) before giving up.
const MAX_REPLANS: u32 = 8;
/// Retries after transaction conflicts before giving up (bounded by the deadline anyway).
const MAX_CONFLICTS: u32 = 10;

/// One attempt's answer.
enum Attempt {
    /// Applied; the new state per written bucket when DynamoDB returned it.
    Applied(Vec<Option<BucketState>>),
    /// Conditions failed: (change index, item as it was).
    Failed(Vec<(usize, Option<BucketItem>)>),
    /// Concurrent writers conflicted: nothing was written. What DynamoDB said, and its error.
    Conflict(String, Option<BoxError>),
    /// A transaction cancelled by throttling (no condition failed): nothing was written.
    /// The SDK retries a throttled `UpdateItem` itself, not this.
    Throttled(StoreError),
}

/// A `ClientRequestToken` (≤ 36 characters) for attempt `n` of write `op`: retries of the
/// same request carry the same token, so DynamoDB applies it once.
fn request_token(op: &WriteOp, n: u32) -> String {
    // FNV-1a, 128 bits: stable across processes and versions
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in op.id.bytes() {
        h ^= b as u128;
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    format!("{h:032x}-{n}")
}

impl DynamoStore {
    pub(super) async fn apply_changes(
        &self,
        changes: &[BucketChange],
        now: i64,
        op: &WriteOp,
    ) -> Result<ApplyOutcome, StoreError> {
        self.writable().await?;
        check_changes(changes)?;
        let ns = self.ns().await?;
        let mut know: Vec<Knowledge> = changes
            .iter()
            .map(|c| Knowledge::Guess(self.cached(&ns, &c.key)))
            .collect();
        if self.local_refusals {
            if let Some(states) = refused_by_cache(changes, &know, now) {
                telemetry::local_refusal();
                return Ok(ApplyOutcome::Rejected(states));
            }
        }
        // a checked amount above capacity can never pass: read the bucket for exact statuses
        for (i, c) in changes.iter().enumerate() {
            if c.limits
                .iter()
                .any(|l| l.checked && l.amount > l.params.capacity)
            {
                know[i] = Knowledge::Exact(self.read_bucket(&c.key).await?);
            }
        }
        let (mut replans, mut conflicts, mut throttles, mut n) = (0u32, 0u32, 0u32, 0u32);
        loop {
            let decisions: Vec<Decision> = changes
                .iter()
                .zip(&know)
                .map(|(c, k)| plan(c, k, now))
                .collect();
            let refused = decisions
                .iter()
                .any(|d| matches!(d, Decision::Refuse { .. }));
            let writes: Vec<(usize, BucketPlan)> = decisions
                .into_iter()
                .enumerate()
                .filter_map(|(i, d)| match d {
                    Decision::Write(p) if !refused => Some((i, p)),
                    Decision::Refuse { rebase: Some(p) } => Some((i, p)),
                    _ => None,
                })
                .collect();
            if writes.is_empty() {
                return Ok(ApplyOutcome::Rejected(
                    know.iter().map(|k| k.state().cloned()).collect(),
                ));
            }
            let landed = match self.attempt(&ns, changes, &writes, op, n).await? {
                Attempt::Applied(states) => Some(states),
                Attempt::Failed(failed) => match &failed[..] {
                    // an earlier attempt of this very write landed (its response was lost
                    // and the request retried): ALL_OLD is the state right after it
                    [(_, Some(item))]
                        if writes.len() == 1 && landed_before(item.last_op.as_deref(), &op.id) =>
                    {
                        Some(vec![Some(item.state.clone())])
                    }
                    _ => {
                        for (i, item) in failed {
                            let state = item.map(|it| it.state);
                            match &state {
                                Some(s) => self.remember(&ns, &changes[i].key, s),
                                None => self.forget(&ns, &changes[i].key),
                            }
                            know[i] = Knowledge::Exact(state);
                        }
                        replans += 1;
                        if replans > MAX_REPLANS {
                            return Err(StoreError::contended(format!(
                                "the bucket changed under {MAX_REPLANS} consecutive attempts"
                            )));
                        }
                        telemetry::retry(Retry::Condition);
                        None
                    }
                },
                Attempt::Conflict(why, source) => {
                    conflicts += 1;
                    if conflicts > MAX_CONFLICTS {
                        return Err(StoreError::Contended {
                            message: format!("{why} (after {MAX_CONFLICTS} retries)"),
                            source,
                        });
                    }
                    let pause = Duration::from_millis(backoff_ms(conflicts, rand::random::<f64>()));
                    // stop while the caller still listens: contention is not an outage
                    if op
                        .deadline
                        .is_some_and(|d| tokio::time::Instant::now() + pause * 2 >= d)
                    {
                        return Err(StoreError::Contended {
                            message: format!("{why} (still conflicting at the deadline)"),
                            source,
                        });
                    }
                    telemetry::retry(Retry::Conflict);
                    tokio::time::sleep(pause).await;
                    None
                }
                // as many attempts as the SDK gives a throttled single-item write, within
                // the deadline; then the caller hears `Throttled` (and may split the bucket)
                Attempt::Throttled(e) => {
                    throttles += 1;
                    let now = tokio::time::Instant::now();
                    let remaining = op.deadline.map(|d| d.saturating_duration_since(now));
                    match throttle_pause(throttles, self.max_attempts, rand::random(), remaining) {
                        Some(pause) => tokio::time::sleep(pause).await,
                        None => return Err(e),
                    }
                    None
                }
            };
            if let Some(states) = landed {
                let mut after: Vec<Option<BucketState>> =
                    know.iter().map(|k| k.state().cloned()).collect();
                for ((i, p), s) in writes.into_iter().zip(states) {
                    let s = s.unwrap_or(p.estimate);
                    self.remember(&ns, &changes[i].key, &s);
                    after[i] = Some(s);
                }
                // a refused request wrote only its rebases: still refused
                return Ok(if refused {
                    ApplyOutcome::Rejected(after)
                } else {
                    ApplyOutcome::Applied(
                        after.into_iter().map(Option::unwrap_or_default).collect(),
                    )
                });
            }
            n += 1;
        }
    }

    /// One request for `writes`: an `UpdateItem` with the last-op guard when it is one
    /// bucket and need not be exactly-once, otherwise an idempotent `TransactWriteItems`.
    async fn attempt(
        &self,
        ns: &str,
        changes: &[BucketChange],
        writes: &[(usize, BucketPlan)],
        op: &WriteOp,
        n: u32,
    ) -> Result<Attempt, StoreError> {
        if let ([(i, p)], false) = (writes, op.exactly_once) {
            let key = &changes[*i].key;
            let e = expr::build(ns, key, p, Some(&op.id));
            let res = self
                .client
                .update_item()
                .table_name(&*self.table)
                .set_key(Some(Self::bucket_key(ns, key)))
                .update_expression(e.update)
                .condition_expression(e.condition)
                .set_expression_attribute_names(Some(e.names))
                .set_expression_attribute_values(Some(e.values))
                // the attributes written, not the whole item (keys, GSI keys, ids): the
                // rest is what this write conditioned on (`parse_updated`)
                .return_values(ReturnValue::UpdatedNew)
                .set_return_consumed_capacity(self.rcc())
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            return match res {
                Ok(out) => {
                    self.track(Io::Write, out.consumed_capacity());
                    let state = out
                        .attributes()
                        .map(|a| parse_updated(a, &p.estimate))
                        .transpose()?;
                    Ok(Attempt::Applied(vec![state]))
                }
                Err(SdkError::ServiceError(se)) => match se.err() {
                    UpdateItemError::ConditionalCheckFailedException(c) => {
                        let old = c.item().map(parse_bucket).transpose()?;
                        Ok(Attempt::Failed(vec![(*i, old)]))
                    }
                    other if kind(other.code(), None) == Kind::Contended => {
                        let why = format!(
                            "{}: {}",
                            other.code().unwrap_or("conflict"),
                            other.message().unwrap_or("")
                        );
                        Ok(Attempt::Conflict(
                            why,
                            Some(Box::new(SdkError::ServiceError(se))),
                        ))
                    }
                    _ => Err(sdk_err(SdkError::ServiceError(se))),
                },
                Err(e) => Err(sdk_err(e)),
            };
        }
        let mut items = Vec::with_capacity(writes.len());
        for (i, p) in writes {
            let key = &changes[*i].key;
            let e = expr::build(ns, key, p, None);
            let upd = Update::builder()
                .table_name(&*self.table)
                .set_key(Some(Self::bucket_key(ns, key)))
                .update_expression(e.update)
                .condition_expression(e.condition)
                .set_expression_attribute_names(Some(e.names))
                .set_expression_attribute_values(Some(e.values))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build()
                .map_err(build_err)?;
            items.push(TransactWriteItem::builder().update(upd).build());
        }
        let res = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .client_request_token(request_token(op, n))
            .set_return_consumed_capacity(self.rcc())
            .send()
            .await;
        match res {
            Ok(out) => {
                self.track(Io::Write, out.consumed_capacity());
                Ok(Attempt::Applied(vec![None; writes.len()]))
            }
            Err(SdkError::ServiceError(se)) => match se.err() {
                TransactWriteItemsError::TransactionCanceledException(tc) => {
                    // a failed condition is the answer whatever else happened; then a reason
                    // no retry cures; then throttling; then contention (`cancelled`)
                    let mut failed = Vec::new();
                    let mut conflict: Option<String> = None;
                    let mut error: Option<StoreError> = None;
                    for ((i, _), r) in writes.iter().zip(tc.cancellation_reasons()) {
                        match r.code() {
                            Some("ConditionalCheckFailed") => {
                                failed.push((*i, r.item().map(parse_bucket).transpose()?))
                            }
                            Some("None") | None => {}
                            Some(code) => match kind(Some(code), None) {
                                Kind::Contended => {
                                    conflict =
                                        Some(format!("{code}: {}", r.message().unwrap_or("")))
                                }
                                Kind::Throttled => {}
                                _ if error.is_none() => {
                                    error = Some(service_error(
                                        Some(code),
                                        r.message(),
                                        None,
                                        Some(Box::new(tc.clone())),
                                    ))
                                }
                                _ => {}
                            },
                        }
                    }
                    if !failed.is_empty() {
                        return Ok(Attempt::Failed(failed));
                    }
                    if let Some(e) = error {
                        return Err(e);
                    }
                    match (cancelled_by(tc), conflict) {
                        (Cancelled::Throttled, _) => Ok(Attempt::Throttled(
                            throttled_cancellation(tc, Some(Box::new(tc.clone()))),
                        )),
                        (_, Some(c)) => Ok(Attempt::Conflict(c, Some(Box::new(tc.clone())))),
                        _ => Err(StoreError::Other {
                            message: format!("transaction cancelled: {tc}"),
                            source: Some(Box::new(tc.clone())),
                        }),
                    }
                }
                other if kind(other.code(), None) == Kind::Contended => {
                    let why = format!(
                        "{}: {}",
                        other.code().unwrap_or("conflict"),
                        other.message().unwrap_or("")
                    );
                    Ok(Attempt::Conflict(
                        why,
                        Some(Box::new(SdkError::ServiceError(se))),
                    ))
                }
                _ => Err(sdk_err(SdkError::ServiceError(se))),
            },
            Err(e) => Err(sdk_err(e)),
        }
    }

    /// A single-bucket write guarded by `lo` landed if the item still names its op (no one
    /// wrote the bucket since). Transactions and overwritten guards cannot be told.
    pub(super) async fn landed(
        &self,
        changes: &[BucketChange],
        op: &WriteOp,
    ) -> Result<bool, StoreError> {
        let [change] = changes else {
            return Ok(false);
        };
        if op.exactly_once {
            return Ok(false);
        }
        let ns = self.ns().await?;
        let out = self
            .client
            .get_item()
            .table_name(&*self.table)
            .set_key(Some(Self::bucket_key(&ns, &change.key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_err)?;
        let item = out.item().map(parse_bucket).transpose()?;
        Ok(item.is_some_and(|i| landed_before(i.last_op.as_deref(), &op.id)))
    }

    /// Read one bucket with a consistent read.
    pub(super) async fn read_bucket(
        &self,
        key: &crate::store::BucketKey,
    ) -> Result<Option<BucketState>, StoreError> {
        let ns = self.ns().await?;
        let out = self
            .client
            .get_item()
            .table_name(&*self.table)
            .set_key(Some(Self::bucket_key(&ns, key)))
            .consistent_read(true)
            .set_return_consumed_capacity(self.rcc())
            .send()
            .await
            .map_err(sdk_err)?;
        self.track(Io::Read, out.consumed_capacity());
        let state = out.item().map(parse_bucket).transpose()?.map(|b| b.state);
        if let Some(s) = &state {
            self.remember(&ns, key, s);
        }
        Ok(state)
    }

    pub(super) fn bucket_key(
        ns: &str,
        key: &crate::store::BucketKey,
    ) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (
                "PK".to_string(),
                AttributeValue::S(super::keys::bucket_pk(
                    ns,
                    &key.entity_id,
                    &key.resource,
                    key.shard,
                )),
            ),
            (
                "SK".to_string(),
                AttributeValue::S(super::keys::BUCKET_SK.to_string()),
            ),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_short_stable_and_distinct() {
        let a = WriteOp::new("lease-1:commit", true);
        let b = WriteOp::new("lease-1:rollback", true);
        assert_eq!(request_token(&a, 0), request_token(&a, 0));
        assert_ne!(request_token(&a, 0), request_token(&a, 1));
        assert_ne!(request_token(&a, 0), request_token(&b, 0));
        assert!(request_token(&a, 99).len() <= 36);
    }
}
