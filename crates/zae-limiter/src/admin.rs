//! Management operations of [`RateLimiter`]: stored limits at every level and the audit log.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::config::{AuditAction, AuditEvent, AuditPage, ConfigScope, IdPage, StoredConfig};
use crate::error::{Error, Result};
use crate::limit::validate_entity_id;
use crate::namespace::{
    validate_namespace_name, NamespaceInfo, NamespaceStatus, NAMESPACE_AUDIT_ENTITY,
};
use crate::RateLimiter;

/// Largest page (audit events, entity ids) one call returns.
pub const MAX_AUDIT_PAGE: usize = 1_000;

/// A time-ordered, unique event id: the timestamp, a per-process sequence and a random part.
fn event_id(now_ms: i64) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed) % 1_000_000;
    let random = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_i64(now_ms);
        h.write_u32(seq);
        h.finish() as u32
    };
    format!("{now_ms:013}-{seq:06}-{random:08x}")
}

fn check_page(limit: usize) -> Result<()> {
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
        self.change_config(scope, Some(config)).await
    }

    /// Delete what is stored at `scope`. Returns false when nothing was stored.
    pub async fn delete_config(&self, scope: &ConfigScope) -> Result<bool> {
        scope.validate()?;
        if self.get_config(scope).await?.is_none() {
            return Ok(false);
        }
        self.change_config(scope, None).await?;
        Ok(true)
    }

    async fn change_config(&self, scope: &ConfigScope, new: Option<StoredConfig>) -> Result<()> {
        let old = self.get_config(scope).await?;
        // versions strictly increase at a scope, whatever the clocks of the writers
        let new = new.map(|mut c| {
            c.version = self
                .now_ms()
                .max(old.as_ref().map_or(0, |o| o.version.saturating_add(1)));
            c
        });
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
        self.call(self.store().put_config(scope, new.as_ref(), &audit))
            .await?;
        self.forget_config(scope);
        Ok(())
    }

    /// Delete an entity with its stored limits and buckets (audited). `false` if it did not
    /// exist. Its children keep their `parent_id`.
    pub async fn delete_entity(&self, entity_id: &str) -> Result<bool> {
        validate_entity_id(entity_id)?;
        let Some(old) = self.get_entity(entity_id).await? else {
            return Ok(false);
        };
        let audit = self
            .audit_event(
                AuditAction::EntityDeleted,
                entity_id.to_string(),
                None,
                serde_json::json!({ "old": old }),
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

    /// A limiter working in namespace `name`: same settings, own caches, keys under the
    /// namespace's id. `default` is registered on first use; any other name must be
    /// registered ([`register_namespace`](Self::register_namespace)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> zae_limiter::Result<()> {
    /// use zae_limiter::{Limit, MemoryStore, RateLimiter};
    /// let limiter = RateLimiter::builder(MemoryStore::new()).build();
    /// limiter.register_namespace("tenant-a").await?;
    /// let tenant = limiter.namespace("tenant-a").await?;
    /// tenant.acquire("key-1", "gpt-4").limits([Limit::per_minute("rpm", 1)])
    ///     .consume([("rpm", 1)]).await?.commit().await?;
    /// // the same entity id in the default namespace is untouched
    /// assert_eq!(limiter.available("key-1", "gpt-4", &[Limit::per_minute("rpm", 1)]).await?["rpm"], 1);
    /// # Ok(()) }
    /// ```
    pub async fn namespace(&self, name: &str) -> Result<RateLimiter> {
        validate_namespace_name(name)?;
        match self.call(self.store().scoped(name)).await? {
            Some(store) => Ok(self.with_store(store)),
            None => Err(Error::NamespaceNotFound(name.to_string())),
        }
    }

    async fn audit_namespace(&self, action: AuditAction, info: &NamespaceInfo) -> Result<()> {
        let event = self
            .audit_event(
                action,
                NAMESPACE_AUDIT_ENTITY.to_string(),
                None,
                serde_json::json!({ "namespace": info }),
            )
            .await;
        Ok(self.call(self.store().record_audit(&event)).await?)
    }

    /// Register a namespace (idempotent: an active one of that name is returned as is).
    pub async fn register_namespace(&self, name: &str) -> Result<NamespaceInfo> {
        validate_namespace_name(name)?;
        let before = self.get_namespace(name).await?;
        let info = self
            .call(self.store().register_namespace(name, self.now_ms()))
            .await?;
        if before.is_none() {
            self.audit_namespace(AuditAction::NamespaceRegistered, &info)
                .await?;
        }
        Ok(info)
    }

    /// Every namespace record (active, deleted, purging), sorted by name.
    pub async fn namespaces(&self) -> Result<Vec<NamespaceInfo>> {
        Ok(self.call(self.store().namespaces()).await?)
    }

    /// The active namespace called `name`.
    pub async fn get_namespace(&self, name: &str) -> Result<Option<NamespaceInfo>> {
        validate_namespace_name(name)?;
        Ok(self
            .namespaces()
            .await?
            .into_iter()
            .find(|n| n.name == name && n.status == NamespaceStatus::Active))
    }

    /// Soft-delete: the name is freed and the data kept (recoverable by id). `false` if no
    /// active namespace has that name.
    pub async fn delete_namespace(&self, name: &str) -> Result<bool> {
        let Some(info) = self.get_namespace(name).await? else {
            return Ok(false);
        };
        let deleted = self
            .call(self.store().delete_namespace(name, self.now_ms()))
            .await?;
        if deleted {
            self.audit_namespace(AuditAction::NamespaceDeleted, &info)
                .await?;
        }
        Ok(deleted)
    }

    /// Bring back a soft-deleted namespace by id, under its old name.
    pub async fn recover_namespace(&self, id: &str) -> Result<NamespaceInfo> {
        let info = self.call(self.store().recover_namespace(id)).await?;
        self.audit_namespace(AuditAction::NamespaceRecovered, &info)
            .await?;
        Ok(info)
    }

    /// Delete every item of a soft-deleted namespace (batches of 25) and then its record.
    /// `progress` is called with the running count. Final: it cannot be recovered after.
    pub async fn purge_namespace(
        &self,
        id: &str,
        progress: impl Fn(usize) + Send + Sync,
    ) -> Result<usize> {
        let Some(info) = self.namespaces().await?.into_iter().find(|n| n.id == id) else {
            return Err(Error::NamespaceNotFound(id.to_string()));
        };
        // no timeout here: a purge takes as long as the namespace is large
        let n = self.store().purge_namespace(id, &progress).await?;
        self.audit_namespace(AuditAction::NamespacePurged, &info)
            .await?;
        Ok(n)
    }

    /// What is stored at `scope` (always read from the store).
    pub async fn get_config(&self, scope: &ConfigScope) -> Result<Option<StoredConfig>> {
        scope.validate()?;
        Ok(self.call(self.store().get_config(scope)).await?)
    }

    /// Audit events of an entity (or `$SYSTEM`, `$RESOURCE:{resource}`), newest first.
    /// Pass the returned [`AuditPage::next`] as `before` for the next page.
    pub async fn audit_events(
        &self,
        entity_id: &str,
        limit: usize,
        before: Option<&str>,
    ) -> Result<AuditPage> {
        let reserved = entity_id == "$SYSTEM"
            || entity_id == NAMESPACE_AUDIT_ENTITY
            || entity_id.starts_with("$RESOURCE:");
        if !reserved {
            validate_entity_id(entity_id)?;
        }
        check_page(limit)?;
        Ok(self
            .call(self.store().list_audit(entity_id, limit, before))
            .await?)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn event_ids_sort_by_time_and_are_unique() {
        let a = super::event_id(1_000);
        let b = super::event_id(1_000);
        let c = super::event_id(2_000);
        assert_ne!(a, b);
        assert!(a < b && b < c, "{a} {b} {c}");
    }
}
