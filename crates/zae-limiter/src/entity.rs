//! Entities: API keys, projects, users. Two levels: a child may name a parent and cascade
//! its consumption to it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A stored entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entity {
    /// Unique id (see [`validate_entity_id`](crate::limit::validate_entity_id)).
    pub id: String,
    /// Display name.
    pub name: Option<String>,
    /// The parent entity (a project for an API key).
    pub parent_id: Option<String>,
    /// When true every acquire on this entity also consumes from the parent's bucket for the
    /// same resource, atomically.
    pub cascade: bool,
    /// Free-form metadata.
    pub metadata: BTreeMap<String, String>,
    /// Creation time, ms since the Unix epoch.
    pub created_at_ms: i64,
}

/// What to create: built with [`NewEntity::new`] and its setters, passed to
/// [`RateLimiter::create_entity`](crate::RateLimiter::create_entity).
#[derive(Debug, Clone, Default)]
pub struct NewEntity {
    pub(crate) id: String,
    pub(crate) name: Option<String>,
    pub(crate) parent_id: Option<String>,
    pub(crate) cascade: bool,
    pub(crate) metadata: BTreeMap<String, String>,
}

impl NewEntity {
    /// An entity with this id.
    pub fn new(id: impl Into<String>) -> Self {
        NewEntity {
            id: id.into(),
            ..Default::default()
        }
    }
    /// Display name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Parent entity id.
    pub fn parent(mut self, parent_id: impl Into<String>) -> Self {
        self.parent_id = Some(parent_id.into());
        self
    }
    /// Cascade consumption to the parent.
    pub fn cascade(mut self, cascade: bool) -> Self {
        self.cascade = cascade;
        self
    }
    /// Add a metadata entry.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }
}
