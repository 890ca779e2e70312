//! `zae-limiter namespace …`: the registry of namespaces (tenants) in the table.

use serde_json::json;
use zae_limiter::{NamespaceInfo, NamespaceStatus};

use super::store::{print_json, rfc3339};
use super::Cli;
use crate::output::{table, Output};

/// Namespace commands.
#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Register namespaces (idempotent) and print their ids.
    #[command(after_help = "Example: zae-limiter namespace register tenant-a tenant-b")]
    Register {
        /// Names: letters, digits, '_', '.', '-' (not '_' alone).
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// List every namespace record, with its status.
    #[command(after_help = "Example: zae-limiter namespace list --output json")]
    List,
    /// Show one active namespace and its id (for IAM policies and `recover`/`purge`).
    #[command(after_help = "Example: zae-limiter namespace show tenant-a")]
    Show {
        /// The namespace's name.
        #[arg(value_name = "NAME")]
        ns_name: String,
    },
    /// Soft-delete: frees the name, keeps the data; `recover` brings it back.
    ///
    /// `default` is protected: deleting it needs --force, and while it is deleted nothing
    /// re-creates it; `recover` it (or `purge` it) to use it again.
    #[command(after_help = "Example: zae-limiter namespace delete tenant-a")]
    Delete {
        /// The namespace's name.
        #[arg(value_name = "NAME")]
        ns_name: String,
        /// Required to delete the protected `default` namespace.
        #[arg(long)]
        force: bool,
    },
    /// Recover a soft-deleted namespace by id.
    #[command(after_help = "Example: zae-limiter namespace recover NAMESPACE_ID")]
    Recover {
        /// The id printed by `delete` or `list`.
        id: String,
    },
    /// Delete every item of a soft-deleted namespace, then its record. Cannot be undone.
    #[command(after_help = "Example: zae-limiter namespace purge NAMESPACE_ID --yes")]
    Purge {
        /// The id printed by `delete` or `list`.
        id: String,
        /// Confirm: the data is gone for good.
        #[arg(long)]
        yes: bool,
    },
}

fn doc(n: &NamespaceInfo) -> serde_json::Value {
    json!({
        "name": n.name,
        "namespace_id": n.id,
        "status": n.status.as_str(),
        "created_at": rfc3339(n.created_at_ms),
        "deleted_at": n.deleted_at_ms.map(rfc3339),
    })
}

fn show(n: &NamespaceInfo) {
    println!("Namespace: {}", n.name);
    println!("  Namespace ID: {}", n.id);
    println!("  Status: {}", n.status.as_str());
    println!("  Created: {}", rfc3339(n.created_at_ms));
    if let Some(d) = n.deleted_at_ms {
        println!("  Deleted: {}", rfc3339(d));
    }
}

pub async fn run(cli: &Cli, cmd: &Cmd) -> Result<(), String> {
    if let Cmd::Delete {
        ns_name,
        force: false,
    } = cmd
    {
        if ns_name == zae_limiter::DEFAULT_NAMESPACE {
            return Err(format!(
                "namespace '{ns_name}' is protected: add --force to delete it \
                 (its data is kept; `namespace recover ID` brings it back)"
            ));
        }
    }
    if let Cmd::Purge { yes: false, id } = cmd {
        return Err(format!(
            "purge deletes every item of namespace {id} for good; add --yes to confirm"
        ));
    }
    // the registry is table-level: work from the default namespace whatever -N says
    let limiter = super::store::limiter_in(cli, zae_limiter::DEFAULT_NAMESPACE).await?;
    let e = |e: zae_limiter::Error| e.to_string();
    let json = cli.output == Output::Json;
    match cmd {
        Cmd::Register { names } => {
            let mut out = Vec::new();
            for name in names {
                let n = limiter.register_namespace(name).await.map_err(e)?;
                if !json {
                    println!("Registered namespace '{}'", n.name);
                    println!("  Namespace ID: {}", n.id);
                }
                out.push(doc(&n));
            }
            if json {
                print_json(&json!(out))?;
            }
        }
        Cmd::List => {
            let all = limiter.namespaces().await.map_err(e)?;
            if json {
                print_json(&json!(all.iter().map(doc).collect::<Vec<_>>()))?;
            } else if all.is_empty() {
                println!("No namespaces registered");
            } else {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|n| {
                        vec![
                            n.name.clone(),
                            n.id.clone(),
                            n.status.as_str().to_string(),
                            rfc3339(n.created_at_ms),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    table(&["Name", "Namespace ID", "Status", "Created"], &rows)
                );
            }
        }
        Cmd::Show { ns_name: name } => {
            let n = limiter
                .get_namespace(name)
                .await
                .map_err(e)?
                .ok_or_else(|| format!("namespace '{name}' not found"))?;
            if json {
                print_json(&doc(&n))?;
            } else {
                show(&n);
            }
        }
        Cmd::Delete {
            ns_name: name,
            force,
        } => {
            let n = limiter
                .get_namespace(name)
                .await
                .map_err(e)?
                .ok_or_else(|| format!("namespace '{name}' not found"))?;
            if *force {
                limiter.delete_namespace_forced(name).await.map_err(e)?;
            } else {
                limiter.delete_namespace(name).await.map_err(e)?;
            }
            if json {
                print_json(&json!({ "deleted": doc(&n) }))?;
            } else {
                println!("Deleted namespace '{name}' (data kept)");
                println!("  Namespace ID: {}", n.id);
                println!("  Recover with: zae-limiter namespace recover {}", n.id);
            }
        }
        Cmd::Recover { id } => {
            let n = limiter.recover_namespace(id).await.map_err(e)?;
            if json {
                print_json(&doc(&n))?;
            } else {
                println!("Recovered namespace '{}'", n.name);
                println!("  Namespace ID: {}", n.id);
            }
        }
        Cmd::Purge { id, .. } => {
            let info = limiter
                .namespaces()
                .await
                .map_err(e)?
                .into_iter()
                .find(|n| &n.id == id)
                .ok_or_else(|| format!("namespace id '{id}' not found"))?;
            if info.status == NamespaceStatus::Active {
                return Err(format!(
                    "namespace '{}' ({id}) is active: delete it first",
                    info.name
                ));
            }
            // a counter on a terminal only; the result line says how many
            let progress = crate::output::Progress::new();
            let n = limiter
                .purge_namespace(id, |done| {
                    progress.update(format!("purging {id}: {done} items deleted"))
                })
                .await
                .map_err(e)?;
            drop(progress);
            if json {
                print_json(&json!({ "purged": doc(&info), "items_deleted": n }))?;
            } else {
                println!("Purged namespace '{}' ({id}): {n} items deleted", info.name);
            }
        }
    }
    Ok(())
}
