//! Leases: capacity already taken from the buckets, reconciled at commit or given back at
//! rollback.

use std::collections::BTreeMap;

use parking_lot::Mutex;

use crate::bucket::MILLI;
use crate::error::{Error, Result};
use crate::exceeded::RateLimitExceeded;
use crate::limit::{Limit, MAX_AMOUNT};
use crate::limiter::{statuses_for, RateLimiter};
use crate::store::{ApplyOutcome, BucketChange, BucketKey, BucketState, LimitChange};

/// What a lease holds for one bucket (the entity's own, or its parent's when cascading).
#[derive(Debug, Clone)]
pub(crate) struct LeaseEntry {
    key: BucketKey,
    limits: Vec<Limit>,
    /// Millitokens written at acquire, per limit.
    initial: Vec<i128>,
    /// Millitokens added since (adjust / consume), written at commit.
    pending: Vec<i128>,
    /// The bucket right after the acquire (used to check `consume` locally).
    snapshot: BucketState,
}

impl LeaseEntry {
    pub(crate) fn new(
        key: BucketKey,
        limits: &[Limit],
        amounts: &[u64],
        snapshot: BucketState,
    ) -> Self {
        LeaseEntry {
            key,
            limits: limits.to_vec(),
            initial: amounts.iter().map(|&n| n as i128 * MILLI).collect(),
            pending: vec![0; limits.len()],
            snapshot,
        }
    }

    fn change(&self, amounts: impl Iterator<Item = i128>) -> BucketChange {
        BucketChange {
            key: self.key.clone(),
            limits: self
                .limits
                .iter()
                .zip(amounts)
                .filter(|(_, a)| *a != 0)
                .map(|(l, amount)| LimitChange {
                    name: l.name().to_string(),
                    params: l.params(),
                    version: 0,
                    amount,
                    checked: false,
                })
                .collect(),
        }
    }
}

#[derive(Debug)]
struct State {
    active: bool,
    entries: Vec<LeaseEntry>,
}

/// Capacity taken by a successful acquire.
///
/// The consumption is already written when you get the lease. Reconcile the real cost with
/// [`adjust`](Lease::adjust) (never refused, may drive a bucket into debt) or take more with
/// [`consume`](Lease::consume) (checked), then [`commit`](Lease::commit): one write if anything
/// changed, none otherwise. [`rollback`](Lease::rollback) gives everything back; dropping a
/// lease that was neither committed nor rolled back rolls it back in the background.
#[derive(Debug)]
pub struct Lease {
    limiter: RateLimiter,
    state: Mutex<State>,
    runtime: Option<tokio::runtime::Handle>,
}

