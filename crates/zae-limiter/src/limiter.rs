//! The rate limiter: its configuration, caches, clock and deadline. `acquire` is in
//! `acquire/`, entity and config management in `entities.rs` and `admin.rs`, the reads that
//! consume nothing in `limiter/read.rs`, what it knows of sharded buckets in
//! `limiter/shards.rs`.

use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::cache::{CacheStats, ConfigCache};
use crate::clock::{Clock, SystemClock};
use crate::config::OnUnavailable;
use crate::error::{Result, StoreError};
use crate::store::{BucketState, Store};

mod read;
mod resolve;
mod shards;

/// The largest lead (ms) a client adopts from bucket times written by clients whose clocks
/// are ahead of its own. Beyond it the client keeps its clock (and logs a warning): a bucket
/// time that far ahead is a broken clock, not skew.
pub const MAX_CLOCK_LEAD_MS: i64 = 10 * 60_000;

/// Background rollbacks still running, and a way to wait for none.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    count: AtomicUsize,
    idle: tokio::sync::Notify,
}

/// Counts one background rollback while it lives.
pub(crate) struct PendingGuard(Arc<Pending>);

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Builder for [`RateLimiter`].
#[derive(Debug)]
pub struct RateLimiterBuilder {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    on_unavailable: OnUnavailable,
    timeout: Duration,
    entity_cache_ttl: Duration,
    entity_cache_size: usize,
    principal: Option<String>,
    audit_retention: Duration,
    max_shards: u16,
    /// `None`: from the store.
    split_rate: Option<Option<u32>>,
}

impl RateLimiterBuilder {
    /// Most shards a throttled bucket is split into (default 16, the maximum; a power of
    /// two; 1 turns automatic splitting off). See [`crate::shard`].
    pub fn max_shards(mut self, shards: u16) -> Self {
        self.max_shards = shards;
        self
    }
    /// Split a bucket ahead of throttling when the writes of all clients to one of its
    /// shards, as this client estimates them from what its own writes return (see
    /// [`crate::shard::rate`]), reach `per_sec` writes per second. Default: 80% of the
    /// store's [`Store::partition_write_limit`], 800/s on DynamoDB, off on the embedded
    /// store. `None` turns it off; throttling still splits (see
    /// [`max_shards`](Self::max_shards)).
    pub fn split_at_writes_per_sec(mut self, per_sec: Option<u32>) -> Self {
        self.split_rate = Some(per_sec);
        self
    }
    /// What to do when the store is unreachable (default [`OnUnavailable::Block`]).
    pub fn on_unavailable(mut self, policy: OnUnavailable) -> Self {
        self.on_unavailable = policy;
        self
    }
    /// Deadline of each operation (default 5 s): an `acquire` with its config resolution,
    /// cascade and write, retries included, or one call of another kind.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// How long resolved configs and entity metadata are cached (default 60 s, zero disables).
    pub fn config_cache_ttl(mut self, ttl: Duration) -> Self {
        self.entity_cache_ttl = ttl;
        self
    }
    /// Who is making changes, recorded in audit events (default: none).
    pub fn principal(mut self, principal: impl Into<String>) -> Self {
        self.principal = Some(principal.into());
        self
    }
    /// How long audit events are kept (default 90 days).
    pub fn audit_retention(mut self, retention: Duration) -> Self {
        self.audit_retention = retention;
        self
    }
    /// Use another clock (tests, simulations).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }
    /// Finish.
    pub fn build(self) -> RateLimiter {
        let split_rate = self
            .split_rate
            .unwrap_or_else(|| self.store.partition_write_limit().map(|n| n / 5 * 4))
            .filter(|n| *n > 0)
            .map(f64::from);
        RateLimiter {
            inner: Arc::new(Inner {
                store: self.store,
                clock: self.clock,
                on_unavailable: self.on_unavailable,
                timeout: self.timeout,
                cache: ConfigCache::new(self.entity_cache_ttl, self.entity_cache_size),
                cache_size: self.entity_cache_size,
                principal: self.principal,
                caller: tokio::sync::OnceCell::new(),
                audit_retention: self.audit_retention,
                lead_ms: AtomicI64::new(0),
                pending: Arc::default(),
                shards: shards::ShardLevels::default(),
                max_shard_level: (self.max_shards.max(1).ilog2() as u8)
                    .min(crate::shard::MAX_SHARD_LEVEL),
                split_rate,
            }),
        }
    }
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    on_unavailable: OnUnavailable,
    timeout: Duration,
    cache: ConfigCache,
    cache_size: usize,
    principal: Option<String>,
    /// The store's caller identity, asked once when no principal is given.
    caller: tokio::sync::OnceCell<Option<String>>,
    audit_retention: Duration,
    /// How far ahead of our clock the buckets we saw are (clients whose clocks run ahead
    /// wrote them): adopted so that their writes do not lock us out.
    lead_ms: AtomicI64,
    pending: Arc<Pending>,
    /// The shard levels learned per bucket.
    shards: shards::ShardLevels,
    /// The level hot buckets are raised to at most.
    max_shard_level: u8,
    /// The estimated writes per second to one shard at which its bucket is split.
    split_rate: Option<f64>,
}

