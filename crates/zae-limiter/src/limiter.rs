//! The rate limiter: validates, resolves the entity, asks the store for one atomic decision,
//! and hands out leases.

use std::collections::BTreeMap;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::bucket::MILLI;
use crate::cache::{CacheStats, ConfigCache};
use crate::clock::{Clock, SystemClock};
use crate::config::{AuditAction, OnUnavailable, ResolutionData};
use crate::entity::{Entity, NewEntity};
use crate::error::{Error, Result, StoreError};
use crate::exceeded::{LimitStatus, RateLimitExceeded};
use crate::lease::{Lease, LeaseEntry};
use crate::limit::{validate_entity_id, validate_limits, validate_resource, Limit, MAX_AMOUNT};
use crate::store::{ApplyOutcome, BucketChange, BucketKey, BucketState, LimitChange, Store};

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
}

impl RateLimiterBuilder {
    /// What to do when the store is unreachable (default [`OnUnavailable::Block`]).
    pub fn on_unavailable(mut self, policy: OnUnavailable) -> Self {
        self.on_unavailable = policy;
        self
    }
    /// Upper bound on each store call, retries included (default 5 s).
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
            }),
        }
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

    pub(crate) fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    /// Begin an acquire of capacity for `entity_id` on `resource`. Set the limits and amounts
    /// on the returned request, then `.await` it (or call [`Acquire::run`]).
    pub fn acquire(&self, entity_id: impl Into<String>, resource: impl Into<String>) -> Acquire {
        Acquire {
            limiter: self.clone(),
            entity_id: entity_id.into(),
            resource: resource.into(),
            limits: Vec::new(),
            consume: Vec::new(),
            parent_limits: None,
            on_unavailable: None,
        }
    }

    /// Run a store call under the configured timeout.
    pub(crate) async fn call<T>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.inner.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer from the store within {:?}",
                self.inner.timeout
            ))),
        }
    }

    /// Create an entity. A child names its parent, which must exist and must not itself have
    /// a parent (two levels).
    pub async fn create_entity(&self, spec: NewEntity) -> Result<Entity> {
        validate_entity_id(&spec.id)?;
        if let Some(p) = &spec.parent_id {
            validate_entity_id(p)?;
            if *p == spec.id {
                return Err(Error::invalid(
                    "parent_id",
                    "an entity cannot be its own parent",
                ));
            }
            match self.call(self.inner.store.get_entity(p)).await? {
                None => return Err(Error::EntityNotFound(p.clone())),
                Some(parent) if parent.parent_id.is_some() => {
                    return Err(Error::invalid(
                        "parent_id",
                        format!("'{p}' is itself a child; the hierarchy has two levels"),
                    ))
                }
                Some(_) => {}
            }
        }
        if spec.cascade && spec.parent_id.is_none() {
            return Err(Error::invalid("cascade", "cascade needs a parent_id"));
        }
        let entity = Entity {
            id: spec.id,
            name: spec.name,
            parent_id: spec.parent_id,
            cascade: spec.cascade,
            metadata: spec.metadata,
            created_at_ms: self.now_ms(),
        };
        let audit = self
            .audit_event(
                AuditAction::EntityCreated,
                entity.id.clone(),
                None,
                serde_json::json!({ "new": &entity }),
            )
            .await;
        self.call(self.inner.store.create_entity(&entity, &audit))
            .await?;
        // cached "no such entity" results for this id are now wrong
        self.inner.cache.invalidate_where(|e, _| e == entity.id);
        Ok(entity)
    }

    /// Read an entity (`None` if it does not exist). Always asks the store.
    pub async fn get_entity(&self, entity_id: &str) -> Result<Option<Entity>> {
        validate_entity_id(entity_id)?;
        Ok(self.call(self.inner.store.get_entity(entity_id)).await?)
    }

    /// The entity and its config levels for `resource`, through the cache.
    pub(crate) async fn resolution(
        &self,
        entity_id: &str,
        resource: &str,
    ) -> Result<Arc<ResolutionData>, StoreError> {
        let now = self.now_ms();
        if let Some(d) = self.inner.cache.get(entity_id, resource, now) {
            return Ok(d);
        }
        let d = Arc::new(
            self.call(self.inner.store.load_resolution(entity_id, resource))
                .await?,
        );
        self.inner.cache.put(entity_id, resource, d.clone(), now);
        Ok(d)
    }

    /// Forget every cached config and entity (this limiter's changes do it themselves).
    pub fn invalidate_config_cache(&self) {
        self.inner.cache.invalidate()
    }

    /// Hits, misses, size and TTL of the config cache.
    pub fn cache_stats(&self) -> CacheStats {
        self.inner.cache.stats()
    }

    /// Whole tokens available now per limit, consuming nothing. One read of the bucket (plus
    /// the config resolution when the cache is cold). With no `limits`, the stored ones are used.
    pub async fn available(
        &self,
        entity_id: &str,
        resource: &str,
        limits: &[Limit],
    ) -> Result<BTreeMap<String, i64>> {
        let (limits, bucket, now) = self.read_for(entity_id, resource, limits).await?;
        Ok(limits
            .iter()
            .map(|l| {
                let p = l.params();
                let level = bucket.as_ref().and_then(|b| b.level_for(l.name(), &p, now));
                (l.name().to_string(), to_tokens(p.tokens(level, now)))
            })
            .collect())
    }

    /// How long until `needed` tokens are available for every named limit (zero if now).
    /// An amount above a limit's capacity can never be satisfied: a validation error.
    pub async fn time_until_available<'a>(
        &self,
        entity_id: &str,
        resource: &str,
        limits: &[Limit],
        needed: impl IntoIterator<Item = (&'a str, u64)>,
    ) -> Result<Duration> {
        let (limits, bucket, now) = self.read_for(entity_id, resource, limits).await?;
        let needed = amounts(&limits, needed)?;
        let mut wait = 0i64;
        for (l, n) in limits.iter().zip(needed) {
            let p = l.params();
            let level = bucket.as_ref().and_then(|b| b.level_for(l.name(), &p, now));
            match p.retry_after_ms(level, n as i128 * MILLI, now) {
                Some(ms) => wait = wait.max(ms),
                None => {
                    return Err(Error::invalid(
                        "needed",
                        format!(
                            "{n} exceeds the capacity {} of limit '{}'",
                            l.capacity(),
                            l.name()
                        ),
                    ))
                }
            }
        }
        Ok(Duration::from_millis(wait as u64))
    }

    async fn read_for(
        &self,
        entity_id: &str,
        resource: &str,
        limits: &[Limit],
    ) -> Result<(Vec<Limit>, Option<BucketState>, i64)> {
        validate_entity_id(entity_id)?;
        validate_resource(resource)?;
        validate_limits(limits)?;
        let data = self.resolution(entity_id, resource).await?;
        let limits = pick_limits(&data, limits, entity_id, resource)?;
        let key = BucketKey::new(entity_id, resource);
        let bucket = self.call(self.inner.store.get_bucket(&key)).await?;
        Ok((limits, bucket, self.now_ms()))
    }

    async fn do_acquire(&self, req: AcquireSpec) -> Result<Lease> {
        validate_entity_id(&req.entity_id)?;
        validate_resource(&req.resource)?;
        validate_limits(&req.limits)?;
        if let Some(pl) = &req.parent_limits {
            validate_limits(pl)?;
        }
        for (name, n) in &req.consume {
            if *n > MAX_AMOUNT {
                return Err(Error::invalid(
                    "consume",
                    format!("{n} {name} is above {MAX_AMOUNT}"),
                ));
            }
        }
        match self.acquire_inner(&req).await {
            Ok(r) => r,
            Err(StoreFailure(e, stored_policy)) => {
                let policy = req
                    .on_unavailable
                    .or(stored_policy)
                    .or(self.inner.cache.last_policy())
                    .unwrap_or(self.inner.on_unavailable);
                match policy {
                    OnUnavailable::Allow => {
                        tracing::warn!(error = %e, entity = %req.entity_id, resource = %req.resource,
                            "store unavailable; admitting (on_unavailable = allow)");
                        Ok(Lease::noop(self.clone()))
                    }
                    OnUnavailable::Block => Err(match e {
                        StoreError::Unavailable(m) | StoreError::Other(m) => Error::Unavailable {
                            message: format!(
                                "{m} [entity={}, resource={}]",
                                req.entity_id, req.resource
                            ),
                        },
                        other => other.into(),
                    }),
                }
            }
        }
    }

    /// Outer `Err` = the store failed (subject to `on_unavailable`); inner = the decision.
    async fn acquire_inner(&self, req: &AcquireSpec) -> Result<Result<Lease>, StoreFailure> {
        let data = self
            .resolution(&req.entity_id, &req.resource)
            .await
            .map_err(|e| StoreFailure(e, None))?;
        let fail = |e| StoreFailure(e, data.on_unavailable());
        let consume = || req.consume.iter().map(|(k, v)| (k.as_str(), *v));
        let child = match pick_limits(&data, &req.limits, &req.entity_id, &req.resource)
            .and_then(|l| amounts(&l, consume()).map(|a| (l, a)))
        {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let mut targets = vec![(BucketKey::new(&req.entity_id, &req.resource), child)];
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
            let plimits: Vec<Limit> = match pdata.limits() {
                Some((_, stored)) => stored.to_vec(),
                None => req
                    .parent_limits
                    .clone()
                    .unwrap_or_else(|| targets[0].1 .0.clone()),
            };
            // the parent takes the amounts of the limits it shares with the child
            let pamounts = plimits
                .iter()
                .map(|l| {
                    consume()
                        .filter(|(k, _)| *k == l.name())
                        .map(|(_, v)| v)
                        .sum()
                })
                .collect();
            targets.push((BucketKey::new(parent, &req.resource), (plimits, pamounts)));
        }
        let changes: Vec<BucketChange> = targets
            .iter()
            .map(|(key, (limits, amounts))| BucketChange {
                key: key.clone(),
                limits: limits
                    .iter()
                    .zip(amounts)
                    .map(|(l, n)| LimitChange {
                        name: l.name().to_string(),
                        params: l.params(),
                        version: 0,
                        amount: *n as i128 * MILLI,
                        checked: true,
                    })
                    .collect(),
            })
            .collect();
        let now = self.now_ms();
        let outcome = self
            .call(self.inner.store.apply(
                &changes,
                now,
                &crate::store::WriteOp::unique("acquire", false),
            ))
            .await
            .map_err(fail)?;
        Ok(match outcome {
            ApplyOutcome::Applied(states) => {
                let entries = targets
                    .into_iter()
                    .zip(states)
                    .map(|((key, (limits, amounts)), state)| {
                        LeaseEntry::new(key, &limits, &amounts, state)
                    })
                    .collect();
                Ok(Lease::new(self.clone(), entries))
            }
            ApplyOutcome::Rejected(seen) => {
                let statuses = targets
                    .iter()
                    .zip(&seen)
                    .flat_map(|((key, (limits, amounts)), state)| {
                        statuses_for(key, state.as_ref(), limits, amounts, now)
                    })
                    .collect();
                Err(Error::RateLimited(Box::new(RateLimitExceeded::new(
                    statuses,
                ))))
            }
        })
    }
}

