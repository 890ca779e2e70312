//! Stored limits at four levels, their resolution, and the audit events that record changes.

use serde::{Deserialize, Serialize};

use crate::entity::Entity;
use crate::error::{Error, Result};
use crate::limit::{validate_entity_id, validate_limits, validate_resource, Limit};

/// The resource name under which an entity's defaults for every resource are stored.
pub const DEFAULT_RESOURCE: &str = "_default_";

/// What to do when the store cannot be reached or does not answer in time (transport
/// errors, timeouts, throttling after retries, 5xx). Contention, validation errors and
/// malformed items never go through this policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUnavailable {
    /// Refuse with [`Error::Unavailable`] (fail closed). The default.
    #[default]
    Block,
    /// Admit with a no-op lease that writes nothing (fail open).
    Allow,
}

impl std::str::FromStr for OnUnavailable {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "block" => Ok(OnUnavailable::Block),
            "allow" => Ok(OnUnavailable::Allow),
            _ => Err(Error::invalid(
                "on_unavailable",
                format!("'{s}' is not one of: block, allow"),
            )),
        }
    }
}

/// Where a set of limits is stored. Resolution tries them in this order; the first level
/// holding limits wins.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConfigScope {
    /// One entity on one resource.
    Entity {
        /// The entity.
        entity_id: String,
        /// The resource.
        resource: String,
    },
    /// One entity, every resource without an entity+resource config.
    EntityDefault {
        /// The entity.
        entity_id: String,
    },
    /// Every entity on one resource.
    Resource {
        /// The resource.
        resource: String,
    },
    /// Everything in the namespace. Also holds the `on_unavailable` policy.
    System,
}

impl ConfigScope {
    /// The four scopes consulted for `entity_id` on `resource`, most specific first.
    pub fn chain(entity_id: &str, resource: &str) -> [ConfigScope; 4] {
        [
            ConfigScope::Entity {
                entity_id: entity_id.into(),
                resource: resource.into(),
            },
            ConfigScope::EntityDefault {
                entity_id: entity_id.into(),
            },
            ConfigScope::Resource {
                resource: resource.into(),
            },
            ConfigScope::System,
        ]
    }

    /// Check the ids in the scope.
    pub fn validate(&self) -> Result<()> {
        match self {
            ConfigScope::Entity {
                entity_id,
                resource,
            } => {
                validate_entity_id(entity_id)?;
                validate_resource(resource)
            }
            ConfigScope::EntityDefault { entity_id } => validate_entity_id(entity_id),
            ConfigScope::Resource { resource } => validate_resource(resource),
            ConfigScope::System => Ok(()),
        }
    }

    /// The level's name: `entity`, `entity_default`, `resource`, `system`.
    pub fn level(&self) -> &'static str {
        match self {
            ConfigScope::Entity { .. } => "entity",
            ConfigScope::EntityDefault { .. } => "entity_default",
            ConfigScope::Resource { .. } => "resource",
            ConfigScope::System => "system",
        }
    }

    /// The id audit events of this scope are filed under: the entity, `$RESOURCE:{r}`,
    /// or `$SYSTEM`.
    pub fn audit_entity(&self) -> String {
        match self {
            ConfigScope::Entity { entity_id, .. } | ConfigScope::EntityDefault { entity_id } => {
                entity_id.clone()
            }
            ConfigScope::Resource { resource } => format!("$RESOURCE:{resource}"),
            ConfigScope::System => "$SYSTEM".to_string(),
        }
    }

    /// The resource named by the scope (`_default_` for an entity default).
    pub fn resource(&self) -> Option<&str> {
        match self {
            ConfigScope::Entity { resource, .. } | ConfigScope::Resource { resource } => {
                Some(resource)
            }
            ConfigScope::EntityDefault { .. } => Some(DEFAULT_RESOURCE),
            ConfigScope::System => None,
        }
    }
}

/// What is stored at one level.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StoredConfig {
    /// The limits (may be empty at the system level when only the policy is set).
    pub limits: Vec<Limit>,
    /// The `on_unavailable` policy (system level only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_unavailable: Option<OnUnavailable>,
    /// Version of these limits, strictly increasing with every change at this scope (set by
    /// [`RateLimiter::set_config`](crate::RateLimiter::set_config); 0 when never stored).
    /// Buckets carry it so that a client holding an older version adopts the stored
    /// parameters instead of rebasing the bucket back.
    #[serde(default)]
    pub version: i64,
}

