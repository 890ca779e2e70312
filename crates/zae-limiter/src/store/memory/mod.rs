//! The embedded, in-process store: same semantics as DynamoDB, no network. What it
//! guarantees is documented on [`MemoryStore`]; how:
//!
//! - Buckets are packed per entity ([`packed`]): about 40 bytes per one-limit bucket, plus
//!   the entity's key and its share of the hash table and of the eviction heap (227 bytes
//!   per bucket in all, measured with a million ids by `examples/embedded_memory.rs`), where
//!   a `BucketState` map took 1.6 KB.
//! - A min-heap holds, per entity, when its buckets are to be looked at next. Consumption
//!   only moves that time later, so the entry is just rescheduled when it comes up; an
//!   earlier time (a refund, a new resource) is pushed only when it halves the wait, so each
//!   entity keeps a few entries at most. Deleted entities and purged namespaces leave stale
//!   entries, skipped when they come up.
//! - Item sizes ([`size`]) follow the attributes `src/dynamodb/admin.rs` writes.
//! - The rest by idea: the namespace registry and lifecycle ([`namespaces`]), eviction
//!   ([`evict`]), audit events ([`audit`]), entities and configs ([`entities`]).

mod audit;
mod entities;
mod evict;
mod feed; // usage analytics: the in-process change feed (issue 10)
mod namespaces;
mod packed;
mod shards;
mod size;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{
    apply_exact, check_changes, ApplyOutcome, BucketChange, BucketKey, BucketState, Store, WriteOp,
};
use crate::config::{
    AuditEvent, AuditPage, ConfigScope, IdPage, ProvisionerState, ResolutionData, StoredConfig,
};
use crate::entity::Entity;
use crate::error::StoreError;
use crate::limit::MAX_LIMITS;
use crate::namespace::{NamespaceInfo, NamespaceStatus, DEFAULT_NAMESPACE};
use evict::{AuditDue, StoreTime};
use shards::Buckets;

// Re-exported until src/dynamodb/namespace.rs imports them from `crate::namespace`.

/// The data of one namespace.
#[derive(Debug)]
struct Inner {
    id: Arc<str>,
    entities: HashMap<String, Entity>,
    configs: HashMap<ConfigScope, StoredConfig>,
    provisioner: Option<ProvisionerState>,
    /// entity id -> event id -> event
    audit: HashMap<String, BTreeMap<String, AuditEvent>>,
    audit_count: usize,
}

impl Inner {
    fn new(id: Arc<str>) -> Self {
        Inner {
            id,
            entities: HashMap::new(),
            configs: HashMap::new(),
            provisioner: None,
            audit: HashMap::new(),
            audit_count: 0,
        }
    }
}

/// Every namespace's data but the buckets (by id), the registry (by id), and the audit
/// expiry heap. The buckets are in [`shards`], under locks of their own.
#[derive(Debug, Default)]
struct Shared {
    spaces: HashMap<Arc<str>, Inner>,
    registry: BTreeMap<String, NamespaceInfo>,
    audit_due: BinaryHeap<Reverse<AuditDue>>,
    /// The latest time callers passed in (audit expiry), shared with the buckets.
    time: Arc<StoreTime>,
}

fn space_in<'a>(spaces: &'a mut HashMap<Arc<str>, Inner>, id: &str) -> &'a mut Inner {
    if !spaces.contains_key(id) {
        let id: Arc<str> = id.into();
        spaces.insert(id.clone(), Inner::new(id));
    }
    spaces.get_mut(id).expect("inserted above")
}

impl Shared {
    fn new(time: Arc<StoreTime>) -> Self {
        Shared {
            time,
            ..Default::default()
        }
    }

    fn space(&mut self, id: &str) -> &mut Inner {
        space_in(&mut self.spaces, id)
    }
}

