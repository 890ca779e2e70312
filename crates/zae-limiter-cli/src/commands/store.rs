//! Connecting to DynamoDB from the global flags, and the pieces the management commands
//! (`entity`, `resource`, `system`, `audit`) share: parsing `-l` specs, printing stored
//! limits, writing one JSON document, formatting timestamps, explaining a missing table.

use serde_json::{json, Value};
use zae_limiter::{
    ConfigScope, DynamoStore, Limit, OnUnavailable, RateLimiter, StoreConfig, StoredConfig,
};

use super::{Cli, Command};
use crate::output::{emit, CliError, Output};

/// Connect to the table named by `--name` (through `--endpoint-url` / `--region` or the AWS
/// environment). Nothing is created: a missing table shows up as an error of the first call,
/// which [`explain_missing_table`] turns into one line saying how to create it.
pub async fn connect(cli: &Cli, track_capacity: bool) -> Result<DynamoStore, CliError> {
    connect_in(cli, &cli.namespace, track_capacity).await
}

/// [`connect`] in a given namespace (whatever `--namespace` says).
pub async fn connect_in(
    cli: &Cli,
    namespace: &str,
    track_capacity: bool,
) -> Result<DynamoStore, CliError> {
    let config = store_config(cli, namespace)?.track_consumed_capacity(track_capacity);
    Ok(DynamoStore::connect(config).await?)
}

/// The store settings of the global flags, in `namespace`, for a command to adjust before
/// it connects.
pub fn store_config(cli: &Cli, namespace: &str) -> Result<StoreConfig, CliError> {
    let mut config = StoreConfig::new(&cli.name).namespace(namespace);
    if let Some(r) = &cli.region {
        config = config.region(r);
    }
    match &cli.endpoint_url {
        Some(url) => {
            config = config.endpoint_url(url);
            if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
                config = config.static_credentials("local", "local");
            }
        }
        None => {
            let aws_env = [
                "AWS_REGION",
                "AWS_DEFAULT_REGION",
                "AWS_PROFILE",
                "AWS_ACCESS_KEY_ID",
            ]
            .iter()
            .any(|v| std::env::var_os(v).is_some());
            if cli.region.is_none() && !aws_env {
                const NEEDS: &str =
                    "needs --endpoint-url or an AWS environment (AWS_REGION, AWS_PROFILE, ...)";
                return Err(CliError::from(
                    if matches!(cli.command, Command::Bench(_) | Command::Serve(_)) {
                        format!(
                            "--store dynamodb {NEEDS}; use --store memory for the embedded store"
                        )
                    } else {
                        format!("DynamoDB {NEEDS}")
                    },
                ));
            }
        }
    }
    Ok(config)
}

/// The DynamoDB error code of an operation on a table that does not exist. The library
/// reports it as `Error::TableNotFound`, whose text names the code; the commands that still
/// return text are checked by it.
pub(super) use crate::output::MISSING_TABLE;

/// Where the table of the global flags lives, for messages: ` (at URL)`, ` (in region R)`
/// or nothing.
pub(super) fn location(cli: &Cli) -> String {
    match (&cli.endpoint_url, &cli.region) {
        (Some(url), _) => format!(" (at {url})"),
        (None, Some(region)) => format!(" (in region {region})"),
        (None, None) => String::new(),
    }
}

/// A command's one-line failure message, with a missing table (the DynamoDB error
/// `ResourceNotFoundException` anywhere in the library's error text) replaced by a line that
/// names the table and how to create it (exit 1). Other errors pass through unchanged.
pub(super) fn explain_missing_table(cli: &Cli, error: CliError) -> CliError {
    if !error.message.contains(MISSING_TABLE) {
        return error;
    }
    let message = format!(
        "table '{}' does not exist{}; create it with 'zae-limiter table create' \
         (DynamoDB Local / development) or deploy the stack",
        cli.name,
        location(cli)
    );
    CliError::new(crate::output::exit::ERROR, message)
}

/// A limiter on the DynamoDB table of the global flags, recording `--principal` in audit events.
pub(super) async fn limiter(cli: &Cli) -> Result<RateLimiter, CliError> {
    limiter_in(cli, &cli.namespace).await
}

/// [`limiter`] in a given namespace.
pub(super) async fn limiter_in(cli: &Cli, namespace: &str) -> Result<RateLimiter, CliError> {
    let store = connect_in(cli, namespace, false).await?;
    let mut builder = RateLimiter::builder(store);
    if let Some(p) = &cli.principal {
        builder = builder.principal(p.clone());
    }
    Ok(builder.build())
}

