//! Entities and stored configs: their size checks, what an entity delete takes with it, and
//! the listing queries.

use super::{size, Inner, MemoryStore};
use crate::config::{ConfigScope, IdPage, StoredConfig};
use crate::entity::{Entity, EntityPage};
use crate::error::StoreError;

impl MemoryStore {
    /// Refuse an entity item DynamoDB would refuse.
    pub(super) fn check_entity(&self, entity: &Entity) -> Result<(), StoreError> {
        size::check(size::entity_item(&self.ns, entity), || {
            format!("the item of entity '{}'", entity.id)
        })
    }

    /// Refuse a config item DynamoDB would refuse.
    pub(super) fn check_config(
        &self,
        scope: &ConfigScope,
        config: &StoredConfig,
    ) -> Result<(), StoreError> {
        size::check(size::config_item(&self.ns, scope, config), || {
            format!(
                "the config item at level {} ({})",
                scope.level(),
                scope.audit_entity()
            )
        })
    }
}

impl Inner {
    /// Remove the entity with its configs (it exists; its buckets are in the shards).
    pub(super) fn remove_entity(&mut self, entity_id: &str) {
        self.entities.remove(entity_id);
        self.configs.retain(|scope, _| match scope {
            ConfigScope::Entity { entity_id: e, .. }
            | ConfigScope::EntityDefault { entity_id: e } => e != entity_id,
            _ => true,
        });
    }

    /// The children of `parent_id`, by id.
    pub(super) fn children(&self, parent_id: &str) -> Vec<Entity> {
        let mut out: Vec<Entity> = self
            .entities
            .values()
            .filter(|e| e.parent_id.as_deref() == Some(parent_id))
            .cloned()
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// A page of the entities by id, after `after`.
    pub(super) fn list_entities(&self, limit: usize, after: Option<&str>) -> EntityPage {
        let mut out: Vec<&Entity> = self
            .entities
            .values()
            .filter(|e| after.is_none_or(|a| e.id.as_str() > a))
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        // only what the page needs is copied
        let out = out.into_iter().take(limit + 1).cloned().collect();
        EntityPage::from_sorted(out, limit)
    }

    /// The resources with a resource-level config, sorted.
    pub(super) fn resources_with_defaults(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .configs
            .keys()
            .filter_map(|s| match s {
                ConfigScope::Resource { resource } => Some(resource.clone()),
                _ => None,
            })
            .collect();
        out.sort();
        out
    }

    /// A page of the entities with an entity-level config for `resource`, after `after`.
    pub(super) fn entities_with_limits(
        &self,
        resource: &str,
        limit: usize,
        after: Option<&str>,
    ) -> IdPage {
        let mut out: Vec<String> = self
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
        IdPage::from_sorted(out, limit)
    }
}
