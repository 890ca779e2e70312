//! The CloudFormation template, rendered from [`DeployOptions`].
//!
//! What is structural (which resources exist: the IAM behaviour matrix, the aggregator, the
//! archive bucket, alarms, roles, tracing) is decided here from the options; what is a value
//! (retention days, memory, timeout, PITR days, SNS topic, code location, versions) is a
//! template parameter whose default is the option's value, so the printed template can be
//! deployed as it is or with other parameter values. Every parameter has a `Description`.

use serde_json::{json, Map, Value};

use crate::iam::{self, POLICIES};

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

    fn boundary_arn(&self) -> Option<Value> {
        self.permission_boundary.as_ref().map(|b| {
            if b.starts_with("arn:") {
                json!(b)
            } else {
                json!({"Fn::Sub": format!("arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:policy/{b}")})
            }
        })
    }
}

fn named(format: &Option<String>, stack: &str, component: &str) -> String {
    let base = format!("{stack}-{component}");
    match format {
        Some(f) => f.replace("{}", &base),
        None => base,
    }
}

fn is_role_arn(arn: &str) -> bool {
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

fn r(logical: &str) -> Value {
    json!({ "Ref": logical })
}

fn att(logical: &str, attr: &str) -> Value {
    json!({ "Fn::GetAtt": [logical, attr] })
}

fn sub(s: &str) -> Value {
    json!({ "Fn::Sub": s })
}

fn param(kind: &str, default: Value, description: &str) -> Value {
    json!({ "Type": kind, "Default": default, "Description": description })
}

/// The tags every taggable resource of the stack carries (CloudFormation adds the stack's
/// tags too).
fn version_tags() -> Value {
    json!([
        {"Key": "ManagedBy", "Value": "zae-limiter"},
        {"Key": "zae-limiter:version", "Value": r("ClientVersion")},
        {"Key": "zae-limiter:schema-version", "Value": r("SchemaVersion")},
    ])
}

fn lambda_trust() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }],
    })
}

fn table_arn() -> Value {
    att("RateLimitsTable", "Arn")
}

fn table_resources() -> Value {
    json!([table_arn(), {"Fn::Sub": "${RateLimitsTable.Arn}/index/*"}])
}

fn log_statement(group: &str) -> Value {
    json!({
        "Sid": "Logs",
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": {"Fn::Sub": format!("${{{group}.Arn}}")},
    })
}