/// clap value parser of one `-l` value (so that a bad spec is a usage error, exit 2, with
/// clap's message): `#[arg(short = 'l', value_parser = store::limit_arg)] limits: Vec<Limit>`.
pub(super) fn limit_arg(spec: &str) -> Result<Limit, String> {
    spec.parse::<Limit>().map_err(|e| e.to_string())
}

/// clap value parser of `--on-unavailable`: `block` or `allow`, listed in clap's message.
pub(super) fn policy_arg() -> impl clap::builder::TypedValueParser<Value = OnUnavailable> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(["block", "allow"]).map(|p| {
        p.parse::<OnUnavailable>()
            .expect("block and allow are the policies")
    })
}

/// Print `value` as one JSON document on stdout.
pub(super) fn print_json(value: &Value) -> Result<(), String> {
    let s = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    emit(&s);
    Ok(())
}

/// How a scope is named in messages: `entity 'k' on resource 'r'`, `resource 'r'`, `the system`.
pub(super) fn label(scope: &ConfigScope) -> String {
    match scope {
        ConfigScope::System => "the system".to_string(),
        ConfigScope::Resource { resource } => format!("resource '{resource}'"),
        ConfigScope::Entity { entity_id, .. } | ConfigScope::EntityDefault { entity_id } => {
            format!(
                "entity '{entity_id}' on resource '{}'",
                scope.resource().unwrap_or_default()
            )
        }
    }
}

/// One limit as JSON: its spec (the `-l` syntax) and its numbers.
fn limit_json(l: &Limit) -> Value {
    json!({
        "name": l.name(),
        "spec": l.to_string(),
        "capacity": l.capacity(),
        "refill_amount": l.refill_amount(),
        "refill_period_ms": l.refill_period_ms(),
    })
}

/// The scope and what is stored there, as JSON.
fn config_json(scope: &ConfigScope, config: Option<&StoredConfig>) -> Value {
    let mut v = json!({ "level": scope.level() });
    if let ConfigScope::Entity { entity_id, .. } | ConfigScope::EntityDefault { entity_id } = scope
    {
        v["entity_id"] = json!(entity_id);
    }
    if let Some(r) = scope.resource() {
        v["resource"] = json!(r);
    }
    v["stored"] = json!(config.is_some());
    v["limits"] = config.map_or(json!([]), |c| {
        Value::Array(c.limits.iter().map(limit_json).collect())
    });
    if *scope == ConfigScope::System {
        v["on_unavailable"] = json!(config.and_then(|c| c.on_unavailable));
    }
    v
}

/// The stored limits, one per line, indented; then the policy when there is one.
fn config_lines(config: &StoredConfig) -> String {
    let mut out = String::new();
    for l in &config.limits {
        out.push_str(&format!("\n  {l}"));
    }
    if let Some(p) = config.on_unavailable {
        out.push_str(&format!("\n  on_unavailable: {}", policy_str(p)));
    }
    out
}

fn policy_str(p: OnUnavailable) -> &'static str {
    match p {
        OnUnavailable::Block => "block",
        OnUnavailable::Allow => "allow",
    }
}

/// Store `config` at `scope` and report what was stored.
pub(super) async fn set(
    cli: &Cli,
    limiter: &RateLimiter,
    scope: ConfigScope,
    config: StoredConfig,
) -> Result<(), String> {
    limiter
        .set_config(&scope, config.clone())
        .await
        .map_err(|e| e.to_string())?;
    match cli.output {
        Output::Json => print_json(&config_json(&scope, Some(&config))),
        Output::Table => {
            let head = match scope {
                ConfigScope::System => "Set system defaults:".to_string(),
                _ => format!(
                    "Set {} limit(s) for {}:",
                    config.limits.len(),
                    label(&scope)
                ),
            };
            emit(&format!("{head}{}", config_lines(&config)));
            Ok(())
        }
    }
}

/// Show what is stored at `scope` (not an error when nothing is).
pub(super) async fn get(
    cli: &Cli,
    limiter: &RateLimiter,
    scope: ConfigScope,
) -> Result<(), String> {
    let config = limiter
        .get_config(&scope)
        .await
        .map_err(|e| e.to_string())?;
    match cli.output {
        Output::Json => print_json(&config_json(&scope, config.as_ref())),
        Output::Table => {
            match config {
                Some(c) => emit(&format!(
                    "Limits for {}:{}",
                    label(&scope),
                    config_lines(&c)
                )),
                None => emit(&format!("No limits stored for {}", label(&scope))),
            }
            Ok(())
        }
    }
}

