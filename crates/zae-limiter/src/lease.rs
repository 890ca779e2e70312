//! Leases: capacity already taken from the buckets, reconciled at commit or given back at
//! rollback. Every write a lease makes carries an id derived from the lease, so a retried
//! request is applied once; commit and rollback are exactly-once writes.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use tracing::Instrument;

use crate::acquire::statuses_for;
use crate::bucket::MILLI;
use crate::error::{Error, Result};
use crate::exceeded::{LimitStatus, RateLimitExceeded};
use crate::limit::{Limit, MAX_AMOUNT};
use crate::limiter::RateLimiter;
use crate::store::{ApplyOutcome, BucketChange, BucketKey, BucketState, WriteOp};
use crate::telemetry::{self, StoreOp};

mod entry;

pub(crate) use entry::{new_lease_id, op, AcquireWrite, LeaseEntry};

#[derive(Debug)]
struct State {
    active: bool,
    /// Millitokens per limit of every entry in order: first what was taken (acquire and
    /// checked `consume`), given back at rollback, then what was adjusted since, written at
    /// commit (`amounts[..n]` and `amounts[n..]` for `n` limits in all). Empty until the
    /// first `adjust` or `consume`: until then the lease took what the acquire took, and
    /// has nothing pending (a lease committed as acquired allocates nothing for it).
    amounts: Vec<i128>,
    /// Checked `consume` writes made so far (each gets its own op id).
    consumes: u32,
}

impl State {
    /// Taken and pending amounts of the entry whose limits start at `at` (`len` of them).
    fn slices(&self, at: usize, len: usize) -> (&[i128], &[i128]) {
        let n = self.amounts.len() / 2;
        (
            &self.amounts[at..at + len],
            &self.amounts[n + at..n + at + len],
        )
    }
}

/// Capacity taken by a successful acquire.
///
/// The consumption is already written when you get the lease. Reconcile the real cost with
/// [`adjust`](Lease::adjust) (never refused, may drive a bucket into debt; written at
/// commit) or take more at once with [`consume`](Lease::consume) (a checked write, refused
/// when the buckets cannot cover it), then [`commit`](Lease::commit): one write if anything
/// changed, none otherwise. [`rollback`](Lease::rollback) gives back everything taken;
/// dropping a lease that was neither committed nor rolled back rolls it back in the
/// background (see [`RateLimiter::flush`] to wait for that before a process exits).
#[derive(Debug)]
pub struct Lease {
    limiter: RateLimiter,
    id: u128,
    /// The acquire's write: the keys of the entries' buckets.
    write: Arc<AcquireWrite>,
    /// Own bucket first.
    entries: Vec<LeaseEntry>,
    state: Mutex<State>,
    runtime: Option<tokio::runtime::Handle>,
    /// The states the store returned with the acquire, one per entry, and the time the
    /// acquire decided at: what [`statuses`](Self::statuses) are computed from when asked.
    seen: Vec<BucketState>,
    decided_at: i64,
    statuses: OnceLock<Vec<LimitStatus>>,
}

impl Lease {
    /// The lease of an acquire that took `entries` with `write` at `decided_at`; `seen`
    /// are the states the store returned.
    pub(crate) fn new(
        limiter: RateLimiter,
        id: u128,
        write: Arc<AcquireWrite>,
        entries: Vec<LeaseEntry>,
        seen: Vec<BucketState>,
        decided_at: i64,
    ) -> Self {
        Lease {
            limiter,
            id,
            write,
            entries,
            state: Mutex::new(State {
                active: true,
                amounts: Vec::new(),
                consumes: 0,
            }),
            runtime: tokio::runtime::Handle::try_current().ok(),
            seen,
            decided_at,
            statuses: OnceLock::new(),
        }
    }

    /// The lease handed out when the store is unavailable and the policy is `Allow`:
    /// every operation succeeds and nothing is written.
    pub(crate) fn noop(limiter: RateLimiter) -> Self {
        let write = Arc::new(AcquireWrite {
            changes: Vec::new(),
            op: WriteOp::new(String::new(), false),
        });
        Self::new(limiter, new_lease_id(), write, Vec::new(), Vec::new(), 0)
    }

