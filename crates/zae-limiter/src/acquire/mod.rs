//! `acquire`: validate the request before any I/O, resolve the limits of the entity (and of
//! its parent when it cascades), ask the store for one atomic decision, and hand out a lease.
//! The request builder is in `request.rs`, the pure decisions in `decide.rs`.

mod decide;
mod request;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tracing::Instrument;

use crate::config::OnUnavailable;
use crate::error::{Error, Result, StoreError};
use crate::exceeded::RateLimitExceeded;
use crate::lease::{AcquireWrite, Lease, LeaseEntry};
use crate::limiter::RateLimiter;
use crate::shard::Shard;
use crate::store::{ApplyOutcome, BucketChange, BucketKey};
use crate::telemetry::{self, Outcome, StoreOp};

pub(crate) use decide::{amounts, pick_limits, shared_amounts, statuses_for, to_tokens};
pub(crate) use request::AcquireSpec;
pub use request::{Acquire, RunError};

/// The write an acquire has sent and not yet heard back about.
/// Shared (`Arc`), so that recording it costs no copy on the hot path.
type InFlight = parking_lot::Mutex<Option<std::sync::Arc<AcquireWrite>>>;

/// Await `fut` until `deadline`: `None` if it has not finished by then. Like
/// [`tokio::time::timeout_at`], but the timer is only set up when the first poll does not
/// finish: an answer that is ready at once (the embedded store) costs no timer. `fut` is
/// pinned by the caller, so that a large future is not moved again.
pub(crate) async fn within<F: std::future::Future>(
    deadline: tokio::time::Instant,
    mut fut: std::pin::Pin<&mut F>,
) -> Option<F::Output> {
    // returned at once: no output kept in this future's state across the await below
    if let Some(v) = std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match fut.as_mut().poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
    {
        return Some(v);
    }
    // boxed: the timer (a `Sleep`) inline would enlarge every caller's future, also when
    // the answer is ready at once
    Box::pin(tokio::time::timeout_at(deadline, fut)).await.ok()
}

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
        self.clone().acquire_owned(req).await
    }

    /// [`acquire_spec`](Self::acquire_spec) owning its limiter, so that `Acquire`'s future
    /// is this one alone (no wrapper holding a second copy of the request).
    pub(crate) async fn acquire_owned(self, mut req: AcquireSpec) -> Result<Lease> {
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
        // pinned where it is made: the large future is not moved into a wrapper
        let traced = std::pin::pin!(self.acquire_traced(&mut req, &store_us));
        let r = if span.is_disabled() {
            traced.await
        } else {
            traced.instrument(span.clone()).await
        };
        let outcome = Outcome::of(&r);
        telemetry::decision(outcome);
        span.record("outcome", outcome.as_str());
        span.record(
            "store_latency_ms",
            store_us.load(Ordering::Relaxed) as f64 / 1e3,
        );
        r
    }

    async fn acquire_traced(&self, req: &mut AcquireSpec, store_us: &AtomicU64) -> Result<Lease> {
        let passed_amounts = req.validate()?;
        // the limits passed may be moved into the lease: remember whether there were any
        let passed_limits = !req.limits.is_empty();
        // one deadline for the whole operation: resolution, cascade and write
        let deadline = self.deadline();
        let in_flight: InFlight = parking_lot::Mutex::new(None);
        let outcome = {
            let inner = std::pin::pin!(self.acquire_inner(
                req,
                passed_amounts,
                deadline,
                &in_flight,
                store_us
            ));
            match within(deadline, inner).await {
                Some(r) => r,
                None => Err(StoreFailure(
                    StoreError::unavailable(format!(
                        "no answer from the store within {:?}",
                        self.timeout()
                    )),
                    None,
                    false,
                )),
            }
        };
        let (e, stored_policy, resolved) = match outcome {
            Ok(r) => return r,
            Err(StoreFailure(e, p, resolved)) => (e, p, resolved),
        };
        // a write whose answer never came may still have landed: give back what it took
        let in_flight = in_flight.lock().take();
        // a write was sent, so the request's limits had been resolved and checked
        let resolved = resolved || in_flight.is_some();
        if let Some(write) = in_flight {
            self.compensate_later(write);
        }
        let policy = req
            .on_unavailable
            .or(stored_policy)
            .or(self.last_policy())
            .unwrap_or(self.default_policy());
        // nothing resolved and no limits in code: the request cannot be checked at all
        let blind = !passed_limits && !resolved;
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

    /// Outer `Err` = the store failed; inner = the decision. The limits passed in `req` are
    /// moved into the lease when they are the ones enforced (with `passed_amounts`, their
    /// amounts as the validation found them).
    async fn acquire_inner(
        &self,
        req: &mut AcquireSpec,
        passed_amounts: Option<Vec<u64>>,
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
        // a cache hit needs no future at all
        let (data, took) = match self.resolution_cached(&req.entity_id, &req.resource) {
            Ok(hit) => (Ok(hit), Duration::ZERO),
            // boxed: the miss is rare, and its future inline would make every acquire's
            // future larger (over 1 KB, an allocation that makes glibc consolidate its
            // free lists on every acquire)
            Err(miss) => Box::pin(self.resolution_load(&req.entity_id, &req.resource, miss)).await,
        };
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
        // limits passed in code are taken as they are (no copy) when nothing is stored
        let moved = data.versioned_limits().is_none() && !req.limits.is_empty();
        let (limits, version) = if moved {
            (std::mem::take(&mut req.limits), 0)
        } else {
            match pick_limits(&data, &req.limits, &req.entity_id, &req.resource) {
                Ok(l) => l,
                Err(e) => return Ok(Err(e)),
            }
        };
        // the limits passed were mapped to their amounts by the validation
        let amounts = match (moved, passed_amounts) {
            (true, Some(a)) => a,
            _ => match amounts(&limits, req.named()) {
                Ok(a) => a,
                Err(e) => return Ok(Err(e)),
            },
        };
        let mut keys = vec![BucketKey::new(&req.entity_id, &req.resource)];
        let mut entries = vec![LeaseEntry {
            limits,
            version,
            amounts,
            shard: Shard::default(),
        }];
        if let Some(parent) = data
            .entity
            .as_ref()
            .filter(|e| e.cascade)
            .and_then(|e| e.parent_id.clone())
        {
            // as for the child: a cache hit needs no future, a miss is boxed
            let (pdata, took) = match self.resolution_cached(&parent, &req.resource) {
                Ok(hit) => (Ok(hit), Duration::ZERO),
                Err(miss) => Box::pin(self.resolution_load(&parent, &req.resource, miss)).await,
            };
            waited(took);
            let pdata = pdata.map_err(fail)?;
            // the parent's limits come from the parent's own resolution, never from the child
            let (plimits, pversion) = match pdata.versioned_limits() {
                Some((stored, v)) => (stored.to_vec(), v),
                // the limits passed: still in `req`, or moved into the child's entry
                None => (
                    req.parent_limits.clone().unwrap_or_else(|| {
                        if moved {
                            entries[0].limits.clone()
                        } else {
                            req.limits.clone()
                        }
                    }),
                    0,
                ),
            };
            // a deleted parent is not charged: no ghost bucket
            if pdata.entity.is_some() && !plimits.is_empty() {
                let pamounts = shared_amounts(&plimits, &req.consume);
                keys.push(BucketKey::new(parent, &req.resource));
                entries.push(LeaseEntry {
                    limits: plimits,
                    version: pversion,
                    amounts: pamounts,
                    shard: Shard::default(),
                });
            }
        }
        // shards already tried, per bucket (the child and its parent); a refusal tries other
        // shards of a sharded bucket
        let mut tried = [Tried::default(), Tried::default()];
        debug_assert!(
            keys.len() <= tried.len(),
            "a bucket and at most its parent's"
        );
        let mut raised = false;
        let mut attempt = 0;
        loop {
            for ((key, e), tried) in keys.iter().zip(entries.iter_mut()).zip(&mut tried) {
                let level = self.shard_level(key);
                let index = crate::shard::pick(level, tried.as_slice());
                tried.push(index);
                e.shard = Shard { index, level };
            }
            let changes: Vec<BucketChange> = keys
                .iter()
                .zip(&entries)
                .map(|(key, e)| e.acquire_change(key.with_shard(e.shard.index)))
                .collect();
            let lease_id = crate::lease::new_lease_id();
            let op = crate::lease::op(lease_id, "acquire", false, deadline);
            let write = std::sync::Arc::new(AcquireWrite { changes, op });
            let now = self.now_ms();
            *in_flight.lock() = Some(write.clone());
            let (outcome, took) = telemetry::timed(
                StoreOp::Acquire,
                self.store().apply(&write.changes, now, &write.op),
            )
            .await;
            waited(took);
            if !matches!(outcome, Err(StoreError::Unavailable { .. })) {
                // a definite answer: applied, refused, or not applied at all
                in_flight.lock().take();
            }
            let outcome = match outcome {
                // a partition at its write limit: split the hot bucket, then try again
                Err(e @ StoreError::Throttled { .. }) => {
                    // boxed: throttling is rare, its future inline is large
                    if !raised && Box::pin(self.raise_shards(&keys, &entries)).await {
                        raised = true;
                        continue;
                    }
                    return Err(fail(e));
                }
                other => other.map_err(fail)?,
            };
            match outcome {
                ApplyOutcome::Applied(states) => {
                    self.observe_at(&states, now);
                    self.learn_shards(&keys, &entries, states.iter().map(Some));
                    self.meter_writes(&keys, &entries, &states, now);
                    return Ok(Ok(Lease::new(
                        self.clone(),
                        lease_id,
                        write,
                        entries,
                        states,
                        now,
                    )));
                }
                ApplyOutcome::Rejected(seen) => {
                    self.observe(seen.iter().flatten());
                    let learned =
                        self.learn_shards(&keys, &entries, seen.iter().map(Option::as_ref));
                    let sharded = entries.iter().any(|e| e.shard.level > 0);
                    attempt += 1;
                    if (learned || sharded)
                        && attempt <= SHARD_RETRIES
                        && tokio::time::Instant::now() < deadline
                    {
                        continue;
                    }
                    let statuses = write
                        .changes
                        .iter()
                        .zip(&entries)
                        .zip(&seen)
                        .flat_map(|((c, e), s)| {
                            statuses_for(&c.key, e.shard, s.as_ref(), &e.limits, &e.amounts, now)
                        })
                        .collect();
                    return Ok(Err(Error::RateLimited(Box::new(RateLimitExceeded::new(
                        statuses,
                    )))));
                }
            }
        }
    }
}