/// Delete what is stored at `scope`; an error when nothing is.
pub(super) async fn delete(
    cli: &Cli,
    limiter: &RateLimiter,
    scope: ConfigScope,
) -> Result<(), String> {
    // what is deleted, for the JSON output (every delete prints {"deleted": <the item>})
    let old = limiter
        .get_config(&scope)
        .await
        .map_err(|e| e.to_string())?;
    if !limiter
        .delete_config(&scope)
        .await
        .map_err(|e| e.to_string())?
    {
        return Err(format!("no limits stored for {}", label(&scope)));
    }
    match cli.output {
        Output::Json => print_json(&json!({ "deleted": config_json(&scope, old.as_ref()) })),
        Output::Table => {
            emit(&format!("Deleted limits for {}", label(&scope)));
            Ok(())
        }
    }
}

/// `ms` since the Unix epoch as RFC 3339 in UTC with milliseconds, e.g.
/// `2026-01-01T00:00:00.000Z`.
/// Outside jiff's range (years -9999..=9999) the milliseconds are printed as they are.
pub(super) fn rfc3339(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => jiff::fmt::temporal::DateTimePrinter::new()
            .precision(Some(3))
            .timestamp_to_string(&t),
        Err(_) => format!("{ms}ms since the epoch"),
    }
}

/// An RFC 3339 timestamp (`2026-01-01T00:00:00Z`, any offset, any fraction) as milliseconds
/// since the Unix epoch: the parser of the commands' time arguments.
pub(super) fn parse_rfc3339(text: &str) -> Result<i64, String> {
    text.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|e| {
            format!("'{text}' is not an RFC 3339 timestamp (e.g. 2026-01-01T00:00:00Z): {e}")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_767_225_600_000), "2026-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(i64::MAX), format!("{}ms since the epoch", i64::MAX));
    }

    #[test]
    fn rfc3339_parses_what_it_prints_and_offsets() {
        for ms in [0, 1_767_225_600_000, 1_709_251_199_999, -1] {
            assert_eq!(parse_rfc3339(&rfc3339(ms)), Ok(ms));
        }
        assert_eq!(
            parse_rfc3339("2026-01-01T01:00:00+01:00"),
            Ok(1_767_225_600_000)
        );
        let e = parse_rfc3339("yesterday").unwrap_err();
        assert!(e.contains("not an RFC 3339 timestamp"), "{e}");
    }

    #[test]
    fn labels() {
        let e = ConfigScope::EntityDefault {
            entity_id: "k".into(),
        };
        assert_eq!(label(&e), "entity 'k' on resource '_default_'");
        assert_eq!(label(&ConfigScope::System), "the system");
    }

    fn cli(args: &[&str]) -> Cli {
        use clap::Parser;
        Cli::try_parse_from(["zae-limiter"].iter().chain(args)).unwrap()
    }

    #[test]
    fn missing_table_is_explained_in_one_line() {
        let c = cli(&[
            "--name",
            "t1",
            "--endpoint-url",
            "http://127.0.0.1:8000",
            "version",
        ]);
        // the library's Error::TableNotFound, and the older wording
        for library in [
            "table not found: ResourceNotFoundException: Cannot do operations on a non-existent table",
            "rate limiter unavailable: ResourceNotFoundException: Cannot do operations on a non-existent table",
        ] {
            let e = explain_missing_table(&c, format!("scenario a: {library}").into());
            assert_eq!(e.code, 1);
            assert_eq!(
                e.message,
                "table 't1' does not exist (at http://127.0.0.1:8000); create it with \
                 'zae-limiter table create' (DynamoDB Local / development) or deploy the stack"
            );
        }
        let c = cli(&["--name", "t2", "--region", "eu-west-1", "version"]);
        assert!(explain_missing_table(&c, MISSING_TABLE.into())
            .message
            .starts_with("table 't2' does not exist (in region eu-west-1);"));
        let other = CliError::from("entity 'k' not found");
        assert_eq!(explain_missing_table(&c, other.clone()), other);
    }

    #[test]
    fn bad_spec_uses_the_library_message() {
        let e = limit_arg("tpm=100").unwrap_err();
        assert!(e.contains("expected name:rate"), "{e}");
    }
}
