//! `zae-limiter acquire` and `zae-limiter available`: one decision or one capacity check
//! against the table, with the limits resolved like the library does (stored levels first,
//! `-l` as the fallback).

use serde_json::json;
use zae_limiter::{Error, Limit};

use super::store::{limit_arg, limiter, print_json};
use super::Cli;
use crate::output::{emit, escape, exit, table, CliError, Output};

/// Options of `acquire`.
#[derive(Debug, clap::Args)]
pub struct AcquireArgs {
    /// The entity.
    entity: String,
    /// The resource.
    resource: String,
    /// Amount to take, `name=amount` (repeatable), e.g. `-c rpm=1 -c tpm=500`.
    #[arg(short = 'c', long = "consume", value_name = "NAME=AMOUNT")]
    consume: Vec<String>,
    /// Fallback limits when none are stored, `name:rate[/period][:burst]` (repeatable).
    #[arg(short = 'l', long = "limit", value_name = "SPEC", value_parser = limit_arg)]
    limits: Vec<Limit>,
}

/// Options of `available`.
#[derive(Debug, clap::Args)]
pub struct AvailableArgs {
    /// The entity.
    entity: String,
    /// The resource.
    resource: String,
    /// Fallback limits when none are stored, `name:rate[/period][:burst]` (repeatable).
    #[arg(short = 'l', long = "limit", value_name = "SPEC", value_parser = limit_arg)]
    limits: Vec<Limit>,
}

/// `--consume NAME=AMOUNT`; a bad value is a usage error (exit 2), the value echoed escaped.
fn parse_consume(pairs: &[String]) -> Result<Vec<(String, u64)>, CliError> {
    pairs
        .iter()
        .map(|p| {
            let (k, v) = p.split_once('=').ok_or_else(|| {
                CliError::usage(format!(
                    "--consume '{}': expected NAME=AMOUNT, e.g. tpm=500",
                    escape(p)
                ))
            })?;
            let n = v.parse::<u64>().map_err(|_| {
                CliError::usage(format!(
                    "--consume '{}': '{}' is not a whole number",
                    escape(p),
                    escape(v)
                ))
            })?;
            Ok((k.to_string(), n))
        })
        .collect()
}

async fn print_available(
    cli: &Cli,
    limiter: &zae_limiter::RateLimiter,
    entity: &str,
    resource: &str,
    limits: &[zae_limiter::Limit],
    extra: serde_json::Value,
) -> Result<(), CliError> {
    let left = limiter.available(entity, resource, limits).await?;
    match cli.output {
        Output::Json => {
            let mut doc = json!({ "entity_id": entity, "resource": resource, "available": left });
            if let (Some(d), Some(x)) = (doc.as_object_mut(), extra.as_object()) {
                d.extend(x.clone());
            }
            Ok(print_json(&doc)?)
        }
        Output::Table => {
            let rows: Vec<Vec<String>> = left
                .iter()
                .map(|(k, v)| vec![k.clone(), v.to_string()])
                .collect();
            emit(&table(&["limit", "available"], &rows));
            Ok(())
        }
    }
}

/// Refused: exit 3, with the `RateLimitExceeded` document on stdout (`--output json`) or a
/// line with the retry-after on stderr.
pub async fn acquire(cli: &Cli, args: &AcquireArgs) -> Result<(), CliError> {
    let consume = parse_consume(&args.consume)?;
    let limits = args.limits.clone();
    let limiter = limiter(cli).await?;
    let lease = limiter
        .acquire(&args.entity, &args.resource)
        .limits(limits.clone())
        .consume(consume)
        .await;
    match lease {
        Ok(lease) => {
            let taken = lease.consumed();
            lease.commit().await?;
            if cli.output == Output::Table {
                let list: Vec<String> = taken.iter().map(|(k, v)| format!("{k}={v}")).collect();
                emit(&format!(
                    "Acquired {} on {}: {}",
                    args.entity,
                    args.resource,
                    list.join(", ")
                ));
            }
            print_available(
                cli,
                &limiter,
                &args.entity,
                &args.resource,
                &limits,
                json!({ "acquired": true, "consumed": taken }),
            )
            .await
        }
        Err(Error::RateLimited(e)) => match cli.output {
            Output::Json => {
                print_json(&e.as_json())?;
                // the document says it all; nothing on stderr
                Err(CliError::new(exit::RATE_LIMITED, ""))
            }
            Output::Table => Err(CliError::new(
                exit::RATE_LIMITED,
                format!(
                    "{e} (Retry-After: {})",
                    e.retry_after_header().unwrap_or_else(|| "never".into())
                ),
            )),
        },
        Err(e) => Err(e.into()),
    }
}

pub async fn available(cli: &Cli, args: &AvailableArgs) -> Result<(), CliError> {
    let limits = args.limits.clone();
    let limiter = limiter(cli).await?;
    print_available(
        cli,
        &limiter,
        &args.entity,
        &args.resource,
        &limits,
        json!({}),
    )
    .await
}
