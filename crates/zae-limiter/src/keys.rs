//! The table's key layout. Every partition key starts with the namespace id, so IAM
//! `dynamodb:LeadingKeys` = `{ns}/*` confines a principal to one namespace.

/// Sort key of a bucket item.
pub const BUCKET_SK: &str = "#STATE";
/// Sort key of an entity's metadata item.
pub const ENTITY_SK: &str = "#META";

/// `{ns}/BUCKET#{entity}#{resource}#{shard}`
pub fn bucket_pk(ns: &str, entity_id: &str, resource: &str, shard: u16) -> String {
    format!("{ns}/BUCKET#{entity_id}#{resource}#{shard}")
}

/// `{ns}/ENTITY#{id}`
pub fn entity_pk(ns: &str, entity_id: &str) -> String {
    format!("{ns}/ENTITY#{entity_id}")
}

/// GSI1 (children of a parent): `{ns}/PARENT#{parent}` / `CHILD#{child}`.
pub fn parent_gsi(ns: &str, parent_id: &str, child_id: &str) -> (String, String) {
    (
        format!("{ns}/PARENT#{parent_id}"),
        format!("CHILD#{child_id}"),
    )
}

/// GSI2 (buckets of a resource): `{ns}/RESOURCE#{resource}` / `BUCKET#{entity}#{shard}`.
pub fn resource_gsi(ns: &str, entity_id: &str, resource: &str, shard: u16) -> (String, String) {
    (
        format!("{ns}/RESOURCE#{resource}"),
        format!("BUCKET#{entity_id}#{shard}"),
    )
}

/// Sort key of every config item (entity configs append `#{resource}`).
pub const CONFIG_SK: &str = "#CONFIG";

/// PK and SK of the item holding the config at `scope`.
pub fn config_key(ns: &str, scope: &crate::config::ConfigScope) -> (String, String) {
    use crate::config::{ConfigScope, DEFAULT_RESOURCE};
    match scope {
        ConfigScope::Entity {
            entity_id,
            resource,
        } => (entity_pk(ns, entity_id), format!("{CONFIG_SK}#{resource}")),
        ConfigScope::EntityDefault { entity_id } => (
            entity_pk(ns, entity_id),
            format!("{CONFIG_SK}#{DEFAULT_RESOURCE}"),
        ),
        ConfigScope::Resource { resource } => {
            (format!("{ns}/RESOURCE#{resource}"), CONFIG_SK.to_string())
        }
        ConfigScope::System => (format!("{ns}/SYSTEM#"), CONFIG_SK.to_string()),
    }
}

/// `{ns}/AUDIT#{entity}` / `#AUDIT#{event_id}`
pub fn audit_key(ns: &str, entity_id: &str, event_id: &str) -> (String, String) {
    (
        format!("{ns}/AUDIT#{entity_id}"),
        format!("#AUDIT#{event_id}"),
    )
}

/// Sort key of the `#PROVISIONER` record (what a declarative manifest manages).
pub const PROVISIONER_SK: &str = "#PROVISIONER";

/// PK and SK of a namespace's `#PROVISIONER` record: `{ns}/SYSTEM#` / `#PROVISIONER`.
pub fn provisioner_key(ns: &str) -> (String, String) {
    (format!("{ns}/SYSTEM#"), PROVISIONER_SK.to_string())
}
