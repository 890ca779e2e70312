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

mod packed;
mod size;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{
    apply_exact, check_changes, ApplyOutcome, BucketChange, BucketKey, BucketState, Store, WriteOp,
};
use crate::config::{AuditEvent, AuditPage, ConfigScope, IdPage, ResolutionData, StoredConfig};
use crate::entity::Entity;
use crate::error::StoreError;
use crate::limit::MAX_LIMITS;
use crate::namespace::{
    check_purgeable, check_recoverable, new_namespace_id, NamespaceInfo, NamespaceStatus,
    DEFAULT_NAMESPACE, NAMESPACE_AUDIT_ENTITY, SYSTEM_NAMESPACE,
};
use packed::Record;

// Re-exported until src/dynamodb/namespace.rs imports them from `crate::namespace`.

/// Most expired audit events a call that records one (or an apply) drops.
const AUDIT_SWEEP_PER_CALL: usize = 8;

/// A scheduled look at one entity's buckets.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    at: i64,
    ns: Arc<str>,
    entity: Arc<str>,
}

/// When an audit event expires.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct AuditDue {
    at: i64,
    ns: Arc<str>,
    entity: String,
    event: String,
}

/// When a bucket may be dropped: full again, plus the grace.
fn due(state: &BucketState) -> i64 {
    state.full_at_ms().map_or(i64::MIN, |t| {
        t.saturating_add(MemoryStore::EVICTION_GRACE_MS)
    })
}

/// True once an event's retention ended at store time `latest_ms`.
fn expired(e: &AuditEvent, latest_ms: i64) -> bool {
    e.expires_at_ms.is_some_and(|x| x < latest_ms)
}

/// The data of one namespace.
#[derive(Debug)]
struct Inner {
    id: Arc<str>,
    /// entity id -> its buckets
    buckets: HashMap<Arc<str>, Record>,
    bucket_count: usize,
    entities: HashMap<String, Entity>,
    configs: HashMap<ConfigScope, StoredConfig>,
    /// entity id -> event id -> event
    audit: HashMap<String, BTreeMap<String, AuditEvent>>,
    audit_count: usize,
}

impl Inner {
    fn new(id: Arc<str>) -> Self {
        Inner {
            id,
            buckets: HashMap::new(),
            bucket_count: 0,
            entities: HashMap::new(),
            configs: HashMap::new(),
            audit: HashMap::new(),
            audit_count: 0,
        }
    }

    fn bucket(&self, key: &BucketKey) -> Option<BucketState> {
        self.buckets
            .get(key.entity_id.as_str())
            .and_then(|r| r.get(&key.resource))
    }

    /// Store a bucket; returns the eviction entry to schedule, if any.
    fn put_bucket(&mut self, key: &BucketKey, state: &BucketState, now_ms: i64) -> Option<Due> {
        let at = due(state);
        let existing = self.buckets.get_key_value(key.entity_id.as_str());
        if let Some(entity) = existing.map(|(e, _)| e.clone()) {
            let rec = self.buckets.get_mut(&entity).expect("found above");
            if rec.put(&key.resource, state) {
                self.bucket_count += 1;
            }
            // An earlier time than the one scheduled (a refund, a new resource) is scheduled
            // only when it halves the wait: otherwise the bucket just stays a little longer,
            // and every entity keeps few heap entries however its buckets change.
            let scheduled = rec.scheduled();
            let halfway = now_ms as i128 + (scheduled as i128 - now_ms as i128) / 2;
            if (at as i128) < halfway {
                rec.set_scheduled(at);
                return Some(Due {
                    at,
                    ns: self.id.clone(),
                    entity,
                });
            }
            return None;
        }
        let mut rec = Record::new(at);
        rec.put(&key.resource, state);
        let entity: Arc<str> = key.entity_id.as_str().into();
        self.buckets.insert(entity.clone(), rec);
        self.bucket_count += 1;
        Some(Due {
            at,
            ns: self.id.clone(),
            entity,
        })
    }

    /// Record an audit event; true when it is new.
    fn record(&mut self, audit: &AuditEvent) -> bool {
        let new = self
            .audit
            .entry(audit.entity_id.clone())
            .or_default()
            .insert(audit.event_id.clone(), audit.clone())
            .is_none();
        self.audit_count += usize::from(new);
        new
    }
}

