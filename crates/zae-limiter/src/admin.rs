//! Management operations of [`RateLimiter`]: stored limits at every level and the audit log.

use crate::config::{
    AuditAction, AuditEvent, AuditPage, ConfigScope, IdPage, ProvisionerState, StoredConfig,
};
use crate::entity::{Entity, EntityPatch, UpdateEntity};
use crate::error::{Error, Result, StoreError};
use crate::limit::{validate_entity_id, validate_resource};
use crate::namespace::NAMESPACE_AUDIT_ENTITY;
use crate::RateLimiter;

/// Largest page (audit events, entity ids) one call returns.
pub const MAX_AUDIT_PAGE: usize = 1_000;

/// A time-ordered, unique event id: a ULID (48-bit millisecond timestamp, 80 random bits,
/// 26 Crockford base32 characters). Within one process, ids of the same millisecond (or of a
/// clock that went back) increase: the last id plus one.
fn event_id(now_ms: i64) -> String {
    static LAST: parking_lot::Mutex<ulid::Ulid> = parking_lot::const_mutex(ulid::Ulid::nil());
    let fresh = ulid::Ulid::from_parts(now_ms.max(0) as u64, rand::random::<u128>());
    let mut last = LAST.lock();
    let id = match last.increment() {
        Some(next) if fresh <= *last => next,
        _ => fresh,
    };
    *last = id;
    id.to_string()
}

/// Event ids as [`event_id`] makes them: 1 to 64 letters, digits and `-`.
pub(crate) fn validate_event_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !ok {
        let shown: String = id.chars().take(64).collect();
        return Err(Error::invalid(
            "event_id",
            format!(
                "'{}' is not an event id (1 to 64 letters, digits, '-')",
                shown.escape_debug()
            ),
        ));
    }
    Ok(())
}

/// What audit events are filed under: an entity id, `$SYSTEM`, `$NAMESPACE` or
/// `$RESOURCE:{resource}`.
pub(crate) fn validate_audit_entity(id: &str) -> Result<()> {
    if id == "$SYSTEM" || id == NAMESPACE_AUDIT_ENTITY {
        return Ok(());
    }
    match id.strip_prefix("$RESOURCE:") {
        Some(r) => validate_resource(r),
        None => validate_entity_id(id),
    }
}

/// The version of a config replacing `old`: the time, but always above the old version
/// (clocks move backwards, and two changes can fall in one millisecond).
fn next_version(now_ms: i64, old: Option<&StoredConfig>) -> i64 {
    now_ms.max(old.map_or(0, |o| o.version).saturating_add(1))
}

/// `2 children (key-a, key-b)`, naming at most five.
fn children_text(kids: &[Entity]) -> String {
    let mut ids: Vec<&str> = kids.iter().take(5).map(|k| k.id.as_str()).collect();
    if kids.len() > 5 {
        ids.push("...");
    }
    let noun = if kids.len() == 1 { "child" } else { "children" };
    format!("{} {noun} ({})", kids.len(), ids.join(", "))
}

pub(crate) fn check_page(limit: usize) -> Result<()> {
    if limit == 0 || limit > MAX_AUDIT_PAGE {
        return Err(Error::invalid(
            "limit",
            format!("page size must be between 1 and {MAX_AUDIT_PAGE}, got {limit}"),
        ));
    }
    Ok(())
}

impl RateLimiter {
    pub(crate) async fn audit_event(
        &self,
        action: AuditAction,
        entity_id: String,
        resource: Option<String>,
        details: serde_json::Value,
    ) -> AuditEvent {
        let now = self.now_ms();
        AuditEvent {
            event_id: event_id(now),
            timestamp_ms: now,
            action,
            entity_id,
            resource,
            principal: self.principal().await,
            details,
            expires_at_ms: Some(now.saturating_add(self.audit_retention().as_millis() as i64)),
        }
    }

