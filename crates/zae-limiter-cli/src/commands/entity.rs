//! `zae-limiter entity ...`: create, show, delete entities, list children, and manage an
//! entity's stored limits (per resource, or its default for every resource).

use serde_json::json;
use zae_limiter::config::DEFAULT_RESOURCE;
use zae_limiter::{ConfigScope, Entity, NewEntity, StoredConfig};

use super::store::{self, print_json, rfc3339};
use super::Cli;
use crate::output::Output;

/// The `entity` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Create an entity (an API key, a project, a user).
    Create {
        /// Entity id.
        id: String,
        /// Display name (`--name` is the global table name).
        #[arg(long = "display-name", value_name = "NAME")]
        display_name: Option<String>,
        /// Parent entity (must exist and have no parent itself).
        #[arg(long)]
        parent: Option<String>,
        /// Also consume from the parent's bucket on every acquire (needs --parent).
        #[arg(long)]
        cascade: bool,
        /// Metadata entry KEY=VALUE (repeatable).
        #[arg(long, value_name = "KEY=VALUE")]
        metadata: Vec<String>,
    },
    /// Show an entity.
    Show {
        /// Entity id.
        id: String,
    },
    /// Delete an entity with its stored limits and buckets. An entity that has children is
    /// refused unless --force, which first detaches the children (no parent, no cascade).
    ///
    /// Example: zae-limiter entity delete acme --force
    Delete {
        /// Entity id.
        id: String,
        /// Detach the children first instead of refusing.
        #[arg(long)]
        force: bool,
    },
    /// List the children of an entity.
    Children {
        /// Parent entity id.
        id: String,
    },
    /// Store limits for an entity on a resource (or its default for every resource),
    /// replacing what was stored there.
    SetLimits {
        /// Entity id.
        id: String,
        #[command(flatten)]
        resource: ResourceArg,
        /// Limit as name:rate[/period][:burst], period [N]ms|sec|min|hour|day (also s,
        /// second, m, minute, h, d; default min), e.g. rpm:100, tpm:10000/min:15000,
        /// x:1/1500ms (repeatable, at least one).
        #[arg(short = 'l', long = "limit", value_name = "SPEC")]
        limits: Vec<String>,
    },
    /// Show the limits stored for an entity on a resource.
    GetLimits {
        /// Entity id.
        id: String,
        #[command(flatten)]
        resource: ResourceArg,
    },
    /// Delete the limits stored for an entity on a resource.
    DeleteLimits {
        /// Entity id.
        id: String,
        #[command(flatten)]
        resource: ResourceArg,
    },
}

/// `--resource` of the entity limit commands.
#[derive(Debug, clap::Args)]
pub struct ResourceArg {
    /// Resource; `_default_` means the entity's default for every resource without its own
    /// entity limits.
    #[arg(long, default_value = DEFAULT_RESOURCE)]
    resource: String,
}

impl ResourceArg {
    fn scope(&self, entity_id: &str) -> ConfigScope {
        if self.resource == DEFAULT_RESOURCE {
            ConfigScope::EntityDefault {
                entity_id: entity_id.to_string(),
            }
        } else {
            ConfigScope::Entity {
                entity_id: entity_id.to_string(),
                resource: self.resource.clone(),
            }
        }
    }
}

