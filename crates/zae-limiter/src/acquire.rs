//! `acquire`: validate the request before any I/O, resolve the limits of the entity (and of
//! its parent when it cascades), ask the store for one atomic decision, and hand out a lease.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;

use crate::bucket::MILLI;
use crate::config::{OnUnavailable, ResolutionData};
use crate::error::{Error, Result, StoreError};
use crate::exceeded::{LimitStatus, RateLimitExceeded};
use crate::lease::{Lease, LeaseEntry};
use crate::limit::{
    validate_entity_id, validate_limit_name, validate_limits, validate_resource, Limit, MAX_AMOUNT,
};
use crate::limiter::RateLimiter;
use crate::store::{bucket_time, ApplyOutcome, BucketChange, BucketKey, BucketState, LimitChange};

/// The plain data of an acquire request (shared with the blocking API).
#[derive(Debug, Clone)]
pub(crate) struct AcquireSpec {
    pub(crate) entity_id: String,
    pub(crate) resource: String,
    pub(crate) limits: Vec<Limit>,
    pub(crate) consume: Vec<(String, u64)>,
    pub(crate) parent_limits: Option<Vec<Limit>>,
    pub(crate) on_unavailable: Option<OnUnavailable>,
}

impl AcquireSpec {
    /// Everything that can be checked without the store.
    fn validate(&self) -> Result<()> {
        validate_entity_id(&self.entity_id)?;
        validate_resource(&self.resource)?;
        validate_limits(&self.limits)?;
        if let Some(pl) = &self.parent_limits {
            validate_limits(pl)?;
        }
        for (name, n) in &self.consume {
            validate_limit_name(name)?;
            if *n > MAX_AMOUNT {
                return Err(Error::invalid(
                    "consume",
                    format!("{n} {name} is above {MAX_AMOUNT}"),
                ));
            }
        }
        // with limits in code, the amounts must name them (stored limits may add names, but
        // a request is only admitted blind, under an outage, if it is well-formed here)
        if !self.limits.is_empty() {
            amounts(&self.limits, self.named())?;
        }
        Ok(())
    }