/// A distributed token-bucket rate limiter. Cheap to clone; clones share caches.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> zae_limiter::Result<()> {
/// use zae_limiter::{Limit, MemoryStore, RateLimiter};
///
/// let limiter = RateLimiter::builder(MemoryStore::new()).build();
/// let lease = limiter
///     .acquire("api-key-123", "gpt-4")
///     .limits([Limit::per_minute("rpm", 100), Limit::per_minute("tpm", 10_000)])
///     .consume([("rpm", 1), ("tpm", 500)])
///     .await?;
/// lease.adjust("tpm", 812 - 500)?; // the call used 812 tokens
/// lease.commit().await?;
///
/// let left = limiter.available("api-key-123", "gpt-4",
///     &[Limit::per_minute("rpm", 100), Limit::per_minute("tpm", 10_000)]).await?;
/// assert_eq!(left["rpm"], 99);
/// assert_eq!(left["tpm"], 10_000 - 812);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

impl RateLimiter {
    /// Start building a limiter over `store`.
    pub fn builder(store: impl Store + 'static) -> RateLimiterBuilder {
        Self::builder_shared(Arc::new(store))
    }

    /// Start building a limiter over a shared store.
    pub fn builder_shared(store: Arc<dyn Store>) -> RateLimiterBuilder {
        RateLimiterBuilder {
            store,
            clock: Arc::new(SystemClock),
            on_unavailable: OnUnavailable::Block,
            timeout: Duration::from_secs(5),
            entity_cache_ttl: Duration::from_secs(60),
            entity_cache_size: 10_000,
            principal: None,
            audit_retention: Duration::from_secs(90 * 86_400),
            max_shards: 1 << crate::shard::MAX_SHARD_LEVEL,
            split_rate: None,
        }
    }

    /// The same limiter (clock, policy, timeout, cache TTL, principal) over another store
    /// handle, with caches of its own.
    pub(crate) fn with_store(&self, store: Arc<dyn Store>) -> RateLimiter {
        let i = &self.inner;
        RateLimiter {
            inner: Arc::new(Inner {
                store,
                clock: i.clock.clone(),
                on_unavailable: i.on_unavailable,
                timeout: i.timeout,
                cache: ConfigCache::new(i.cache.stats().ttl, i.cache_size),
                cache_size: i.cache_size,
                principal: i.principal.clone(),
                caller: tokio::sync::OnceCell::new(),
                audit_retention: i.audit_retention,
                lead_ms: AtomicI64::new(i.lead_ms.load(Ordering::Relaxed)),
                pending: i.pending.clone(),
                shards: shards::ShardLevels::default(),
                max_shard_level: i.max_shard_level,
                split_rate: i.split_rate,
            }),
        }
    }

    /// Drop the cached resolutions of `entity_id` (every resource).
    pub(crate) fn forget_entity(&self, entity_id: &str) {
        self.inner.cache.invalidate_where(|e, _| e == entity_id)
    }

    pub(crate) fn forget_config(&self, scope: &crate::config::ConfigScope) {
        use crate::config::ConfigScope;
        match scope {
            ConfigScope::Entity {
                entity_id,
                resource,
            } => self
                .inner
                .cache
                .invalidate_where(|e, r| e == entity_id && r == resource),
            ConfigScope::EntityDefault { entity_id } => {
                self.inner.cache.invalidate_where(|e, _| e == entity_id)
            }
            ConfigScope::Resource { resource } => {
                self.inner.cache.invalidate_where(|_, r| r == resource)
            }
            ConfigScope::System => self.inner.cache.invalidate(),
        }
    }

