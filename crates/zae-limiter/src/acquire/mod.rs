//! `acquire`: validate the request before any I/O, resolve the limits of the entity (and of
//! its parent when it cascades), ask the store for one atomic decision, and hand out a lease.
//! The request builder is in `request.rs`, the pure decisions in `decide.rs`.

mod decide;
mod request;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tracing::Instrument;

use crate::bucket::MILLI;
use crate::config::OnUnavailable;
use crate::error::{Error, Result, StoreError};
use crate::exceeded::RateLimitExceeded;
use crate::lease::{Lease, LeaseEntry};
use crate::limit::Limit;
use crate::limiter::RateLimiter;
use crate::store::{ApplyOutcome, BucketChange, BucketKey, LimitChange};
use crate::telemetry::{self, Outcome, StoreOp};

pub(crate) use decide::{amounts, pick_limits, shared_amounts, statuses_for, to_tokens};
pub(crate) use request::AcquireSpec;
pub use request::{Acquire, RunError};

/// One bucket the acquire takes from.
struct Target {
    key: BucketKey,
    limits: Vec<Limit>,
    version: i64,
    amounts: Vec<u64>,
}

impl Target {
    fn change(&self) -> BucketChange {
        BucketChange {
            key: self.key.clone(),
            limits: self
                .limits
                .iter()
                .zip(&self.amounts)
                .map(|(l, n)| LimitChange {
                    name: l.name().to_string(),
                    params: l.params(),
                    version: self.version,
                    amount: *n as i128 * MILLI,
                    checked: true,
                })
                .collect(),
        }
    }
}

/// The write an acquire has sent and not yet heard back about.
/// Shared (`Arc`), so that recording it costs no copy on the hot path.
type InFlight = parking_lot::Mutex<
    Option<(
        std::sync::Arc<Vec<BucketChange>>,
        std::sync::Arc<crate::store::WriteOp>,
    )>,
>;

/// A store failure, with the stored `on_unavailable` policy when it was already known and
/// whether the request's limits had been resolved.
struct StoreFailure(StoreError, Option<OnUnavailable>, bool);

impl RateLimiter {
    /// Begin an acquire of capacity for `entity_id` on `resource`. Set the limits and amounts
    /// on the returned request, then `.await` it (or call [`Acquire::run`]).
    pub fn acquire(&self, entity_id: impl Into<String>, resource: impl Into<String>) -> Acquire {
        Acquire {
            limiter: self.clone(),
            spec: AcquireSpec {
                entity_id: entity_id.into(),
                resource: resource.into(),
                limits: Vec::new(),
                consume: Vec::new(),
                parent_limits: None,
                on_unavailable: None,
            },
        }
    }

    /// An acquire in its span (`zae_limiter.acquire`), counted in the decisions metric.
    pub(crate) async fn acquire_spec(&self, req: AcquireSpec) -> Result<Lease> {
        let span = tracing::info_span!(
            target: "zae_limiter",
            "zae_limiter.acquire",
            entity = %req.entity_id,
            resource = %req.resource,
            outcome = tracing::field::Empty,
            store_latency_ms = tracing::field::Empty,
        );
        // microseconds spent waiting on the store, over every call of this acquire
        let store_us = AtomicU64::new(0);
        let r = self
            .acquire_traced(req, &store_us)
            .instrument(span.clone())
            .await;
        let outcome = Outcome::of(&r);
        telemetry::decision(outcome);
        span.record("outcome", outcome.as_str());
        span.record(
            "store_latency_ms",
            store_us.load(Ordering::Relaxed) as f64 / 1e3,
        );
        r
    }

