//! The rendered template for every row of the IAM behaviour matrix and the main option
//! combinations: resources present/absent, parameters, conditions, outputs.

use serde_json::Value;
use zae_limiter_infra::template::{AggregatorRole, LOG_RETENTION_DAYS};
use zae_limiter_infra::{render, DeployOptions};

fn opts() -> DeployOptions {
    DeployOptions {
        name: "prod".into(),
        ..DeployOptions::default()
    }
}

fn has(t: &Value, logical: &str) -> bool {
    t["Resources"].get(logical).is_some()
}

fn count(t: &Value, kind: &str) -> usize {
    t["Resources"]
        .as_object()
        .unwrap()
        .values()
        .filter(|r| r["Type"] == kind)
        .count()
}

const POLICY_IDS: [&str; 6] = [
    "AcquireOnlyPolicy",
    "FullAccessPolicy",
    "ReadOnlyPolicy",
    "NamespaceAcquirePolicy",
    "NamespaceFullAccessPolicy",
    "NamespaceReadOnlyPolicy",
];

/// One row of seed 000's matrix: policies, app roles, aggregator role, aggregator Lambda.
fn assert_row(t: &Value, policies: bool, app_roles: bool, aggr: AggregatorRole, lambda: bool) {
    for p in POLICY_IDS {
        assert_eq!(has(t, p), policies, "{p}");
        assert_eq!(
            t["Outputs"].get(format!("{p}Arn")).is_some(),
            policies,
            "{p}Arn"
        );
    }
    assert_eq!(
        count(t, "AWS::IAM::ManagedPolicy"),
        if policies { 6 } else { 0 }
    );
    for r in ["AppRole", "AdminRole", "ReadOnlyRole"] {
        assert_eq!(has(t, r), app_roles, "{r}");
    }
    assert_eq!(has(t, "AggregatorRole"), aggr == AggregatorRole::Created);
    assert_eq!(has(t, "AggregatorFunction"), lambda);
    assert_eq!(has(t, "AggregatorEventSourceMapping"), lambda);
    assert_eq!(has(t, "AggregatorDLQ"), lambda);
    if aggr == AggregatorRole::External {
        assert_eq!(
            t["Resources"]["AggregatorFunction"]["Properties"]["Role"],
            "arn:aws:iam::123456789012:role/MyLambdaRole"
        );
    }
    // the provisioner needs its own role, so it exists exactly when IAM is created
    assert_eq!(has(t, "ProvisionerFunction"), policies);
    assert_eq!(
        t["Outputs"].get("ProvisionerFunctionArn").is_some(),
        policies
    );
    let roles = count(t, "AWS::IAM::Role");
    let expected = usize::from(app_roles) * 3
        + usize::from(aggr == AggregatorRole::Created)
        + usize::from(policies);
    assert_eq!(roles, expected);
}

const EXTERNAL: &str = "arn:aws:iam::123456789012:role/MyLambdaRole";

#[test]
fn iam_matrix_default() {
    let t = render(&opts()).unwrap();
    assert_row(&t, true, false, AggregatorRole::Created, true);
}

#[test]
fn iam_matrix_no_iam() {
    let t = render(&DeployOptions {
        create_iam: false,
        ..opts()
    })
    .unwrap();
    assert_row(&t, false, false, AggregatorRole::None, false);
    assert_eq!(count(&t, "AWS::IAM::Role"), 0);
    assert_eq!(count(&t, "AWS::Lambda::Function"), 0);
    // no functions: no code parameters (cfn-lint would flag unused ones)
    assert!(t["Parameters"].get("LambdaCodeBucket").is_none());
}

#[test]
fn iam_matrix_no_iam_external_role() {
    let t = render(&DeployOptions {
        create_iam: false,
        aggregator_role_arn: Some(EXTERNAL.into()),
        ..opts()
    })
    .unwrap();
    assert_row(&t, false, false, AggregatorRole::External, true);
}

#[test]
fn iam_matrix_external_role() {
    let t = render(&DeployOptions {
        aggregator_role_arn: Some(EXTERNAL.into()),
        ..opts()
    })
    .unwrap();
    assert_row(&t, true, false, AggregatorRole::External, true);
}

