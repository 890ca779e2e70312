//! Namespaces: independent tenants in one table. A registry under the table-level
//! partition `_/SYSTEM#` maps each name to an opaque id; every key of the namespace starts
//! with `{id}/`, which is what lets IAM (`dynamodb:LeadingKeys` = `{id}/*`) confine a tenant.

use serde::{Deserialize, Serialize};

use crate::config::AuditAction;
use crate::error::{Error, Result};
use crate::RateLimiter;

/// The namespace used when none is named.
pub const DEFAULT_NAMESPACE: &str = "default";
/// The reserved namespace of table-level records (registry, namespace audit events).
pub const SYSTEM_NAMESPACE: &str = "_";
/// The audit "entity" under which namespace changes are recorded (in [`SYSTEM_NAMESPACE`]).
pub const NAMESPACE_AUDIT_ENTITY: &str = "$NAMESPACE";

/// Lifecycle of a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NamespaceStatus {
    /// In use.
    Active,
    /// Soft-deleted: its data is kept and it can be recovered.
    Deleted,
    /// Being purged: its data is going away; this is final.
    Purging,
}

impl NamespaceStatus {
    /// `active`, `deleted`, `purging`.
    pub fn as_str(&self) -> &'static str {
        match self {
            NamespaceStatus::Active => "active",
            NamespaceStatus::Deleted => "deleted",
            NamespaceStatus::Purging => "purging",
        }
    }
    /// Parse [`as_str`](Self::as_str)'s output.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(NamespaceStatus::Active),
            "deleted" => Some(NamespaceStatus::Deleted),
            "purging" => Some(NamespaceStatus::Purging),
            _ => None,
        }
    }
}

/// A registered namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceInfo {
    /// Its name.
    pub name: String,
    /// The opaque id its keys start with.
    pub id: String,
    /// Lifecycle state.
    pub status: NamespaceStatus,
    /// Registration time, ms since the Unix epoch.
    pub created_at_ms: i64,
    /// Soft-deletion time, when deleted.
    pub deleted_at_ms: Option<i64>,
}

/// Names: `[A-Za-z0-9_.-]{1,64}`, not the reserved `_`.
pub fn validate_namespace_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        return Err(Error::invalid(
            "namespace",
            format!("'{name}' is not allowed: use 1 to 64 letters, digits, '_', '.', '-'"),
        ));
    }
    if name == SYSTEM_NAMESPACE {
        return Err(Error::invalid(
            "namespace",
            "'_' is reserved for the table's own records",
        ));
    }
    Ok(())
}

/// The characters of namespace ids (URL-safe base64).
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// Longest namespace id accepted ([`new_namespace_id`] makes 11 characters).
pub const MAX_NAMESPACE_ID: usize = 64;

/// Namespace ids, as [`new_namespace_id`] makes them: URL-safe characters
/// (`[A-Za-z0-9_-]`), not starting with `-`, 1 to [`MAX_NAMESPACE_ID`] long, and never the
/// reserved `_` of the table's own records. An id never contains `/`, so `{id}/` is always
/// exactly one namespace's key prefix.
pub fn validate_namespace_id(id: &str) -> Result<()> {
    if id == SYSTEM_NAMESPACE {
        return Err(Error::invalid(
            "namespace_id",
            "'_' is reserved for the table's own records",
        ));
    }
    let ok = !id.is_empty()
        && id.len() <= MAX_NAMESPACE_ID
        && !id.starts_with('-')
        && id.bytes().all(|b| ALPHABET.contains(&b));
    if !ok {
        let shown: String = id.chars().take(MAX_NAMESPACE_ID).collect();
        return Err(Error::invalid(
            "namespace_id",
            format!(
                "'{}' is not allowed: 1 to {MAX_NAMESPACE_ID} of letters, digits, '-', '_', \
                 not starting with '-'",
                shown.escape_debug()
            ),
        ));
    }
    Ok(())
}

/// A fresh opaque id: 11 URL-safe characters (64 random bits), never starting with `-`.
pub fn new_namespace_id() -> String {
    loop {
        let mut bits: u64 = rand::random();
        let id: String = (0..11)
            .map(|_| {
                let c = ALPHABET[(bits & 63) as usize] as char;
                bits >>= 6;
                c
            })
            .collect();
        if !id.starts_with('-') {
            return id;
        }
    }
}

/// Recovery needs a soft-deleted namespace whose name nobody took meanwhile (the domain rule
/// every store applies).
pub(crate) fn check_recoverable(
    info: &NamespaceInfo,
    active_same_name: Option<&NamespaceInfo>,
) -> Result<(), crate::error::StoreError> {
    use crate::error::StoreError;
    match info.status {
        NamespaceStatus::Active => Err(StoreError::Conflict(format!(
            "namespace '{}' ({}) is already active",
            info.name, info.id
        ))),
        NamespaceStatus::Purging => Err(StoreError::Conflict(format!(
            "namespace '{}' ({}) is being purged; that cannot be undone",
            info.name, info.id
        ))),
        NamespaceStatus::Deleted => match active_same_name {
            Some(other) => Err(StoreError::Conflict(format!(
                "the name '{}' was registered again (id {}); delete that one first",
                info.name, other.id
            ))),
            None => Ok(()),
        },
    }
}