    fn named(&self) -> impl Iterator<Item = (&str, u64)> {
        self.consume.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

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

/// The limits to enforce and their version: the most specific stored level, else the ones
/// passed in code (version 0).
pub(crate) fn pick_limits(
    data: &ResolutionData,
    passed: &[Limit],
    entity_id: &str,
    resource: &str,
) -> Result<(Vec<Limit>, i64)> {
    match data.versioned_limits() {
        Some((stored, version)) => Ok((stored.to_vec(), version)),
        None if !passed.is_empty() => Ok((passed.to_vec(), 0)),
        None => Err(Error::invalid(
            "limits",
            format!("no limits given or stored for entity '{entity_id}' and resource '{resource}'"),
        )),
    }
}

/// Map named amounts onto `limits` (same order); unknown names are errors.
pub(crate) fn amounts<'a>(
    limits: &[Limit],
    named: impl IntoIterator<Item = (&'a str, u64)>,
) -> Result<Vec<u64>> {
    let mut out = vec![0u64; limits.len()];
    for (name, n) in named {
        let i = limits
            .iter()
            .position(|l| l.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = limits.iter().map(Limit::name).collect();
                Error::invalid(
                    "consume",
                    format!("'{name}' is not one of the limits [{}]", known.join(", ")),
                )
            })?;
        out[i] = out[i].saturating_add(n).min(MAX_AMOUNT + 1);
        if out[i] > MAX_AMOUNT {
            return Err(Error::invalid(
                "consume",
                format!("more than {MAX_AMOUNT} {name} in one request"),
            ));
        }
    }
    Ok(out)
}

/// The amounts a parent takes: those of the limits it shares with the child, by name.
fn shared_amounts(limits: &[Limit], named: &[(String, u64)]) -> Vec<u64> {
    limits
        .iter()
        .map(|l| {
            named
                .iter()
                .filter(|(k, _)| k == l.name())
                .map(|(_, v)| *v)
                .fold(0u64, u64::saturating_add)
                .min(MAX_AMOUNT)
        })
        .collect()
}

pub(crate) fn to_tokens(milli: i128) -> i64 {
    milli
        .div_euclid(MILLI)
        .clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// The status of every limit of one bucket for a request of `amounts` at `now` (decided at
/// the bucket's own time when it is ahead).
pub(crate) fn statuses_for(
    key: &BucketKey,
    state: Option<&BucketState>,
    limits: &[Limit],
    amounts: &[u64],
    now: i64,
) -> Vec<LimitStatus> {
    let t = bucket_time(state, now);
    limits
        .iter()
        .zip(amounts)
        .map(|(l, &n)| {
            // a stale client is judged by the stored (newer) parameters
            let (limit, p, level) = match state.and_then(|s| s.limits.get(l.name())) {
                Some(s) => (
                    Limit::custom(
                        l.name(),
                        (s.params.capacity / MILLI) as u64,
                        (s.params.refill / MILLI) as u64,
                        Duration::from_millis(s.params.period as u64),
                    ),
                    s.params,
                    Some(s.level),
                ),
                None => (l.clone(), l.params(), None),
            };
            let n_m = n as i128 * MILLI;
            LimitStatus {
                entity_id: key.entity_id.clone(),
                resource: key.resource.clone(),
                limit,
                available: to_tokens(p.tokens(level, t)),
                requested: n as i64,
                exceeded: !p.allows(level, n_m, t),
                retry_after: p
                    .retry_after_ms(level, n_m, t)
                    .map(|ms| Duration::from_millis(ms as u64)),
            }
        })
        .collect()
}

/// The write an acquire has sent and not yet heard back about.
type InFlight = parking_lot::Mutex<Option<(Vec<BucketChange>, crate::store::WriteOp)>>;

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

    pub(crate) async fn acquire_spec(&self, req: AcquireSpec) -> Result<Lease> {
        req.validate()?;
        // one deadline for the whole operation: resolution, cascade and write
        let deadline = self.deadline();
        let in_flight: InFlight = parking_lot::Mutex::new(None);
        let outcome =
            match tokio::time::timeout_at(deadline, self.acquire_inner(&req, deadline, &in_flight))
                .await
            {
                Ok(r) => r,
                Err(_) => Err(StoreFailure(
                    StoreError::Unavailable(format!(
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
        if let Some((changes, op)) = in_flight.lock().take() {
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
            (StoreError::Unavailable(m), OnUnavailable::Allow) if !blind => {
                tracing::warn!(error = %m, entity = %req.entity_id, resource = %req.resource,
                    "store unavailable; admitting (on_unavailable = allow)");
                Ok(Lease::noop(self.clone()))
            }
            (StoreError::Unavailable(m), _) => Err(Error::Unavailable {
                message: format!("{m} [entity={}, resource={}]", req.entity_id, req.resource),
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
    ) -> Result<Result<Lease>, StoreFailure> {
        let data = self
            .resolution(&req.entity_id, &req.resource)
            .await
            .map_err(|e| StoreFailure(e, None, false))?;
        let policy = data.on_unavailable();
        let fail = |e| StoreFailure(e, policy, true);
        if data.namespace_gone {
            return Ok(Err(Error::NamespaceNotFound(
                "this handle's namespace was deleted".into(),
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
            let pdata = self
                .resolution(&parent, &req.resource)
                .await
                .map_err(fail)?;
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
        let changes: Vec<BucketChange> = targets.iter().map(Target::change).collect();
        let lease_id = crate::lease::new_lease_id();
        let now = self.now_ms();
        let op = crate::lease::op(&lease_id, "acquire", false, deadline);
        *in_flight.lock() = Some((changes.clone(), op.clone()));
        let outcome = self.store().apply(&changes, now, &op).await;
        if !matches!(outcome, Err(StoreError::Unavailable(_))) {
            // a definite answer: applied, refused, or not applied at all
            in_flight.lock().take();
        }
        let outcome = outcome.map_err(fail)?;
        Ok(match outcome {
            ApplyOutcome::Applied(states) => {
                self.observe(&states);
                let entries = targets
                    .into_iter()
                    .map(|t| LeaseEntry::new(t.key, t.limits, t.version, &t.amounts))
                    .collect();
                Ok(Lease::new(self.clone(), lease_id, entries))
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
    fn compensate_later(&self, changes: Vec<BucketChange>, op: crate::store::WriteOp) {
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
                .into_iter()
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

/// An acquire request being built. `.await` it to get a [`Lease`].
#[must_use = "an acquire does nothing until awaited"]
#[derive(Debug)]
pub struct Acquire {
    limiter: RateLimiter,
    spec: AcquireSpec,
}

/// Why [`Acquire::run`] did not return the work's value alone.
#[derive(Debug, thiserror::Error)]
pub enum RunError<T, E> {
    /// The acquire was refused or failed; the work did not run.
    #[error("{0}")]
    Acquire(Error),
    /// The work returned an error; the lease was rolled back.
    #[error("{0}")]
    Work(E),
    /// The work succeeded but the commit failed: here is its value with the commit error
    /// (the capacity taken at acquire stays taken; unwritten adjustments are lost).
    #[error("the work succeeded but the commit failed: {error}")]
    Commit {
        /// What the work returned.
        value: T,
        /// Why the commit failed.
        error: Error,
    },
}

impl<T> From<RunError<T, Error>> for Error {
    fn from(e: RunError<T, Error>) -> Self {
        match e {
            RunError::Acquire(e) | RunError::Work(e) | RunError::Commit { error: e, .. } => e,
        }
    }
}

impl Acquire {
    /// Limits for the parent's bucket when the entity cascades and the parent has no stored
    /// limits of its own (default: the limits passed in [`limits`](Self::limits)). Amounts
    /// go to the parent's limits by name; a parent limit the request does not name takes 0.
    pub fn parent_limits(mut self, limits: impl IntoIterator<Item = Limit>) -> Self {
        self.spec.parent_limits = Some(limits.into_iter().collect());
        self
    }
    /// The limits to enforce (all of them are checked atomically).
    pub fn limits(mut self, limits: impl IntoIterator<Item = Limit>) -> Self {
        self.spec.limits.extend(limits);
        self
    }
    /// How much to take from each limit, by name; limits not named take 0 (but a limit in
    /// debt still refuses).
    pub fn consume<K: Into<String>>(mut self, amounts: impl IntoIterator<Item = (K, u64)>) -> Self {
        self.spec
            .consume
            .extend(amounts.into_iter().map(|(k, v)| (k.into(), v)));
        self
    }
    /// Override the limiter's [`OnUnavailable`] policy for this call.
    pub fn on_unavailable(mut self, policy: OnUnavailable) -> Self {
        self.spec.on_unavailable = Some(policy);
        self
    }

    pub(crate) fn into_parts(self) -> (RateLimiter, AcquireSpec) {
        (self.limiter, self.spec)
    }

    /// Acquire, run `work` with the lease, then commit if it returned `Ok` or roll back if it
    /// returned `Err`. A failed commit still hands back the value ([`RunError::Commit`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> zae_limiter::Result<()> {
    /// # use zae_limiter::{Limit, MemoryStore, RateLimiter};
    /// # let limiter = RateLimiter::builder(MemoryStore::new()).build();
    /// let answer = limiter
    ///     .acquire("key-1", "gpt-4")
    ///     .limits([Limit::per_minute("tpm", 10_000)])
    ///     .consume([("tpm", 500)])
    ///     .run(async |lease| {
    ///         let used = 640; // tokens the call really used
    ///         lease.adjust("tpm", used - 500)?;
    ///         Ok::<_, zae_limiter::Error>("done")
    ///     })
    ///     .await?;
    /// assert_eq!(answer, "done");
    /// # Ok(()) }
    /// ```
    pub async fn run<T, E, F>(self, work: F) -> Result<T, RunError<T, E>>
    where
        F: AsyncFnOnce(&Lease) -> Result<T, E>,
    {
        let lease = self.await.map_err(RunError::Acquire)?;
        match work(&lease).await {
            Ok(value) => match lease.commit().await {
                Ok(()) => Ok(value),
                Err(error) => Err(RunError::Commit { value, error }),
            },
            Err(e) => {
                if let Err(rb) = lease.rollback().await {
                    tracing::warn!(error = %rb, "rollback after a failed call did not complete");
                }
                Err(RunError::Work(e))
            }
        }
    }
}

impl IntoFuture for Acquire {
    type Output = Result<Lease>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<Lease>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        let (limiter, spec) = self.into_parts();
        Box::pin(async move { limiter.acquire_spec(spec).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_refuse_unknown_names_and_overflow() {
        let l = [Limit::per_minute("rpm", 10), Limit::per_minute("tpm", 10)];
        assert_eq!(amounts(&l, [("tpm", 3), ("tpm", 4)]).unwrap(), vec![0, 7]);
        assert!(amounts(&l, [("images", 1)]).is_err());
        assert!(amounts(&l, [("rpm", MAX_AMOUNT), ("rpm", 1)]).is_err());
    }

    #[test]
    fn a_parent_takes_only_the_limits_it_has() {
        let parent = [Limit::per_minute("tpm", 100)];
        let named = vec![("rpm".to_string(), 1), ("tpm".to_string(), 50)];
        assert_eq!(shared_amounts(&parent, &named), vec![50]);
    }

    #[test]
    fn validation_happens_before_io() {
        let spec = |consume: &[(&str, u64)]| AcquireSpec {
            entity_id: "k".into(),
            resource: "r".into(),
            limits: vec![Limit::per_minute("rpm", 1)],
            consume: consume.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            parent_limits: None,
            on_unavailable: None,
        };
        assert!(spec(&[("rpm", 1)]).validate().is_ok());
        assert!(spec(&[("tpm", 1)]).validate().is_err());
        assert!(spec(&[("bad name", 1)]).validate().is_err());
    }
}
