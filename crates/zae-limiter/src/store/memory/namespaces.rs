//! The namespace registry and lifecycle: register, scope a handle, delete, recover, purge.

use super::shards::Buckets;
use super::Shared;
use crate::error::StoreError;
use crate::namespace::{
    check_purgeable, check_recoverable, check_registrable, new_namespace_id, NamespaceInfo,
    NamespaceStatus, DEFAULT_NAMESPACE,
};

impl Shared {
    pub(super) fn active(&self, name: &str) -> Option<&NamespaceInfo> {
        self.registry
            .values()
            .find(|n| n.name == name && n.status == NamespaceStatus::Active)
    }

    pub(super) fn register(
        &mut self,
        name: &str,
        now_ms: i64,
    ) -> Result<NamespaceInfo, StoreError> {
        if let Some(n) = self.active(name) {
            return Ok(n.clone());
        }
        check_registrable(name, self.registry.values())?;
        let info = NamespaceInfo {
            name: name.to_string(),
            id: new_namespace_id(),
            status: NamespaceStatus::Active,
            created_at_ms: now_ms,
            deleted_at_ms: None,
        };
        self.registry.insert(info.id.clone(), info.clone());
        Ok(info)
    }

    /// The id a handle on `name` works in: its active namespace (`default` is registered
    /// when missing, unless a soft-deleted one exists); `None` when there is none.
    pub(super) fn scope_id(&mut self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(match self.active(name) {
            Some(n) => Some(n.id.clone()),
            None if name == DEFAULT_NAMESPACE => {
                let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
                Some(self.register(name, now)?.id)
            }
            None => None,
        })
    }

    /// Mark the active namespace `name` deleted at `now_ms`; false when there is none.
    pub(super) fn delete_namespace(&mut self, name: &str, now_ms: i64) -> bool {
        let Some(id) = self.active(name).map(|n| n.id.clone()) else {
            return false;
        };
        let n = self.registry.get_mut(&id).expect("found above");
        n.status = NamespaceStatus::Deleted;
        n.deleted_at_ms = Some(now_ms);
        true
    }

    /// Make the deleted namespace `id` active again.
    pub(super) fn recover_namespace(&mut self, id: &str) -> Result<NamespaceInfo, StoreError> {
        let info = self
            .registry
            .get(id)
            .cloned()
            .ok_or_else(|| StoreError::NamespaceNotFound(id.to_string()))?;
        check_recoverable(&info, self.active(&info.name))?;
        let n = self.registry.get_mut(id).expect("found above");
        n.status = NamespaceStatus::Active;
        n.deleted_at_ms = None;
        Ok(n.clone())
    }

    /// Drop the deleted namespace `id` and all its data; returns how many items went.
    pub(super) fn purge_namespace(
        &mut self,
        id: &str,
        buckets: &Buckets,
        progress: &(dyn Fn(usize) + Send + Sync),
    ) -> Result<usize, StoreError> {
        let Some(info) = self.registry.get(id).cloned() else {
            return Ok(0);
        };
        check_purgeable(&info)?;
        // the heap entries of the namespace go stale and are dropped when they come up
        let mut removed = 0;
        buckets.each(|shard| {
            removed += shard.remove_space(id).map_or(0, |s| s.bucket_count);
        });
        removed += self.spaces.remove(id).map_or(0, |s| {
            s.entities.len()
                + s.configs.len()
                + usize::from(s.provisioner.is_some())
                + s.audit_count
        });
        progress(removed);
        self.registry.remove(id);
        Ok(removed)
    }
}
