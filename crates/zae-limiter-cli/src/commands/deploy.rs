//! `zae-limiter deploy`: create or update the CloudFormation stack (or, with
//! `--endpoint-url`, only the table, on DynamoDB Local), then record the schema version and
//! register the `default` namespace. Also the progress display shared by `delete`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use serde_json::json;
use zae_limiter::{DynamoStore, RateLimiter, StoreConfig, DEFAULT_NAMESPACE};
use zae_limiter_infra::stack::{self, Aws, Started};
use zae_limiter_infra::template::{CLIENT_VERSION, SCHEMA_VERSION};
use zae_limiter_infra::{package, DeployOptions};

use super::deploy_args::StackArgs;
use super::store::{self, print_json};
use super::{table, Cli};
use crate::output::{CliError, Output};

/// Options of `deploy`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub stack: StackArgs,
    /// Return as soon as CloudFormation accepted the operation (no progress, no version
    /// record: run `zae-limiter upgrade` or deploy again once it is complete).
    #[arg(long)]
    pub no_wait: bool,
}

pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Progress of a stack operation on stderr: every stack event as a line, and on a terminal
/// a spinner with the elapsed time.
pub(super) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    start: Instant,
    quiet: bool,
}

impl Progress {
    pub(super) fn new(what: &str, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            b.set_message(what.to_string());
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        Progress {
            bar,
            start: Instant::now(),
            quiet,
        }
    }

    pub(super) fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(b) => b.println(text),
            None => eprintln!("{text}"),
        }
    }

    pub(super) fn event(&self, e: &stack::Event) {
        let reason = e
            .reason
            .as_deref()
            .map(|r| format!("  {}", crate::output::one_line(r)))
            .unwrap_or_default();
        self.line(&format!(
            "  {:>5.1}s  {:<28} {:<34} {}{reason}",
            self.start.elapsed().as_secs_f64(),
            e.status,
            e.logical_id,
            e.resource_type
        ));
    }

    pub(super) fn finish(self) -> Duration {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        self.start.elapsed()
    }
}

/// Follow the operation on `name`, started at `since`, with progress; the final status (`None`: deleted).
pub(super) async fn follow(
    aws: &Aws,
    name: &str,
    since: std::time::SystemTime,
    what: &str,
    quiet: bool,
) -> Result<(Option<String>, Duration), CliError> {
    let p = Progress::new(what, quiet);
    let result = stack::wait(
        &aws.cfn,
        name,
        since,
        Duration::from_secs(2),
        |e| p.event(e),
        || {},
    )
    .await;
    let took = p.finish();
    let status = result.map_err(|e| CliError::from(e.0))?;
    Ok((status, took))
}

fn settings(o: &DeployOptions, region: &str) -> Vec<(&'static str, String)> {
    let plan = o.plan().ok();
    let on = |b: bool| if b { "enabled" } else { "disabled" }.to_string();
    let iam = if !o.create_iam {
        "none (--no-iam)".to_string()
    } else if o.create_iam_roles {
        "policies + App/Admin/ReadOnly roles".to_string()
    } else {
        "policies".to_string()
    };
    vec![
        ("Stack", o.name.clone()),
        ("Region", region.to_string()),
        ("Aggregator", on(plan.is_some_and(|p| p.aggregator))),
        ("Provisioner", on(plan.is_some_and(|p| p.provisioner))),
        ("IAM", iam),
        (
            "Aggregator role",
            o.aggregator_role_arn
                .clone()
                .unwrap_or_else(|| "created".into()),
        ),
        (
            "PITR",
            o.pitr_recovery_days
                .map_or("disabled".into(), |d| format!("{d} days")),
        ),
        ("Deletion protection", on(o.enable_deletion_protection)),
        ("Alarms", on(o.enable_alarms)),
        (
            "Alarm SNS topic",
            o.alarm_sns_topic.clone().unwrap_or_else(|| "none".into()),
        ),
        ("Audit archival", on(plan.is_some_and(|p| p.archive))),
        (
            "Glacier IR after",
            format!("{} days", o.audit_archive_glacier_days),
        ),
        ("Log retention", format!("{} days", o.log_retention_days)),
        (
            "Usage retention",
            format!("{} days", o.usage_retention_days),
        ),
        (
            "Audit retention",
            format!("{} days", o.audit_retention_days),
        ),
        (
            "Lambda",
            format!("{} MB, {} s", o.lambda_memory, o.lambda_timeout),
        ),
        ("X-Ray tracing", on(plan.is_some_and(|p| p.tracing))),
        (
            "Permission boundary",
            o.permission_boundary
                .clone()
                .unwrap_or_else(|| "none".into()),
        ),
        (
            "Versions",
            format!("client {CLIENT_VERSION}, schema {SCHEMA_VERSION}"),
        ),
    ]
}

/// Record the schema version and register `default` in the table of `store`.
pub(super) async fn init_table(store: DynamoStore) -> Result<(), CliError> {
    store.write_schema_record(CLIENT_VERSION, now_ms()).await?;
    let limiter = RateLimiter::builder(store).build();
    limiter.register_namespace(DEFAULT_NAMESPACE).await?;
    Ok(())
}

/// The store of the deployed table `name` (DynamoDB at the SDK's standard endpoint).
pub(super) async fn aws_store(aws: &Aws, name: &str) -> Result<DynamoStore, CliError> {
    Ok(DynamoStore::connect(StoreConfig::new(name).sdk_config(aws.sdk.clone())).await?)
}