/// How many other shards a refused acquire tries on a sharded bucket (within its deadline).
const SHARD_RETRIES: usize = 2;

/// The shards of one bucket an acquire has tried, kept inline (no allocation per acquire).
/// An acquire makes at most a few attempts (the first, [`SHARD_RETRIES`] more, one after a
/// raise, one per level learned); past [`Tried::CAPACITY`] more are not recorded, which can
/// only make a later attempt pick a shard it has tried before.
#[derive(Debug, Default)]
struct Tried {
    shards: [u16; Tried::CAPACITY],
    len: usize,
}

impl Tried {
    const CAPACITY: usize = 8;

    fn push(&mut self, shard: u16) {
        if let Some(slot) = self.shards.get_mut(self.len) {
            *slot = shard;
            self.len += 1;
        }
    }

    fn as_slice(&self) -> &[u16] {
        &self.shards[..self.len]
    }
}

impl RateLimiter {
    /// In the background (see [`RateLimiter::flush`]): if the acquire write `op`, whose
    /// answer never came, did land, give back what it took, exactly once.
    fn compensate_later(&self, write: std::sync::Arc<AcquireWrite>) {
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
            let (changes, op) = (&write.changes, &write.op);
            match limiter.call(store.write_landed(changes, op)).await {
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

#[cfg(test)]
mod tests {
    use super::Tried;

    #[test]
    fn tried_shards_are_kept_up_to_capacity_and_never_panic() {
        let mut t = Tried::default();
        assert!(t.as_slice().is_empty());
        for shard in 0..20u16 {
            t.push(shard * 3);
        }
        let kept: Vec<u16> = (0..Tried::CAPACITY as u16).map(|s| s * 3).collect();
        assert_eq!(t.as_slice(), &kept[..]);
        // what pick avoids: a sharded bucket picks a shard not tried while one is left
        let mut t = Tried::default();
        for _ in 0..4 {
            let s = crate::shard::pick(2, t.as_slice());
            assert!(!t.as_slice().contains(&s), "{s} picked twice");
            t.push(s);
        }
        let mut all = t.as_slice().to_vec();
        all.sort_unstable();
        assert_eq!(all, [0, 1, 2, 3]);
    }
}