#[test]
fn iam_matrix_create_roles() {
    let t = render(&DeployOptions {
        create_iam_roles: true,
        ..opts()
    })
    .unwrap();
    assert_row(&t, true, true, AggregatorRole::Created, true);
    let app = &t["Resources"]["AppRole"]["Properties"];
    assert_eq!(app["ManagedPolicyArns"][0]["Ref"], "AcquireOnlyPolicy");
    assert_eq!(
        t["Resources"]["AdminRole"]["Properties"]["ManagedPolicyArns"][0]["Ref"],
        "FullAccessPolicy"
    );
    assert!(t["Outputs"].get("AppRoleArn").is_some());
}

#[test]
fn iam_matrix_no_iam_with_roles_is_an_error() {
    let e = render(&DeployOptions {
        create_iam: false,
        create_iam_roles: true,
        ..opts()
    })
    .unwrap_err();
    assert!(
        e.0.contains("--no-iam") && e.0.contains("--create-iam-roles"),
        "{e}"
    );
}

#[test]
fn table_matches_the_library() {
    let t = render(&opts()).unwrap();
    let p = &t["Resources"]["RateLimitsTable"]["Properties"];
    assert_eq!(p["TableName"]["Ref"], "AWS::StackName");
    assert_eq!(p["BillingMode"], "PAY_PER_REQUEST");
    assert_eq!(
        p["StreamSpecification"]["StreamViewType"],
        "NEW_AND_OLD_IMAGES"
    );
    assert_eq!(p["TimeToLiveSpecification"]["AttributeName"], "ttl");
    assert_eq!(p["TimeToLiveSpecification"]["Enabled"], true);
    assert_eq!(p["KeySchema"][0]["AttributeName"], "PK");
    assert_eq!(p["KeySchema"][1]["AttributeName"], "SK");
    let gsis = p["GlobalSecondaryIndexes"].as_array().unwrap();
    assert_eq!(gsis.len(), zae_limiter::dynamodb::INDEXES.len());
    for (g, (name, hash, range)) in gsis.iter().zip(zae_limiter::dynamodb::INDEXES) {
        assert_eq!(g["IndexName"], name);
        assert_eq!(g["KeySchema"][0]["AttributeName"], hash);
        assert_eq!(g["KeySchema"][1]["AttributeName"], range);
        assert_eq!(g["Projection"]["ProjectionType"], "KEYS_ONLY");
    }
    assert_eq!(p["AttributeDefinitions"].as_array().unwrap().len(), 10);
}

#[test]
fn pitr_and_deletion_protection_are_parameters() {
    let t = render(&opts()).unwrap();
    assert_eq!(t["Parameters"]["PITRRecoveryPeriodDays"]["Default"], 0);
    assert_eq!(
        t["Parameters"]["EnableDeletionProtection"]["Default"],
        "false"
    );
    assert!(t["Conditions"].get("PITREnabled").is_some());
    let t = render(&DeployOptions {
        pitr_recovery_days: Some(7),
        enable_deletion_protection: true,
        ..opts()
    })
    .unwrap();
    assert_eq!(t["Parameters"]["PITRRecoveryPeriodDays"]["Default"], 7);
    assert_eq!(
        t["Parameters"]["EnableDeletionProtection"]["Default"],
        "true"
    );
    let pitr = &t["Resources"]["RateLimitsTable"]["Properties"]["PointInTimeRecoverySpecification"];
    assert_eq!(
        pitr["RecoveryPeriodInDays"]["Fn::If"][1]["Ref"],
        "PITRRecoveryPeriodDays"
    );
    for bad in [0, 36] {
        assert!(render(&DeployOptions {
            pitr_recovery_days: Some(bad),
            ..opts()
        })
        .is_err());
    }
}

#[test]
fn every_parameter_is_documented_and_used() {
    for o in variants() {
        let t = render(&o).unwrap();
        let text = t["Resources"].to_string() + &t["Conditions"].to_string();
        for (name, p) in t["Parameters"].as_object().unwrap() {
            let d = p["Description"].as_str().unwrap_or("");
            assert!(d.len() > 10, "{name} has no description");
            let code = name.starts_with("LambdaCode");
            assert_eq!(
                p.get("Default").is_some(),
                !code,
                "{name}: only the code location has no default"
            );
            let used = text.contains(&format!("{{\"Ref\":\"{name}\"}}"))
                || text.contains(&format!("${{{name}}}"));
            assert!(used, "{name} is not used in {o:?}");
        }
    }
}

