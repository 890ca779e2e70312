//! The CloudFormation template, rendered from [`DeployOptions`].
//!
//! What is structural (which resources exist: the IAM behaviour matrix, the aggregator, the
//! archive bucket, alarms, roles, tracing) is decided here from the options; what is a value
//! (retention days, memory, timeout, PITR days, SNS topic, code location, versions) is a
//! template parameter whose default is the option's value, so the printed template can be
//! deployed as it is or with other parameter values. Every parameter has a `Description`.
//!
//! The options, their defaults and validation are in `options.rs`, the building blocks of
//! the template in `parts.rs`, their assembly in [`render`] here.

mod options;
mod parts;

use serde_json::{json, Map, Value};

use crate::iam::{self, POLICIES};
pub use options::*;
use parts::*;

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
