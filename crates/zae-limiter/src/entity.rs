//! Entities: API keys, projects, users. Two levels: a child may name a parent and cascade
//! its consumption to it.

use std::collections::BTreeMap;
use std::future::{Future, IntoFuture};
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::limit::validate_entity_id;
use crate::RateLimiter;

/// Longest display name, in characters.
pub const MAX_ENTITY_NAME: usize = 256;
/// Most metadata entries one entity holds.
pub const MAX_METADATA_ENTRIES: usize = 64;
/// Longest metadata key, in characters.
pub const MAX_METADATA_KEY: usize = 128;
/// Longest metadata value, in characters.
pub const MAX_METADATA_VALUE: usize = 1024;

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

/// A page of entities, sorted by id.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct EntityPage {
    /// The entities.
    pub entities: Vec<Entity>,
    /// Pass as `after` to get the next page; `None` when there are no more.
    pub next: Option<String>,
}

impl EntityPage {
    /// Cut `sorted` (by id, already past `after`) to `limit`, noting whether more follow.
    pub(crate) fn from_sorted(mut sorted: Vec<Entity>, limit: usize) -> Self {
        let more = sorted.len() > limit;
        sorted.truncate(limit);
        let next = if more {
            sorted.last().map(|e| e.id.clone())
        } else {
            None
        };
        EntityPage {
            entities: sorted,
            next,
        }
    }
}

impl Entity {
    /// Check every field on its own (the rules that need the store, such as "the parent
    /// exists and is top-level", are checked by the limiter): the ids, the name and metadata
    /// bounds, no self-parenting, cascade only with a parent, a creation time >= 0.
    pub fn validate(&self) -> Result<()> {
        validate_entity_id(&self.id)?;
        if let Some(name) = &self.name {
            validate_entity_name(name)?;
        }
        if let Some(p) = &self.parent_id {
            validate_entity_id(p).map_err(|e| match e {
                Error::Validation { reason, .. } => Error::invalid("parent_id", reason),
                other => other,
            })?;
            if *p == self.id {
                return Err(Error::invalid(
                    "parent_id",
                    "an entity cannot be its own parent",
                ));
            }
        }
        if self.cascade && self.parent_id.is_none() {
            return Err(Error::invalid("cascade", "cascade needs a parent_id"));
        }
        validate_metadata(&self.metadata)?;
        if self.created_at_ms < 0 {
            return Err(Error::invalid(
                "created_at_ms",
                format!("{} is before 1970", self.created_at_ms),
            ));
        }
        Ok(())
    }
}

fn printable(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

/// Display names: 1 to [`MAX_ENTITY_NAME`] characters, no control characters.
pub fn validate_entity_name(name: &str) -> Result<()> {
    let n = name.chars().count();
    if n == 0 || n > MAX_ENTITY_NAME || !printable(name) {
        let shown: String = name.chars().take(64).collect();
        return Err(Error::invalid(
            "name",
            format!(
                "'{}' is not allowed: 1 to {MAX_ENTITY_NAME} characters, no control characters",
                shown.escape_debug()
            ),
        ));
    }
    Ok(())
}

/// Metadata: at most [`MAX_METADATA_ENTRIES`] entries; keys 1 to [`MAX_METADATA_KEY`]
/// characters without control characters; values at most [`MAX_METADATA_VALUE`] characters.
pub fn validate_metadata(metadata: &BTreeMap<String, String>) -> Result<()> {
    if metadata.len() > MAX_METADATA_ENTRIES {
        return Err(Error::invalid(
            "metadata",
            format!(
                "{} entries; at most {MAX_METADATA_ENTRIES} are allowed",
                metadata.len()
            ),
        ));
    }
    for (k, v) in metadata {
        let n = k.chars().count();
        if n == 0 || n > MAX_METADATA_KEY || !printable(k) {
            let shown: String = k.chars().take(64).collect();
            return Err(Error::invalid(
                "metadata",
                format!(
                    "key '{}' is not allowed: 1 to {MAX_METADATA_KEY} characters, no control characters",
                    shown.escape_debug()
                ),
            ));
        }
        if v.chars().count() > MAX_METADATA_VALUE {
            return Err(Error::invalid(
                "metadata",
                format!("the value of '{k}' is longer than {MAX_METADATA_VALUE} characters"),
            ));
        }
    }
    Ok(())
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

/// The changes of an update: every field left `None` is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EntityPatch {
    pub(crate) name: Option<Option<String>>,
    pub(crate) parent_id: Option<Option<String>>,
    pub(crate) cascade: Option<bool>,
    pub(crate) clear_metadata: bool,
    /// Applied after `clear_metadata`: `Some` sets the entry, `None` removes it.
    pub(crate) metadata: BTreeMap<String, Option<String>>,
}

impl EntityPatch {
    /// The entity after the changes (not validated; `id` and `created_at_ms` are kept).
    pub(crate) fn apply(&self, e: &Entity) -> Entity {
        let mut out = e.clone();
        if let Some(n) = &self.name {
            out.name = n.clone();
        }
        if let Some(p) = &self.parent_id {
            out.parent_id = p.clone();
        }
        if let Some(c) = self.cascade {
            out.cascade = c;
        }
        if self.clear_metadata {
            out.metadata.clear();
        }
        for (k, v) in &self.metadata {
            match v {
                Some(v) => out.metadata.insert(k.clone(), v.clone()),
                None => out.metadata.remove(k),
            };
        }
        out
    }

    /// Detach from the parent: no parent, no cascade.
    pub(crate) fn detach() -> Self {
        EntityPatch {
            parent_id: Some(None),
            cascade: Some(false),
            ..Default::default()
        }
    }
}

/// An update of one entity being built by
/// [`RateLimiter::update_entity`](crate::RateLimiter::update_entity); `.await` it to apply
/// the changes. Fields not touched keep their stored values.
#[must_use = "an update does nothing until awaited"]
#[derive(Debug)]
pub struct UpdateEntity {
    pub(crate) limiter: RateLimiter,
    pub(crate) id: String,
    pub(crate) patch: EntityPatch,
}

impl UpdateEntity {
    /// Set the display name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.patch.name = Some(Some(name.into()));
        self
    }
    /// Remove the display name.
    pub fn clear_name(mut self) -> Self {
        self.patch.name = Some(None);
        self
    }
    /// Make the entity a child of `parent_id` (which must exist and be top-level; the entity
    /// itself must have no children).
    pub fn parent(mut self, parent_id: impl Into<String>) -> Self {
        self.patch.parent_id = Some(Some(parent_id.into()));
        self
    }
    /// Make the entity top-level. This also turns cascade off (a top-level entity has
    /// nothing to cascade to).
    pub fn clear_parent(mut self) -> Self {
        self.patch.parent_id = Some(None);
        self.patch.cascade = Some(false);
        self
    }
    /// Cascade consumption to the parent (needs a parent).
    pub fn cascade(mut self, cascade: bool) -> Self {
        self.patch.cascade = Some(cascade);
        self
    }
    /// Set one metadata entry.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.patch.metadata.insert(key.into(), Some(value.into()));
        self
    }
    /// Remove one metadata entry (no error if it is not there).
    pub fn remove_metadata(mut self, key: impl Into<String>) -> Self {
        self.patch.metadata.insert(key.into(), None);
        self
    }
    /// Remove every stored metadata entry (entries set on this update are kept).
    pub fn clear_metadata(mut self) -> Self {
        self.patch.clear_metadata = true;
        self.patch.metadata.retain(|_, v| v.is_some());
        self
    }
}