    /// True for the no-op lease given when the store was unavailable and the policy allows.
    pub fn is_noop(&self) -> bool {
        self.entries.is_empty()
    }

    /// The bucket of entry `k`.
    fn key(&self, k: usize) -> &BucketKey {
        &self.write.changes[k].key
    }

    /// The amounts of `st`, made explicit (what the acquire took, nothing pending) on the
    /// first change.
    fn amounts_mut<'s>(&self, st: &'s mut State) -> &'s mut Vec<i128> {
        if st.amounts.is_empty() {
            let n: usize = self.entries.iter().map(|e| e.limits.len()).sum();
            st.amounts.reserve_exact(2 * n);
            st.amounts.extend(self.acquired());
            st.amounts.resize(2 * n, 0);
        }
        &mut st.amounts
    }

    /// What the acquire took, in millitokens, per limit of every entry in order.
    fn acquired(&self) -> impl Iterator<Item = i128> + '_ {
        self.entries
            .iter()
            .flat_map(|e| e.amounts.iter().map(|&a| a as i128 * MILLI))
    }

    /// Every entry with its bucket and where its limits start in [`State::amounts`].
    fn each(&self) -> impl Iterator<Item = (&LeaseEntry, &BucketKey, usize)> {
        let mut at = 0;
        self.entries.iter().enumerate().map(move |(k, e)| {
            let start = at;
            at += e.limits.len();
            (e, self.key(k), start)
        })
    }

    /// The limits this lease was granted under for the entity's own bucket: the stored
    /// config that won the resolution, else the limits passed to the acquire. Empty for the
    /// no-op lease.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> zae_limiter::Result<()> {
    /// use zae_limiter::{Limit, MemoryStore, RateLimiter};
    ///
    /// let limiter = RateLimiter::builder(MemoryStore::new()).build();
    /// let lease = limiter.acquire("k", "r").limits([Limit::per_minute("rpm", 10)])
    ///     .consume([("rpm", 3)]).await?;
    /// assert_eq!(lease.limits()[0].capacity(), 10);
    /// let rpm = &lease.statuses()[0];
    /// assert_eq!((rpm.name(), rpm.available, rpm.limit.capacity()), ("rpm", 7, 10));
    /// lease.commit().await?;
    /// # Ok(()) }
    /// ```
    pub fn limits(&self) -> &[Limit] {
        self.entries.first().map_or(&[], |e| &e.limits)
    }

    /// The status of every limit right after the acquire, from the states the store
    /// returned with its write (no extra call): the entity's own bucket first, then the
    /// parent's when cascading, as in [`RateLimitExceeded::statuses`]. `available` is what
    /// was left after the take, `requested` what the acquire took, `exceeded` whether the
    /// same amounts again would be refused right now, and `retry_after` how long until they
    /// would pass (zero if at once) — what `RateLimit` / `x-ratelimit-*` headers of a
    /// successful response need. Later `consume`, `adjust` or other clients are not
    /// reflected. Empty for the no-op lease.
    pub fn statuses(&self) -> &[LimitStatus] {
        self.statuses.get_or_init(|| {
            self.each()
                .zip(&self.seen)
                .flat_map(|((e, key, _), s)| {
                    statuses_for(
                        key,
                        e.shard,
                        Some(s),
                        &e.limits,
                        &e.amounts,
                        self.decided_at,
                    )
                })
                .collect()
        })
    }

    /// Tokens this lease has taken so far per limit (own bucket), adjustments included.
    pub fn consumed(&self) -> BTreeMap<String, i64> {
        let st = self.state.lock();
        self.entries
            .first()
            .map(|e| {
                let acquired: Vec<i128> = self.acquired().take(e.limits.len()).collect();
                let none = vec![0; e.limits.len()];
                let (taken, pending) = if st.amounts.is_empty() {
                    (&acquired[..], &none[..])
                } else {
                    st.slices(0, e.limits.len())
                };
                e.limits
                    .iter()
                    .enumerate()
                    .map(|(i, l)| {
                        let m = taken[i] + pending[i];
                        (l.name().to_string(), m.div_euclid(MILLI) as i64)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn check_name(&self, limit: &str) -> Result<()> {
        if self.entries.is_empty() || self.entries.iter().any(|e| e.position(limit).is_some()) {
            return Ok(());
        }
        Err(Error::invalid(
            "limit name",
            format!("'{limit}' is not one of this lease's limits"),
        ))
    }

    /// Take `delta` more tokens of `limit` (negative gives back), without checking capacity:
    /// the bucket may go into debt, which later requests repay. Applies to every bucket of
    /// the lease that has the limit (the parent's too when cascading); a name none has is
    /// refused and nothing changes. Written at commit.
    pub fn adjust(&self, limit: &str, delta: i64) -> Result<()> {
        if delta.unsigned_abs() > MAX_AMOUNT {
            return Err(Error::invalid(
                "adjust",
                format!("{delta} is beyond ±{MAX_AMOUNT}"),
            ));
        }
        let mut st = self.state.lock();
        if !st.active {
            return Err(Error::LeaseInactive);
        }
        self.check_name(limit)?;
        let amounts = self.amounts_mut(&mut st);
        let n = amounts.len() / 2;
        for (e, _, at) in self.each() {
            if let Some(i) = e.position(limit) {
                amounts[n + at + i] += delta as i128 * MILLI;
            }
        }
        Ok(())
    }

    /// Take `amount` more tokens of `limit` now, checked by the store: one conditional write
    /// on every bucket of the lease that has the limit, refused with
    /// [`Error::RateLimited`] (nothing taken) when they cannot cover it. What it takes is
    /// given back by a rollback.
    pub async fn consume(&self, limit: &str, amount: u64) -> Result<()> {
        if amount > MAX_AMOUNT {
            return Err(Error::invalid(
                "consume",
                format!("{amount} is above {MAX_AMOUNT}"),
            ));
        }
        let (changes, n, touched) = {
            let mut st = self.state.lock();
            if !st.active {
                return Err(Error::LeaseInactive);
            }
            self.check_name(limit)?;
            st.consumes += 1;
            let mut changes = Vec::new();
            let mut touched = Vec::new();
            for (k, (e, key, at)) in self.each().enumerate() {
                let Some(i) = e.position(limit) else { continue };
                let mut amounts = vec![0i128; e.limits.len()];
                amounts[i] = amount as i128 * MILLI;
                if let Some(c) = e.change(key, &amounts, 1, true) {
                    changes.push(c);
                    touched.push((k, i, at));
                }
            }
            (changes, st.consumes, touched)
        };
        if changes.is_empty() {
            return Ok(());
        }
        let lim = &self.limiter;
        let now = lim.now_ms();
        let op = op(self.id, &format!("consume{n}"), false, lim.deadline());
        match lim.call(lim.store().apply(&changes, now, &op)).await? {
            ApplyOutcome::Applied(states) => {
                lim.observe(&states);
                let mut st = self.state.lock();
                let amounts = self.amounts_mut(&mut st);
                for (_, i, at) in touched {
                    amounts[at + i] += amount as i128 * MILLI;
                }
                Ok(())
            }
            ApplyOutcome::Rejected(seen) => {
                lim.observe(seen.iter().flatten());
                let statuses = touched
                    .iter()
                    .zip(&seen)
                    .flat_map(|((k, i, _), s)| {
                        let e = &self.entries[*k];
                        statuses_for(
                            self.key(*k),
                            e.shard,
                            s.as_ref(),
                            &e.limits[*i..=*i],
                            &[amount],
                            now,
                        )
                    })
                    .collect();
                Err(Error::RateLimited(Box::new(RateLimitExceeded::new(
                    statuses,
                ))))
            }
        }
    }

    /// Make the lease final: writes pending adjustments (one exactly-once write; none if
    /// there are none).
    pub async fn commit(&self) -> Result<()> {
        let changes = {
            let mut st = self.state.lock();
            if !st.active {
                return Err(Error::LeaseInactive);
            }
            st.active = false;
            self.settle(&st, false)
        };
        let span = self.span("zae_limiter.commit");
        self.finish(changes, "commit", StoreOp::Commit, span).await
    }

    /// Give back everything this lease took (one exactly-once write); pending adjustments
    /// are dropped.
    pub async fn rollback(&self) -> Result<()> {
        let changes = {
            let mut st = self.state.lock();
            if !st.active {
                return Err(Error::LeaseInactive);
            }
            st.active = false;
            self.settle(&st, true)
        };
        let span = self.span("zae_limiter.rollback");
        self.finish(changes, "rollback", StoreOp::Rollback, span)
            .await
    }

    /// The span of a commit or rollback, on the lease's own bucket (empty names for a
    /// no-op lease).
    fn span(&self, name: &'static str) -> tracing::Span {
        let (entity, resource) = self.write.changes.first().map_or(("", ""), |c| {
            (c.key.entity_id.as_str(), c.key.resource.as_str())
        });
        macro_rules! span {
            ($name:literal) => {
                tracing::info_span!(
                    target: "zae_limiter",
                    $name,
                    entity = %entity,
                    resource = %resource,
                    outcome = tracing::field::Empty,
                    store_latency_ms = tracing::field::Empty,
                )
            };
        }
        if name == "zae_limiter.commit" {
            span!("zae_limiter.commit")
        } else {
            span!("zae_limiter.rollback")
        }
    }

    /// One change per entry with a non-zero amount, `None` when there is nothing to write:
    /// the pending adjustments, or (`refund`) what was taken, given back.
    fn settle(&self, st: &State, refund: bool) -> Option<Vec<BucketChange>> {
        if st.amounts.is_empty() && !refund {
            return None; // nothing adjusted
        }
        let acquired: Vec<i128> = if st.amounts.is_empty() {
            self.acquired().collect()
        } else {
            Vec::new()
        };
        let changes: Vec<BucketChange> = self
            .each()
            .filter_map(|(e, key, at)| {
                let len = e.limits.len();
                if st.amounts.is_empty() {
                    return e.change(key, &acquired[at..at + len], -1, false);
                }
                let (taken, pending) = st.slices(at, len);
                if refund {
                    e.change(key, taken, -1, false)
                } else {
                    e.change(key, pending, 1, false)
                }
            })
            .collect();
        (!changes.is_empty()).then_some(changes)
    }

    /// Write `changes` (if any) in `span`, recording the outcome (`ok`, `noop` when there is
    /// nothing to write, or the error's kind) and the store latency on it.
    async fn finish(
        &self,
        changes: Option<Vec<BucketChange>>,
        kind: &str,
        timed: StoreOp,
        span: tracing::Span,
    ) -> Result<()> {
        let Some(changes) = changes else {
            span.record("outcome", "noop");
            return Ok(());
        };
        let (r, took) = telemetry::timed(timed, self.write(changes, kind))
            .instrument(span.clone())
            .await;
        span.record("store_latency_ms", telemetry::ms(took));
        span.record(
            "outcome",
            match &r {
                Ok(()) => "ok",
                Err(e) => e.kind(),
            },
        );
        r
    }

    async fn write(&self, changes: Vec<BucketChange>, kind: &str) -> Result<()> {
        let lim = &self.limiter;
        let op = op(self.id, kind, true, lim.deadline());
        let now = lim.now_ms();
        match lim.call(lim.store().apply(&changes, now, &op)).await? {
            ApplyOutcome::Applied(states) => {
                lim.observe_at(&states, now);
                Ok(())
            }
            ApplyOutcome::Rejected(_) => Err(Error::Other {
                message: "the store refused an unchecked write".to_string(),
                source: None,
            }),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let active = std::mem::replace(&mut self.state.get_mut().active, false);
        if !active {
            return;
        }
        let Some(changes) = self.settle(&self.state.lock(), true) else {
            return;
        };
        match &self.runtime {
            Some(rt) => {
                let limiter = self.limiter.clone();
                let op = op(self.id, "rollback", true, limiter.deadline());
                let guard = limiter.pending_rollback();
                rt.spawn(async move {
                    let r = limiter
                        .call(limiter.store().apply(&changes, limiter.now_ms(), &op))
                        .await;
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "rollback of a dropped lease failed");
                    }
                    drop(guard);
                });
            }
            None => tracing::warn!("lease dropped outside a tokio runtime: not rolled back"),
        }
    }
}