/// The limits to enforce: the most specific stored level, else the ones passed in code.
fn pick_limits(
    data: &ResolutionData,
    passed: &[Limit],
    entity_id: &str,
    resource: &str,
) -> Result<Vec<Limit>> {
    match data.limits() {
        Some((_, stored)) => Ok(stored.to_vec()),
        None if !passed.is_empty() => Ok(passed.to_vec()),
        None => Err(Error::invalid(
            "limits",
            format!("no limits given or stored for entity '{entity_id}' and resource '{resource}'"),
        )),
    }
}

/// A store failure, with the stored `on_unavailable` policy when it was already known.
struct StoreFailure(StoreError, Option<OnUnavailable>);

fn to_tokens(milli: i128) -> i64 {
    milli
        .div_euclid(MILLI)
        .clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// The status of every limit of one bucket for a request of `amounts` at `now`.
pub(crate) fn statuses_for(
    key: &BucketKey,
    state: Option<&BucketState>,
    limits: &[Limit],
    amounts: &[u64],
    now: i64,
) -> Vec<LimitStatus> {
    limits
        .iter()
        .zip(amounts)
        .map(|(l, &n)| {
            let p = l.params();
            let level = state.and_then(|s| s.level_for(l.name(), &p, now));
            let n_m = n as i128 * MILLI;
            let allowed = p.allows(level, n_m, now);
            LimitStatus {
                entity_id: key.entity_id.clone(),
                resource: key.resource.clone(),
                limit: l.clone(),
                available: to_tokens(p.tokens(level, now)),
                requested: n as i64,
                exceeded: !allowed,
                retry_after: p
                    .retry_after_ms(level, n_m, now)
                    .map(|ms| Duration::from_millis(ms as u64)),
            }
        })
        .collect()
}

/// Map named amounts onto `limits` (same order); unknown names and oversized amounts are errors.
fn amounts<'a>(
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
        if n > MAX_AMOUNT {
            return Err(Error::invalid(
                "consume",
                format!("{n} {name} is above {MAX_AMOUNT}"),
            ));
        }
        out[i] += n;
    }
    Ok(out)
}

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