    /// Store limits (and, at the system level, the `on_unavailable` policy) at `scope`,
    /// replacing what was there. Recorded in the audit log with the old and new values.
    ///
    /// The stored config gets a new [`version`](StoredConfig::version) (whatever `config`
    /// carries): the current time in ms, but always above the version it replaces, so
    /// versions at one scope strictly increase.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> zae_limiter::Result<()> {
    /// use zae_limiter::{ConfigScope, Limit, MemoryStore, RateLimiter, StoredConfig};
    /// let limiter = RateLimiter::builder(MemoryStore::new()).build();
    /// let gpt4 = ConfigScope::Resource { resource: "gpt-4".into() };
    /// limiter.set_config(&gpt4, StoredConfig::limits([Limit::per_minute("rpm", 50)])).await?;
    /// // no limits in code: resolved from the resource default
    /// let lease = limiter.acquire("key-1", "gpt-4").consume([("rpm", 1)]).await?;
    /// lease.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_config(&self, scope: &ConfigScope, config: StoredConfig) -> Result<()> {
        scope.validate()?;
        config.validate(scope)?;
        // the write is conditioned on what was read: a concurrent change makes it read again
        let mut attempt = 0;
        loop {
            let old = self.get_config(scope).await?;
            match self.replace_config(scope, old, config.clone()).await {
                Err(Error::Conflict(_)) if attempt < 2 => attempt += 1,
                done => return done,
            }
        }
    }

    /// Like [`set_config`](Self::set_config), but only if what is stored at `scope` is still
    /// `seen` (the config read earlier, compared by version; `None`: nothing stored).
    /// Otherwise nothing is written and the answer is [`Error::Conflict`]. This is how a
    /// plan made from values read earlier is applied safely (see
    /// [`Manifest`](crate::manifest::Manifest)).
    pub async fn set_config_if(
        &self,
        scope: &ConfigScope,
        seen: Option<&StoredConfig>,
        config: StoredConfig,
    ) -> Result<()> {
        scope.validate()?;
        config.validate(scope)?;
        self.replace_config(scope, seen.cloned(), config).await
    }

    /// Delete what is stored at `scope` if it is still `seen` (compared by version);
    /// otherwise nothing is written and the answer is [`Error::Conflict`].
    pub async fn delete_config_if(&self, scope: &ConfigScope, seen: &StoredConfig) -> Result<()> {
        scope.validate()?;
        self.change_config(scope, Some(seen.clone()), None).await
    }

    async fn replace_config(
        &self,
        scope: &ConfigScope,
        old: Option<StoredConfig>,
        mut config: StoredConfig,
    ) -> Result<()> {
        config.version = next_version(self.now_ms(), old.as_ref());
        self.change_config(scope, old, Some(config)).await
    }

    /// The namespace's `#PROVISIONER` record: what the last declarative apply manages (see
    /// [`manifest`](crate::manifest)); `None` when no manifest was applied here.
    pub async fn provisioner_state(&self) -> Result<Option<ProvisionerState>> {
        Ok(self.call(self.store().get_provisioner()).await?)
    }

    /// Delete what is stored at `scope`. Returns false when nothing was stored.
    pub async fn delete_config(&self, scope: &ConfigScope) -> Result<bool> {
        let mut attempt = 0;
        loop {
            let Some(old) = self.get_config(scope).await? else {
                return Ok(false);
            };
            match self.change_config(scope, Some(old), None).await {
                Err(Error::Conflict(_)) if attempt < 2 => attempt += 1,
                done => return done.map(|()| true),
            }
        }
    }

    async fn change_config(
        &self,
        scope: &ConfigScope,
        old: Option<StoredConfig>,
        new: Option<StoredConfig>,
    ) -> Result<()> {
        let action = if new.is_some() {
            AuditAction::LimitsSet
        } else {
            AuditAction::LimitsDeleted
        };
        let audit = self
            .audit_event(
                action,
                scope.audit_entity(),
                scope.resource().map(str::to_string),
                serde_json::json!({ "level": scope.level(), "old": old, "new": new }),
            )
            .await;
        let expected = old.as_ref().map(|o| o.version);
        self.call(
            self.store()
                .put_config(scope, expected, new.as_ref(), &audit),
        )
        .await?;
        self.forget_config(scope);
        Ok(())
    }

    /// Change an entity: `.await` the returned `UpdateEntity` after setting what changes
    /// (display name, metadata, parent, cascade); everything else is kept. Validated like
    /// [`create_entity`](Self::create_entity): a new parent must exist and be top-level, an
    /// entity with children cannot become a child, no self-parenting, cascade needs a
    /// parent. Audited (`entity_updated`, old and new values) unless nothing changed.
    /// [`Error::EntityNotFound`] if the entity does not exist.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> zae_limiter::Result<()> {
    /// use zae_limiter::{MemoryStore, NewEntity, RateLimiter};
    /// let limiter = RateLimiter::builder(MemoryStore::new()).build();
    /// limiter.create_entity(NewEntity::new("proj")).await?;
    /// limiter.create_entity(NewEntity::new("key-1")).await?;
    /// let key = limiter.update_entity("key-1").parent("proj").cascade(true)
    ///     .name("Web key").metadata("tier", "gold").await?;
    /// assert_eq!(key.parent_id.as_deref(), Some("proj"));
    /// let key = limiter.update_entity("key-1").clear_parent().await?;
    /// assert!(key.parent_id.is_none() && !key.cascade);
    /// # Ok(()) }
    /// ```
    pub fn update_entity(&self, entity_id: impl Into<String>) -> UpdateEntity {
        UpdateEntity {
            limiter: self.clone(),
            id: entity_id.into(),
            patch: EntityPatch::default(),
        }
    }

    pub(crate) async fn apply_entity_update(
        &self,
        id: &str,
        patch: &EntityPatch,
    ) -> Result<Entity> {
        validate_entity_id(id)?;
        let Some(old) = self.get_entity(id).await? else {
            return Err(Error::EntityNotFound(id.to_string()));
        };
        let new = patch.apply(&old);
        new.validate()?;
        if new == old {
            return Ok(old);
        }
        if let Some(p) = new.parent_id.as_deref() {
            if old.parent_id.as_deref() != Some(p) {
                match self.get_entity(p).await? {
                    None => return Err(Error::EntityNotFound(p.to_string())),
                    Some(parent) if parent.parent_id.is_some() => {
                        return Err(Error::invalid(
                            "parent_id",
                            format!("'{p}' is itself a child; the hierarchy has two levels"),
                        ))
                    }
                    Some(_) => {}
                }
                let kids = self.current_children(id).await?;
                if !kids.is_empty() {
                    return Err(Error::Conflict(format!(
                        "entity '{id}' has {}; a parent cannot become a child",
                        children_text(&kids)
                    )));
                }
            }
        }
        let audit = self
            .audit_event(
                AuditAction::EntityUpdated,
                id.to_string(),
                None,
                serde_json::json!({ "old": old, "new": new }),
            )
            .await;
        if !self.call(self.store().update_entity(&new, &audit)).await? {
            return Err(Error::EntityNotFound(id.to_string()));
        }
        self.forget_config(&ConfigScope::EntityDefault {
            entity_id: id.to_string(),
        });
        Ok(new)
    }

    /// Children whose stored item still names `id` as parent (the children index may lag).
    async fn current_children(&self, id: &str) -> Result<Vec<Entity>> {
        let mut kids = self.children(id).await?;
        kids.retain(|k| k.parent_id.as_deref() == Some(id));
        Ok(kids)
    }

    /// Delete an entity with its stored limits and buckets (audited). `false` if it did not
    /// exist. An entity that has children is not deleted: [`Error::Conflict`] naming how
    /// many; delete or detach them first, or use
    /// [`delete_entity_forced`](Self::delete_entity_forced).
    ///
    /// Children are found through an index that DynamoDB updates asynchronously, so a child
    /// created a moment before may be missed.
    pub async fn delete_entity(&self, entity_id: &str) -> Result<bool> {
        self.delete_entity_with(entity_id, false).await
    }

    /// [`delete_entity`](Self::delete_entity), detaching the children first: each becomes
    /// top-level with cascade off (an audited update), so none keeps cascading into a parent
    /// bucket that no longer exists. Their own limits and buckets are kept.
    pub async fn delete_entity_forced(&self, entity_id: &str) -> Result<bool> {
        self.delete_entity_with(entity_id, true).await
    }

    async fn delete_entity_with(&self, entity_id: &str, force: bool) -> Result<bool> {
        validate_entity_id(entity_id)?;
        let Some(old) = self.get_entity(entity_id).await? else {
            return Ok(false);
        };
        let mut kids = self.current_children(entity_id).await?;
        if !kids.is_empty() && !force {
            return Err(Error::Conflict(format!(
                "entity '{entity_id}' has {}: delete or detach them first, or force the deletion",
                children_text(&kids)
            )));
        }
        let mut detached = Vec::new();
        for _ in 0..3 {
            if kids.is_empty() {
                break;
            }
            for k in &kids {
                match self
                    .apply_entity_update(&k.id, &EntityPatch::detach())
                    .await
                {
                    Ok(_) | Err(Error::EntityNotFound(_)) => detached.push(k.id.clone()),
                    Err(e) => return Err(e),
                }
            }
            // children created meanwhile
            kids = self.current_children(entity_id).await?;
        }
        if !kids.is_empty() {
            return Err(Error::Conflict(format!(
                "children of '{entity_id}' keep appearing while it is deleted; try again"
            )));
        }
        let mut details = serde_json::json!({ "old": old });
        if !detached.is_empty() {
            details["detached_children"] = detached.into();
        }
        let audit = self
            .audit_event(
                AuditAction::EntityDeleted,
                entity_id.to_string(),
                None,
                details,
            )
            .await;
        let deleted = self
            .call(self.store().delete_entity(entity_id, &audit))
            .await?;
        self.forget_config(&ConfigScope::EntityDefault {
            entity_id: entity_id.to_string(),
        });
        Ok(deleted)
    }

    /// The children of `parent_id`, sorted by id.
    pub async fn children(&self, parent_id: &str) -> Result<Vec<crate::Entity>> {
        validate_entity_id(parent_id)?;
        Ok(self.call(self.store().children(parent_id)).await?)
    }

    /// Resources that have resource-level defaults, sorted.
    pub async fn resources_with_defaults(&self) -> Result<Vec<String>> {
        Ok(self.call(self.store().resources_with_defaults()).await?)
    }

    /// Entities with limits stored for `resource` specifically, by id, `limit` per page
    /// (1..=1000); pass the returned [`IdPage::next`] as `after` for the next page.
    pub async fn entities_with_limits(
        &self,
        resource: &str,
        limit: usize,
        after: Option<&str>,
    ) -> Result<IdPage> {
        crate::limit::validate_resource(resource)?;
        check_page(limit)?;
        Ok(self
            .call(self.store().entities_with_limits(resource, limit, after))
            .await?)
    }

    /// What is stored at `scope` (always read from the store).
    pub async fn get_config(&self, scope: &ConfigScope) -> Result<Option<StoredConfig>> {
        scope.validate()?;
        Ok(self.call(self.store().get_config(scope)).await?)
    }

    /// Audit events of an entity (or `$SYSTEM`, `$RESOURCE:{resource}`), newest first.
    /// Pass the returned [`AuditPage::next`] as `before` for the next page.
    ///
    /// `$NAMESPACE` (namespace changes) is table-level: only a limiter on the `default`
    /// namespace reads it; a tenant's limiter gets a validation error.
    pub async fn audit_events(
        &self,
        entity_id: &str,
        limit: usize,
        before: Option<&str>,
    ) -> Result<AuditPage> {
        validate_audit_entity(entity_id)?;
        check_page(limit)?;
        if let Some(b) = before {
            validate_event_id(b)?;
        }
        match self
            .call(self.store().list_audit(entity_id, limit, before))
            .await
        {
            Err(StoreError::Refused(m)) => Err(Error::invalid("entity_id", m)),
            other => Ok(other?),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions_strictly_increase() {
        use crate::StoredConfig;
        let at = |v| StoredConfig {
            version: v,
            ..Default::default()
        };
        assert_eq!(super::next_version(1_000, None), 1_000);
        assert_eq!(super::next_version(0, None), 1);
        assert_eq!(super::next_version(1_000, Some(&at(1_000))), 1_001);
        assert_eq!(
            super::next_version(1_000, Some(&at(5_000))),
            5_001,
            "clock behind"
        );
        assert_eq!(super::next_version(9_000, Some(&at(5_000))), 9_000);
        assert_eq!(super::next_version(0, Some(&at(i64::MAX))), i64::MAX);
    }

    #[test]
    fn audit_ids() {
        use super::{validate_audit_entity as ent, validate_event_id as ev};
        assert!(ev(&super::event_id(1_000)).is_ok());
        assert!(ev("").is_err() && ev("a#b").is_err() && ev(&"1".repeat(65)).is_err());
        for ok in ["$SYSTEM", "$NAMESPACE", "$RESOURCE:gpt-4", "key-1"] {
            assert!(ent(ok).is_ok(), "{ok}");
        }
        for bad in ["$RESOURCE:", "$RESOURCE:9x", "$OTHER", "a#b", ""] {
            assert!(ent(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn event_ids_sort_by_time_and_are_unique() {
        let a = super::event_id(1_000);
        let b = super::event_id(1_000);
        let c = super::event_id(2_000);
        assert_ne!(a, b);
        assert!(a < b && b < c, "{a} {b} {c}");
    }
}