impl Lease {
    pub(crate) fn new(limiter: RateLimiter, entries: Vec<LeaseEntry>) -> Self {
        Lease {
            limiter,
            state: Mutex::new(State {
                active: true,
                entries,
            }),
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// The lease handed out when the store is unavailable and the policy is `Allow`:
    /// every operation succeeds and nothing is written.
    pub(crate) fn noop(limiter: RateLimiter) -> Self {
        Self::new(limiter, Vec::new())
    }

    /// True for the no-op lease given when the store was unavailable and the policy allows.
    pub fn is_noop(&self) -> bool {
        self.state.lock().entries.is_empty()
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
                        let m = e.initial[i] + e.pending[i];
                        (l.name().to_string(), m.div_euclid(MILLI) as i64)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn position(entry: &LeaseEntry, name: &str) -> Result<usize> {
        entry
            .limits
            .iter()
            .position(|l| l.name() == name)
            .ok_or_else(|| {
                Error::invalid(
                    "limit name",
                    format!("'{name}' is not one of this lease's limits"),
                )
            })
    }

    /// Take `delta` more tokens of `limit` (negative gives back), without checking capacity:
    /// the bucket may go into debt, which later requests repay. Written at commit.
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
        for e in st.entries.iter_mut() {
            let i = Self::position(e, limit)?;
            e.pending[i] += delta as i128 * MILLI;
        }
        Ok(())
    }

    /// Take `amount` more tokens of `limit` if the buckets (as seen at acquire, refilled to
    /// now) hold them; otherwise `Err(RateLimited)` and nothing changes. Written at commit.
    pub fn consume(&self, limit: &str, amount: u64) -> Result<()> {
        if amount > MAX_AMOUNT {
            return Err(Error::invalid(
                "consume",
                format!("{amount} is above {MAX_AMOUNT}"),
            ));
        }
        let now = self.limiter.now_ms();
        let mut st = self.state.lock();
        if !st.active {
            return Err(Error::LeaseInactive);
        }
        let mut rejected = false;
        let mut statuses = Vec::new();
        for e in &st.entries {
            let i = Self::position(e, limit)?;
            let l = &e.limits[i];
            let p = l.params();
            let level = e.snapshot.level_for(l.name(), &p, now);
            let mut state = e.snapshot.clone();
            if let Some(s) = state.limits.get_mut(l.name()) {
                s.params = p;
                s.level = p.adjust(level, e.pending[i], now);
            }
            let st_one = statuses_for(
                &e.key,
                Some(&state),
                std::slice::from_ref(l),
                &[amount],
                now,
            );
            rejected |= st_one.iter().any(|s| s.exceeded);
            statuses.extend(st_one);
        }
        if rejected {
            return Err(Error::RateLimited(Box::new(RateLimitExceeded::new(
                statuses,
            ))));
        }
        for e in st.entries.iter_mut() {
            let i = Self::position(e, limit)?;
            e.pending[i] += amount as i128 * MILLI;
        }
        Ok(())
    }

    /// Make the lease final: writes pending adjustments (one write; none if there are none).
    pub async fn commit(&self) -> Result<()> {
        let changes = {
            let mut st = self.state.lock();
            if !st.active {
                return Err(Error::LeaseInactive);
            }
            st.active = false;
            if st.entries.iter().all(|e| e.pending.iter().all(|&p| p == 0)) {
                return Ok(());
            }
            st.entries
                .iter()
                .map(|e| e.change(e.pending.iter().copied()))
                .collect::<Vec<_>>()
        };
        self.write(changes).await
    }

    /// Give back everything this lease took (one write); pending adjustments are dropped.
    pub async fn rollback(&self) -> Result<()> {
        let changes = {
            let mut st = self.state.lock();
            if !st.active {
                return Err(Error::LeaseInactive);
            }
            st.active = false;
            rollback_changes(&st.entries)
        };
        match changes {
            Some(c) => self.write(c).await,
            None => Ok(()),
        }
    }

    async fn write(&self, changes: Vec<BucketChange>) -> Result<()> {
        let lim = &self.limiter;
        match lim
            .call(lim.store().apply(
                &changes,
                lim.now_ms(),
                &crate::store::WriteOp::unique("settle", true),
            ))
            .await?
        {
            ApplyOutcome::Applied(_) => Ok(()),
            ApplyOutcome::Rejected(_) => Err(Error::Store(
                "the store refused an unchecked write".to_string(),
            )),
        }
    }
}

fn rollback_changes(entries: &[LeaseEntry]) -> Option<Vec<BucketChange>> {
    if entries.iter().all(|e| e.initial.iter().all(|&n| n == 0)) {
        return None;
    }
    Some(
        entries
            .iter()
            .map(|e| e.change(e.initial.iter().map(|n| -n)))
            .collect(),
    )
}

impl Drop for Lease {
    fn drop(&mut self) {
        let st = self.state.get_mut();
        if !st.active {
            return;
        }
        st.active = false;
        let Some(changes) = rollback_changes(&st.entries) else {
            return;
        };
        match &self.runtime {
            Some(rt) => {
                let limiter = self.limiter.clone();
                rt.spawn(async move {
                    let r = limiter
                        .call(limiter.store().apply(
                            &changes,
                            limiter.now_ms(),
                            &crate::store::WriteOp::unique("rollback", true),
                        ))
                        .await;
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "rollback of a dropped lease failed");
                    }
                });
            }
            None => tracing::warn!("lease dropped outside a tokio runtime: not rolled back"),
        }
    }
}