pub async fn run(cli: &Cli, cmd: &Cmd) -> Result<(), String> {
    let err = |e: zae_limiter::Error| e.to_string();
    match cmd {
        Cmd::Create {
            id,
            display_name,
            parent,
            cascade,
            metadata,
        } => {
            let mut spec = NewEntity::new(id).cascade(*cascade);
            if let Some(n) = display_name {
                spec = spec.name(n);
            }
            if let Some(p) = parent {
                spec = spec.parent(p);
            }
            for kv in metadata {
                let (k, v) = kv
                    .split_once('=')
                    .filter(|(k, _)| !k.is_empty())
                    .ok_or_else(|| format!("invalid --metadata '{kv}': expected KEY=VALUE"))?;
                spec = spec.metadata(k, v);
            }
            let limiter = store::limiter(cli).await?;
            let entity = limiter.create_entity(spec).await.map_err(err)?;
            match cli.output {
                Output::Json => print_json(&entity_json(&entity)),
                Output::Table => {
                    println!("Created entity '{}'", entity.id);
                    Ok(())
                }
            }
        }
        Cmd::Show { id } => {
            let limiter = store::limiter(cli).await?;
            let entity = limiter
                .get_entity(id)
                .await
                .map_err(err)?
                .ok_or_else(|| format!("entity '{id}' not found"))?;
            match cli.output {
                Output::Json => print_json(&entity_json(&entity)),
                Output::Table => {
                    println!("{}", show(&entity));
                    Ok(())
                }
            }
        }
        Cmd::Delete { id, force } => {
            let limiter = store::limiter(cli).await?;
            let deleted = if *force {
                limiter.delete_entity_forced(id).await
            } else {
                limiter.delete_entity(id).await
            };
            if !deleted.map_err(err)? {
                return Err(format!("entity '{id}' not found"));
            }
            match cli.output {
                Output::Json => print_json(&json!({ "deleted": id })),
                Output::Table => {
                    println!("Deleted entity '{id}'");
                    Ok(())
                }
            }
        }
        Cmd::Children { id } => {
            let limiter = store::limiter(cli).await?;
            let children = limiter.children(id).await.map_err(err)?;
            match cli.output {
                Output::Json => print_json(&json!({
                    "parent_id": id,
                    "children": children.iter().map(entity_json).collect::<Vec<_>>(),
                })),
                Output::Table => {
                    if children.is_empty() {
                        println!("No children of '{id}'");
                    }
                    for c in &children {
                        println!("{}", c.id);
                    }
                    Ok(())
                }
            }
        }
        Cmd::SetLimits {
            id,
            resource,
            limits,
        } => {
            if limits.is_empty() {
                return Err(
                    "give at least one limit with -l/--limit name:rate[/period][:burst]".into(),
                );
            }
            let limits = store::parse_limits(limits)?;
            let limiter = store::limiter(cli).await?;
            store::set(
                cli,
                &limiter,
                resource.scope(id),
                StoredConfig::limits(limits),
            )
            .await
        }
        Cmd::GetLimits { id, resource } => {
            store::get(cli, &store::limiter(cli).await?, resource.scope(id)).await
        }
        Cmd::DeleteLimits { id, resource } => {
            store::delete(cli, &store::limiter(cli).await?, resource.scope(id)).await
        }
    }
}

/// The entity as JSON, with `created_at` in RFC 3339 beside `created_at_ms`.
fn entity_json(e: &Entity) -> serde_json::Value {
    let mut v = json!(e);
    v["created_at"] = json!(rfc3339(e.created_at_ms));
    v
}

/// `entity show`'s human output.
fn show(e: &Entity) -> String {
    let metadata = if e.metadata.is_empty() {
        "(none)".to_string()
    } else {
        e.metadata
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    [
        format!("Entity: {}", e.id),
        format!("  Name: {}", e.name.as_deref().unwrap_or("(none)")),
        format!("  Parent: {}", e.parent_id.as_deref().unwrap_or("(none)")),
        format!("  Cascade: {}", e.cascade),
        format!("  Created: {}", rfc3339(e.created_at_ms)),
        format!("  Metadata: {metadata}"),
    ]
    .join("\n")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn show_lines() {
        let e = Entity {
            id: "key-1".into(),
            name: None,
            parent_id: Some("proj".into()),
            cascade: true,
            metadata: BTreeMap::from([("a".into(), "1".into()), ("b".into(), "x=y".into())]),
            created_at_ms: 1_767_225_600_000,
        };
        assert_eq!(
            show(&e),
            "Entity: key-1\n  Name: (none)\n  Parent: proj\n  Cascade: true\n  \
             Created: 2026-01-01T00:00:00.000Z\n  Metadata: a=1, b=x=y"
        );
    }
}
