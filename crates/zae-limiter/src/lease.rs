//! Leases: capacity already taken from the buckets, reconciled at commit or given back at
//! rollback. Every write a lease makes carries an id derived from the lease, so a retried
//! request is applied once; commit and rollback are exactly-once writes.

use std::collections::BTreeMap;

use parking_lot::Mutex;
use tracing::Instrument;

use crate::acquire::statuses_for;
use crate::bucket::MILLI;
use crate::error::{Error, Result};
use crate::exceeded::{LimitStatus, RateLimitExceeded};
use crate::limit::{Limit, MAX_AMOUNT};
use crate::limiter::RateLimiter;
use crate::store::{ApplyOutcome, BucketChange, BucketKey, LimitChange, WriteOp};
use crate::telemetry::{self, StoreOp};

/// A fresh lease id (128 random bits, hex).
pub(crate) fn new_lease_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The write `kind` of lease `id`.
pub(crate) fn op(
    id: &str,
    kind: &str,
    exactly_once: bool,
    deadline: tokio::time::Instant,
) -> WriteOp {
    WriteOp::new(format!("{id}:{kind}"), exactly_once).with_deadline(deadline)
}

/// What a lease holds for one bucket (the entity's own, or its parent's when cascading).
#[derive(Debug, Clone)]
pub(crate) struct LeaseEntry {
    key: BucketKey,
    limits: Vec<Limit>,
    version: i64,
    /// Millitokens taken (acquire and checked `consume`), per limit: given back at rollback.
    taken: Vec<i128>,
    /// Millitokens adjusted since, written at commit.
    pending: Vec<i128>,
}

impl LeaseEntry {
    pub(crate) fn new(key: BucketKey, limits: Vec<Limit>, version: i64, amounts: &[u64]) -> Self {
        LeaseEntry {
            key,
            version,
            taken: amounts.iter().map(|&n| n as i128 * MILLI).collect(),
            pending: vec![0; limits.len()],
            limits,
        }
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.limits.iter().position(|l| l.name() == name)
    }

    /// The change writing `amounts` (one per limit), checked or not; `None` when all are 0.
    fn change(&self, amounts: &[i128], checked: bool) -> Option<BucketChange> {
        let limits: Vec<LimitChange> = self
            .limits
            .iter()
            .zip(amounts)
            .filter(|(_, a)| **a != 0)
            .map(|(l, amount)| LimitChange {
                name: l.name().to_string(),
                params: l.params(),
                version: self.version,
                amount: *amount,
                checked,
            })
            .collect();
        (!limits.is_empty()).then(|| BucketChange {
            key: self.key.clone(),
            limits,
        })
    }
}

#[derive(Debug)]
struct State {
    active: bool,
    entries: Vec<LeaseEntry>,
    /// Checked `consume` writes made so far (each gets its own op id).
    consumes: u32,
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
    id: String,
    state: Mutex<State>,
    runtime: Option<tokio::runtime::Handle>,
    /// The limits of the entity's own bucket.
    limits: Vec<Limit>,
    /// Every limit's status right after the acquire, own bucket first.
    statuses: Vec<LimitStatus>,
}

