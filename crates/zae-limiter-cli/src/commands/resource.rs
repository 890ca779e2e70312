//! `zae-limiter resource ...`: a resource's default limits (for every entity without its
//! own), the resources that have them, and the entities with their own limits on one.

use serde_json::json;
use zae_limiter::Limit;
use zae_limiter::{ConfigScope, StoredConfig};

use super::store::{self, print_json};
use super::Cli;
use crate::output::Output;

/// The `resource` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Store a resource's default limits, replacing what was stored.
    #[command(
        after_help = "Example: zae-limiter resource set-defaults gpt-4o -l rpm:500 \
                            -l tpm:50000/min:75000"
    )]
    SetDefaults {
        /// Resource (a model, an API, ...).
        resource: String,
        /// Limit as name:rate[/period][:burst], period [N]ms|sec|min|hour|day (also s,
        /// second, m, minute, h, d; default min), e.g. rpm:100, tpm:10000/min:15000,
        /// x:1/1500ms (repeatable, at least one).
        #[arg(short = 'l', long = "limit", value_name = "SPEC", value_parser = store::limit_arg)]
        limits: Vec<Limit>,
    },
    /// Show a resource's default limits.
    #[command(after_help = "Example: zae-limiter resource get-defaults gpt-4o --output json")]
    GetDefaults {
        /// Resource.
        resource: String,
    },
    /// Delete a resource's default limits.
    #[command(after_help = "Example: zae-limiter resource delete-defaults gpt-4o")]
    DeleteDefaults {
        /// Resource.
        resource: String,
    },
    /// List the resources that have default limits.
    #[command(after_help = "Example: zae-limiter resource list")]
    List,
    /// List the entities with their own limits on a resource.
    #[command(after_help = "Example: zae-limiter resource entities gpt-4o --page-size 50")]
    Entities {
        /// Resource.
        resource: String,
        /// Page size (1..=1000).
        #[arg(long, default_value_t = 100, value_name = "N")]
        page_size: usize,
        /// Start after this entity id (the `next` of the previous page).
        #[arg(long)]
        after: Option<String>,
    },
}

fn scope(resource: &str) -> ConfigScope {
    ConfigScope::Resource {
        resource: resource.to_string(),
    }
}

pub async fn run(cli: &Cli, cmd: &Cmd) -> Result<(), String> {
    let err = |e: zae_limiter::Error| e.to_string();
    match cmd {
        Cmd::SetDefaults { resource, limits } => {
            if limits.is_empty() {
                return Err(
                    "give at least one limit with -l/--limit name:rate[/period][:burst]".into(),
                );
            }
            let limits = limits.clone();
            let limiter = store::limiter(cli).await?;
            store::set(cli, &limiter, scope(resource), StoredConfig::limits(limits)).await
        }
        Cmd::GetDefaults { resource } => {
            store::get(cli, &store::limiter(cli).await?, scope(resource)).await
        }
        Cmd::DeleteDefaults { resource } => {
            store::delete(cli, &store::limiter(cli).await?, scope(resource)).await
        }
        Cmd::List => {
            let limiter = store::limiter(cli).await?;
            let resources = limiter.resources_with_defaults().await.map_err(err)?;
            match cli.output {
                Output::Json => print_json(&json!({ "resources": resources })),
                Output::Table => {
                    if resources.is_empty() {
                        println!("No resources with default limits");
                    }
                    for r in &resources {
                        println!("{r}");
                    }
                    Ok(())
                }
            }
        }
        Cmd::Entities {
            resource,
            page_size,
            after,
        } => {
            let limiter = store::limiter(cli).await?;
            let page = limiter
                .entities_with_limits(resource, *page_size, after.as_deref())
                .await
                .map_err(err)?;
            match cli.output {
                Output::Json => print_json(
                    &json!({ "resource": resource, "entities": page.ids, "next": page.next }),
                ),
                Output::Table => {
                    if page.ids.is_empty() {
                        println!("No entities with their own limits on '{resource}'");
                    }
                    for e in &page.ids {
                        println!("{e}");
                    }
                    if let Some(n) = &page.next {
                        println!("More entities: --after {n}");
                    }
                    Ok(())
                }
            }
        }
    }
}