impl StoredConfig {
    /// Limits only.
    pub fn limits(limits: impl IntoIterator<Item = Limit>) -> Self {
        StoredConfig {
            limits: limits.into_iter().collect(),
            on_unavailable: None,
            version: 0,
        }
    }

    pub(crate) fn validate(&self, scope: &ConfigScope) -> Result<()> {
        validate_limits(&self.limits)?;
        if self.on_unavailable.is_some() && *scope != ConfigScope::System {
            return Err(Error::invalid(
                "on_unavailable",
                "the policy can only be stored at the system level",
            ));
        }
        if self.limits.is_empty() && self.on_unavailable.is_none() {
            return Err(Error::invalid(
                "limits",
                "nothing to store: give at least one limit",
            ));
        }
        Ok(())
    }
}

/// Everything needed to resolve an acquire for one (entity, resource), fetched in one go
/// (one `BatchGetItem` on DynamoDB).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolutionData {
    /// The entity, if it exists.
    pub entity: Option<Entity>,
    /// The stored configs, in [`ConfigScope::chain`] order.
    pub levels: [Option<StoredConfig>; 4],
    /// The store found the handle's namespace deleted or purged: nothing may be written.
    pub namespace_gone: bool,
}

impl ResolutionData {
    /// The limits of the most specific level holding any, and that level.
    pub fn limits(&self) -> Option<(&'static str, &[Limit])> {
        const NAMES: [&str; 4] = ["entity", "entity_default", "resource", "system"];
        self.levels.iter().zip(NAMES).find_map(|(c, n)| {
            c.as_ref()
                .filter(|c| !c.limits.is_empty())
                .map(|c| (n, &c.limits[..]))
        })
    }
    /// Like [`limits`](Self::limits), with the version of the winning config.
    pub fn versioned_limits(&self) -> Option<(&[Limit], i64)> {
        self.levels.iter().find_map(|c| {
            c.as_ref()
                .filter(|c| !c.limits.is_empty())
                .map(|c| (&c.limits[..], c.version))
        })
    }
    /// The stored system policy.
    pub fn on_unavailable(&self) -> Option<OnUnavailable> {
        self.levels[3].as_ref().and_then(|c| c.on_unavailable)
    }
}

/// What an audit event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// An entity was created.
    EntityCreated,
    /// An entity and its data were deleted.
    EntityDeleted,
    /// An entity's name, metadata, parent or cascade flag changed.
    EntityUpdated,
    /// Limits were stored (any level).
    LimitsSet,
    /// Stored limits were deleted (any level).
    LimitsDeleted,
    /// A namespace was registered.
    NamespaceRegistered,
    /// A namespace was soft-deleted.
    NamespaceDeleted,
    /// A soft-deleted namespace was recovered.
    NamespaceRecovered,
    /// A namespace's data was purged.
    NamespacePurged,
}

impl AuditAction {
    /// `entity_created`, `limits_set`, ...
    pub fn as_str(&self) -> &'static str {
        match self {
            AuditAction::EntityCreated => "entity_created",
            AuditAction::EntityDeleted => "entity_deleted",
            AuditAction::EntityUpdated => "entity_updated",
            AuditAction::LimitsSet => "limits_set",
            AuditAction::LimitsDeleted => "limits_deleted",
            AuditAction::NamespaceRegistered => "namespace_registered",
            AuditAction::NamespaceDeleted => "namespace_deleted",
            AuditAction::NamespaceRecovered => "namespace_recovered",
            AuditAction::NamespacePurged => "namespace_purged",
        }
    }
    /// Parse [`as_str`](Self::as_str)'s output.
    pub fn parse(s: &str) -> Option<Self> {
        [
            AuditAction::EntityCreated,
            AuditAction::EntityDeleted,
            AuditAction::EntityUpdated,
            AuditAction::LimitsSet,
            AuditAction::LimitsDeleted,
            AuditAction::NamespaceRegistered,
            AuditAction::NamespaceDeleted,
            AuditAction::NamespaceRecovered,
            AuditAction::NamespacePurged,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Time-ordered id: sorts like the timestamp, unique.
    pub event_id: String,
    /// When, ms since the Unix epoch.
    pub timestamp_ms: i64,
    /// What happened.
    pub action: AuditAction,
    /// The entity, or `$SYSTEM` / `$RESOURCE:{resource}` for default changes.
    pub entity_id: String,
    /// The resource concerned, if any (`_default_` for entity defaults).
    pub resource: Option<String>,
    /// Who did it, when known.
    pub principal: Option<String>,
    /// Old and new values.
    pub details: serde_json::Value,
    /// When the event may be dropped (retention; DynamoDB's TTL deletes it after that).
    pub expires_at_ms: Option<i64>,
}

/// A page of audit events, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditPage {
    /// The events.
    pub events: Vec<AuditEvent>,
    /// Pass as `before` to get the next (older) page; `None` when there are no more.
    pub next: Option<String>,
}