    /// The audit principal: the one given to the builder, else the store's caller identity
    /// (asked once, bounded by the timeout), else none.
    pub(crate) async fn principal(&self) -> Option<String> {
        if let Some(p) = &self.inner.principal {
            return Some(p.clone());
        }
        self.inner
            .caller
            .get_or_init(|| async {
                tokio::time::timeout(self.inner.timeout, self.inner.store.caller_identity())
                    .await
                    .ok()
                    .flatten()
            })
            .await
            .clone()
    }

    pub(crate) fn audit_retention(&self) -> Duration {
        self.inner.audit_retention
    }

    /// The store this limiter writes to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Our time for bucket math: the clock plus the lead adopted from buckets seen ahead.
    pub(crate) fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms() + self.inner.lead_ms.load(Ordering::Relaxed)
    }

    /// Learn from bucket states returned by the store: a bucket time ahead of our clock
    /// means a client ahead of us wrote it; adopt the lead (up to [`MAX_CLOCK_LEAD_MS`]).
    pub(crate) fn observe<'a>(&self, states: impl IntoIterator<Item = &'a BucketState>) {
        let clock = self.inner.clock.now_ms();
        for s in states {
            let lead = s.time_ms - clock;
            if lead > MAX_CLOCK_LEAD_MS {
                tracing::warn!(
                    lead_ms = lead,
                    "a bucket time is far ahead of this clock; ignored"
                );
            } else if lead > 0 {
                self.inner.lead_ms.fetch_max(lead, Ordering::Relaxed);
            }
        }
    }

    /// [`observe`](Self::observe) the states a write at our time `now` returned. A bucket
    /// time not after `now` (clock plus the lead then, and the lead only grows) teaches
    /// nothing, so the usual case reads no clock.
    pub(crate) fn observe_at(&self, states: &[BucketState], now: i64) {
        if states.iter().any(|s| s.time_ms > now) {
            self.observe(states);
        }
    }

    /// The operation deadline.
    pub(crate) fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// When an operation starting now must be done.
    pub(crate) fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.inner.timeout
    }

    /// The policy given to the builder.
    pub(crate) fn default_policy(&self) -> OnUnavailable {
        self.inner.on_unavailable
    }

    /// The stored system policy last seen.
    pub(crate) fn last_policy(&self) -> Option<OnUnavailable> {
        self.inner.cache.last_policy()
    }

    /// Count a background rollback until the guard drops.
    pub(crate) fn pending_rollback(&self) -> PendingGuard {
        self.inner.pending.count.fetch_add(1, Ordering::AcqRel);
        PendingGuard(self.inner.pending.clone())
    }

    /// Wait until the rollbacks of dropped leases started so far have finished (each is
    /// bounded by the limiter's timeout). Call it before a process exits so that capacity
    /// taken by abandoned leases is given back.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> zae_limiter::Result<()> {
    /// # use zae_limiter::{Limit, MemoryStore, RateLimiter};
    /// let limiter = RateLimiter::builder(MemoryStore::new()).build();
    /// let lease = limiter.acquire("k", "r").limits([Limit::per_minute("rpm", 5)])
    ///     .consume([("rpm", 5)]).await?;
    /// drop(lease); // rolled back in the background
    /// limiter.flush().await;
    /// assert_eq!(limiter.available("k", "r", &[Limit::per_minute("rpm", 5)]).await?["rpm"], 5);
    /// # Ok(()) }
    /// ```
    pub async fn flush(&self) {
        loop {
            let idle = self.inner.pending.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.inner.pending.count.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Run a store call under the configured timeout.
    pub(crate) async fn call<T>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let deadline = tokio::time::Instant::now() + self.inner.timeout;
        match crate::acquire::within(deadline, std::pin::pin!(fut)).await {
            Some(r) => r,
            None => Err(StoreError::unavailable(format!(
                "no answer from the store within {:?}",
                self.inner.timeout
            ))),
        }
    }

    /// Forget every cached config and entity (this limiter's changes do it themselves).
    pub fn invalidate_config_cache(&self) {
        self.inner.cache.invalidate()
    }

    /// Hits, misses, size and TTL of the config cache.
    pub fn cache_stats(&self) -> CacheStats {
        self.inner.cache.stats()
    }
}
