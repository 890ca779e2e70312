//! `zae-limiter system ...`: the system defaults (limits for every entity and resource without
//! more specific ones) and the `on_unavailable` policy.

use zae_limiter::Limit;
use zae_limiter::{ConfigScope, StoredConfig};

use super::store;
use super::Cli;

/// The `system` subcommands.
#[derive(Debug, clap::Subcommand)]
#[allow(clippy::enum_variant_names)] // the variants name the subcommands: set-defaults, ...
pub enum Cmd {
    /// Store the system default limits and/or the on_unavailable policy. What is given
    /// replaces what was stored; a part not given (limits or policy) is kept.
    #[command(after_help = "Example: zae-limiter system set-defaults -l rpm:1000 \
                            --on-unavailable allow")]
    SetDefaults {
        /// Limit as name:rate[/period][:burst], period [N]ms|sec|min|hour|day (also s,
        /// second, m, minute, h, d; default min), e.g. rpm:100, tpm:10000/min:15000,
        /// x:1/1500ms (repeatable).
        #[arg(short = 'l', long = "limit", value_name = "SPEC", value_parser = store::limit_arg)]
        limits: Vec<Limit>,
        /// What clients do when DynamoDB cannot be reached: block (fail closed) or allow
        /// (fail open).
        #[arg(long, value_name = "block|allow", value_parser = store::policy_arg())]
        on_unavailable: Option<zae_limiter::OnUnavailable>,
    },
    /// Show the system defaults.
    #[command(after_help = "Example: zae-limiter system get-defaults --output json")]
    GetDefaults,
    /// Delete the system defaults (limits and policy).
    #[command(after_help = "Example: zae-limiter system delete-defaults")]
    DeleteDefaults,
}

pub async fn run(cli: &Cli, cmd: &Cmd) -> Result<(), String> {
    match cmd {
        Cmd::SetDefaults {
            limits,
            on_unavailable,
        } => {
            if limits.is_empty() && on_unavailable.is_none() {
                return Err(
                    "nothing to set: give -l/--limit name:rate[/period][:burst] and/or --on-unavailable block|allow"
                        .into(),
                );
            }
            let limits = limits.clone();
            let policy = *on_unavailable;
            // keep the part that was not given
            let limiter = store::limiter(cli).await?;
            let old = limiter
                .get_config(&ConfigScope::System)
                .await
                .map_err(|e| e.to_string())?
                .unwrap_or_default();
            let config = StoredConfig {
                limits: if limits.is_empty() {
                    old.limits
                } else {
                    limits
                },
                on_unavailable: policy.or(old.on_unavailable),
                ..Default::default()
            };
            store::set(cli, &limiter, ConfigScope::System, config).await
        }
        Cmd::GetDefaults => store::get(cli, &store::limiter(cli).await?, ConfigScope::System).await,
        Cmd::DeleteDefaults => {
            store::delete(cli, &store::limiter(cli).await?, ConfigScope::System).await
        }
    }
}
