//! The embedded, in-process store: same semantics as DynamoDB, no network.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{
    apply_exact, check_changes, ApplyOutcome, BucketChange, BucketKey, BucketState, Store, WriteOp,
};
use crate::config::{AuditEvent, AuditPage, ConfigScope, IdPage, ResolutionData, StoredConfig};
use crate::entity::Entity;
use crate::error::StoreError;
use crate::namespace::{
    new_namespace_id, NamespaceInfo, NamespaceStatus, DEFAULT_NAMESPACE, NAMESPACE_AUDIT_ENTITY,
    SYSTEM_NAMESPACE,
};

// Re-exported until src/dynamodb/namespace.rs imports them from `crate::namespace`.
pub(crate) use crate::namespace::{check_purgeable, check_recoverable};

/// The data of one namespace.
#[derive(Debug, Default)]
struct Inner {
    buckets: HashMap<BucketKey, BucketState>,
    entities: HashMap<String, Entity>,
    configs: HashMap<ConfigScope, StoredConfig>,
    /// entity id -> event id -> event
    audit: HashMap<String, BTreeMap<String, AuditEvent>>,
}

impl Inner {
    fn record(&mut self, audit: &AuditEvent) {
        self.audit
            .entry(audit.entity_id.clone())
            .or_default()
            .insert(audit.event_id.clone(), audit.clone());
    }
}

/// Every namespace's data (by id) and the registry (by id).
#[derive(Debug, Default)]
struct Shared {
    spaces: HashMap<String, Inner>,
    registry: BTreeMap<String, NamespaceInfo>,
}

/// Namespace changes are filed in the table-level namespace.
fn audit_space<'a>(ns: &'a str, entity_id: &str) -> &'a str {
    if entity_id == NAMESPACE_AUDIT_ENTITY {
        SYSTEM_NAMESPACE
    } else {
        ns
    }
}

impl Shared {
    fn space(&mut self, id: &str) -> &mut Inner {
        self.spaces.entry(id.to_string()).or_default()
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
}

/// A thread-safe in-process store. Cloning shares the data.
///
/// Every [`Store::apply`] runs under one lock, so it is atomic and linearizable like a
/// DynamoDB conditional write; state lives as long as the process. A store handle works in
/// one namespace (`default` from [`MemoryStore::new`]); [`Store::scoped`] gives others.
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
    /// An empty store, working in the `default` namespace.
    pub fn new() -> Self {
        let mut shared = Shared::default();
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
        let inner = guard.space(&self.ns);
        let mut states: Vec<BucketState> = changes
            .iter()
            .map(|c| inner.buckets.get(&c.key).cloned().unwrap_or_default())
            .collect();
        let admitted = apply_exact(&mut states, changes, now_ms);
        for (change, state) in changes.iter().zip(&states) {
            if !state.limits.is_empty() {
                inner.buckets.insert(change.key.clone(), state.clone());
            }
        }
        Ok(if admitted {
            ApplyOutcome::Applied(states)
        } else {
            ApplyOutcome::Rejected(states.into_iter().map(Some).collect())
        })
    }

    async fn get_bucket(&self, key: &BucketKey) -> Result<Option<BucketState>, StoreError> {
        Ok(self.with(|i| i.buckets.get(key).cloned()))
    }

    async fn create_entity(&self, entity: &Entity, audit: &AuditEvent) -> Result<(), StoreError> {
        let mut guard = self.shared.lock();
        let inner = guard.space(&self.ns);
        if inner.entities.contains_key(&entity.id) {
            return Err(StoreError::EntityExists(entity.id.clone()));
        }
        inner.entities.insert(entity.id.clone(), entity.clone());
        inner.record(audit);
        Ok(())
    }

    async fn update_entity(&self, entity: &Entity, audit: &AuditEvent) -> Result<bool, StoreError> {
        let mut guard = self.shared.lock();
        let inner = guard.space(&self.ns);
        let Some(stored) = inner.entities.get_mut(&entity.id) else {
            return Ok(false);
        };
        *stored = entity.clone();
        inner.record(audit);
        Ok(true)
    }

    async fn get_entity(&self, entity_id: &str) -> Result<Option<Entity>, StoreError> {
        Ok(self.with(|i| i.entities.get(entity_id).cloned()))
    }

    async fn delete_entity(&self, entity_id: &str, audit: &AuditEvent) -> Result<bool, StoreError> {
        let mut guard = self.shared.lock();
        let inner = guard.space(&self.ns);
        if inner.entities.remove(entity_id).is_none() {
            return Ok(false);
        }
        inner.configs.retain(|scope, _| match scope {
            ConfigScope::Entity { entity_id: e, .. }
            | ConfigScope::EntityDefault { entity_id: e } => e != entity_id,
            _ => true,
        });
        inner.buckets.retain(|k, _| k.entity_id != entity_id);
        inner.record(audit);
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
        Ok(self.shared.lock().register(name, now_ms))
    }

    async fn namespaces(&self) -> Result<Vec<NamespaceInfo>, StoreError> {
        let mut all: Vec<NamespaceInfo> = self.shared.lock().registry.values().cloned().collect();
        all.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        Ok(all)
    }

    async fn delete_namespace(&self, name: &str, now_ms: i64) -> Result<bool, StoreError> {
        let mut shared = self.shared.lock();
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
        let removed = shared.spaces.remove(id).map_or(0, |s| {
            s.buckets.len()
                + s.entities.len()
                + s.configs.len()
                + s.audit.values().map(BTreeMap::len).sum::<usize>()
        });
        progress(removed);
        shared.registry.remove(id);
        Ok(removed)
    }

    async fn record_audit(&self, audit: &AuditEvent) -> Result<(), StoreError> {
        let mut shared = self.shared.lock();
        shared
            .space(audit_space(&self.ns, &audit.entity_id))
            .record(audit);
        Ok(())
    }

    async fn load_resolution(
        &self,
        entity_id: &str,
        resource: &str,
    ) -> Result<ResolutionData, StoreError> {
        let mut guard = self.shared.lock();
        let inner = guard.space(&self.ns);
        Ok(ResolutionData {
            entity: inner.entities.get(entity_id).cloned(),
            levels: ConfigScope::chain(entity_id, resource).map(|s| inner.configs.get(&s).cloned()),
            namespace_gone: false,
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
        let mut guard = self.shared.lock();
        let inner = guard.space(&self.ns);
        match config {
            Some(c) => inner.configs.insert(scope.clone(), c.clone()),
            None => inner.configs.remove(scope),
        };
        inner.record(audit);
        Ok(())
    }

    async fn list_audit(
        &self,
        entity_id: &str,
        limit: usize,
        before: Option<&str>,
    ) -> Result<AuditPage, StoreError> {
        let mut guard = self.shared.lock();
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
            .rev();
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
