//! The deploy options: what they are, their defaults, their validation, and the plan of
//! which optional parts of the stack they select.

use serde_json::json;
use serde_json::Value;

use super::render;

/// The schema version this client writes (the layout of the items in the table).
pub const SCHEMA_VERSION: &str = zae_limiter::schema::SCHEMA_VERSION;
/// This client's version.
pub const CLIENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Log retention values CloudWatch Logs accepts.
pub const LOG_RETENTION_DAYS: &[u32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// Longest stack name: role names are `{stack}-{component}` (components ≤ 8 characters) and
/// IAM role names are at most 64 characters.
pub const MAX_STACK_NAME: usize = 55;
/// Most user tags (CloudFormation allows 50 stack tags; 5 are ours).
pub const MAX_USER_TAGS: usize = 45;

/// Everything `deploy` and `cfn-template` accept, with the documented defaults
/// ([`Default`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployOptions {
    /// Stack and table name.
    pub name: String,
    /// Deploy the usage aggregator Lambda (default true).
    pub enable_aggregator: bool,
    /// CloudWatch log retention of the functions, days (default 30).
    pub log_retention_days: u32,
    /// Usage snapshot retention, days (default 90).
    pub usage_retention_days: u32,
    /// Audit record retention in DynamoDB, days (default 90).
    pub audit_retention_days: u32,
    /// Point-in-time recovery period, 1–35 days (default: PITR off).
    pub pitr_recovery_days: Option<u32>,
    /// Archive expired audit events to S3 (default true; needs the aggregator).
    pub enable_audit_archival: bool,
    /// Days before archived objects move to Glacier Instant Retrieval (default 90).
    pub audit_archive_glacier_days: u32,
    /// Create the App/Admin/ReadOnly roles (default false).
    pub create_iam_roles: bool,
    /// Create IAM resources at all (default true; false = `--no-iam`).
    pub create_iam: bool,
    /// Run the aggregator under this existing role instead of creating one.
    pub aggregator_role_arn: Option<String>,
    /// Permissions boundary for every created role (policy name or ARN).
    pub permission_boundary: Option<String>,
    /// Role name format with one `{}` (replaced by `{stack}-{component}`).
    pub role_name_format: Option<String>,
    /// Policy name format with one `{}` (replaced by `{stack}-{component}`).
    pub policy_name_format: Option<String>,
    /// DynamoDB deletion protection (default false).
    pub enable_deletion_protection: bool,
    /// SNS topic ARN the alarms notify.
    pub alarm_sns_topic: Option<String>,
    /// Create the CloudWatch alarms (default true).
    pub enable_alarms: bool,
    /// X-Ray active tracing on the aggregator (default false).
    pub enable_tracing: bool,
    /// Aggregator memory, MB (default 256).
    pub lambda_memory: u32,
    /// Aggregator timeout, seconds (default 60).
    pub lambda_timeout: u32,
    /// User tags on the stack (and so on its resources).
    pub tags: Vec<(String, String)>,
    /// S3 bucket holding the Lambda zip (set by `deploy` after the upload).
    pub code_bucket: String,
    /// S3 key of the Lambda zip.
    pub code_key: String,
}

impl Default for DeployOptions {
    fn default() -> Self {
        DeployOptions {
            name: "zae-limiter".into(),
            enable_aggregator: true,
            log_retention_days: 30,
            usage_retention_days: 90,
            audit_retention_days: 90,
            pitr_recovery_days: None,
            enable_audit_archival: true,
            audit_archive_glacier_days: 90,
            create_iam_roles: false,
            create_iam: true,
            aggregator_role_arn: None,
            permission_boundary: None,
            role_name_format: None,
            policy_name_format: None,
            enable_deletion_protection: false,
            alarm_sns_topic: None,
            enable_alarms: true,
            enable_tracing: false,
            lambda_memory: 256,
            lambda_timeout: 60,
            tags: Vec::new(),
            code_bucket: String::new(),
            code_key: String::new(),
        }
    }
}

