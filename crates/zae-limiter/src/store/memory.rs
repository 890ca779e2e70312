//! The embedded, in-process store: same semantics as DynamoDB, no network.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{apply_exact, ApplyOutcome, BucketChange, BucketKey, BucketState, Store};
use crate::config::{AuditEvent, AuditPage, ConfigScope, ResolutionData, StoredConfig};
use crate::entity::Entity;
use crate::error::StoreError;

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

/// A thread-safe in-process store. Cloning shares the data.
///
/// Every [`Store::apply`] runs under one lock, so it is atomic and linearizable like a
/// DynamoDB conditional write; state lives as long as the process.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn apply(
        &self,
        changes: &[BucketChange],
        now_ms: i64,
    ) -> Result<ApplyOutcome, StoreError> {
        let mut inner = self.inner.lock();
        let mut states: Vec<BucketState> = changes
            .iter()
            .map(|c| inner.buckets.get(&c.key).cloned().unwrap_or_default())
            .collect();
        if !apply_exact(&mut states, changes, now_ms) {
            let seen = changes
                .iter()
                .map(|c| inner.buckets.get(&c.key).cloned())
                .collect();
            return Ok(ApplyOutcome::Rejected(seen));
        }
        for (change, state) in changes.iter().zip(&states) {
            inner.buckets.insert(change.key.clone(), state.clone());
        }
        Ok(ApplyOutcome::Applied(states))
    }

    async fn get_bucket(&self, key: &BucketKey) -> Result<Option<BucketState>, StoreError> {
        Ok(self.inner.lock().buckets.get(key).cloned())
    }

    async fn create_entity(&self, entity: &Entity, audit: &AuditEvent) -> Result<(), StoreError> {
        let mut inner = self.inner.lock();
        if inner.entities.contains_key(&entity.id) {
            return Err(StoreError::EntityExists(entity.id.clone()));
        }
        inner.entities.insert(entity.id.clone(), entity.clone());
        inner.record(audit);
        Ok(())
    }

    async fn get_entity(&self, entity_id: &str) -> Result<Option<Entity>, StoreError> {
        Ok(self.inner.lock().entities.get(entity_id).cloned())
    }

    async fn delete_entity(&self, entity_id: &str, audit: &AuditEvent) -> Result<bool, StoreError> {
        let mut inner = self.inner.lock();
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
        let inner = self.inner.lock();
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
        let inner = self.inner.lock();
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

    async fn entities_with_limits(&self, resource: &str) -> Result<Vec<String>, StoreError> {
        let inner = self.inner.lock();
        let mut out: Vec<String> = inner
            .configs
            .keys()
            .filter_map(|s| match s {
                ConfigScope::Entity {
                    entity_id,
                    resource: r,
                } if r == resource => Some(entity_id.clone()),
                _ => None,
            })
            .collect();
        out.sort();
        Ok(out)
    }

    async fn load_resolution(
        &self,
        entity_id: &str,
        resource: &str,
    ) -> Result<ResolutionData, StoreError> {
        let inner = self.inner.lock();
        Ok(ResolutionData {
            entity: inner.entities.get(entity_id).cloned(),
            levels: ConfigScope::chain(entity_id, resource).map(|s| inner.configs.get(&s).cloned()),
        })
    }

    async fn get_config(&self, scope: &ConfigScope) -> Result<Option<StoredConfig>, StoreError> {
        Ok(self.inner.lock().configs.get(scope).cloned())
    }

    async fn put_config(
        &self,
        scope: &ConfigScope,
        config: Option<&StoredConfig>,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut inner = self.inner.lock();
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
        let inner = self.inner.lock();
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