    async fn acquire_traced(&self, req: AcquireSpec, store_us: &AtomicU64) -> Result<Lease> {
        req.validate()?;
        // one deadline for the whole operation: resolution, cascade and write
        let deadline = self.deadline();
        let in_flight: InFlight = parking_lot::Mutex::new(None);
        let outcome = match tokio::time::timeout_at(
            deadline,
            self.acquire_inner(&req, deadline, &in_flight, store_us),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(StoreFailure(
                StoreError::unavailable(format!(
                    "no answer from the store within {:?}",
                    self.timeout()
                )),
                None,
                false,
            )),
        };
        let (e, stored_policy, resolved) = match outcome {
            Ok(r) => return r,
            Err(StoreFailure(e, p, resolved)) => (e, p, resolved),
        };
        // a write whose answer never came may still have landed: give back what it took
        let in_flight = in_flight.lock().take();
        // a write was sent, so the request's limits had been resolved and checked
        let resolved = resolved || in_flight.is_some();
        if let Some((changes, op)) = in_flight {
            self.compensate_later(changes, op);
        }
        let policy = req
            .on_unavailable
            .or(stored_policy)
            .or(self.last_policy())
            .unwrap_or(self.default_policy());
        // nothing resolved and no limits in code: the request cannot be checked at all
        let blind = req.limits.is_empty() && !resolved;
        match (e, policy) {
            // fail open only for a real outage, and only for a request known to be well-formed
            (e, OnUnavailable::Allow) if e.is_unavailable() && !blind => {
                tracing::warn!(error = %e, entity = %req.entity_id, resource = %req.resource,
                    "store unavailable; admitting (on_unavailable = allow)");
                Ok(Lease::noop(self.clone()))
            }
            (StoreError::Unavailable { message, source }, _) => Err(Error::Unavailable {
                message: format!(
                    "{message} [entity={}, resource={}]",
                    req.entity_id, req.resource
                ),
                source,
            }),
            (StoreError::Throttled { message, source }, _) => Err(Error::Throttled {
                message: format!(
                    "{message} [entity={}, resource={}]",
                    req.entity_id, req.resource
                ),
                source,
            }),
            (other, _) => Err(other.into()),
        }
    }