/// An acquire request being built. `.await` it to get a [`Lease`].
#[must_use = "an acquire does nothing until awaited"]
#[derive(Debug)]
pub struct Acquire {
    limiter: RateLimiter,
    entity_id: String,
    resource: String,
    limits: Vec<Limit>,
    consume: Vec<(String, u64)>,
    parent_limits: Option<Vec<Limit>>,
    on_unavailable: Option<OnUnavailable>,
}

impl Acquire {
    /// Limits for the parent's bucket when the entity cascades (default: the same limits).
    /// Must carry the same limit names as [`limits`](Self::limits).
    pub fn parent_limits(mut self, limits: impl IntoIterator<Item = Limit>) -> Self {
        self.parent_limits = Some(limits.into_iter().collect());
        self
    }
    /// The limits to enforce (all of them are checked atomically).
    pub fn limits(mut self, limits: impl IntoIterator<Item = Limit>) -> Self {
        self.limits.extend(limits);
        self
    }
    /// How much to take from each limit, by name; limits not named take 0 (but a limit in
    /// debt still refuses).
    pub fn consume<K: Into<String>>(mut self, amounts: impl IntoIterator<Item = (K, u64)>) -> Self {
        self.consume
            .extend(amounts.into_iter().map(|(k, v)| (k.into(), v)));
        self
    }
    /// Override the limiter's [`OnUnavailable`] policy for this call.
    pub fn on_unavailable(mut self, policy: OnUnavailable) -> Self {
        self.on_unavailable = Some(policy);
        self
    }

