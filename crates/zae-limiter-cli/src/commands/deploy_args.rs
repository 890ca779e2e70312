//! The options of `deploy` and `cfn-template` (seed defaults), turned into
//! [`DeployOptions`].

use zae_limiter_infra::DeployOptions;

use super::Cli;
use crate::output::CliError;

/// What the stack holds; the defaults are the production guide's.
#[derive(Debug, Clone, clap::Args)]
pub struct StackArgs {
    /// Deploy the usage aggregator Lambda (the default).
    #[arg(long, overrides_with = "no_aggregator")]
    pub enable_aggregator: bool,
    /// Do not deploy the aggregator (no usage snapshots, no audit archival).
    #[arg(long)]
    pub no_aggregator: bool,
    /// CloudWatch log retention of the functions, days (a value CloudWatch accepts).
    #[arg(long, default_value_t = 30, value_name = "DAYS")]
    pub log_retention_days: u32,
    /// Usage snapshot retention, days.
    #[arg(long, default_value_t = 90, value_name = "DAYS")]
    pub usage_retention_days: u32,
    /// Audit record retention in DynamoDB, days.
    #[arg(long, default_value_t = 90, value_name = "DAYS")]
    pub audit_retention_days: u32,
    /// Point-in-time recovery of the table, 1-35 days (default: off).
    #[arg(long, value_name = "DAYS")]
    pub pitr_recovery_days: Option<u32>,
    /// Archive expired audit events to S3 (the default; needs the aggregator).
    #[arg(long, overrides_with = "no_audit_archival")]
    pub enable_audit_archival: bool,
    /// Do not archive expired audit events.
    #[arg(long)]
    pub no_audit_archival: bool,
    /// Days before archived audit events move to Glacier Instant Retrieval.
    #[arg(long, default_value_t = 90, value_name = "DAYS")]
    pub audit_archive_glacier_days: u32,
    /// Also create App/Admin/ReadOnly roles (assumable by the account) with the policies.
    #[arg(long)]
    pub create_iam_roles: bool,
    /// Create no IAM resources at all (no policies, no roles; the aggregator only runs with
    /// --aggregator-role-arn).
    #[arg(long)]
    pub no_iam: bool,
    /// Run the aggregator under this existing role, e.g. arn:aws:iam::123456789012:role/R.
    #[arg(long, value_name = "ARN")]
    pub aggregator_role_arn: Option<String>,
    /// Permissions boundary (policy name or ARN) for every role the stack creates.
    #[arg(long, value_name = "POLICY")]
    pub permission_boundary: Option<String>,
    /// Role names: a format with one {} replaced by {name}-{component}, e.g. "svc-{}".
    #[arg(long, value_name = "FORMAT")]
    pub role_name_format: Option<String>,
    /// Policy names: a format with one {} replaced by {name}-{component}.
    #[arg(long, value_name = "FORMAT")]
    pub policy_name_format: Option<String>,
    /// Turn on DynamoDB deletion protection for the table.
    #[arg(long)]
    pub enable_deletion_protection: bool,
    /// SNS topic ARN the alarms notify.
    #[arg(long, value_name = "ARN")]
    pub alarm_sns_topic: Option<String>,
    /// Create the CloudWatch alarms (the default).
    #[arg(long, overrides_with = "no_alarms")]
    pub enable_alarms: bool,
    /// Do not create CloudWatch alarms.
    #[arg(long)]
    pub no_alarms: bool,
    /// X-Ray active tracing on the aggregator.
    #[arg(long)]
    pub enable_tracing: bool,
    /// Aggregator memory, MB (128-10240).
    #[arg(long, default_value_t = 256, value_name = "MB")]
    pub lambda_memory: u32,
    /// Aggregator timeout, seconds (1-900).
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub lambda_timeout: u32,
    /// A tag on the stack and its resources (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = tag_arg)]
    pub tags: Vec<(String, String)>,
}

fn tag_arg(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

impl StackArgs {
    /// The deploy options of these flags for the stack `--name`, checked (a contradiction
    /// such as --no-iam --create-iam-roles is a usage error, exit 2).
    pub fn options(&self, cli: &Cli) -> Result<DeployOptions, CliError> {
        let o = DeployOptions {
            name: cli.name.clone(),
            enable_aggregator: !self.no_aggregator,
            log_retention_days: self.log_retention_days,
            usage_retention_days: self.usage_retention_days,
            audit_retention_days: self.audit_retention_days,
            pitr_recovery_days: self.pitr_recovery_days,
            enable_audit_archival: !self.no_audit_archival,
            audit_archive_glacier_days: self.audit_archive_glacier_days,
            create_iam_roles: self.create_iam_roles,
            create_iam: !self.no_iam,
            aggregator_role_arn: self.aggregator_role_arn.clone(),
            permission_boundary: self.permission_boundary.clone(),
            role_name_format: self.role_name_format.clone(),
            policy_name_format: self.policy_name_format.clone(),
            enable_deletion_protection: self.enable_deletion_protection,
            alarm_sns_topic: self.alarm_sns_topic.clone(),
            enable_alarms: !self.no_alarms,
            enable_tracing: self.enable_tracing,
            lambda_memory: self.lambda_memory,
            lambda_timeout: self.lambda_timeout,
            tags: self.tags.clone(),
            code_bucket: String::new(),
            code_key: String::new(),
        };
        o.plan().map_err(|e| CliError::usage(e.0))?;
        Ok(o)
    }
}