/// Options that cannot be deployed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OptionsError(pub String);

/// What gets created, derived from the options (seed 000's IAM behaviour matrix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The six managed policies.
    pub policies: bool,
    /// App/Admin/ReadOnly roles.
    pub app_roles: bool,
    /// The aggregator role is created by the stack.
    pub aggregator_role: AggregatorRole,
    /// The aggregator function, its DLQ, log group and event source mapping.
    pub aggregator: bool,
    /// The provisioner function (declarative limits) and its role.
    pub provisioner: bool,
    /// The S3 audit archive bucket.
    pub archive: bool,
    /// CloudWatch alarms.
    pub alarms: bool,
    /// X-Ray active tracing on the aggregator.
    pub tracing: bool,
}

/// Who provides the aggregator's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregatorRole {
    /// No aggregator role (no aggregator).
    None,
    /// Created by the stack.
    Created,
    /// An existing role (`--aggregator-role-arn`).
    External,
}

impl Plan {
    /// Any Lambda function, so the code location parameters are needed.
    pub fn has_functions(&self) -> bool {
        self.aggregator || self.provisioner
    }
}

fn valid_name_format(
    what: &str,
    format: &str,
    stack: &str,
    max: usize,
) -> Result<(), OptionsError> {
    if format.matches("{}").count() != 1 {
        return Err(OptionsError(format!(
            "--{what}-name-format must contain exactly one {{}}: {format:?}"
        )));
    }
    if !format
        .replace("{}", "")
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
    {
        return Err(OptionsError(format!(
            "--{what}-name-format may only hold letters, digits and +=,.@_-: {format:?}"
        )));
    }
    // longest component is 8 characters (`ns-full`, `ns-read`: 7; `ns-acq`: 6)
    let longest = format.replace("{}", &format!("{stack}-ns-full"));
    if longest.len() > max {
        return Err(OptionsError(format!(
            "--{what}-name-format {format:?} makes names up to {} characters with stack \
             {stack:?} (IAM allows {max})",
            longest.len()
        )));
    }
    Ok(())
}