/// Every namespace's data (by id), the registry (by id), and what eviction needs.
#[derive(Debug, Default)]
struct Shared {
    spaces: HashMap<Arc<str>, Inner>,
    registry: BTreeMap<String, NamespaceInfo>,
    /// When each entity's buckets are looked at next: one live entry per entity (the one
    /// whose time its record holds), plus stale ones, dropped when they come up.
    bucket_due: BinaryHeap<Reverse<Due>>,
    audit_due: BinaryHeap<Reverse<AuditDue>>,
    /// The latest time callers passed in (audit expiry).
    latest_ms: i64,
}

/// Namespace changes are filed in the table-level namespace.
fn audit_space<'a>(ns: &'a str, entity_id: &str) -> &'a str {
    if entity_id == NAMESPACE_AUDIT_ENTITY {
        SYSTEM_NAMESPACE
    } else {
        ns
    }
}

fn space_in<'a>(spaces: &'a mut HashMap<Arc<str>, Inner>, id: &str) -> &'a mut Inner {
    if !spaces.contains_key(id) {
        let id: Arc<str> = id.into();
        spaces.insert(id.clone(), Inner::new(id));
    }
    spaces.get_mut(id).expect("inserted above")
}

impl Shared {
    fn new() -> Self {
        Shared {
            latest_ms: i64::MIN,
            ..Default::default()
        }
    }

    fn space(&mut self, id: &str) -> &mut Inner {
        space_in(&mut self.spaces, id)
    }

    fn active(&self, name: &str) -> Option<&NamespaceInfo> {
        self.registry
            .values()
            .find(|n| n.name == name && n.status == NamespaceStatus::Active)
    }

    fn register(&mut self, name: &str, now_ms: i64) -> NamespaceInfo {
        if let Some(n) = self.active(name) {
            return n.clone();
        }
        let info = NamespaceInfo {
            name: name.to_string(),
            id: new_namespace_id(),
            status: NamespaceStatus::Active,
            created_at_ms: now_ms,
            deleted_at_ms: None,
        };
        self.registry.insert(info.id.clone(), info.clone());
        info
    }

    /// A time passed in by a caller: advances the store's time and drops some expired
    /// audit events.
    fn observe(&mut self, now_ms: i64) {
        self.latest_ms = self.latest_ms.max(now_ms);
        self.sweep_audit(AUDIT_SWEEP_PER_CALL);
    }

    /// Record `audit` in namespace `ns` (namespace events: in the table-level one).
    fn record_audit(&mut self, ns: &str, audit: &AuditEvent) {
        let inner = space_in(&mut self.spaces, audit_space(ns, &audit.entity_id));
        if inner.record(audit) {
            if let Some(at) = audit.expires_at_ms {
                self.audit_due.push(Reverse(AuditDue {
                    at,
                    ns: inner.id.clone(),
                    entity: audit.entity_id.clone(),
                    event: audit.event_id.clone(),
                }));
            }
        }
        self.observe(audit.timestamp_ms);
    }

    /// Look at up to `budget` due entities at `now_ms`, dropping their buckets that are full
    /// again and rescheduling the others. Returns how many buckets were dropped.
    fn sweep_buckets(&mut self, now_ms: i64, budget: usize) -> usize {
        let mut dropped = 0;
        for _ in 0..budget {
            match self.bucket_due.peek() {
                Some(Reverse(d)) if d.at <= now_ms => {}
                _ => break,
            }
            let Reverse(d) = self.bucket_due.pop().expect("peeked");
            let Some(inner) = self.spaces.get_mut(&*d.ns) else {
                continue; // purged
            };
            let Some(rec) = inner.buckets.get_mut(&*d.entity) else {
                continue; // entity deleted
            };
            if rec.scheduled() != d.at {
                continue; // stale: rescheduled since
            }
            let mut next = i64::MAX;
            let n = rec.retain(|_, state| {
                let at = due(state);
                if at <= now_ms {
                    return false;
                }
                next = next.min(at);
                true
            });
            inner.bucket_count -= n;
            dropped += n;
            if rec.is_empty() {
                inner.buckets.remove(&*d.entity);
            } else {
                rec.set_scheduled(next);
                self.bucket_due.push(Reverse(Due { at: next, ..d }));
            }
        }
        dropped
    }

