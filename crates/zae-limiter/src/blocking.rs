//! A synchronous twin of the API for callers without an async runtime (like
//! `reqwest::blocking`). Do not use it from inside an async context.
//!
//! ```
//! use zae_limiter::{blocking, Limit, MemoryStore};
//!
//! let limiter = blocking::RateLimiter::new(
//!     zae_limiter::RateLimiter::builder(MemoryStore::new()).build(),
//! ).unwrap();
//! let lease = limiter
//!     .acquire("key-1", "api")
//!     .limits([Limit::per_minute("rpm", 10)])
//!     .consume([("rpm", 1)])
//!     .call()
//!     .unwrap();
//! lease.commit().unwrap();
//! let left = limiter.available("key-1", "api", &[Limit::per_minute("rpm", 10)]).unwrap();
//! assert_eq!(left["rpm"], 9);
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Runtime;

use crate::config::OnUnavailable;
use crate::entity::{Entity, NewEntity};
use crate::error::{Error, Result};
use crate::limit::Limit;

/// Blocking wrapper of [`crate::RateLimiter`]. Owns a small runtime (one worker thread).
#[derive(Debug, Clone)]
pub struct RateLimiter {
    inner: crate::RateLimiter,
    rt: Arc<Runtime>,
}

impl RateLimiter {
    /// Wrap an async limiter.
    pub fn new(inner: crate::RateLimiter) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("zae-limiter")
            .enable_all()
            .build()
            .map_err(|e| Error::Store(format!("cannot start the runtime: {e}")))?;
        Ok(RateLimiter {
            inner,
            rt: Arc::new(rt),
        })
    }

    /// Run any future of this crate (e.g. `DynamoStore::connect`) on the wrapper's runtime.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// The async limiter inside.
    pub fn as_async(&self) -> &crate::RateLimiter {
        &self.inner
    }

    /// Begin an acquire; finish with [`Acquire::call`] or [`Acquire::run`].
    pub fn acquire(&self, entity_id: impl Into<String>, resource: impl Into<String>) -> Acquire {
        Acquire {
            rt: self.rt.clone(),
            inner: self.inner.acquire(entity_id, resource),
        }
    }

    /// See [`crate::RateLimiter::available`].
    pub fn available(
        &self,
        entity_id: &str,
        resource: &str,
        limits: &[Limit],
    ) -> Result<BTreeMap<String, i64>> {
        self.rt
            .block_on(self.inner.available(entity_id, resource, limits))
    }

    /// See [`crate::RateLimiter::time_until_available`].
    pub fn time_until_available<'a>(
        &self,
        entity_id: &str,
        resource: &str,
        limits: &[Limit],
        needed: impl IntoIterator<Item = (&'a str, u64)>,
    ) -> Result<Duration> {
        self.rt.block_on(
            self.inner
                .time_until_available(entity_id, resource, limits, needed),
        )
    }

    /// See [`crate::RateLimiter::create_entity`].
    pub fn create_entity(&self, spec: NewEntity) -> Result<Entity> {
        self.rt.block_on(self.inner.create_entity(spec))
    }

    /// See [`crate::RateLimiter::get_entity`].
    pub fn get_entity(&self, entity_id: &str) -> Result<Option<Entity>> {
        self.rt.block_on(self.inner.get_entity(entity_id))
    }

    /// See [`crate::RateLimiter::delete_entity`].
    pub fn delete_entity(&self, entity_id: &str) -> Result<bool> {
        self.rt.block_on(self.inner.delete_entity(entity_id))
    }

    /// See [`crate::RateLimiter::delete_entity_forced`].
    pub fn delete_entity_forced(&self, entity_id: &str) -> Result<bool> {
        self.rt.block_on(self.inner.delete_entity_forced(entity_id))
    }

    /// See [`crate::RateLimiter::flush`]: wait for the rollbacks of dropped leases.
    pub fn flush(&self) {
        self.rt.block_on(self.inner.flush())
    }
}

/// A blocking acquire request.
#[must_use = "an acquire does nothing until called"]
#[derive(Debug)]
pub struct Acquire {
    rt: Arc<Runtime>,
    inner: crate::Acquire,
}

impl Acquire {
    /// See [`crate::Acquire::limits`].
    pub fn limits(mut self, limits: impl IntoIterator<Item = Limit>) -> Self {
        self.inner = self.inner.limits(limits);
        self
    }
    /// See [`crate::Acquire::consume`].
    pub fn consume<K: Into<String>>(mut self, amounts: impl IntoIterator<Item = (K, u64)>) -> Self {
        self.inner = self.inner.consume(amounts);
        self
    }
    /// See [`crate::Acquire::parent_limits`].
    pub fn parent_limits(mut self, limits: impl IntoIterator<Item = Limit>) -> Self {
        self.inner = self.inner.parent_limits(limits);
        self
    }
    /// See [`crate::Acquire::on_unavailable`].
    pub fn on_unavailable(mut self, policy: OnUnavailable) -> Self {
        self.inner = self.inner.on_unavailable(policy);
        self
    }
    /// Acquire now.
    pub fn call(self) -> Result<Lease> {
        let (limiter, spec) = self.inner.into_parts();
        let lease = self.rt.block_on(limiter.acquire_spec(spec))?;
        Ok(Lease {
            rt: self.rt,
            inner: lease,
        })
    }
    /// Acquire, run `work`, commit on `Ok`, roll back on `Err`; see [`crate::Acquire::run`].
    pub fn run<T, E>(
        self,
        work: impl FnOnce(&Lease) -> Result<T, E>,
    ) -> Result<T, crate::RunError<T, E>> {
        let lease = self.call().map_err(crate::RunError::Acquire)?;
        match work(&lease) {
            Ok(value) => match lease.commit() {
                Ok(()) => Ok(value),
                Err(error) => Err(crate::RunError::Commit { value, error }),
            },
            Err(e) => {
                if let Err(rb) = lease.rollback() {
                    tracing::warn!(error = %rb, "rollback after a failed call did not complete");
                }
                Err(crate::RunError::Work(e))
            }
        }
    }
}

/// Blocking [`crate::Lease`].
#[derive(Debug)]
pub struct Lease {
    rt: Arc<Runtime>,
    inner: crate::Lease,
}

impl Lease {
    /// See [`crate::Lease::adjust`].
    pub fn adjust(&self, limit: &str, delta: i64) -> Result<()> {
        self.inner.adjust(limit, delta)
    }
    /// See [`crate::Lease::consume`].
    pub fn consume(&self, limit: &str, amount: u64) -> Result<()> {
        self.rt.block_on(self.inner.consume(limit, amount))
    }
    /// See [`crate::Lease::consumed`].
    pub fn consumed(&self) -> BTreeMap<String, i64> {
        self.inner.consumed()
    }
    /// See [`crate::Lease::limits`].
    pub fn limits(&self) -> &[Limit] {
        self.inner.limits()
    }
    /// See [`crate::Lease::statuses`].
    pub fn statuses(&self) -> &[crate::LimitStatus] {
        self.inner.statuses()
    }
    /// See [`crate::Lease::is_noop`].
    pub fn is_noop(&self) -> bool {
        self.inner.is_noop()
    }
    /// See [`crate::Lease::commit`].
    pub fn commit(&self) -> Result<()> {
        self.rt.block_on(self.inner.commit())
    }
    /// See [`crate::Lease::rollback`].
    pub fn rollback(&self) -> Result<()> {
        self.rt.block_on(self.inner.rollback())
    }
}
