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
use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Runtime;

use crate::cache::CacheStats;
use crate::config::{AuditPage, ConfigScope, IdPage, OnUnavailable, StoredConfig};
use crate::entity::{Entity, NewEntity, UpdateEntity};
use crate::error::{Error, Result};
use crate::limit::Limit;
use crate::namespace::NamespaceInfo;
use crate::store::Store;

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
            .map_err(|e| Error::Other {
                message: format!("cannot start the runtime: {e}"),
                source: Some(Box::new(e)),
            })?;
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

    /// See [`crate::RateLimiter::shard_bucket`].
    pub fn shard_bucket(
        &self,
        entity_id: &str,
        resource: &str,
        limits: &[Limit],
        shards: u16,
    ) -> Result<u16> {
        self.rt
            .block_on(self.inner.shard_bucket(entity_id, resource, limits, shards))
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

    /// See [`crate::RateLimiter::store`].
    pub fn store(&self) -> &Arc<dyn Store> {
        self.inner.store()
    }

    /// See [`crate::RateLimiter::invalidate_config_cache`].
    pub fn invalidate_config_cache(&self) {
        self.inner.invalidate_config_cache()
    }

    /// See [`crate::RateLimiter::cache_stats`].
    pub fn cache_stats(&self) -> CacheStats {
        self.inner.cache_stats()
    }

    /// See [`crate::RateLimiter::update_entity`]: `change` sets what changes on the
    /// [`UpdateEntity`] builder, which is then run.
    ///
    /// ```
    /// # use zae_limiter::{blocking, MemoryStore, NewEntity};
    /// let limiter = blocking::RateLimiter::new(
    ///     zae_limiter::RateLimiter::builder(MemoryStore::new()).build(),
    /// ).unwrap();
    /// limiter.create_entity(NewEntity::new("key-1")).unwrap();
    /// let key = limiter.update_entity("key-1", |u| u.name("Web key")).unwrap();
    /// assert_eq!(key.name.as_deref(), Some("Web key"));
    /// ```
    pub fn update_entity(
        &self,
        entity_id: impl Into<String>,
        change: impl FnOnce(UpdateEntity) -> UpdateEntity,
    ) -> Result<Entity> {
        let update = change(self.inner.update_entity(entity_id));
        self.rt.block_on(update.into_future())
    }

    /// See [`crate::RateLimiter::children`].
    pub fn children(&self, parent_id: &str) -> Result<Vec<Entity>> {
        self.rt.block_on(self.inner.children(parent_id))
    }

    /// See [`crate::RateLimiter::resources_with_defaults`].
    pub fn resources_with_defaults(&self) -> Result<Vec<String>> {
        self.rt.block_on(self.inner.resources_with_defaults())
    }

    /// See [`crate::RateLimiter::list_entities`].
    pub fn list_entities(&self, limit: usize, after: Option<&str>) -> Result<crate::EntityPage> {
        self.rt.block_on(self.inner.list_entities(limit, after))
    }

    /// See [`crate::RateLimiter::entities_with_limits`].
    pub fn entities_with_limits(
        &self,
        resource: &str,
        limit: usize,
        after: Option<&str>,
    ) -> Result<IdPage> {
        self.rt
            .block_on(self.inner.entities_with_limits(resource, limit, after))
    }

    /// See [`crate::RateLimiter::set_config`].
    pub fn set_config(&self, scope: &ConfigScope, config: StoredConfig) -> Result<()> {
        self.rt.block_on(self.inner.set_config(scope, config))
    }

    /// See [`crate::RateLimiter::set_config_if`].
    pub fn set_config_if(
        &self,
        scope: &ConfigScope,
        seen: Option<&StoredConfig>,
        config: StoredConfig,
    ) -> Result<()> {
        self.rt
            .block_on(self.inner.set_config_if(scope, seen, config))
    }

    /// See [`crate::RateLimiter::delete_config_if`].
    pub fn delete_config_if(&self, scope: &ConfigScope, seen: &StoredConfig) -> Result<()> {
        self.rt.block_on(self.inner.delete_config_if(scope, seen))
    }

    /// See [`crate::RateLimiter::provisioner_state`].
    pub fn provisioner_state(&self) -> Result<Option<crate::ProvisionerState>> {
        self.rt.block_on(self.inner.provisioner_state())
    }

    /// Plan a manifest against the live values: see [`crate::manifest::Manifest::plan`].
    pub fn plan_manifest(
        &self,
        manifest: &crate::manifest::Manifest,
    ) -> Result<crate::manifest::Plan> {
        self.rt.block_on(manifest.plan(&self.inner))
    }

    /// Apply a plan: see [`crate::manifest::Plan::apply`].
    pub fn apply_plan(
        &self,
        plan: &crate::manifest::Plan,
    ) -> std::result::Result<crate::manifest::ApplyReport, crate::manifest::ApplyError> {
        self.rt.block_on(plan.apply(&self.inner))
    }

    /// See [`crate::RateLimiter::get_config`].
    pub fn get_config(&self, scope: &ConfigScope) -> Result<Option<StoredConfig>> {
        self.rt.block_on(self.inner.get_config(scope))
    }

    /// See [`crate::RateLimiter::delete_config`].
    pub fn delete_config(&self, scope: &ConfigScope) -> Result<bool> {
        self.rt.block_on(self.inner.delete_config(scope))
    }

    /// See [`crate::RateLimiter::audit_events`].
    pub fn audit_events(
        &self,
        entity_id: &str,
        limit: usize,
        before: Option<&str>,
    ) -> Result<AuditPage> {
        self.rt
            .block_on(self.inner.audit_events(entity_id, limit, before))
    }

    /// See [`crate::RateLimiter::namespace`]: a blocking limiter in namespace `name`,
    /// sharing this one's runtime.
    pub fn namespace(&self, name: &str) -> Result<RateLimiter> {
        let inner = self.rt.block_on(self.inner.namespace(name))?;
        Ok(RateLimiter {
            inner,
            rt: self.rt.clone(),
        })
    }

    /// See [`crate::RateLimiter::register_namespace`].
    pub fn register_namespace(&self, name: &str) -> Result<NamespaceInfo> {
        self.rt.block_on(self.inner.register_namespace(name))
    }

    /// See [`crate::RateLimiter::namespaces`].
    pub fn namespaces(&self) -> Result<Vec<NamespaceInfo>> {
        self.rt.block_on(self.inner.namespaces())
    }

    /// See [`crate::RateLimiter::get_namespace`].
    pub fn get_namespace(&self, name: &str) -> Result<Option<NamespaceInfo>> {
        self.rt.block_on(self.inner.get_namespace(name))
    }

    /// See [`crate::RateLimiter::delete_namespace`] (`default` needs
    /// [`delete_namespace_forced`](Self::delete_namespace_forced)).
    pub fn delete_namespace(&self, name: &str) -> Result<bool> {
        self.rt.block_on(self.inner.delete_namespace(name))
    }

    /// See [`crate::RateLimiter::delete_namespace_forced`].
    pub fn delete_namespace_forced(&self, name: &str) -> Result<bool> {
        self.rt.block_on(self.inner.delete_namespace_forced(name))
    }

    /// See [`crate::RateLimiter::recover_namespace`].
    pub fn recover_namespace(&self, id: &str) -> Result<NamespaceInfo> {
        self.rt.block_on(self.inner.recover_namespace(id))
    }

    /// See [`crate::RateLimiter::purge_namespace`].
    pub fn purge_namespace(
        &self,
        id: &str,
        progress: impl Fn(usize) + Send + Sync,
    ) -> Result<usize> {
        self.rt.block_on(self.inner.purge_namespace(id, progress))
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
