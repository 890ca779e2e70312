//! `zae-limiter acquire` and `zae-limiter available`: one decision or one capacity check
//! against the table, with the limits resolved like the library does (stored levels first,
//! `-l` as the fallback).

use serde_json::json;
use zae_limiter::Error;

use super::store::{limiter, parse_limits, print_json};
use super::Cli;
use crate::output::{table, Output};

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
    #[arg(short = 'l', long = "limit", value_name = "SPEC")]
    limits: Vec<String>,
}

/// Options of `available`.
#[derive(Debug, clap::Args)]
pub struct AvailableArgs {
    /// The entity.
    entity: String,
    /// The resource.
    resource: String,
    /// Fallback limits when none are stored, `name:rate[/period][:burst]` (repeatable).
    #[arg(short = 'l', long = "limit", value_name = "SPEC")]
    limits: Vec<String>,
}

fn parse_consume(pairs: &[String]) -> Result<Vec<(String, u64)>, String> {
    pairs
        .iter()
        .map(|p| {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| format!("--consume '{p}': expected NAME=AMOUNT, e.g. tpm=500"))?;
            let n = v
                .parse::<u64>()
                .map_err(|_| format!("--consume '{p}': '{v}' is not a whole number"))?;
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
) -> Result<(), String> {
    let left = limiter
        .available(entity, resource, limits)
        .await
        .map_err(|e| e.to_string())?;
    match cli.output {
        Output::Json => {
            let mut doc = json!({ "entity_id": entity, "resource": resource, "available": left });
            if let (Some(d), Some(x)) = (doc.as_object_mut(), extra.as_object()) {
                d.extend(x.clone());
            }
            print_json(&doc)
        }
        Output::Table => {
            let rows: Vec<Vec<String>> = left
                .iter()
                .map(|(k, v)| vec![k.clone(), v.to_string()])
                .collect();
            println!("{}", table(&["limit", "available"], &rows));
            Ok(())
        }
    }
}

pub async fn acquire(cli: &Cli, args: &AcquireArgs) -> Result<(), String> {
    let consume = parse_consume(&args.consume)?;
    let limits = parse_limits(&args.limits)?;
    let limiter = limiter(cli).await?;
    let lease = limiter
        .acquire(&args.entity, &args.resource)
        .limits(limits.clone())
        .consume(consume)
        .await;
    match lease {
        Ok(lease) => {
            let taken = lease.consumed();
            lease.commit().await.map_err(|e| e.to_string())?;
            if cli.output == Output::Table {
                let list: Vec<String> = taken.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!(
                    "Acquired {} on {}: {}",
                    args.entity,
                    args.resource,
                    list.join(", ")
                );
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
        Err(Error::RateLimited(e)) => Err(format!(
            "{e} (Retry-After: {})",
            e.retry_after_header().unwrap_or_else(|| "never".into())
        )),
        Err(e) => Err(e.to_string()),
    }
}

pub async fn available(cli: &Cli, args: &AvailableArgs) -> Result<(), String> {
    let limits = parse_limits(&args.limits)?;
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