/// A thread-safe in-process store. Cloning shares the data.
///
/// Every [`Store::apply`] holds the locks of the buckets it touches for its whole read,
/// decision and write, so it is atomic and linearizable like a DynamoDB conditional write.
/// The buckets are spread over independently locked shards by entity id: applies on
/// different entities run in parallel (a cascade locks its two shards in a fixed order). A store handle works in one namespace (`default` from
/// [`MemoryStore::new`]); [`Store::scoped`] gives others.
///
/// **As strict as DynamoDB.** Whatever the DynamoDB store would have refused is refused
/// here too, with [`StoreError::Refused`]: the changes
/// [`check_changes`](crate::store::check_changes) refuses, a bucket that would hold more
/// than [`MAX_LIMITS`](crate::MAX_LIMITS) limits, and an item over 400 KB as DynamoDB counts
/// it (an entity with its metadata, a stored config, an audit event with its details, a
/// bucket).
///
/// **Bounded.** State does not grow with every id ever seen:
/// - A bucket is dropped once it is full again ([`BucketState::full_at_ms`]) plus
///   [`EVICTION_GRACE_MS`](Self::EVICTION_GRACE_MS). A missing bucket reads as full, so
///   dropping it changes no decision and nothing
///   [`available`](crate::RateLimiter::available) or
///   [`time_until_available`](crate::RateLimiter::time_until_available) report. What goes
///   is the consumed counter `tc` (the net consumption since the bucket was created): usage
///   analytics are to take consumption from a change feed as buckets change, not from the
///   stored counter. The grace keeps a bucket for clients whose clock is a little behind
///   the caller's (two tasks that read the clock in one order and take the lock in the
///   other): up to that far behind, a client decides exactly as if the bucket were kept.
/// - Audit events are dropped once the store's time is past their `expires_at_ms`, like
///   DynamoDB's TTL, and are no longer listed from then on, even before they are dropped.
///
/// Time is what callers pass in, never the wall clock, so a
/// [`ManualClock`](crate::ManualClock) given to the limiter drives eviction. Buckets are
/// checked against the `now_ms` of each [`Store::apply`]; audit events against the latest
/// time the store has seen (the largest `now_ms` of an apply or a namespace change, or
/// timestamp of an audit event recorded, or time given to
/// [`evict_expired`](Self::evict_expired)).
///
/// Eviction is incremental: each apply looks at no more than
/// [`SWEEP_PER_APPLY`](Self::SWEEP_PER_APPLY) entities due, over all shards (a few heap operations each), so
/// no call costs time in proportion to the number of buckets;
/// [`evict_expired`](Self::evict_expired) drops everything due at once. Freed memory is
/// reused by new buckets; the hash table keeps its capacity until `evict_expired` finds it
/// mostly empty.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    shared: Arc<Mutex<Shared>>,
    buckets: Arc<Buckets>,
    /// Usage snapshots fed by admitted writes (feed.rs); locked after the shards.
    usage: Arc<Mutex<feed::Feed>>,
    /// Whether admitted writes go through the feed ([`MemoryStore::with_usage_feed`]).
    feed_on: bool,
    ns: Arc<str>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// How long (ms) a bucket is kept after it is full again. A client whose clock is at
    /// most this far behind the one that drops the bucket decides exactly as if it were
    /// kept (one further behind may see it full slightly early).
    pub const EVICTION_GRACE_MS: i64 = 1_000;

    /// Most due eviction entries one [`Store::apply`] examines. An apply creates at most one
    /// entry per bucket it touches (two for a cascade), so sweeping more than that per call
    /// keeps up with any workload.
    pub const SWEEP_PER_APPLY: usize = 32;

    /// An empty store, working in the `default` namespace.
    pub fn new() -> Self {
        let time = Arc::new(StoreTime::new());
        let mut shared = Shared::new(time.clone());
        let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
        let ns = shared
            .register(DEFAULT_NAMESPACE, now)
            .expect("an empty registry has no deleted default")
            .id;
        MemoryStore {
            shared: Arc::new(Mutex::new(shared)),
            buckets: Arc::new(Buckets::new(time)),
            usage: Arc::default(),
            feed_on: false,
            ns: ns.into(),
        }
    }

    /// The same store, keeping usage snapshots of its own admitted writes: each goes through
    /// the aggregator of the DynamoDB stream (`zae_limiter::usage::aggregate`), so
    /// [`UsageStore::query_usage`](crate::usage::UsageStore::query_usage) answers without
    /// AWS. Off by default: it costs about 3 µs per admitted write (criterion
    /// `acquire_commit/memory_1_thread`: 1.8 µs without, 4.8 µs with, docs/performance.md).
    /// Applies to this handle and the handles [`Store::scoped`] makes from it.
    ///
    /// ```
    /// let store = zae_limiter::MemoryStore::new().with_usage_feed();
    /// # let _ = store;
    /// ```
    pub fn with_usage_feed(mut self) -> Self {
        self.feed_on = true;
        self
    }

    /// Run `f` on this handle's namespace data, under the lock.
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(self.shared.lock().space(&self.ns))
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn apply(
        &self,
        changes: &[BucketChange],
        now_ms: i64,
        _op: &WriteOp,
    ) -> Result<ApplyOutcome, StoreError> {
        // the locks of its buckets' shards for the whole apply: atomic, and never retried,
        // so every write is applied exactly once
        check_changes(changes)?;
        if self.buckets.time.advance(now_ms) {
            self.shared.lock().observe(now_ms);
        }
        let mut locked = self
            .buckets
            .lock(changes.iter().map(|c| c.key.entity_id.as_str()));
        let mut states: Vec<BucketState> = changes
            .iter()
            .map(|c| {
                let shard = locked.shard(&c.key.entity_id);
                shard
                    .space(&self.ns)
                    .and_then(|s| s.bucket(&c.key))
                    .unwrap_or_default()
            })
            .collect();
        let before = if self.feed_on {
            states.clone() // usage feed (feed.rs)
        } else {
            Vec::new()
        };
        let admitted = apply_exact(&mut states, changes, now_ms);
        for (change, state) in changes.iter().zip(&states) {
            let key = &change.key;
            if state.limits.len() > MAX_LIMITS {
                return Err(StoreError::Refused(format!(
                    "bucket {}/{} would hold {} limits; one bucket holds at most {MAX_LIMITS}",
                    key.entity_id,
                    key.resource,
                    state.limits.len()
                )));
            }
            size::check_bucket(&self.ns, key, state)?;
        }
        let mut scheduled = Vec::new();
        for (change, state) in changes.iter().zip(&states) {
            if !state.limits.is_empty() {
                let shard = locked.shard(&change.key.entity_id);
                if let Some(d) = shard.put_bucket(&self.ns, &change.key, state, now_ms) {
                    scheduled.push(d);
                }
            }
        }
        if admitted && self.feed_on {
            // under the shards' locks, so the feed sees each bucket's writes in order
            self.usage
                .lock()
                .record(&self.ns, changes, &before, &states, now_ms); // feed.rs
        }
        drop(locked);
        self.buckets.schedule(scheduled);
        self.buckets.sweep(now_ms, MemoryStore::SWEEP_PER_APPLY);
        Ok(if admitted {
            ApplyOutcome::Applied(states)
        } else {
            ApplyOutcome::Rejected(states.into_iter().map(Some).collect())
        })
    }

    async fn get_bucket(&self, key: &BucketKey) -> Result<Option<BucketState>, StoreError> {
        let shard = self.buckets.shard(&key.entity_id);
        Ok(shard.space(&self.ns).and_then(|s| s.bucket(key)))
    }

    async fn create_entity(&self, entity: &Entity, audit: &AuditEvent) -> Result<(), StoreError> {
        self.check_entity(entity)?;
        self.check_audit(audit)?;
        let mut shared = self.shared.lock();
        let inner = shared.space(&self.ns);
        if inner.entities.contains_key(&entity.id) {
            return Err(StoreError::EntityExists(entity.id.clone()));
        }
        inner.entities.insert(entity.id.clone(), entity.clone());
        shared.record_audit(&self.ns, audit);
        Ok(())
    }

    async fn update_entity(&self, entity: &Entity, audit: &AuditEvent) -> Result<bool, StoreError> {
        self.check_entity(entity)?;
        self.check_audit(audit)?;
        let mut shared = self.shared.lock();
        let inner = shared.space(&self.ns);
        let Some(stored) = inner.entities.get_mut(&entity.id) else {
            return Ok(false);
        };
        *stored = entity.clone();
        shared.record_audit(&self.ns, audit);
        Ok(true)
    }

    async fn get_entity(&self, entity_id: &str) -> Result<Option<Entity>, StoreError> {
        Ok(self.with(|i| i.entities.get(entity_id).cloned()))
    }

    async fn delete_entity(&self, entity_id: &str, audit: &AuditEvent) -> Result<bool, StoreError> {
        let mut shared = self.shared.lock();
        let inner = shared.space(&self.ns);
        if !inner.entities.contains_key(entity_id) {
            return Ok(false);
        }
        self.check_audit(audit)?;
        inner.remove_entity(entity_id);
        // the namespace data stays locked while the buckets go: lock order data, then shard
        if let Some(space) = self.buckets.shard(entity_id).space_mut(&self.ns) {
            space.remove_entity(entity_id);
        }
        shared.record_audit(&self.ns, audit);
        Ok(true)
    }

    async fn children(&self, parent_id: &str) -> Result<Vec<Entity>, StoreError> {
        Ok(self.with(|i| i.children(parent_id)))
    }

    async fn list_entities(
        &self,
        limit: usize,
        after: Option<&str>,
    ) -> Result<crate::entity::EntityPage, StoreError> {
        Ok(self.with(|i| i.list_entities(limit, after)))
    }

    async fn resources_with_defaults(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.with(|i| i.resources_with_defaults()))
    }

    async fn entities_with_limits(
        &self,
        resource: &str,
        limit: usize,
        after: Option<&str>,
    ) -> Result<IdPage, StoreError> {
        Ok(self.with(|i| i.entities_with_limits(resource, limit, after)))
    }

    async fn scoped(&self, name: &str) -> Result<Option<Arc<dyn Store>>, StoreError> {
        let Some(id) = self.shared.lock().scope_id(name)? else {
            return Ok(None);
        };
        Ok(Some(Arc::new(MemoryStore {
            shared: self.shared.clone(),
            buckets: self.buckets.clone(),
            usage: self.usage.clone(),
            feed_on: self.feed_on,
            ns: id.into(),
        })))
    }

    async fn register_namespace(
        &self,
        name: &str,
        now_ms: i64,
    ) -> Result<NamespaceInfo, StoreError> {
        let mut shared = self.shared.lock();
        shared.observe(now_ms);
        shared.register(name, now_ms)
    }

    async fn namespaces(&self) -> Result<Vec<NamespaceInfo>, StoreError> {
        let mut all: Vec<NamespaceInfo> = self.shared.lock().registry.values().cloned().collect();
        all.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        Ok(all)
    }

    async fn delete_namespace(&self, name: &str, now_ms: i64) -> Result<bool, StoreError> {
        let mut shared = self.shared.lock();
        shared.observe(now_ms);
        Ok(shared.delete_namespace(name, now_ms))
    }

    async fn recover_namespace(&self, id: &str) -> Result<NamespaceInfo, StoreError> {
        self.shared.lock().recover_namespace(id)
    }

    async fn purge_namespace(
        &self,
        id: &str,
        progress: &(dyn Fn(usize) + Send + Sync),
    ) -> Result<usize, StoreError> {
        let mut shared = self.shared.lock();
        shared.purge_namespace(id, &self.buckets, progress)
    }

    async fn record_audit(&self, audit: &AuditEvent) -> Result<(), StoreError> {
        self.check_audit(audit)?;
        self.shared.lock().record_audit(&self.ns, audit);
        Ok(())
    }

    async fn load_resolution(
        &self,
        entity_id: &str,
        resource: &str,
    ) -> Result<ResolutionData, StoreError> {
        let mut guard = self.shared.lock();
        // a deleted or purged namespace stops writing
        let namespace_gone = guard
            .registry
            .get(&*self.ns)
            .is_none_or(|n| n.status != NamespaceStatus::Active);
        let inner = guard.space(&self.ns);
        Ok(ResolutionData {
            entity: inner.entities.get(entity_id).cloned(),
            levels: ConfigScope::chain(entity_id, resource).map(|s| inner.configs.get(&s).cloned()),
            namespace_gone,
        })
    }

    async fn get_config(&self, scope: &ConfigScope) -> Result<Option<StoredConfig>, StoreError> {
        Ok(self.with(|i| i.configs.get(scope).cloned()))
    }

    async fn put_config(
        &self,
        scope: &ConfigScope,
        expected_version: Option<i64>,
        config: Option<&StoredConfig>,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        if let Some(c) = config {
            self.check_config(scope, c)?;
        }
        self.check_audit(audit)?;
        let mut shared = self.shared.lock();
        let inner = shared.space(&self.ns);
        let stored = inner.configs.get(scope).map(|c| c.version);
        if stored != expected_version {
            return Err(super::config_changed(scope, expected_version));
        }
        match config {
            Some(c) => inner.configs.insert(scope.clone(), c.clone()),
            None => inner.configs.remove(scope),
        };
        shared.record_audit(&self.ns, audit);
        Ok(())
    }

    async fn get_provisioner(&self) -> Result<Option<ProvisionerState>, StoreError> {
        Ok(self.with(|i| i.provisioner.clone()))
    }

    async fn put_provisioner(
        &self,
        state: &ProvisionerState,
        expected_revision: u64,
    ) -> Result<(), StoreError> {
        size::check(size::provisioner_item(&self.ns, state), || {
            "the #PROVISIONER record".to_string()
        })?;
        let mut shared = self.shared.lock();
        let inner = shared.space(&self.ns);
        let stored = inner.provisioner.as_ref().map_or(0, |p| p.revision);
        if stored != expected_revision {
            return Err(super::provisioner_changed(expected_revision));
        }
        inner.provisioner = Some(state.clone());
        Ok(())
    }

    async fn list_audit(
        &self,
        entity_id: &str,
        limit: usize,
        before: Option<&str>,
    ) -> Result<AuditPage, StoreError> {
        self.shared
            .lock()
            .list_audit(&self.ns, entity_id, limit, before)
    }
}
