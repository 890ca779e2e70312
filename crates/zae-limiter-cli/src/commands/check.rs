//! `zae-limiter check`: is this client compatible with the table's schema and the deployed
//! Lambda code? `zae-limiter upgrade`: bring the Lambda code and the schema record to this
//! client's version.

use serde_json::json;
use zae_limiter::schema::{compatibility, Compatibility, SCHEMA_VERSION};
use zae_limiter::DynamoStore;
use zae_limiter_infra::package;
use zae_limiter_infra::stack::{self, Aws};
use zae_limiter_infra::template::CLIENT_VERSION;

use super::deploy::{aws_store, now_ms};
use super::store::{self, print_json};
use super::Cli;
use crate::output::{emit, CliError, Output};

async fn table_store(cli: &Cli) -> Result<(Option<Aws>, DynamoStore), CliError> {
    if cli.endpoint_url.is_some() {
        return Ok((None, store::connect(cli, false).await?));
    }
    let aws = Aws::load(cli.region.as_deref()).await;
    let s = aws_store(&aws, &cli.name).await?;
    Ok((Some(aws), s))
}

/// The Lambda code version of the aggregator, if the function exists: its tag
/// `zae-limiter:lambda-version` (set by `upgrade`), else the stack's (set by `deploy`,
/// which CloudFormation copies to the resources).
async fn lambda_version(aws: &Aws, name: &str) -> Result<Option<String>, CliError> {
    let f = format!("{name}-aggregator");
    match aws.lambda.get_function().function_name(&f).send().await {
        Ok(out) => {
            if let Some(v) = out.tags().and_then(|t| t.get("zae-limiter:lambda-version")) {
                return Ok(Some(v.clone()));
            }
            let stack = stack::describe(&aws.cfn, name)
                .await
                .map_err(|e| CliError::from(e.0))?;
            Ok(Some(
                stack
                    .and_then(|s| s.lambda_version)
                    .unwrap_or_else(|| "unknown".into()),
            ))
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(CliError::from(format!(
            "reading function {f}: {}",
            stack::sdk_line(&e)
        ))),
    }
}

/// `check`.
pub async fn check(cli: &Cli) -> Result<(), CliError> {
    let (aws, store) = table_store(cli).await?;
    let record = store.schema_record().await?;
    let stored = record.as_ref().map(|r| r.schema_version.clone());
    let schema = match &stored {
        None => "missing (deploy or upgrade writes it)".to_string(),
        Some(s) => match compatibility(SCHEMA_VERSION, s) {
            Some(Compatibility::Same) => "compatible".into(),
            Some(Compatibility::ClientNewer) => {
                "compatible (upgrade records the newer schema)".into()
            }
            Some(Compatibility::ClientOlder) => "client too old: upgrade zae-limiter".into(),
            Some(Compatibility::MajorMismatch) => "another major version: migration needed".into(),
            None => format!("unreadable version {s:?}"),
        },
    };
    let schema_ok = stored
        .as_deref()
        .and_then(|s| compatibility(SCHEMA_VERSION, s))
        .is_some_and(Compatibility::can_write);
    let lambda = match &aws {
        Some(aws) => lambda_version(aws, &cli.name).await?,
        None => None,
    };
    let lambda_ok = lambda.as_deref().is_none_or(|v| v == CLIENT_VERSION);
    let ok = schema_ok && lambda_ok;
    match cli.output {
        Output::Json => print_json(&json!({
            "compatible": ok,
            "client_version": CLIENT_VERSION,
            "client_schema_version": SCHEMA_VERSION,
            "table_schema_version": stored,
            "schema": schema,
            "lambda_version": lambda,
        }))?,
        Output::Table => emit(&format!(
            "Client   {CLIENT_VERSION} (schema {SCHEMA_VERSION})\nSchema   {} — {schema}\nLambda   {}\nResult   {}",
            stored.as_deref().unwrap_or("-"),
            match &lambda {
                None => "no aggregator function".to_string(),
                Some(v) if v == CLIENT_VERSION => format!("{v} — matches"),
                Some(v) => format!("{v} — differs from the client: run zae-limiter upgrade"),
            },
            if ok { "compatible" } else { "INCOMPATIBLE" },
        )),
    }
    if ok {
        Ok(())
    } else {
        // the report is on stdout; the exit code says it
        Err(CliError::new(crate::output::exit::ERROR, String::new()))
    }
}

/// `upgrade`.
pub async fn upgrade(cli: &Cli) -> Result<(), CliError> {
    let (aws, store) = table_store(cli).await?;
    let mut functions = Vec::new();
    if let Some(aws) = &aws {
        if stack::describe(&aws.cfn, &cli.name)
            .await
            .map_err(|e| CliError::from(e.0))?
            .is_none()
        {
            return Err(CliError::from(format!(
                "no stack '{}' (deploy it with: zae-limiter --name {} deploy)",
                cli.name, cli.name
            )));
        }
        let zip_path = package::find_zip()?;
        let zip =
            std::fs::read(&zip_path).map_err(|e| format!("reading {}: {e}", zip_path.display()))?;
        let (bucket, key) = stack::upload_code(aws, &cli.name, &zip)
            .await
            .map_err(|e| CliError::from(e.0))?;
        functions = stack::update_functions(aws, &cli.name, &bucket, &key)
            .await
            .map_err(|e| CliError::from(e.0))?;
    }
    store.write_schema_record(CLIENT_VERSION, now_ms()).await?;
    match cli.output {
        Output::Json => print_json(&json!({
            "schema_version": SCHEMA_VERSION,
            "lambda_version": CLIENT_VERSION,
            "functions": functions,
        }))?,
        Output::Table => emit(&format!(
            "Schema record: {SCHEMA_VERSION}; Lambda code {CLIENT_VERSION}: {}",
            if functions.is_empty() {
                "no functions".to_string()
            } else {
                functions.join(", ")
            }
        )),
    }
    Ok(())
}
