//! `zae-limiter entity ...`: create, show, update, delete entities, list children (one page at
//! a time), and manage an entity's stored limits (per resource, or its default for every
//! resource).

use serde_json::json;
use zae_limiter::config::DEFAULT_RESOURCE;
use zae_limiter::Limit;
use zae_limiter::{ConfigScope, Entity, NewEntity, StoredConfig};

use super::store::{self, print_json, rfc3339};
use super::Cli;
use crate::output::{table, Output};

/// Largest `entity list --page-size`.
const MAX_PAGE_SIZE: usize = 1000;

/// The `entity` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Create an entity (an API key, a project, a user).
    #[command(
        after_help = "Example: zae-limiter entity create key-1 --parent acme --cascade \
                            --display-name 'Web key' --metadata tier=gold"
    )]
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
    #[command(after_help = "Example: zae-limiter entity show key-1 --output json")]
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
    /// List the children of an entity (all of them; `entity list --parent` pages).
    #[command(after_help = "Example: zae-limiter entity children acme")]
    Children {
        /// Parent entity id.
        id: String,
    },
    /// List the entities of the namespace one page at a time, sorted by id (all of them, or
    /// the children of --parent).
    #[command(
        after_help = "Example: zae-limiter entity list --page-size 50 --after key-0042\n\
                      Example: zae-limiter entity list --parent acme"
    )]
    List {
        /// Only the children of this entity.
        #[arg(long, value_name = "ID")]
        parent: Option<String>,
        /// Entities per page (1 to 1000).
        #[arg(long, default_value_t = 100, value_name = "N")]
        page_size: usize,
        /// Start after this entity id (the `next` of the previous page).
        #[arg(long, value_name = "ID")]
        after: Option<String>,
    },
    /// Change an entity: display name, parent, cascade, metadata. Prints the entity after
    /// the change; a change that changes nothing is not audited.
    #[command(
        after_help = "Example: zae-limiter entity update key-1 --parent acme --cascade true \
                            --metadata tier=gold --remove-metadata trial"
    )]
    Update {
        /// Entity id.
        id: String,
        /// New display name.
        #[arg(
            long = "display-name",
            value_name = "NAME",
            conflicts_with = "clear_display_name"
        )]
        display_name: Option<String>,
        /// Remove the display name.
        #[arg(long)]
        clear_display_name: bool,
        /// Set or replace the metadata entry KEY=VALUE (repeatable).
        #[arg(long, value_name = "KEY=VALUE")]
        metadata: Vec<String>,
        /// Remove the metadata entry KEY (repeatable).
        #[arg(long, value_name = "KEY")]
        remove_metadata: Vec<String>,
        /// New parent (must exist and have no parent itself).
        #[arg(long, value_name = "ID", conflicts_with = "clear_parent")]
        parent: Option<String>,
        /// Detach from the parent (also turns cascade off).
        #[arg(long)]
        clear_parent: bool,
        /// Also consume from the parent's bucket on every acquire: true or false.
        #[arg(long, value_name = "true|false")]
        cascade: Option<bool>,
    },
    /// Store limits for an entity on a resource (or its default for every resource),
    /// replacing what was stored there.
    #[command(
        after_help = "Example: zae-limiter entity set-limits key-1 --resource gpt-4o \
                            -l rpm:100 -l tpm:10000/min:15000"
    )]
    SetLimits {
        /// Entity id.
        id: String,
        #[command(flatten)]
        resource: ResourceArg,
        /// Limit as name:rate[/period][:burst], period [N]ms|sec|min|hour|day (also s,
        /// second, m, minute, h, d; default min), e.g. rpm:100, tpm:10000/min:15000,
        /// x:1/1500ms (repeatable, at least one).
        #[arg(short = 'l', long = "limit", value_name = "SPEC", value_parser = store::limit_arg)]
        limits: Vec<Limit>,
    },
    /// Show the limits stored for an entity on a resource.
    #[command(after_help = "Example: zae-limiter entity get-limits key-1 --resource gpt-4o")]
    GetLimits {
        /// Entity id.
        id: String,
        #[command(flatten)]
        resource: ResourceArg,
    },
    /// Delete the limits stored for an entity on a resource.
    #[command(after_help = "Example: zae-limiter entity delete-limits key-1 --resource gpt-4o")]
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
                let (k, v) = key_value(kv)?;
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
            // what is deleted, for the JSON output (every delete prints {"deleted": <the item>})
            let entity = limiter.get_entity(id).await.map_err(err)?;
            let deleted = if *force {
                limiter.delete_entity_forced(id).await
            } else {
                limiter.delete_entity(id).await
            };
            let (true, Some(entity)) = (deleted.map_err(err)?, entity) else {
                return Err(format!("entity '{id}' not found"));
            };
            match cli.output {
                Output::Json => print_json(&json!({ "deleted": entity_json(&entity) })),
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
        Cmd::List {
            parent,
            page_size,
            after,
        } => {
            if *page_size == 0 || *page_size > MAX_PAGE_SIZE {
                return Err(format!(
                    "--page-size must be between 1 and {MAX_PAGE_SIZE}, got {page_size}"
                ));
            }
            let limiter = store::limiter(cli).await?;
            let (entities, next) = match parent {
                Some(parent) => {
                    let children = limiter.children(parent).await.map_err(err)?;
                    page(children, *page_size, after.as_deref())
                }
                None => {
                    let p = limiter
                        .list_entities(*page_size, after.as_deref())
                        .await
                        .map_err(err)?;
                    (p.entities, p.next)
                }
            };
            match cli.output {
                Output::Json => print_json(&json!({
                    "entities": entities.iter().map(entity_json).collect::<Vec<_>>(),
                    "next": next,
                })),
                Output::Table => {
                    if entities.is_empty() {
                        match parent {
                            Some(parent) => println!("No entities with parent '{parent}'"),
                            None => println!("No entities"),
                        }
                    } else {
                        let rows: Vec<Vec<String>> = entities
                            .iter()
                            .map(|e| {
                                vec![
                                    e.id.clone(),
                                    e.name.clone().unwrap_or_else(|| "-".into()),
                                    e.cascade.to_string(),
                                    rfc3339(e.created_at_ms),
                                ]
                            })
                            .collect();
                        println!(
                            "{}",
                            table(&["Entity", "Name", "Cascade", "Created"], &rows)
                        );
                    }
                    if let Some(next) = &next {
                        println!("More entities: --after {next}");
                    }
                    Ok(())
                }
            }
        }
        Cmd::Update {
            id,
            display_name,
            clear_display_name,
            metadata,
            remove_metadata,
            parent,
            clear_parent,
            cascade,
        } => {
            let nothing = display_name.is_none()
                && !clear_display_name
                && metadata.is_empty()
                && remove_metadata.is_empty()
                && parent.is_none()
                && !clear_parent
                && cascade.is_none();
            if nothing {
                return Err(
                    "nothing to update: give --display-name, --clear-display-name, \
                            --metadata, --remove-metadata, --parent, --clear-parent or --cascade"
                        .into(),
                );
            }
            let metadata = metadata
                .iter()
                .map(|kv| key_value(kv))
                .collect::<Result<Vec<_>, _>>()?;
            let limiter = store::limiter(cli).await?;
            let mut update = limiter.update_entity(id);
            if let Some(n) = display_name {
                update = update.name(n);
            }
            if *clear_display_name {
                update = update.clear_name();
            }
            if let Some(p) = parent {
                update = update.parent(p);
            }
            if *clear_parent {
                update = update.clear_parent();
            }
            if let Some(c) = cascade {
                update = update.cascade(*c);
            }
            for (k, v) in metadata {
                update = update.metadata(k, v);
            }
            for k in remove_metadata {
                update = update.remove_metadata(k);
            }
            let entity = update.await.map_err(err)?;
            match cli.output {
                Output::Json => print_json(&entity_json(&entity)),
                Output::Table => {
                    println!("Updated entity '{}'\n{}", entity.id, show(&entity));
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
            let limits = limits.clone();
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

/// `KEY=VALUE` of `--metadata` (the value may contain '=').
fn key_value(kv: &str) -> Result<(&str, &str), String> {
    kv.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("invalid --metadata '{kv}': expected KEY=VALUE"))
}

/// One page of `entities` sorted by id: at most `size` after the id `after`, and the cursor
/// of the next page (the last id shown) when more follow.
fn page(
    mut entities: Vec<Entity>,
    size: usize,
    after: Option<&str>,
) -> (Vec<Entity>, Option<String>) {
    entities.sort_by(|a, b| a.id.cmp(&b.id));
    if let Some(after) = after {
        entities.retain(|e| e.id.as_str() > after);
    }
    let more = entities.len() > size;
    entities.truncate(size);
    let next = if more {
        entities.last().map(|e| e.id.clone())
    } else {
        None
    };
    (entities, next)
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

    fn ent(id: &str) -> Entity {
        Entity {
            id: id.into(),
            name: None,
            parent_id: None,
            cascade: false,
            metadata: BTreeMap::new(),
            created_at_ms: 0,
        }
    }

    #[test]
    fn pages_walk_every_entity_once() {
        let all: Vec<Entity> = ["c", "a", "e", "b", "d"].into_iter().map(ent).collect();
        let ids = |v: &[Entity]| v.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
        let (p1, next) = page(all.clone(), 2, None);
        assert_eq!(
            (ids(&p1), next.as_deref()),
            (vec!["a".into(), "b".into()], Some("b"))
        );
        let (p2, next) = page(all.clone(), 2, next.as_deref());
        assert_eq!(
            (ids(&p2), next.as_deref()),
            (vec!["c".into(), "d".into()], Some("d"))
        );
        let (p3, next) = page(all.clone(), 2, next.as_deref());
        assert_eq!((ids(&p3), next), (vec!["e".to_string()], None));
        // an exactly full last page has no next
        assert_eq!(page(all.clone(), 5, None).1, None);
        assert!(page(all, 5, Some("e")).0.is_empty());
    }

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
