//! Namespaces: independent tenants in one table. A registry under the table-level
//! partition `_/SYSTEM#` maps each name to an opaque id; every key of the namespace starts
//! with `{id}/`, which is what lets IAM (`dynamodb:LeadingKeys` = `{id}/*`) confine a tenant.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

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

/// A fresh opaque id: 11 URL-safe characters (64 random bits), never starting with `-`.
pub fn new_namespace_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
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
}
