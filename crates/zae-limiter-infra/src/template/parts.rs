//! Building blocks of the template: intrinsic functions, parameters, the table, the IAM
//! trust and log statements, alarms, the aggregator's event filters.

use serde_json::{json, Value};

pub(super) fn r(logical: &str) -> Value {
    json!({ "Ref": logical })
}

pub(super) fn att(logical: &str, attr: &str) -> Value {
    json!({ "Fn::GetAtt": [logical, attr] })
}

pub(super) fn sub(s: &str) -> Value {
    json!({ "Fn::Sub": s })
}

pub(super) fn param(kind: &str, default: Value, description: &str) -> Value {
    json!({ "Type": kind, "Default": default, "Description": description })
}

/// The tags every taggable resource of the stack carries (CloudFormation adds the stack's
/// tags too).
pub(super) fn version_tags() -> Value {
    json!([
        {"Key": "ManagedBy", "Value": "zae-limiter"},
        {"Key": "zae-limiter:version", "Value": r("ClientVersion")},
        {"Key": "zae-limiter:schema-version", "Value": r("SchemaVersion")},
    ])
}

pub(super) fn lambda_trust() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }],
    })
}

pub(super) fn table_arn() -> Value {
    att("RateLimitsTable", "Arn")
}

pub(super) fn table_resources() -> Value {
    json!([table_arn(), {"Fn::Sub": "${RateLimitsTable.Arn}/index/*"}])
}

pub(super) fn log_statement(group: &str) -> Value {
    json!({
        "Sid": "Logs",
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": {"Fn::Sub": format!("${{{group}.Arn}}")},
    })
}

/// The table exactly as the library's `DynamoStore::create_table` makes it, plus PITR,
/// deletion protection and tags.
pub(super) fn table() -> Value {
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

pub(super) struct Alarm<'a> {
    pub(super) id: &'a str,
    pub(super) suffix: &'a str,
    pub(super) description: &'a str,
    pub(super) namespace: &'a str,
    pub(super) metric: &'a str,
    pub(super) statistic: &'a str,
    pub(super) periods: u32,
    pub(super) threshold: Value,
    pub(super) comparison: &'a str,
    pub(super) dimensions: Value,
    pub(super) notify: bool,
}

pub(super) fn alarm(a: Alarm<'_>) -> (String, Value) {
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
pub(super) fn aggregator_filters() -> Value {
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

/// What the managed policy of `component` is for (its `Description`).
pub(super) fn describe_policy(component: &str) -> &'static str {
    match component {
        "acq" => "applications calling acquire (all namespaces)",
        "full" => "operators managing limits, entities and namespaces (all namespaces)",
        "read" => "monitoring and read-only tools (all namespaces)",
        "ns-acq" => "tenant applications calling acquire in the namespace of tag zael_namespace_id",
        "ns-full" => "tenant configuration management in the namespace of tag zael_namespace_id",
        _ => "tenant monitoring in the namespace of tag zael_namespace_id",
    }
}