impl Lease {
    pub(crate) fn new(
        limiter: RateLimiter,
        id: String,
        entries: Vec<LeaseEntry>,
        statuses: Vec<LimitStatus>,
    ) -> Self {
        Lease {
            limiter,
            id,
            limits: entries
                .first()
                .map(|e| e.limits.clone())
                .unwrap_or_default(),
            statuses,
            state: Mutex::new(State {
                active: true,
                entries,
                consumes: 0,
            }),
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// The lease handed out when the store is unavailable and the policy is `Allow`:
    /// every operation succeeds and nothing is written.
    pub(crate) fn noop(limiter: RateLimiter) -> Self {
        Self::new(limiter, new_lease_id(), Vec::new(), Vec::new())
    }

    /// True for the no-op lease given when the store was unavailable and the policy allows.
    pub fn is_noop(&self) -> bool {
        self.state.lock().entries.is_empty()
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
        &self.limits
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
        &self.statuses
    }

    /// Tokens this lease has taken so far per limit (own bucket), adjustments included.
    pub fn consumed(&self) -> BTreeMap<String, i64> {
        let st = self.state.lock();
        st.entries
            .first()
            .map(|e| {
                e.limits
                    .iter()
                    .enumerate()
                    .map(|(i, l)| {
                        let m = e.taken[i] + e.pending[i];
                        (l.name().to_string(), m.div_euclid(MILLI) as i64)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn check_name(st: &State, limit: &str) -> Result<()> {
        if st.entries.is_empty() || st.entries.iter().any(|e| e.position(limit).is_some()) {
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
        Self::check_name(&st, limit)?;
        for e in st.entries.iter_mut() {
            if let Some(i) = e.position(limit) {
                e.pending[i] += delta as i128 * MILLI;
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
        let (changes, n, entries) = {
            let mut st = self.state.lock();
            if !st.active {
                return Err(Error::LeaseInactive);
            }
            Self::check_name(&st, limit)?;
            st.consumes += 1;
            let mut changes = Vec::new();
            let mut entries = Vec::new();
            for (k, e) in st.entries.iter().enumerate() {
                let Some(i) = e.position(limit) else { continue };
                let mut amounts = vec![0i128; e.limits.len()];
                amounts[i] = amount as i128 * MILLI;
                if let Some(c) = e.change(&amounts, true) {
                    changes.push(c);
                    entries.push((k, i));
                }
            }
            (changes, st.consumes, entries)
        };
        if changes.is_empty() {
            return Ok(());
        }
        let lim = &self.limiter;
        let now = lim.now_ms();
        let op = op(&self.id, &format!("consume{n}"), false, lim.deadline());
        match lim.call(lim.store().apply(&changes, now, &op)).await? {
            ApplyOutcome::Applied(states) => {
                lim.observe(&states);
                let mut st = self.state.lock();
                for (k, i) in entries {
                    st.entries[k].taken[i] += amount as i128 * MILLI;
                }
                Ok(())
            }
            ApplyOutcome::Rejected(seen) => {
                lim.observe(seen.iter().flatten());
                let st = self.state.lock();
                let statuses = entries
                    .iter()
                    .zip(&seen)
                    .flat_map(|((k, i), s)| {
                        let e = &st.entries[*k];
                        statuses_for(&e.key, s.as_ref(), &e.limits[*i..=*i], &[amount], now)
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
        let (changes, span) = {
            let mut st = self.state.lock();
            if !st.active {
                return Err(Error::LeaseInactive);
            }
            st.active = false;
            let (entity, resource) = first_key(&st.entries);
            let span = tracing::info_span!(
                target: "zae_limiter",
                "zae_limiter.commit",
                entity = %entity,
                resource = %resource,
                outcome = tracing::field::Empty,
                store_latency_ms = tracing::field::Empty,
            );
            (settle(&st.entries, |e| e.pending.clone()), span)
        };
        self.finish(changes, "commit", StoreOp::Commit, span).await
    }

    /// Give back everything this lease took (one exactly-once write); pending adjustments
    /// are dropped.
    pub async fn rollback(&self) -> Result<()> {
        let (changes, span) = {
            let mut st = self.state.lock();
            if !st.active {
                return Err(Error::LeaseInactive);
            }
            st.active = false;
            let (entity, resource) = first_key(&st.entries);
            let span = tracing::info_span!(
                target: "zae_limiter",
                "zae_limiter.rollback",
                entity = %entity,
                resource = %resource,
                outcome = tracing::field::Empty,
                store_latency_ms = tracing::field::Empty,
            );
            (settle(&st.entries, refund), span)
        };
        self.finish(changes, "rollback", StoreOp::Rollback, span)
            .await
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
        let op = op(&self.id, kind, true, lim.deadline());
        match lim
            .call(lim.store().apply(&changes, lim.now_ms(), &op))
            .await?
        {
            ApplyOutcome::Applied(states) => {
                lim.observe(&states);
                Ok(())
            }
            ApplyOutcome::Rejected(_) => Err(Error::Other {
                message: "the store refused an unchecked write".to_string(),
                source: None,
            }),
        }
    }
}

/// The entity and resource of a lease's own bucket (empty for a no-op lease), for spans.
fn first_key(entries: &[LeaseEntry]) -> (&str, &str) {
    entries.first().map_or(("", ""), |e| {
        (e.key.entity_id.as_str(), e.key.resource.as_str())
    })
}

fn refund(e: &LeaseEntry) -> Vec<i128> {
    e.taken.iter().map(|n| -n).collect()
}

/// One change per entry with a non-zero amount; `None` when there is nothing to write.
fn settle(
    entries: &[LeaseEntry],
    amounts: impl Fn(&LeaseEntry) -> Vec<i128>,
) -> Option<Vec<BucketChange>> {
    let changes: Vec<BucketChange> = entries
        .iter()
        .filter_map(|e| e.change(&amounts(e), false))
        .collect();
    (!changes.is_empty()).then_some(changes)
}

impl Drop for Lease {
    fn drop(&mut self) {
        let st = self.state.get_mut();
        if !st.active {
            return;
        }
        st.active = false;
        let Some(changes) = settle(&st.entries, refund) else {
            return;
        };
        match &self.runtime {
            Some(rt) => {
                let limiter = self.limiter.clone();
                let op = op(&self.id, "rollback", true, limiter.deadline());
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