impl IntoFuture for UpdateEntity {
    type Output = Result<Entity>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<Entity>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            self.limiter
                .apply_entity_update(&self.id, &self.patch)
                .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity() -> Entity {
        Entity {
            id: "key-1".into(),
            name: Some("Web".into()),
            parent_id: Some("proj".into()),
            cascade: true,
            metadata: BTreeMap::from([("tier".into(), "gold".into())]),
            created_at_ms: 5,
        }
    }

    #[test]
    fn validation() {
        assert!(entity().validate().is_ok());
        let bad = |f: fn(&mut Entity)| {
            let mut e = entity();
            f(&mut e);
            e.validate().unwrap_err().to_string()
        };
        assert!(bad(|e| e.id = "a#b".into()).contains("entity_id"));
        assert!(bad(|e| e.parent_id = Some("key-1".into())).contains("own parent"));
        assert!(bad(|e| e.parent_id = Some("-x".into())).starts_with("invalid parent_id"));
        assert!(bad(|e| e.parent_id = None).contains("cascade needs a parent"));
        assert!(bad(|e| e.name = Some(String::new())).starts_with("invalid name"));
        assert!(bad(|e| e.name = Some("a\nb".into())).starts_with("invalid name"));
        assert!(bad(|e| e.name = Some("x".repeat(257))).starts_with("invalid name"));
        assert!(bad(|e| e.created_at_ms = -1).contains("before 1970"));
        assert!(bad(|e| {
            e.metadata.insert(String::new(), "v".into());
        })
        .contains("key"));
        assert!(bad(|e| {
            e.metadata.insert("k".into(), "v".repeat(1025));
        })
        .contains("longer than"));
        assert!(
            bad(|e| e.metadata = (0..65).map(|i| (i.to_string(), "v".into())).collect())
                .contains("65 entries")
        );
        let mut ok = entity();
        ok.name = Some("Acme Corp — ünïcode".into());
        ok.metadata.insert("k".into(), String::new());
        assert!(ok.validate().is_ok());
    }

    #[test]
    fn patch_applies_in_order() {
        let e = entity();
        assert_eq!(EntityPatch::default().apply(&e), e);
        let d = EntityPatch::detach().apply(&e);
        assert_eq!((d.parent_id, d.cascade), (None, false));
        let p = EntityPatch {
            name: Some(None),
            clear_metadata: true,
            metadata: BTreeMap::from([("a".into(), Some("1".into())), ("tier".into(), None)]),
            ..Default::default()
        };
        let out = p.apply(&e);
        assert_eq!(out.name, None);
        assert_eq!(out.metadata, BTreeMap::from([("a".into(), "1".into())]));
        assert_eq!((out.id, out.created_at_ms), (e.id, e.created_at_ms));
    }
}