    /// Outer `Err` = the store failed; inner = the decision.
    async fn acquire_inner(
        &self,
        req: &AcquireSpec,
        deadline: tokio::time::Instant,
        in_flight: &InFlight,
        store_us: &AtomicU64,
    ) -> Result<Result<Lease>, StoreFailure> {
        let waited = |d: Duration| {
            store_us.fetch_add(
                d.as_micros().min(u64::MAX as u128) as u64,
                Ordering::Relaxed,
            );
        };
        let (data, took) = self.resolution_timed(&req.entity_id, &req.resource).await;
        waited(took);
        let data = data.map_err(|e| StoreFailure(e, None, false))?;
        let policy = data.on_unavailable();
        let fail = |e| StoreFailure(e, policy, true);
        if data.namespace_gone {
            return Ok(Err(Error::Conflict(
                "the namespace of this limiter was deleted or purged: nothing is admitted in \
                 it (recover it, or use another namespace)"
                    .into(),
            )));
        }
        let (limits, version) = match pick_limits(&data, &req.limits, &req.entity_id, &req.resource)
        {
            Ok(l) => l,
            Err(e) => return Ok(Err(e)),
        };
        let amounts = match amounts(&limits, req.named()) {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        let mut targets = vec![Target {
            key: BucketKey::new(&req.entity_id, &req.resource),
            limits,
            version,
            amounts,
        }];
        if let Some(parent) = data
            .entity
            .as_ref()
            .filter(|e| e.cascade)
            .and_then(|e| e.parent_id.clone())
        {
            let (pdata, took) = self.resolution_timed(&parent, &req.resource).await;
            waited(took);
            let pdata = pdata.map_err(fail)?;
            // the parent's limits come from the parent's own resolution, never from the child
            let (plimits, pversion) = match pdata.versioned_limits() {
                Some((stored, v)) => (stored.to_vec(), v),
                None => (
                    req.parent_limits
                        .clone()
                        .unwrap_or_else(|| req.limits.clone()),
                    0,
                ),
            };
            // a deleted parent is not charged: no ghost bucket
            if pdata.entity.is_some() && !plimits.is_empty() {
                let pamounts = shared_amounts(&plimits, &req.consume);
                targets.push(Target {
                    key: BucketKey::new(parent, &req.resource),
                    limits: plimits,
                    version: pversion,
                    amounts: pamounts,
                });
            }
        }
        let changes: std::sync::Arc<Vec<BucketChange>> =
            std::sync::Arc::new(targets.iter().map(Target::change).collect());
        let lease_id = crate::lease::new_lease_id();
        let now = self.now_ms();
        let op = crate::lease::op(&lease_id, "acquire", false, deadline);
        let op = std::sync::Arc::new(op);
        *in_flight.lock() = Some((changes.clone(), op.clone()));
        let (outcome, took) =
            telemetry::timed(StoreOp::Acquire, self.store().apply(&changes, now, &op)).await;
        waited(took);
        if !matches!(outcome, Err(StoreError::Unavailable { .. })) {
            // a definite answer: applied, refused, or not applied at all
            in_flight.lock().take();
        }
        let outcome = outcome.map_err(fail)?;
        Ok(match outcome {
            ApplyOutcome::Applied(states) => {
                self.observe(&states);
                let statuses = targets
                    .iter()
                    .zip(&states)
                    .flat_map(|(t, s)| statuses_for(&t.key, Some(s), &t.limits, &t.amounts, now))
                    .collect();
                let entries = targets
                    .into_iter()
                    .map(|t| LeaseEntry::new(t.key, t.limits, t.version, &t.amounts))
                    .collect();
                Ok(Lease::new(self.clone(), lease_id, entries, statuses))
            }
            ApplyOutcome::Rejected(seen) => {
                self.observe(seen.iter().flatten());
                let statuses = targets
                    .iter()
                    .zip(&seen)
                    .flat_map(|(t, s)| statuses_for(&t.key, s.as_ref(), &t.limits, &t.amounts, now))
                    .collect();
                Err(Error::RateLimited(Box::new(RateLimitExceeded::new(
                    statuses,
                ))))
            }
        })
    }
}

impl RateLimiter {
    /// In the background (see [`RateLimiter::flush`]): if the acquire write `op`, whose
    /// answer never came, did land, give back what it took, exactly once.
    fn compensate_later(
        &self,
        changes: std::sync::Arc<Vec<BucketChange>>,
        op: std::sync::Arc<crate::store::WriteOp>,
    ) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let limiter = self.clone();
        let guard = self.pending_rollback();
        rt.spawn(async move {
            let _guard = guard;
            // let a request still travelling arrive first
            tokio::time::sleep(COMPENSATE_AFTER).await;
            let store = limiter.store();
            match limiter.call(store.write_landed(&changes, &op)).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "could not tell whether an abandoned acquire landed");
                    return;
                }
            }
            let refund: Vec<BucketChange> = changes
                .iter()
                .cloned()
                .map(|mut c| {
                    for l in &mut c.limits {
                        l.amount = -l.amount;
                        l.checked = false;
                    }
                    c.limits.retain(|l| l.amount != 0);
                    c
                })
                .filter(|c| !c.limits.is_empty())
                .collect();
            if refund.is_empty() {
                return;
            }
            let back = crate::store::WriteOp::new(format!("{}:compensate", op.id), true)
                .with_deadline(limiter.deadline());
            match limiter.call(store.apply(&refund, limiter.now_ms(), &back)).await {
                Ok(_) => tracing::info!(op = %op.id, "gave back an abandoned acquire that landed"),
                Err(e) => tracing::warn!(error = %e, "giving back an abandoned acquire failed"),
            }
        });
    }
}

/// How long after giving up on an acquire the limiter checks whether it landed.
const COMPENSATE_AFTER: Duration = Duration::from_millis(500);
