//! `zae-limiter status`, `list`, `delete`: the deployed stacks.

use std::io::{BufRead, IsTerminal, Write};

use serde_json::json;
use zae_limiter_infra::stack::{self, Aws, LimiterInfo};
use zae_limiter_infra::template::CLIENT_VERSION;

use super::deploy::follow;
use super::store::print_json;
use super::Cli;
use crate::output::{emit, CliError, Output};

/// Options of `delete`.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// Do not ask for confirmation (needed without a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Return as soon as the deletion started.
    #[arg(long)]
    pub no_wait: bool,
}

fn info_json(i: &LimiterInfo) -> serde_json::Value {
    let outputs: serde_json::Map<String, serde_json::Value> = i
        .outputs
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    json!({
        "name": i.user_name,
        "stack_name": i.stack_name,
        "stack_status": i.stack_status,
        "version": i.version,
        "lambda_version": i.lambda_version,
        "schema_version": i.schema_version,
        "created": i.created,
        "is_healthy": i.is_healthy(),
        "is_in_progress": i.is_in_progress(),
        "is_failed": i.is_failed(),
        "outputs": outputs,
    })
}

fn marker(i: &LimiterInfo) -> &'static str {
    if i.is_healthy() {
        "✓"
    } else if i.is_in_progress() {
        "⏳"
    } else {
        "✗"
    }
}

fn not_found(name: &str) -> CliError {
    CliError::from(format!(
        "no stack '{name}' (deploy it with: zae-limiter --name {name} deploy)"
    ))
}

/// `status`: the stack, its versions, table and policies.
pub async fn status(cli: &Cli) -> Result<(), CliError> {
    let aws = Aws::load(cli.region.as_deref()).await;
    let info = stack::describe(&aws.cfn, &cli.name)
        .await
        .map_err(|e| CliError::from(e.0))?
        .ok_or_else(|| not_found(&cli.name))?;
    match cli.output {
        Output::Json => {
            let mut v = info_json(&info);
            v["client_version"] = json!(CLIENT_VERSION);
            v["region"] = json!(aws.region());
            print_json(&v).map_err(CliError::from)
        }
        Output::Table => {
            let o = |k: &str| info.output(k).unwrap_or("-").to_string();
            let mut lines = vec![
                format!("Stack          {} ({})", info.stack_name, aws.region()),
                format!("Status         {} {}", marker(&info), info.stack_status),
                format!(
                    "Versions       client {} (this CLI {CLIENT_VERSION}), lambda {}, schema {}",
                    info.version.as_deref().unwrap_or("-"),
                    info.lambda_version.as_deref().unwrap_or("-"),
                    info.schema_version.as_deref().unwrap_or("-"),
                ),
                format!("Created        {}", info.created.as_deref().unwrap_or("-")),
                format!("Table          {}", o("TableName")),
                format!("Table ARN      {}", o("TableArn")),
                format!("Stream ARN     {}", o("StreamArn")),
                format!("Aggregator     {}", o("AggregatorFunctionName")),
                format!("Provisioner    {}", o("ProvisionerFunctionName")),
                format!("DLQ            {}", o("AggregatorDLQUrl")),
                format!("Audit archive  {}", o("AuditArchiveBucketName")),
                "IAM Policies".to_string(),
            ];
            for (label, key) in [
                ("AcquireOnly", "AcquireOnlyPolicyArn"),
                ("FullAccess", "FullAccessPolicyArn"),
                ("ReadOnly", "ReadOnlyPolicyArn"),
                ("NamespaceAcquire", "NamespaceAcquirePolicyArn"),
                ("NamespaceFullAccess", "NamespaceFullAccessPolicyArn"),
                ("NamespaceReadOnly", "NamespaceReadOnlyPolicyArn"),
            ] {
                lines.push(format!("  {label:<20} {}", o(key)));
            }
            emit(&lines.join("\n"));
            Ok(())
        }
    }
}

/// `list`: every zae-limiter stack of the region, with health markers.
pub async fn list(cli: &Cli) -> Result<(), CliError> {
    let aws = Aws::load(cli.region.as_deref()).await;
    let all = stack::list(&aws.cfn)
        .await
        .map_err(|e| CliError::from(e.0))?;
    let attention = all.iter().filter(|i| !i.is_healthy()).count();
    match cli.output {
        Output::Json => print_json(&json!({
            "region": aws.region(),
            "instances": all.iter().map(info_json).collect::<Vec<_>>(),
            "total": all.len(),
            "need_attention": attention,
        }))
        .map_err(CliError::from),
        Output::Table => {
            let mut out = format!("Rate Limiter Instances ({})\n", aws.region());
            if all.is_empty() {
                out.push_str("No zae-limiter stacks found.");
                emit(&out);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = all
                .iter()
                .map(|i| {
                    let d = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
                    vec![
                        i.user_name.clone(),
                        format!("{} {}", marker(i), i.stack_status),
                        d(&i.version),
                        d(&i.lambda_version),
                        d(&i.schema_version),
                        i.created
                            .as_deref()
                            .map_or("-".into(), |c| c.chars().take(10).collect()),
                    ]
                })
                .collect();
            out.push_str(&crate::output::table(
                &["Name", "Status", "Version", "Lambda", "Schema", "Created"],
                &rows,
            ));
            out.push_str(&format!("\n\nTotal: {} instance(s)", all.len()));
            if attention > 0 {
                out.push_str(&format!("\n⚠️ {attention} instance(s) need attention"));
            }
            emit(&out);
            Ok(())
        }
    }
}

/// `delete`: delete the stack after confirmation.
pub async fn delete(cli: &Cli, args: &DeleteArgs) -> Result<(), CliError> {
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(CliError::usage(format!(
                "deleting stack '{}' and its table needs confirmation: pass --yes (no terminal to ask)",
                cli.name
            )));
        }
        eprint!(
            "Delete stack '{}' with its DynamoDB table and all data? [y/N] ",
            cli.name
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .map_err(|e| CliError::from(format!("reading the answer: {e}")))?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Err(CliError::from("not deleted"));
        }
    }
    let aws = Aws::load(cli.region.as_deref()).await;
    let since = std::time::SystemTime::now();
    let started = stack::delete(&aws.cfn, &cli.name)
        .await
        .map_err(|e| CliError::from(e.0))?;
    if !started {
        return Err(not_found(&cli.name));
    }
    let quiet = cli.output == Output::Json;
    let mut seconds = 0.0;
    if !args.no_wait {
        if !quiet {
            eprintln!("Deleting stack '{}'", cli.name);
        }
        let (_, took) = follow(
            &aws,
            &cli.name,
            since,
            &format!("delete {}", cli.name),
            quiet,
        )
        .await?;
        seconds = took.as_secs_f64();
    }
    let status = if args.no_wait {
        "DELETE_IN_PROGRESS"
    } else {
        "DELETE_COMPLETE"
    };
    match cli.output {
        Output::Json => print_json(&json!({
            "stack": cli.name,
            "status": status,
            "seconds": (seconds * 10.0).round() / 10.0,
        }))
        .map_err(CliError::from),
        Output::Table => {
            emit(&format!("{}: {status}", cli.name));
            Ok(())
        }
    }
}