impl DeployOptions {
    /// Check the options and derive what gets created.
    pub fn plan(&self) -> Result<Plan, OptionsError> {
        let n = &self.name;
        if n.is_empty()
            || n.len() > MAX_STACK_NAME
            || !n.starts_with(|c: char| c.is_ascii_alphabetic())
            || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(OptionsError(format!(
                "--name {n:?}: a stack name is 1-{MAX_STACK_NAME} letters, digits and '-', \
                 starting with a letter"
            )));
        }
        if !self.create_iam && self.create_iam_roles {
            return Err(OptionsError(
                "--no-iam and --create-iam-roles contradict each other: roles are IAM \
                 resources"
                    .into(),
            ));
        }
        if let Some(d) = self.pitr_recovery_days {
            if !(1..=35).contains(&d) {
                return Err(OptionsError(format!(
                    "--pitr-recovery-days {d}: must be 1-35"
                )));
            }
        }
        if !LOG_RETENTION_DAYS.contains(&self.log_retention_days) {
            return Err(OptionsError(format!(
                "--log-retention-days {}: CloudWatch accepts {LOG_RETENTION_DAYS:?}",
                self.log_retention_days
            )));
        }
        for (flag, v) in [
            ("--usage-retention-days", self.usage_retention_days),
            ("--audit-retention-days", self.audit_retention_days),
            (
                "--audit-archive-glacier-days",
                self.audit_archive_glacier_days,
            ),
        ] {
            if !(1..=3650).contains(&v) {
                return Err(OptionsError(format!("{flag} {v}: must be 1-3650")));
            }
        }
        if !(128..=10240).contains(&self.lambda_memory) {
            return Err(OptionsError(format!(
                "--lambda-memory {}: must be 128-10240 (MB)",
                self.lambda_memory
            )));
        }
        if !(1..=900).contains(&self.lambda_timeout) {
            return Err(OptionsError(format!(
                "--lambda-timeout {}: must be 1-900 (seconds)",
                self.lambda_timeout
            )));
        }
        if let Some(arn) = &self.aggregator_role_arn {
            if !is_role_arn(arn) {
                return Err(OptionsError(format!(
                    "--aggregator-role-arn {arn:?}: expected arn:aws:iam::123456789012:role/NAME"
                )));
            }
        }
        if let Some(t) = &self.alarm_sns_topic {
            if !t.starts_with("arn:") || !t.contains(":sns:") {
                return Err(OptionsError(format!(
                    "--alarm-sns-topic {t:?}: expected an SNS topic ARN"
                )));
            }
        }
        if let Some(f) = &self.role_name_format {
            valid_name_format("role", f, n, 64)?;
        }
        if let Some(f) = &self.policy_name_format {
            valid_name_format("policy", f, n, 128)?;
        }
        if self.tags.len() > MAX_USER_TAGS {
            return Err(OptionsError(format!(
                "at most {MAX_USER_TAGS} --tag (got {})",
                self.tags.len()
            )));
        }
        for (k, v) in &self.tags {
            if k.is_empty() || k.len() > 128 || k.starts_with("aws:") || v.len() > 256 {
                return Err(OptionsError(format!(
                    "--tag {k}={v}: keys are 1-128 characters not starting with 'aws:', \
                     values at most 256"
                )));
            }
        }
        let aggregator_role = match (
            self.enable_aggregator,
            &self.aggregator_role_arn,
            self.create_iam,
        ) {
            (false, _, _) => AggregatorRole::None,
            (true, Some(_), _) => AggregatorRole::External,
            (true, None, true) => AggregatorRole::Created,
            (true, None, false) => AggregatorRole::None,
        };
        let aggregator = aggregator_role != AggregatorRole::None;
        Ok(Plan {
            policies: self.create_iam,
            app_roles: self.create_iam && self.create_iam_roles,
            aggregator_role,
            aggregator,
            provisioner: self.create_iam,
            archive: aggregator && self.enable_audit_archival,
            alarms: self.enable_alarms,
            tracing: aggregator && self.enable_tracing,
        })
    }

    /// The template parameter values of these options (for CreateStack / change sets);
    /// the same values are the defaults of the rendered template.
    pub fn parameters(&self) -> Result<Vec<(String, String)>, OptionsError> {
        let t = render(self)?;
        let params = t["Parameters"].as_object().cloned().unwrap_or_default();
        Ok(params
            .into_iter()
            .map(|(k, v)| {
                let d = match &v["Default"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k, d)
            })
            .filter(|(_, d)| d != "null")
            .collect())
    }

    /// `{stack}-{component}` through the role name format.
    pub fn role_name(&self, component: &str) -> String {
        named(&self.role_name_format, &self.name, component)
    }

    /// `{stack}-{component}` through the policy name format.
    pub fn policy_name(&self, component: &str) -> String {
        named(&self.policy_name_format, &self.name, component)
    }

    pub(super) fn boundary_arn(&self) -> Option<Value> {
        self.permission_boundary.as_ref().map(|b| {
            if b.starts_with("arn:") {
                json!(b)
            } else {
                json!({"Fn::Sub": format!("arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:policy/{b}")})
            }
        })
    }
}

pub(super) fn named(format: &Option<String>, stack: &str, component: &str) -> String {
    let base = format!("{stack}-{component}");
    match format {
        Some(f) => f.replace("{}", &base),
        None => base,
    }
}

pub(super) fn is_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && ["aws", "aws-cn", "aws-us-gov"].contains(&parts[1])
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].chars().all(|c| c.is_ascii_digit())
        && parts[5]
            .strip_prefix("role/")
            .is_some_and(|r| !r.is_empty())
}
