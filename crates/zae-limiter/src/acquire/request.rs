//! The acquire request as users build it, and its closure form.

use std::future::{Future, IntoFuture};
use std::pin::Pin;

use crate::config::OnUnavailable;
use crate::error::{Error, Result};
use crate::lease::Lease;
use crate::limit::{
    validate_entity_id, validate_limit_name, validate_limits, validate_resource, Limit, MAX_AMOUNT,
};
use crate::limiter::RateLimiter;

use super::decide::amounts;

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
    /// Everything that can be checked without the store. Returns the amounts per limit
    /// passed, when limits are passed (what the acquire takes if none are stored).
    pub(crate) fn validate(&self) -> Result<Option<Vec<u64>>> {
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
        if self.limits.is_empty() {
            return Ok(None);
        }
        amounts(&self.limits, self.named()).map(Some)
    }

    pub(crate) fn named(&self) -> impl Iterator<Item = (&str, u64)> {
        self.consume.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

/// An acquire request being built. `.await` it to get a [`Lease`].
#[must_use = "an acquire does nothing until awaited"]
#[derive(Debug)]
pub struct Acquire {
    pub(super) limiter: RateLimiter,
    pub(super) spec: AcquireSpec,
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
        Box::pin(limiter.acquire_owned(spec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