pub async fn run(cli: &Cli, args: &Args) -> Result<(), CliError> {
    let mut opts = args.stack.options(cli)?;
    if cli.endpoint_url.is_some() {
        return local(cli).await;
    }
    let aws = Aws::load(cli.region.as_deref()).await;
    let region = aws.region();
    let quiet = cli.output == Output::Json;
    let say = |s: &str| {
        if !quiet {
            eprintln!("{s}");
        }
    };
    let plan = opts.plan().map_err(|e| CliError::usage(e.0))?;
    // the package first: a missing one is one line, before anything is printed or done
    let package = if plan.has_functions() {
        let zip_path = package::find_zip().map_err(CliError::from)?;
        let zip = std::fs::read(&zip_path)
            .map_err(|e| CliError::from(format!("reading {}: {e}", zip_path.display())))?;
        Some((zip_path, zip))
    } else {
        None
    };
    say(&format!("Deploying zae-limiter stack '{}'", opts.name));
    for (k, v) in settings(&opts, &region) {
        say(&format!("  {k:<20} {v}"));
    }
    if let Some((zip_path, zip)) = package {
        let (bucket, key) = stack::upload_code(&aws, &opts.name, &zip)
            .await
            .map_err(|e| CliError::from(e.0))?;
        say(&format!(
            "Uploaded Lambda code {} ({:.1} MB) to s3://{bucket}/{key}",
            zip_path.display(),
            zip.len() as f64 / 1e6
        ));
        opts.code_bucket = bucket;
        opts.code_key = key;
    }
    let template = zae_limiter_infra::render(&opts).map_err(|e| CliError::usage(e.0))?;
    let body = serde_json::to_string(&template).map_err(|e| CliError::from(e.to_string()))?;
    let since = std::time::SystemTime::now();
    let started = stack::deploy(&aws.cfn, &opts, &body)
        .await
        .map_err(|e| CliError::from(e.0))?;
    let verb = match started {
        Started::Create => "create",
        Started::Update => "update",
        Started::NoChanges => "none",
    };
    if started == Started::NoChanges {
        say(&format!(
            "Stack '{}' is up to date: nothing to do",
            opts.name
        ));
    } else {
        say(&format!(
            "Stack {verb} started{}",
            if args.no_wait {
                "; not waiting (follow it with zae-limiter status)"
            } else {
                ""
            }
        ));
    }
    let mut status = None;
    let mut seconds = 0.0;
    if started != Started::NoChanges && !args.no_wait {
        let (s, took) = follow(
            &aws,
            &opts.name,
            since,
            &format!("{verb} {}", opts.name),
            quiet,
        )
        .await?;
        status = s;
        seconds = took.as_secs_f64();
        say(&format!(
            "Stack '{}' {} in {seconds:.1} s",
            opts.name,
            status.as_deref().unwrap_or("?")
        ));
    }
    if args.no_wait && started != Started::NoChanges {
        return finish(cli, &opts.name, verb, None, seconds, &[]);
    }
    init_table(aws_store(&aws, &opts.name).await?).await?;
    say(&format!(
        "Recorded schema {SCHEMA_VERSION} and registered namespace '{DEFAULT_NAMESPACE}'"
    ));
    let info = stack::describe(&aws.cfn, &opts.name)
        .await
        .map_err(|e| CliError::from(e.0))?;
    let outputs = info.as_ref().map(|i| i.outputs.clone()).unwrap_or_default();
    let status = status.or_else(|| info.map(|i| i.stack_status));
    finish(cli, &opts.name, verb, status, seconds, &outputs)
}

fn finish(
    cli: &Cli,
    name: &str,
    operation: &str,
    status: Option<String>,
    seconds: f64,
    outputs: &[(String, String)],
) -> Result<(), CliError> {
    match cli.output {
        Output::Json => {
            let outs: serde_json::Map<String, serde_json::Value> =
                outputs.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            print_json(&json!({
                "stack": name,
                "operation": operation,
                "status": status,
                "seconds": (seconds * 10.0).round() / 10.0,
                "schema_version": SCHEMA_VERSION,
                "client_version": CLIENT_VERSION,
                "outputs": outs,
            }))
            .map_err(CliError::from)
        }
        Output::Table => {
            crate::output::emit(&format!(
                "{name}: {}",
                status.as_deref().unwrap_or(match operation {
                    "none" => "unchanged",
                    _ => "in progress",
                })
            ));
            for (k, v) in outputs {
                crate::output::emit(&format!("  {k:<34} {v}"));
            }
            Ok(())
        }
    }
}

/// `deploy --endpoint-url`: the table only, through the DynamoDB API (DynamoDB Local).
async fn local(cli: &Cli) -> Result<(), CliError> {
    let store = store::connect(cli, false).await?;
    let status = table::create(&store).await?;
    init_table(store).await?;
    let at = store::location(cli);
    match cli.output {
        Output::Json => print_json(&json!({
            "table": cli.name,
            "status": status.as_str(),
            "mode": "table (no CloudFormation)",
            "schema_version": SCHEMA_VERSION,
        }))
        .map_err(CliError::from),
        Output::Table => {
            crate::output::emit(&format!(
                "Table '{}' {}{at} (no CloudFormation: --endpoint-url creates only the table); \
                 schema {SCHEMA_VERSION} recorded, namespace '{DEFAULT_NAMESPACE}' registered",
                cli.name,
                if status.as_str() == "created" {
                    "created"
                } else {
                    "ready"
                },
            ));
            Ok(())
        }
    }
}