    /// Drop up to `budget` audit events expired at the store's time.
    fn sweep_audit(&mut self, budget: usize) -> usize {
        let mut dropped = 0;
        for _ in 0..budget {
            match self.audit_due.peek() {
                Some(Reverse(d)) if d.at < self.latest_ms => {}
                _ => break,
            }
            let Reverse(d) = self.audit_due.pop().expect("peeked");
            let Some(inner) = self.spaces.get_mut(&*d.ns) else {
                continue;
            };
            let Some(events) = inner.audit.get_mut(&d.entity) else {
                continue;
            };
            if events
                .get(&d.event)
                .is_some_and(|e| e.expires_at_ms == Some(d.at))
            {
                events.remove(&d.event);
                inner.audit_count -= 1;
                dropped += 1;
                if events.is_empty() {
                    inner.audit.remove(&d.entity);
                }
            }
        }
        dropped
    }
}

/// A thread-safe in-process store. Cloning shares the data.
///
/// Every [`Store::apply`] runs under one lock, so it is atomic and linearizable like a
/// DynamoDB conditional write. A store handle works in one namespace (`default` from
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
/// [`SWEEP_PER_APPLY`](Self::SWEEP_PER_APPLY) entities due (a few heap operations each), so
/// no call costs time in proportion to the number of buckets;
/// [`evict_expired`](Self::evict_expired) drops everything due at once. Freed memory is
/// reused by new buckets; the hash table keeps its capacity until `evict_expired` finds it
/// mostly empty.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    shared: Arc<Mutex<Shared>>,
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
        let mut shared = Shared::new();
        let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
        let ns = shared.register(DEFAULT_NAMESPACE, now).id;
        MemoryStore {
            shared: Arc::new(Mutex::new(shared)),
            ns: ns.into(),
        }
    }

    /// Run `f` on this handle's namespace data, under the lock.
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(self.shared.lock().space(&self.ns))
    }

    /// Buckets held, in every namespace of the store (diagnostics: O(namespaces)). Buckets
    /// full again count until they are dropped (at most [`SWEEP_PER_APPLY`](Self::SWEEP_PER_APPLY) entities per
    /// apply, or all at once by [`evict_expired`](Self::evict_expired)).
    pub fn bucket_count(&self) -> usize {
        self.shared
            .lock()
            .spaces
            .values()
            .map(|s| s.bucket_count)
            .sum()
    }

    /// Audit events held, in every namespace of the store (diagnostics), expired ones
    /// included until they are dropped.
    pub fn audit_event_count(&self) -> usize {
        self.shared
            .lock()
            .spaces
            .values()
            .map(|s| s.audit_count)
            .sum()
    }

    /// Drop, in every namespace, each bucket that is full again at `now_ms` (plus
    /// [`EVICTION_GRACE_MS`](Self::EVICTION_GRACE_MS)) and each audit event expired at the
    /// store's time (`now_ms` counts as a time seen). Returns how many buckets were dropped.
    /// Costs O(k log n) for k due entries, then releases the spare capacity of each table
    /// now less than a quarter full (O(its size), paid for by the removals that emptied it).
    /// [`Store::apply`] does the same incrementally.
    pub fn evict_expired(&self, now_ms: i64) -> usize {
        let mut shared = self.shared.lock();
        shared.latest_ms = shared.latest_ms.max(now_ms);
        shared.sweep_audit(usize::MAX);
        let dropped = shared.sweep_buckets(now_ms, usize::MAX);
        fn mostly_empty(len: usize, capacity: usize) -> bool {
            len.saturating_mul(4) < capacity
        }
        for s in shared.spaces.values_mut() {
            if mostly_empty(s.buckets.len(), s.buckets.capacity()) {
                s.buckets.shrink_to_fit();
            }
        }
        if mostly_empty(shared.bucket_due.len(), shared.bucket_due.capacity()) {
            shared.bucket_due.shrink_to_fit();
        }
        if mostly_empty(shared.audit_due.len(), shared.audit_due.capacity()) {
            shared.audit_due.shrink_to_fit();
        }
        dropped
    }

    /// Refuse an audit event DynamoDB would refuse.
    fn check_audit(&self, audit: &AuditEvent) -> Result<(), StoreError> {
        size::check(size::audit_item(&self.ns, audit), || {
            format!(
                "the audit event '{}' of '{}'",
                audit.event_id, audit.entity_id
            )
        })
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
        // one lock: atomic, and never retried, so every write is applied exactly once
        check_changes(changes)?;
        let mut guard = self.shared.lock();
        let shared = &mut *guard;
        shared.observe(now_ms);
        let inner = space_in(&mut shared.spaces, &self.ns);
        let mut states: Vec<BucketState> = changes
            .iter()
            .map(|c| inner.bucket(&c.key).unwrap_or_default())
            .collect();
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
        for (change, state) in changes.iter().zip(&states) {
            if !state.limits.is_empty() {
                if let Some(d) = inner.put_bucket(&change.key, state, now_ms) {
                    shared.bucket_due.push(Reverse(d));
                }
            }
        }
        shared.sweep_buckets(now_ms, MemoryStore::SWEEP_PER_APPLY);
        Ok(if admitted {
            ApplyOutcome::Applied(states)
        } else {
            ApplyOutcome::Rejected(states.into_iter().map(Some).collect())
        })
    }

    async fn get_bucket(&self, key: &BucketKey) -> Result<Option<BucketState>, StoreError> {
        Ok(self.with(|i| i.bucket(key)))
    }

    async fn create_entity(&self, entity: &Entity, audit: &AuditEvent) -> Result<(), StoreError> {
        size::check(size::entity_item(&self.ns, entity), || {
            format!("the item of entity '{}'", entity.id)
        })?;
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
        size::check(size::entity_item(&self.ns, entity), || {
            format!("the item of entity '{}'", entity.id)
        })?;
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
        inner.entities.remove(entity_id);
        inner.configs.retain(|scope, _| match scope {
            ConfigScope::Entity { entity_id: e, .. }
            | ConfigScope::EntityDefault { entity_id: e } => e != entity_id,
            _ => true,
        });
        if let Some(rec) = inner.buckets.remove(entity_id) {
            inner.bucket_count -= rec.len();
        }
        shared.record_audit(&self.ns, audit);
        Ok(true)
    }

    async fn children(&self, parent_id: &str) -> Result<Vec<Entity>, StoreError> {
        let mut guard = self.shared.lock();
        let inner = guard.space(&self.ns);
        let mut out: Vec<Entity> = inner
            .entities
            .values()
            .filter(|e| e.parent_id.as_deref() == Some(parent_id))
            .cloned()
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn resources_with_defaults(&self) -> Result<Vec<String>, StoreError> {
        let mut guard = self.shared.lock();
        let inner = guard.space(&self.ns);
        let mut out: Vec<String> = inner
            .configs
            .keys()
            .filter_map(|s| match s {
                ConfigScope::Resource { resource } => Some(resource.clone()),
                _ => None,
            })
            .collect();
        out.sort();
        Ok(out)
    }

    async fn entities_with_limits(
        &self,
        resource: &str,
        limit: usize,
        after: Option<&str>,
    ) -> Result<IdPage, StoreError> {
        let mut guard = self.shared.lock();
        let inner = guard.space(&self.ns);
        let mut out: Vec<String> = inner
            .configs
            .keys()
            .filter_map(|s| match s {
                ConfigScope::Entity {
                    entity_id,
                    resource: r,
                } if r == resource && after.is_none_or(|a| entity_id.as_str() > a) => {
                    Some(entity_id.clone())
                }
                _ => None,
            })
            .collect();
        out.sort();
        Ok(IdPage::from_sorted(out, limit))
    }

    async fn scoped(&self, name: &str) -> Result<Option<Arc<dyn Store>>, StoreError> {
        let mut shared = self.shared.lock();
        let id = match shared.active(name) {
            Some(n) => n.id.clone(),
            None if name == DEFAULT_NAMESPACE => {
                let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
                shared.register(name, now).id
            }
            None => return Ok(None),
        };
        Ok(Some(Arc::new(MemoryStore {
            shared: self.shared.clone(),
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
        Ok(shared.register(name, now_ms))
    }

    async fn namespaces(&self) -> Result<Vec<NamespaceInfo>, StoreError> {
        let mut all: Vec<NamespaceInfo> = self.shared.lock().registry.values().cloned().collect();
        all.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        Ok(all)
    }

    async fn delete_namespace(&self, name: &str, now_ms: i64) -> Result<bool, StoreError> {
        let mut shared = self.shared.lock();
        shared.observe(now_ms);
        let Some(id) = shared.active(name).map(|n| n.id.clone()) else {
            return Ok(false);
        };
        let n = shared.registry.get_mut(&id).expect("found above");
        n.status = NamespaceStatus::Deleted;
        n.deleted_at_ms = Some(now_ms);
        Ok(true)
    }

    async fn recover_namespace(&self, id: &str) -> Result<NamespaceInfo, StoreError> {
        let mut shared = self.shared.lock();
        let info = shared
            .registry
            .get(id)
            .cloned()
            .ok_or_else(|| StoreError::NamespaceNotFound(id.to_string()))?;
        check_recoverable(&info, shared.active(&info.name))?;
        let n = shared.registry.get_mut(id).expect("found above");
        n.status = NamespaceStatus::Active;
        n.deleted_at_ms = None;
        Ok(n.clone())
    }

    async fn purge_namespace(
        &self,
        id: &str,
        progress: &(dyn Fn(usize) + Send + Sync),
    ) -> Result<usize, StoreError> {
        let mut shared = self.shared.lock();
        let Some(info) = shared.registry.get(id).cloned() else {
            return Ok(0);
        };
        check_purgeable(&info)?;
        // the heap entries of the namespace go stale and are dropped when they come up
        let removed = shared.spaces.remove(id).map_or(0, |s| {
            s.bucket_count + s.entities.len() + s.configs.len() + s.audit_count
        });
        progress(removed);
        shared.registry.remove(id);
        Ok(removed)
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
        config: Option<&StoredConfig>,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        if let Some(c) = config {
            size::check(size::config_item(&self.ns, scope, c), || {
                format!(
                    "the config item at level {} ({})",
                    scope.level(),
                    scope.audit_entity()
                )
            })?;
        }
        self.check_audit(audit)?;
        let mut shared = self.shared.lock();
        let inner = shared.space(&self.ns);
        match config {
            Some(c) => inner.configs.insert(scope.clone(), c.clone()),
            None => inner.configs.remove(scope),
        };
        shared.record_audit(&self.ns, audit);
        Ok(())
    }

    async fn list_audit(
        &self,
        entity_id: &str,
        limit: usize,
        before: Option<&str>,
    ) -> Result<AuditPage, StoreError> {
        let mut guard = self.shared.lock();
        // the namespace audit is table-level: only a handle on `default` reads it
        if entity_id == NAMESPACE_AUDIT_ENTITY
            && guard.active(DEFAULT_NAMESPACE).map(|n| n.id.as_str()) != Some(&*self.ns)
        {
            return Err(StoreError::Refused(format!(
                "the namespace audit ({NAMESPACE_AUDIT_ENTITY}) is table-level: only a handle \
                 on the '{DEFAULT_NAMESPACE}' namespace reads it"
            )));
        }
        let latest = guard.latest_ms;
        let inner = guard.space(audit_space(&self.ns, entity_id));
        let Some(events) = inner.audit.get(entity_id) else {
            return Ok(AuditPage {
                events: Vec::new(),
                next: None,
            });
        };
        let older = events
            .range::<str, _>((
                std::ops::Bound::Unbounded,
                before.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded),
            ))
            .rev()
            .filter(|(_, e)| !expired(e, latest));
        let mut page: Vec<AuditEvent> = older.take(limit + 1).map(|(_, e)| e.clone()).collect();
        let more = page.len() > limit;
        page.truncate(limit);
        let next = if more {
            page.last().map(|e| e.event_id.clone())
        } else {
            None
        };
        Ok(AuditPage { events: page, next })
    }
}