#[test]
fn outputs_are_exported_with_the_stack_name() {
    let t = render(&DeployOptions {
        create_iam_roles: true,
        ..opts()
    })
    .unwrap();
    let outputs = t["Outputs"].as_object().unwrap();
    for name in [
        "TableName",
        "TableArn",
        "StreamArn",
        "AggregatorFunctionArn",
        "AggregatorFunctionName",
        "AggregatorDLQUrl",
        "AggregatorDLQArn",
        "AuditArchiveBucketName",
        "ProvisionerFunctionArn",
    ] {
        let o = &outputs[name];
        let export = o["Export"]["Name"]["Fn::Sub"].as_str().unwrap();
        assert!(export.starts_with("${AWS::StackName}-"), "{name}: {export}");
    }
    assert_eq!(
        outputs["ProvisionerFunctionArn"]["Export"]["Name"]["Fn::Sub"],
        "${AWS::StackName}-ProvisionerArn"
    );
}

#[test]
fn aggregator_function_and_mapping() {
    let t = render(&DeployOptions {
        lambda_memory: 512,
        lambda_timeout: 120,
        ..opts()
    })
    .unwrap();
    let f = &t["Resources"]["AggregatorFunction"]["Properties"];
    assert_eq!(f["Runtime"], "provided.al2023");
    assert_eq!(f["Handler"], "bootstrap");
    assert_eq!(f["Code"]["S3Bucket"]["Ref"], "LambdaCodeBucket");
    assert_eq!(f["Environment"]["Variables"]["ZAEL_HANDLER"], "aggregator");
    assert_eq!(
        f["Environment"]["Variables"]["ZAEL_TABLE_NAME"]["Ref"],
        "RateLimitsTable"
    );
    assert_eq!(f["TracingConfig"]["Mode"], "PassThrough");
    assert_eq!(t["Parameters"]["LambdaMemorySize"]["Default"], 512);
    assert_eq!(
        t["Parameters"]["LambdaDurationThreshold"]["Default"],
        96_000
    );
    let p = &t["Resources"]["ProvisionerFunction"]["Properties"];
    assert_eq!(p["Environment"]["Variables"]["ZAEL_HANDLER"], "provisioner");
    let m = &t["Resources"]["AggregatorEventSourceMapping"]["Properties"];
    assert_eq!(m["BisectBatchOnFunctionError"], true);
    assert_eq!(m["FunctionResponseTypes"][0], "ReportBatchItemFailures");
    assert_eq!(
        m["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0],
        "AggregatorDLQ"
    );
    assert_eq!(m["MaximumRetryAttempts"], 3);
    let filters = m["FilterCriteria"]["Filters"].to_string();
    assert!(
        filters.contains("#STATE") && filters.contains("#AUDIT#"),
        "{filters}"
    );
    // the original's defect: audit PKs start with the namespace id, never with AUDIT#
    assert!(!filters.contains("\\\"PK\\\""), "{filters}");
    let lg = &t["Resources"]["AggregatorLogGroup"]["Properties"];
    assert_eq!(lg["RetentionInDays"]["Ref"], "LogRetentionDays");
}

#[test]
fn tracing_adds_active_mode_and_xray_permissions() {
    let t = render(&DeployOptions {
        enable_tracing: true,
        ..opts()
    })
    .unwrap();
    let f = &t["Resources"]["AggregatorFunction"]["Properties"];
    assert_eq!(f["TracingConfig"]["Mode"], "Active");
    let role = t["Resources"]["AggregatorRole"].to_string();
    assert!(role.contains("xray:PutTraceSegments"));
    let t = render(&opts()).unwrap();
    assert!(!t["Resources"]["AggregatorRole"]
        .to_string()
        .contains("xray:"));
}

#[test]
fn archive_bucket_follows_archival_and_aggregator() {
    let t = render(&opts()).unwrap();
    let b = &t["Resources"]["AuditArchiveBucket"]["Properties"];
    assert_eq!(
        b["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
            ["ServerSideEncryptionByDefault"]["SSEAlgorithm"],
        "AES256"
    );
    assert_eq!(
        b["PublicAccessBlockConfiguration"]["BlockPublicPolicy"],
        true
    );
    let rule = &b["LifecycleConfiguration"]["Rules"][0];
    assert_eq!(rule["Transitions"][0]["StorageClass"], "GLACIER_IR");
    assert_eq!(
        rule["Transitions"][0]["TransitionInDays"]["Ref"],
        "AuditArchiveGlacierDays"
    );
    assert!(t["Resources"]["AggregatorRole"]
        .to_string()
        .contains("s3:PutObject"));
    for o in [
        DeployOptions {
            enable_audit_archival: false,
            ..opts()
        },
        DeployOptions {
            enable_aggregator: false,
            ..opts()
        },
    ] {
        let t = render(&o).unwrap();
        assert!(!has(&t, "AuditArchiveBucket"));
        assert!(t["Parameters"].get("AuditArchiveGlacierDays").is_none());
    }
}

#[test]
fn alarms_and_sns_topic() {
    let t = render(&opts()).unwrap();
    assert_eq!(count(&t, "AWS::CloudWatch::Alarm"), 6);
    for a in [
        "AggregatorErrorAlarm",
        "AggregatorDurationAlarm",
        "StreamIteratorAgeAlarm",
        "DLQAlarm",
        "ReadThrottleAlarm",
        "WriteThrottleAlarm",
    ] {
        assert!(has(&t, a), "{a}");
    }
    let d = &t["Resources"]["AggregatorDurationAlarm"]["Properties"];
    assert_eq!(d["Threshold"]["Ref"], "LambdaDurationThreshold");
    assert_eq!(
        t["Resources"]["StreamIteratorAgeAlarm"]["Properties"]["Threshold"],
        30000
    );
    assert_eq!(
        t["Resources"]["DLQAlarm"]["Properties"]["ComparisonOperator"],
        "GreaterThanOrEqualToThreshold"
    );
    assert_eq!(t["Parameters"]["AlarmSNSTopicArn"]["Default"], "");
    let t = render(&DeployOptions {
        alarm_sns_topic: Some("arn:aws:sns:us-east-1:123456789012:alerts".into()),
        ..opts()
    })
    .unwrap();
    assert_eq!(
        t["Parameters"]["AlarmSNSTopicArn"]["Default"],
        "arn:aws:sns:us-east-1:123456789012:alerts"
    );
    let t = render(&DeployOptions {
        enable_alarms: false,
        ..opts()
    })
    .unwrap();
    assert_eq!(count(&t, "AWS::CloudWatch::Alarm"), 0);
    assert!(t["Conditions"].get("HasAlarmTopic").is_none());
    // without the aggregator, only the table alarms
    let t = render(&DeployOptions {
        enable_aggregator: false,
        ..opts()
    })
    .unwrap();
    assert_eq!(count(&t, "AWS::CloudWatch::Alarm"), 2);
}

#[test]
fn namespace_policies_use_leading_keys_and_the_registry_only() {
    let t = render(&opts()).unwrap();
    for id in [
        "NamespaceAcquirePolicy",
        "NamespaceFullAccessPolicy",
        "NamespaceReadOnlyPolicy",
    ] {
        let doc = &t["Resources"][id]["Properties"]["PolicyDocument"];
        let s = &doc["Statement"];
        assert_eq!(s.as_array().unwrap().len(), 2);
        assert_eq!(
            s[0]["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"][0],
            "${aws:PrincipalTag/zael_namespace_id}/*"
        );
        assert_eq!(
            s[1]["Condition"]["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"][0],
            "_/SYSTEM#"
        );
        assert_eq!(s[1]["Action"], serde_json::json!(["dynamodb:GetItem"]));
    }
    let acq = t["Resources"]["AcquireOnlyPolicy"].to_string();
    assert!(
        acq.contains("dynamodb:UpdateItem"),
        "the original's -acq lacked UpdateItem"
    );
    assert!(!t["Resources"]
        .to_string()
        .contains("dynamodb:TransactWriteItems"));
}

#[test]
fn names_formats_and_boundary() {
    let o = DeployOptions {
        role_name_format: Some("svc-{}".into()),
        policy_name_format: Some("pol-{}".into()),
        permission_boundary: Some("ServiceBoundary".into()),
        create_iam_roles: true,
        ..opts()
    };
    assert_eq!(o.role_name("aggr"), "svc-prod-aggr");
    assert_eq!(o.policy_name("ns-acq"), "pol-prod-ns-acq");
    let t = render(&o).unwrap();
    let role = &t["Resources"]["AggregatorRole"]["Properties"];
    assert_eq!(role["RoleName"]["Fn::Sub"], "svc-${AWS::StackName}-aggr");
    assert_eq!(
        role["PermissionsBoundary"]["Fn::Sub"],
        "arn:${AWS::Partition}:iam::${AWS::AccountId}:policy/ServiceBoundary"
    );
    assert!(t["Resources"]["AppRole"]["Properties"]
        .get("PermissionsBoundary")
        .is_some());
    assert_eq!(
        t["Resources"]["AcquireOnlyPolicy"]["Properties"]["ManagedPolicyName"]["Fn::Sub"],
        "pol-${AWS::StackName}-acq"
    );
    for bad in ["svc", "a-{}-{}", "x{}y z"] {
        assert!(
            render(&DeployOptions {
                role_name_format: Some(bad.into()),
                ..opts()
            })
            .is_err(),
            "{bad}"
        );
    }
    let long = DeployOptions {
        name: "a".repeat(56),
        ..opts()
    };
    assert!(render(&long).is_err());
    let long_fmt = DeployOptions {
        role_name_format: Some(format!("{}{{}}", "x".repeat(20))),
        name: "a".repeat(40),
        ..opts()
    };
    assert!(render(&long_fmt).unwrap_err().0.contains("64"));
}

#[test]
fn option_validation() {
    for o in [
        DeployOptions {
            log_retention_days: 31,
            ..opts()
        },
        DeployOptions {
            lambda_memory: 64,
            ..opts()
        },
        DeployOptions {
            lambda_timeout: 901,
            ..opts()
        },
        DeployOptions {
            aggregator_role_arn: Some("role/x".into()),
            ..opts()
        },
        DeployOptions {
            alarm_sns_topic: Some("topic".into()),
            ..opts()
        },
        DeployOptions {
            name: "1abc".into(),
            ..opts()
        },
        DeployOptions {
            tags: vec![("aws:x".into(), "v".into())],
            ..opts()
        },
    ] {
        assert!(render(&o).is_err(), "{o:?}");
    }
    for d in LOG_RETENTION_DAYS {
        assert!(render(&DeployOptions {
            log_retention_days: *d,
            ..opts()
        })
        .is_ok());
    }
}

#[test]
fn parameters_carry_the_option_values() {
    let o = DeployOptions {
        log_retention_days: 90,
        code_bucket: "b".into(),
        code_key: "k.zip".into(),
        ..opts()
    };
    let p = o.parameters().unwrap();
    let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("LogRetentionDays").as_deref(), Some("90"));
    assert_eq!(get("LambdaCodeKey").as_deref(), Some("k.zip"));
    assert_eq!(
        get("SchemaVersion").as_deref(),
        Some(zae_limiter::schema::SCHEMA_VERSION)
    );
    assert_eq!(get("PITRRecoveryPeriodDays").as_deref(), Some("0"));
}

/// The main option combinations (also linted by scripts/cfn-lint.sh through the CLI).
fn variants() -> Vec<DeployOptions> {
    vec![
        opts(),
        DeployOptions {
            create_iam: false,
            ..opts()
        },
        DeployOptions {
            create_iam: false,
            aggregator_role_arn: Some(EXTERNAL.into()),
            ..opts()
        },
        DeployOptions {
            aggregator_role_arn: Some(EXTERNAL.into()),
            ..opts()
        },
        DeployOptions {
            create_iam_roles: true,
            permission_boundary: Some("B".into()),
            ..opts()
        },
        DeployOptions {
            enable_aggregator: false,
            enable_alarms: false,
            ..opts()
        },
        DeployOptions {
            enable_tracing: true,
            pitr_recovery_days: Some(7),
            enable_audit_archival: false,
            ..opts()
        },
    ]
}