/// `default` is never registered afresh while a soft-deleted `default` exists (a handle on
/// `default` would otherwise silently start over, empty, with the old data orphaned): the
/// error points to recovering it (or purging it first). Other names are freed by deletion.
/// `registry` is every namespace record; `name` the one about to be registered.
pub(crate) fn check_registrable<'a>(
    name: &str,
    registry: impl IntoIterator<Item = &'a NamespaceInfo>,
) -> Result<(), crate::error::StoreError> {
    if name != DEFAULT_NAMESPACE {
        return Ok(());
    }
    let registry: Vec<&NamespaceInfo> = registry.into_iter().collect();
    if registry
        .iter()
        .any(|n| n.name == name && n.status == NamespaceStatus::Active)
    {
        return Ok(());
    }
    match registry
        .iter()
        .filter(|n| n.name == name && n.status == NamespaceStatus::Deleted)
        .max_by_key(|n| n.deleted_at_ms)
    {
        Some(n) => Err(crate::error::StoreError::Conflict(format!(
            "namespace '{name}' is soft-deleted (id {id}); it is not replaced by a new empty \
             one: recover it with `zae-limiter namespace recover {id}` \
             (RateLimiter::recover_namespace), or purge it first",
            id = n.id
        ))),
        None => Ok(()),
    }
}

/// Purging needs a soft-deleted (or interrupted purging) namespace (the domain rule every
/// store applies).
pub(crate) fn check_purgeable(info: &NamespaceInfo) -> Result<(), crate::error::StoreError> {
    if info.status == NamespaceStatus::Active {
        return Err(crate::error::StoreError::Conflict(format!(
            "namespace '{}' ({}) is active: delete it first",
            info.name, info.id
        )));
    }
    Ok(())
}

/// Namespace management on the limiter (the registry is table-level: any handle sees it).
impl RateLimiter {
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
    ///
    /// Registering `default` while a soft-deleted `default` exists fails with
    /// [`Error::Conflict`]: recover that one instead.
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
    ///
    /// `default` is protected: deleting it is refused with [`Error::Conflict`]; use
    /// [`delete_namespace_forced`](Self::delete_namespace_forced). A soft-deleted `default`
    /// is never replaced by a fresh one: until it is recovered (or purged), using or
    /// registering `default` fails with [`Error::Conflict`] naming its id.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> zae_limiter::Result<()> {
    /// use zae_limiter::{Error, MemoryStore, RateLimiter};
    /// let limiter = RateLimiter::builder(MemoryStore::new()).build();
    /// assert!(matches!(limiter.delete_namespace("default").await, Err(Error::Conflict(_))));
    /// assert!(limiter.delete_namespace_forced("default").await?);
    /// # Ok(()) }
    /// ```
    pub async fn delete_namespace(&self, name: &str) -> Result<bool> {
        if name == DEFAULT_NAMESPACE {
            return Err(Error::Conflict(format!(
                "namespace '{DEFAULT_NAMESPACE}' is protected: deleting it needs force \
                 (delete_namespace_forced, or `namespace delete {DEFAULT_NAMESPACE} --force`)"
            )));
        }
        self.delete_namespace_forced(name).await
    }

    /// [`delete_namespace`](Self::delete_namespace) that also deletes `default`.
    pub async fn delete_namespace_forced(&self, name: &str) -> Result<bool> {
        validate_namespace_name(name)?;
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
        validate_namespace_id(id)?;
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
        validate_namespace_id(id)?;
        let Some(info) = self.namespaces().await?.into_iter().find(|n| n.id == id) else {
            return Err(Error::NamespaceNotFound(id.to_string()));
        };
        // no timeout here: a purge takes as long as the namespace is large
        let n = self.store().purge_namespace(id, &progress).await?;
        self.audit_namespace(AuditAction::NamespacePurged, &info)
            .await?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names() {
        let a = new_namespace_id();
        assert_eq!(a.len(), 11);
        assert_ne!(a, new_namespace_id());
        assert!(!a.starts_with('-'));
        assert!(validate_namespace_name("tenant-1").is_ok());
        assert!(validate_namespace_name("_").is_err());
        assert!(validate_namespace_name("a/b").is_err());
        assert!(validate_namespace_name("").is_err());
    }

    #[test]
    fn namespace_ids() {
        for _ in 0..200 {
            let id = new_namespace_id();
            assert!(validate_namespace_id(&id).is_ok(), "{id}");
        }
        for ok in ["a", "AbC-_09xyzQ", "_x", &"a".repeat(64)] {
            assert!(validate_namespace_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "_",
            "a/b",
            "/",
            "-abc",
            "a b",
            "a#b",
            "ä",
            "a*",
            &"a".repeat(65),
        ] {
            let e = validate_namespace_id(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid namespace_id"), "{bad}: {e}");
        }
    }
}