/// A page of ids, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct IdPage {
    /// The ids.
    pub ids: Vec<String>,
    /// Pass as `after` to get the next page; `None` when there are no more.
    pub next: Option<String>,
}

impl IdPage {
    /// Cut `sorted` (already past `after`) to `limit`, noting whether more follow.
    pub(crate) fn from_sorted(mut sorted: Vec<String>, limit: usize) -> Self {
        let more = sorted.len() > limit;
        sorted.truncate(limit);
        let next = if more { sorted.last().cloned() } else { None };
        IdPage { ids: sorted, next }
    }
}

/// The `#PROVISIONER` record of a namespace: which configs a declarative manifest manages
/// there, and which manifest was applied last, when and by whom.
///
/// Only what is listed here is ever deleted by a later apply: a config set imperatively and
/// never named by a manifest is left alone.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProvisionerState {
    /// The system-level config is managed.
    pub system: bool,
    /// Resources whose defaults are managed.
    pub resources: std::collections::BTreeSet<String>,
    /// Per entity, the resources of its managed configs (`_default_` for its default).
    pub entities: std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
    /// `sha256:` and the hex digest of the applied manifest's canonical form.
    pub applied_hash: String,
    /// When it was applied (ms since the epoch).
    pub applied_at_ms: i64,
    /// Who applied it.
    pub principal: Option<String>,
    /// Incremented by every write of the record (0: never written), so that two applies
    /// cannot both replace the same record.
    pub revision: u64,
}

impl ProvisionerState {
    /// The managed scopes, system first, then resources, then entities, each sorted.
    pub fn scopes(&self) -> Vec<ConfigScope> {
        let mut out = Vec::new();
        if self.system {
            out.push(ConfigScope::System);
        }
        out.extend(self.resources.iter().map(|r| ConfigScope::Resource {
            resource: r.clone(),
        }));
        for (entity, resources) in &self.entities {
            out.extend(resources.iter().map(|r| scope_of_entity(entity, r)));
        }
        out
    }

    /// Add `scope` to the managed set.
    pub fn insert(&mut self, scope: &ConfigScope) {
        match scope {
            ConfigScope::System => self.system = true,
            ConfigScope::Resource { resource } => {
                self.resources.insert(resource.clone());
            }
            ConfigScope::Entity { entity_id, .. } | ConfigScope::EntityDefault { entity_id } => {
                let resource = scope.resource().unwrap_or(DEFAULT_RESOURCE).to_string();
                self.entities
                    .entry(entity_id.clone())
                    .or_default()
                    .insert(resource);
            }
        }
    }

    /// Whether `scope` is managed.
    pub fn contains(&self, scope: &ConfigScope) -> bool {
        match scope {
            ConfigScope::System => self.system,
            ConfigScope::Resource { resource } => self.resources.contains(resource),
            ConfigScope::Entity { entity_id, .. } | ConfigScope::EntityDefault { entity_id } => {
                let resource = scope.resource().unwrap_or(DEFAULT_RESOURCE);
                self.entities
                    .get(entity_id)
                    .is_some_and(|r| r.contains(resource))
            }
        }
    }

    /// The same managed set (ignoring hash, time, principal and revision).
    pub fn same_set(&self, other: &ProvisionerState) -> bool {
        self.system == other.system
            && self.resources == other.resources
            && self.entities == other.entities
    }
}

/// The scope of an entity's config on `resource` (`_default_`: its default for every
/// resource).
pub fn scope_of_entity(entity_id: &str, resource: &str) -> ConfigScope {
    if resource == DEFAULT_RESOURCE {
        ConfigScope::EntityDefault {
            entity_id: entity_id.to_string(),
        }
    } else {
        ConfigScope::Entity {
            entity_id: entity_id.to_string(),
            resource: resource.to_string(),
        }
    }
}
