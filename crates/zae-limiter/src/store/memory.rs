//! The embedded, in-process store: same semantics as DynamoDB, no network.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{apply_exact, ApplyOutcome, BucketChange, BucketKey, BucketState, Store};
use crate::entity::Entity;
use crate::error::StoreError;

#[derive(Debug, Default)]
struct Inner {
    buckets: HashMap<BucketKey, BucketState>,
    entities: HashMap<String, Entity>,
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

    async fn create_entity(&self, entity: &Entity) -> Result<(), StoreError> {
        let mut inner = self.inner.lock();
        if inner.entities.contains_key(&entity.id) {
            return Err(StoreError::EntityExists(entity.id.clone()));
        }
        inner.entities.insert(entity.id.clone(), entity.clone());
        Ok(())
    }

    async fn get_entity(&self, entity_id: &str) -> Result<Option<Entity>, StoreError> {
        Ok(self.inner.lock().entities.get(entity_id).cloned())
    }
}