/// The table exactly as the library's `DynamoStore::create_table` makes it, plus PITR,
/// deletion protection and tags.
fn table() -> Value {
    let mut attrs = vec![
        json!({"AttributeName": "PK", "AttributeType": "S"}),
        json!({"AttributeName": "SK", "AttributeType": "S"}),
    ];
    let mut gsis = Vec::new();
    for (name, hash, range) in zae_limiter::dynamodb::INDEXES {
        attrs.push(json!({"AttributeName": hash, "AttributeType": "S"}));
        attrs.push(json!({"AttributeName": range, "AttributeType": "S"}));
        gsis.push(json!({
            "IndexName": name,
            "KeySchema": [
                {"AttributeName": hash, "KeyType": "HASH"},
                {"AttributeName": range, "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        }));
    }
    json!({
        "Type": "AWS::DynamoDB::Table",
        "DeletionPolicy": "Delete",
        "UpdateReplacePolicy": "Retain",
        "Properties": {
            "TableName": r("AWS::StackName"),
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": attrs,
            "KeySchema": [
                {"AttributeName": "PK", "KeyType": "HASH"},
                {"AttributeName": "SK", "KeyType": "RANGE"},
            ],
            "GlobalSecondaryIndexes": gsis,
            "StreamSpecification": {"StreamViewType": "NEW_AND_OLD_IMAGES"},
            "TimeToLiveSpecification": {"AttributeName": "ttl", "Enabled": true},
            "PointInTimeRecoverySpecification": {
                "PointInTimeRecoveryEnabled": {"Fn::If": ["PITREnabled", true, false]},
                "RecoveryPeriodInDays": {"Fn::If": ["PITREnabled", r("PITRRecoveryPeriodDays"), r("AWS::NoValue")]},
            },
            "DeletionProtectionEnabled": {"Fn::If": ["DeletionProtection", true, false]},
            "Tags": version_tags(),
        },
    })
}

struct Alarm<'a> {
    id: &'a str,
    suffix: &'a str,
    description: &'a str,
    namespace: &'a str,
    metric: &'a str,
    statistic: &'a str,
    periods: u32,
    threshold: Value,
    comparison: &'a str,
    dimensions: Value,
    notify: bool,
}

fn alarm(a: Alarm<'_>) -> (String, Value) {
    let actions = if a.notify {
        json!({"Fn::If": ["HasAlarmTopic", [r("AlarmSNSTopicArn")], r("AWS::NoValue")]})
    } else {
        r("AWS::NoValue")
    };
    (
        a.id.to_string(),
        json!({
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {
                "AlarmName": sub(&format!("${{AWS::StackName}}-{}", a.suffix)),
                "AlarmDescription": a.description,
                "Namespace": a.namespace,
                "MetricName": a.metric,
                "Statistic": a.statistic,
                "Period": 300,
                "EvaluationPeriods": a.periods,
                "Threshold": a.threshold,
                "ComparisonOperator": a.comparison,
                "Dimensions": a.dimensions,
                "TreatMissingData": "notBreaching",
                "AlarmActions": actions,
            },
        }),
    )
}

/// The aggregator's event filter: bucket state changes (usage deltas) and removed audit
/// items (TTL expiry, to archive). Audit items are recognised by their sort key
/// (`#AUDIT#…`): their partition key starts with the namespace id, so a PK prefix cannot
/// match them.
fn aggregator_filters() -> Value {
    let bucket = json!({
        "eventName": ["INSERT", "MODIFY"],
        "dynamodb": {"Keys": {"SK": {"S": [zae_limiter::dynamodb::keys::BUCKET_SK]}}},
    });
    let audit = json!({
        "eventName": ["REMOVE"],
        "dynamodb": {"Keys": {"SK": {"S": [{"prefix": "#AUDIT#"}]}}},
    });
    json!({"Filters": [
        {"Pattern": bucket.to_string()},
        {"Pattern": audit.to_string()},
    ]})
}

/// Render the template for `opts` (a JSON value; print it with `serde_json`).
pub fn render(opts: &DeployOptions) -> Result<Value, OptionsError> {
    let plan = opts.plan()?;
    let mut params = Map::new();
    let mut conditions = Map::new();
    let mut res = Map::new();
    let mut outputs = Map::new();
    let mut out = |id: &str, value: Value, description: &str, export: &str| {
        outputs.insert(
            id.to_string(),
            json!({
                "Description": description,
                "Value": value,
                "Export": {"Name": sub(&format!("${{AWS::StackName}}-{export}"))},
            }),
        );
    };

    params.insert("SchemaVersion".into(), param("String", json!(SCHEMA_VERSION),
        "Schema version of the items in the table (tagged on resources, given to the functions)."));
    params.insert(
        "ClientVersion".into(),
        param(
            "String",
            json!(CLIENT_VERSION),
            "Version of the zae-limiter client that rendered this template (tagged on resources).",
        ),
    );
    params.insert("PITRRecoveryPeriodDays".into(), json!({
        "Type": "Number", "Default": opts.pitr_recovery_days.unwrap_or(0), "MinValue": 0, "MaxValue": 35,
        "Description": "Point-in-time recovery period of the table in days (1-35); 0 turns PITR off.",
    }));
    params.insert("EnableDeletionProtection".into(), json!({
        "Type": "String", "Default": opts.enable_deletion_protection.to_string(), "AllowedValues": ["true", "false"],
        "Description": "Protect the DynamoDB table against deletion (the stack cannot be deleted while it is on).",
    }));
    conditions.insert(
        "PITREnabled".into(),
        json!({"Fn::Not": [{"Fn::Equals": [r("PITRRecoveryPeriodDays"), "0"]}]}),
    );
    conditions.insert(
        "DeletionProtection".into(),
        json!({"Fn::Equals": [r("EnableDeletionProtection"), "true"]}),
    );
    res.insert("RateLimitsTable".into(), table());
    out(
        "TableName",
        r("RateLimitsTable"),
        "DynamoDB table name",
        "TableName",
    );
    out("TableArn", table_arn(), "DynamoDB table ARN", "TableArn");
    out(
        "StreamArn",
        att("RateLimitsTable", "StreamArn"),
        "DynamoDB stream ARN (new and old images)",
        "StreamArn",
    );

    if plan.has_functions() {
        // no default when none is known yet (cfn-template): the deployer must give them
        let mut bucket = json!({"Type": "String", "MinLength": 3, "MaxLength": 63,
            "Description": "S3 bucket holding the Lambda zip (the zae-limiter binary as 'bootstrap'; deploy uploads it)."});
        let mut key = json!({"Type": "String", "MinLength": 1,
            "Description": "S3 key of the Lambda zip in LambdaCodeBucket (zae-limiter lambda-export writes the zip)."});
        if !opts.code_bucket.is_empty() {
            bucket["Default"] = json!(opts.code_bucket);
        }
        if !opts.code_key.is_empty() {
            key["Default"] = json!(opts.code_key);
        }
        params.insert("LambdaCodeBucket".into(), bucket);
        params.insert("LambdaCodeKey".into(), key);
        params.insert("LogRetentionDays".into(), json!({
            "Type": "Number", "Default": opts.log_retention_days, "AllowedValues": LOG_RETENTION_DAYS,
            "Description": "CloudWatch Logs retention of the functions' log groups, days.",
        }));
    }
    let boundary = opts.boundary_arn();
    let boundary_prop = |v: &mut Value| {
        if let Some(b) = &boundary {
            v["Properties"]["PermissionsBoundary"] = b.clone();
        }
    };

    if plan.policies {
        for p in POLICIES {
            res.insert(p.logical_id.into(), json!({
                "Type": "AWS::IAM::ManagedPolicy",
                "Properties": {
                    "ManagedPolicyName": sub(&named(&opts.policy_name_format, "${AWS::StackName}", p.component)),
                    "Description": format!("zae-limiter {}: {}", p.component, describe_policy(p.component)),
                    "PolicyDocument": p.document(&table_arn()),
                },
            }));
            out(
                &format!("{}Arn", p.logical_id),
                r(p.logical_id),
                &format!("ARN of the {} policy", p.component),
                &format!("{}Arn", p.logical_id),
            );
        }
    }
    if plan.app_roles {
        for (id, component, policy, role) in [
            ("AppRole", "app", "AcquireOnlyPolicy", "app"),
            ("AdminRole", "admin", "FullAccessPolicy", "admin"),
            ("ReadOnlyRole", "read", "ReadOnlyPolicy", "readonly"),
        ] {
            let mut v = json!({
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "RoleName": sub(&named(&opts.role_name_format, "${AWS::StackName}", component)),
                    "AssumeRolePolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [{
                            "Effect": "Allow",
                            "Principal": {"AWS": sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root")},
                            "Action": "sts:AssumeRole",
                        }],
                    },
                    "ManagedPolicyArns": [r(policy)],
                    "Tags": [{"Key": "Application", "Value": "zae-limiter"}, {"Key": "Role", "Value": role}],
                },
            });
            boundary_prop(&mut v);
            res.insert(id.into(), v);
            out(
                &format!("{id}Arn"),
                att(id, "Arn"),
                &format!("ARN of the {component} role"),
                &format!("{id}Arn"),
            );
        }
    }

    if plan.aggregator {
        params.insert(
            "LambdaMemorySize".into(),
            json!({
                "Type": "Number", "Default": opts.lambda_memory, "MinValue": 128, "MaxValue": 10240,
                "Description": "Memory of the aggregator function, MB.",
            }),
        );
        params.insert(
            "LambdaTimeout".into(),
            json!({
                "Type": "Number", "Default": opts.lambda_timeout, "MinValue": 1, "MaxValue": 900,
                "Description": "Timeout of the aggregator function, seconds.",
            }),
        );
        params.insert("UsageRetentionDays".into(), json!({
            "Type": "Number", "Default": opts.usage_retention_days, "MinValue": 1, "MaxValue": 3650,
            "Description": "Retention of usage snapshots written by the aggregator, days (their TTL).",
        }));
        params.insert("AuditRetentionDays".into(), json!({
            "Type": "Number", "Default": opts.audit_retention_days, "MinValue": 1, "MaxValue": 3650,
            "Description": "Retention of audit records in DynamoDB, days (given to the functions).",
        }));
        res.insert(
            "AggregatorDLQ".into(),
            json!({
                "Type": "AWS::SQS::Queue",
                "Properties": {
                    "QueueName": sub("${AWS::StackName}-aggregator-dlq"),
                    "MessageRetentionPeriod": 1_209_600,
                    "VisibilityTimeout": 300,
                    "SqsManagedSseEnabled": true,
                    "Tags": version_tags(),
                },
            }),
        );
        res.insert(
            "AggregatorLogGroup".into(),
            json!({
                "Type": "AWS::Logs::LogGroup",
                "DeletionPolicy": "Delete",
                "UpdateReplacePolicy": "Delete",
                "Properties": {
                    "LogGroupName": sub("/aws/lambda/${AWS::StackName}-aggregator"),
                    "RetentionInDays": r("LogRetentionDays"),
                },
            }),
        );
        let role = match plan.aggregator_role {
            AggregatorRole::External => json!(opts.aggregator_role_arn.clone().unwrap_or_default()),
            _ => att("AggregatorRole", "Arn"),
        };
        if plan.aggregator_role == AggregatorRole::Created {
            let mut statements = vec![
                json!({"Sid": "Table", "Effect": "Allow", "Action": iam::AGGREGATOR_TABLE_ACTIONS, "Resource": table_resources()}),
                json!({"Sid": "Stream", "Effect": "Allow", "Action": iam::STREAM_ACTIONS, "Resource": att("RateLimitsTable", "StreamArn")}),
                json!({"Sid": "DeadLetters", "Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": att("AggregatorDLQ", "Arn")}),
                log_statement("AggregatorLogGroup"),
            ];
            if plan.archive {
                statements.push(
                    json!({"Sid": "Archive", "Effect": "Allow", "Action": ["s3:PutObject"],
                    "Resource": {"Fn::Sub": "${AuditArchiveBucket.Arn}/*"}}),
                );
            }
            if plan.tracing {
                statements.push(json!({"Sid": "XRay", "Effect": "Allow",
                    "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"], "Resource": "*"}));
            }
            let mut v = json!({
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "RoleName": sub(&named(&opts.role_name_format, "${AWS::StackName}", "aggr")),
                    "AssumeRolePolicyDocument": lambda_trust(),
                    "Policies": [{"PolicyName": "aggregator", "PolicyDocument": {"Version": "2012-10-17", "Statement": statements}}],
                    "Tags": version_tags(),
                },
            });
            boundary_prop(&mut v);
            res.insert("AggregatorRole".into(), v);
        }
        let mut env = json!({
            "ZAEL_HANDLER": "aggregator",
            "ZAEL_TABLE_NAME": r("RateLimitsTable"),
            "ZAEL_SCHEMA_VERSION": r("SchemaVersion"),
            // environment values are strings (a Ref to a Number parameter is one in AWS, but
            // moto keeps the number and the Rust SDK then cannot read GetFunction)
            "ZAEL_USAGE_RETENTION_DAYS": sub("${UsageRetentionDays}"),
            "ZAEL_AUDIT_RETENTION_DAYS": sub("${AuditRetentionDays}"),
        });
        if plan.archive {
            env["ZAEL_ARCHIVE_BUCKET"] = r("AuditArchiveBucket");
        }
        let f = json!({
            "Type": "AWS::Lambda::Function",
            "DependsOn": ["AggregatorLogGroup"],
            "Properties": {
                "FunctionName": sub("${AWS::StackName}-aggregator"),
                "Description": "zae-limiter usage aggregator (DynamoDB stream consumer)",
                "Runtime": "provided.al2023",
                "Handler": "bootstrap",
                "Architectures": ["x86_64"],
                "Code": {"S3Bucket": r("LambdaCodeBucket"), "S3Key": r("LambdaCodeKey")},
                "MemorySize": r("LambdaMemorySize"),
                "Timeout": r("LambdaTimeout"),
                "Role": role,
                "Environment": {"Variables": env},
                "TracingConfig": {"Mode": if plan.tracing { "Active" } else { "PassThrough" }},
                "Tags": version_tags(),
            },
        });
        res.insert("AggregatorFunction".into(), f);
        res.insert("AggregatorEventSourceMapping".into(), json!({
            "Type": "AWS::Lambda::EventSourceMapping",
            "Properties": {
                "EventSourceArn": att("RateLimitsTable", "StreamArn"),
                "FunctionName": r("AggregatorFunction"),
                "StartingPosition": "LATEST",
                "BatchSize": 100,
                "MaximumBatchingWindowInSeconds": 5,
                "MaximumRetryAttempts": 3,
                "MaximumRecordAgeInSeconds": 3600,
                "BisectBatchOnFunctionError": true,
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
                "DestinationConfig": {"OnFailure": {"Destination": att("AggregatorDLQ", "Arn")}},
                "FilterCriteria": aggregator_filters(),
            },
        }));
        out(
            "AggregatorFunctionName",
            r("AggregatorFunction"),
            "Aggregator function name",
            "AggregatorName",
        );
        out(
            "AggregatorFunctionArn",
            att("AggregatorFunction", "Arn"),
            "Aggregator function ARN",
            "AggregatorArn",
        );
        out(
            "AggregatorDLQUrl",
            r("AggregatorDLQ"),
            "Dead-letter queue of the aggregator's stream batches",
            "DLQUrl",
        );
        out(
            "AggregatorDLQArn",
            att("AggregatorDLQ", "Arn"),
            "ARN of the aggregator's dead-letter queue",
            "DLQArn",
        );
    }

    if plan.archive {
        params.insert("AuditArchiveGlacierDays".into(), json!({
            "Type": "Number", "Default": opts.audit_archive_glacier_days, "MinValue": 1, "MaxValue": 3650,
            "Description": "Days before archived audit objects move to S3 Glacier Instant Retrieval.",
        }));
        res.insert("AuditArchiveBucket".into(), json!({
            "Type": "AWS::S3::Bucket",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "BucketEncryption": {"ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": true, "BlockPublicPolicy": true,
                    "IgnorePublicAcls": true, "RestrictPublicBuckets": true,
                },
                "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
                "LifecycleConfiguration": {"Rules": [{
                    "Id": "TransitionToGlacierIR",
                    "Status": "Enabled",
                    "Transitions": [{"StorageClass": "GLACIER_IR", "TransitionInDays": r("AuditArchiveGlacierDays")}],
                }]},
                "Tags": version_tags(),
            },
        }));
        out(
            "AuditArchiveBucketName",
            r("AuditArchiveBucket"),
            "S3 bucket of archived audit events (kept when the stack is deleted)",
            "AuditArchiveBucketName",
        );
        out(
            "AuditArchiveBucketArn",
            att("AuditArchiveBucket", "Arn"),
            "ARN of the audit archive bucket",
            "AuditArchiveBucketArn",
        );
    }

    if plan.provisioner {
        res.insert(
            "ProvisionerLogGroup".into(),
            json!({
                "Type": "AWS::Logs::LogGroup",
                "DeletionPolicy": "Delete",
                "UpdateReplacePolicy": "Delete",
                "Properties": {
                    "LogGroupName": sub("/aws/lambda/${AWS::StackName}-limits-provisioner"),
                    "RetentionInDays": r("LogRetentionDays"),
                },
            }),
        );
        let mut role = json!({
            "Type": "AWS::IAM::Role",
            "Properties": {
                "RoleName": sub(&named(&opts.role_name_format, "${AWS::StackName}", "prov")),
                "AssumeRolePolicyDocument": lambda_trust(),
                "Policies": [{"PolicyName": "provisioner", "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                    {"Sid": "Table", "Effect": "Allow", "Action": iam::PROVISIONER_TABLE_ACTIONS, "Resource": table_resources()},
                    log_statement("ProvisionerLogGroup"),
                ]}}],
                "Tags": version_tags(),
            },
        });
        boundary_prop(&mut role);
        res.insert("ProvisionerRole".into(), role);
        res.insert("ProvisionerFunction".into(), json!({
            "Type": "AWS::Lambda::Function",
            "DependsOn": ["ProvisionerLogGroup"],
            "Properties": {
                "FunctionName": sub("${AWS::StackName}-limits-provisioner"),
                "Description": "zae-limiter declarative limits provisioner (CLI events and Custom::ZaeLimiterLimits)",
                "Runtime": "provided.al2023",
                "Handler": "bootstrap",
                "Architectures": ["x86_64"],
                "Code": {"S3Bucket": r("LambdaCodeBucket"), "S3Key": r("LambdaCodeKey")},
                "MemorySize": 256,
                "Timeout": 300,
                "Role": att("ProvisionerRole", "Arn"),
                "Environment": {"Variables": {
                    "ZAEL_HANDLER": "provisioner",
                    "ZAEL_TABLE_NAME": r("RateLimitsTable"),
                    "ZAEL_SCHEMA_VERSION": r("SchemaVersion"),
                }},
                "Tags": version_tags(),
            },
        }));
        out(
            "ProvisionerFunctionArn",
            att("ProvisionerFunction", "Arn"),
            "Provisioner function ARN (ServiceToken of Custom::ZaeLimiterLimits)",
            "ProvisionerArn",
        );
        out(
            "ProvisionerFunctionName",
            r("ProvisionerFunction"),
            "Provisioner function name",
            "ProvisionerName",
        );
    }

    if plan.alarms {
        params.insert(
            "AlarmSNSTopicArn".into(),
            param(
                "String",
                json!(opts.alarm_sns_topic.clone().unwrap_or_default()),
                "SNS topic the alarms notify; empty for no notifications.",
            ),
        );
        conditions.insert(
            "HasAlarmTopic".into(),
            json!({"Fn::Not": [{"Fn::Equals": [r("AlarmSNSTopicArn"), ""]}]}),
        );
        let table_dim = json!([{"Name": "TableName", "Value": r("RateLimitsTable")}]);
        let mut alarms = vec![
            alarm(Alarm {
                id: "ReadThrottleAlarm",
                suffix: "read-throttle",
                description: "DynamoDB read throttles > 1 per 5 min: review capacity",
                namespace: "AWS/DynamoDB",
                metric: "ReadThrottleEvents",
                statistic: "Sum",
                periods: 1,
                threshold: json!(1),
                comparison: "GreaterThanThreshold",
                dimensions: table_dim.clone(),
                notify: true,
            }),
            alarm(Alarm {
                id: "WriteThrottleAlarm",
                suffix: "write-throttle",
                description: "DynamoDB write throttles > 1 per 5 min: review capacity",
                namespace: "AWS/DynamoDB",
                metric: "WriteThrottleEvents",
                statistic: "Sum",
                periods: 1,
                threshold: json!(1),
                comparison: "GreaterThanThreshold",
                dimensions: table_dim,
                notify: true,
            }),
        ];
        if plan.aggregator {
            params.insert("LambdaDurationThreshold".into(), json!({
                "Type": "Number", "Default": u64::from(opts.lambda_timeout) * 800, "MinValue": 1, "MaxValue": 900_000,
                "Description": "Aggregator duration alarm threshold, ms (80 % of the timeout).",
            }));
            let fdim = json!([{"Name": "FunctionName", "Value": r("AggregatorFunction")}]);
            alarms.extend([
                alarm(Alarm { id: "AggregatorErrorAlarm", suffix: "aggregator-errors", description: "Aggregator errors > 1 per 5 min: check its logs and DynamoDB access",
                    namespace: "AWS/Lambda", metric: "Errors", statistic: "Sum", periods: 1, threshold: json!(1),
                    comparison: "GreaterThanThreshold", dimensions: fdim.clone(), notify: true }),
                alarm(Alarm { id: "AggregatorDurationAlarm", suffix: "aggregator-duration", description: "Aggregator duration > 80 % of its timeout: raise memory or timeout",
                    namespace: "AWS/Lambda", metric: "Duration", statistic: "Maximum", periods: 1, threshold: r("LambdaDurationThreshold"),
                    comparison: "GreaterThanThreshold", dimensions: fdim.clone(), notify: true }),
                alarm(Alarm { id: "StreamIteratorAgeAlarm", suffix: "stream-iterator-age", description: "Stream iterator age > 30 s: the aggregator falls behind",
                    namespace: "AWS/Lambda", metric: "IteratorAge", statistic: "Maximum", periods: 1, threshold: json!(30000),
                    comparison: "GreaterThanThreshold", dimensions: fdim, notify: true }),
                alarm(Alarm { id: "DLQAlarm", suffix: "aggregator-dlq", description: "Stream batches in the aggregator's dead-letter queue: investigate the failed records",
                    namespace: "AWS/SQS", metric: "ApproximateNumberOfMessagesVisible", statistic: "Sum", periods: 1, threshold: json!(1),
                    comparison: "GreaterThanOrEqualToThreshold", dimensions: json!([{"Name": "QueueName", "Value": att("AggregatorDLQ", "QueueName")}]), notify: true }),
            ]);
        }
        for (id, v) in alarms {
            res.insert(id, v);
        }
    }

    Ok(json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!("zae-limiter {CLIENT_VERSION} (schema {SCHEMA_VERSION}): rate limit table, IAM policies, aggregator, alarms"),
        "Metadata": {"zae-limiter": {"client-version": CLIENT_VERSION, "schema-version": SCHEMA_VERSION}},
        "Parameters": params,
        "Conditions": conditions,
        "Resources": res,
        "Outputs": outputs,
    }))
}

fn describe_policy(component: &str) -> &'static str {
    match component {
        "acq" => "applications calling acquire (all namespaces)",
        "full" => "operators managing limits, entities and namespaces (all namespaces)",
        "read" => "monitoring and read-only tools (all namespaces)",
        "ns-acq" => "tenant applications calling acquire in the namespace of tag zael_namespace_id",
        "ns-full" => "tenant configuration management in the namespace of tag zael_namespace_id",
        _ => "tenant monitoring in the namespace of tag zael_namespace_id",
    }
}