    pub(crate) fn into_parts(self) -> (RateLimiter, AcquireSpec) {
        let spec = AcquireSpec {
            entity_id: self.entity_id,
            resource: self.resource,
            limits: self.limits,
            consume: self.consume,
            parent_limits: self.parent_limits,
            on_unavailable: self.on_unavailable,
        };
        (self.limiter, spec)
    }

    /// Acquire, run `work` with the lease, then commit if it returned `Ok` or roll back if it
    /// returned `Err` (the error is passed through).
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
    pub async fn run<T, E, F>(self, work: F) -> Result<T, E>
    where
        F: AsyncFnOnce(&Lease) -> Result<T, E>,
        E: From<Error>,
    {
        let lease = self.await?;
        match work(&lease).await {
            Ok(v) => {
                lease.commit().await?;
                Ok(v)
            }
            Err(e) => {
                if let Err(rb) = lease.rollback().await {
                    tracing::warn!(error = %rb, "rollback after a failed call did not complete");
                }
                Err(e)
            }
        }
    }
}

impl IntoFuture for Acquire {
    type Output = Result<Lease>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<Lease>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        let (limiter, spec) = self.into_parts();
        Box::pin(async move { limiter.do_acquire(spec).await })
    }
}

impl RateLimiter {
    pub(crate) async fn acquire_spec(&self, spec: AcquireSpec) -> Result<Lease> {
        self.do_acquire(spec).await
    }
}
