//! The deploy lifecycle end to end with the real binary: against moto server (CloudFormation,
//! S3, Lambda, STS, IAM; endpoint in `ZAEL_TEST_MOTO_ENDPOINT`, given to the binary as
//! `AWS_ENDPOINT_URL`) deploy → CREATE_COMPLETE, re-deploy unchanged → nothing to do,
//! re-deploy changed → UPDATE_COMPLETE, status, list, check, delete; and `deploy
//! --endpoint-url` on DynamoDB Local (`ZAEL_TEST_DYNAMODB_ENDPOINT`). Every test uses its
//! own stack name (moto is shared by the tests running in parallel; it keeps managed
//! policies after DeleteStack, so names are never reused).
//!
//! moto skips CloudWatch alarms and ignores TTL, PITR and S3 lifecycle: those are asserted
//! on the rendered template (tests/template.rs, the infra crate's tests, cfn-lint).
#![cfg(feature = "dynamodb-local-tests")]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

mod support;
use support::Run;

fn moto() -> String {
    std::env::var("ZAEL_TEST_MOTO_ENDPOINT")
        .expect("ZAEL_TEST_MOTO_ENDPOINT is not set: run through scripts/moto.sh (scripts/test.sh)")
}

fn unique(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_000;
    format!("{tag}-{}-{nanos}", std::process::id())
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(unique(tag));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A stack on moto with a fresh name and a Lambda package (a small stand-in binary: moto
/// stores the code but never runs it).
struct Stack {
    name: String,
    zip: PathBuf,
}

impl Stack {
    fn new(tag: &str) -> Self {
        let dir = scratch(tag);
        let bin = dir.join("bootstrap-bin");
        std::fs::write(&bin, b"#!/bin/sh\nexit 0\n").unwrap();
        let zip = dir.join("lambda.zip");
        let out = base()
            .args(["lambda-export", "--binary"])
            .arg(&bin)
            .arg("--output")
            .arg(&zip)
            .output()
            .unwrap();
        Run::from(out).ok();
        Stack {
            name: unique(tag),
            zip,
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = base();
        c.env("AWS_ENDPOINT_URL", moto())
            .env("ZAEL_LAMBDA_ZIP", &self.zip)
            .args(["--name", &self.name])
            .args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd(args).stdin(Stdio::null()).output().unwrap())
    }
}

fn base() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zae-limiter"));
    c.env_remove("ZAEL_NAME")
        .env_remove("ZAEL_ENDPOINT_URL")
        .env_remove("ZAEL_NAMESPACE")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    c
}

#[test]
fn deploy_update_status_list_check_delete_on_moto() {
    let s = Stack::new("life");
    // create
    let r = s.run(&["--output", "json", "deploy"]);
    let v = r.json();
    assert_eq!(v["operation"], "create", "{v}");
    assert_eq!(v["status"], "CREATE_COMPLETE", "{v}");
    let outputs = &v["outputs"];
    assert_eq!(outputs["TableName"], s.name.as_str());
    for k in [
        "TableArn",
        "StreamArn",
        "AcquireOnlyPolicyArn",
        "FullAccessPolicyArn",
        "ReadOnlyPolicyArn",
        "NamespaceAcquirePolicyArn",
        "NamespaceFullAccessPolicyArn",
        "NamespaceReadOnlyPolicyArn",
        "AggregatorFunctionName",
        "AggregatorFunctionArn",
        "AggregatorDLQUrl",
        "ProvisionerFunctionArn",
        "AuditArchiveBucketName",
    ] {
        assert!(
            outputs[k].as_str().is_some_and(|o| !o.is_empty()),
            "{k} missing: {v}"
        );
    }
    assert!(outputs["AcquireOnlyPolicyArn"]
        .as_str()
        .unwrap()
        .ends_with(&format!("{}-acq", s.name)));
    assert_eq!(
        outputs["AggregatorFunctionName"],
        format!("{}-aggregator", s.name).as_str()
    );

    // the same options again: nothing to do
    let v = s.run(&["--output", "json", "deploy"]).json();
    assert_eq!(v["operation"], "none", "{v}");
    let text = s.run(&["deploy"]);
    assert_eq!(text.code, 0, "{text:?}");
    assert!(text.err.contains("nothing to do"), "{text:?}");
    // the human form prints the settings first
    assert!(
        text.err.contains("Log retention") && text.err.contains("30 days"),
        "{text:?}"
    );

    // changed values only (parameters): a change set, UPDATE_COMPLETE. (Not the table's:
    // moto has no update handler for AWS::DynamoDB::Table and loses the resource, so PITR
    // and deletion protection changes are asserted on the template only.)
    let v = s
        .run(&[
            "--output",
            "json",
            "deploy",
            "--log-retention-days",
            "90",
            "--lambda-memory",
            "512",
        ])
        .json();
    assert_eq!(v["operation"], "update", "{v}");
    assert_eq!(v["status"], "UPDATE_COMPLETE", "{v}");
    // changed options: new resources
    let v = s
        .run(&[
            "--output",
            "json",
            "deploy",
            "--log-retention-days",
            "90",
            "--lambda-memory",
            "512",
            "--create-iam-roles",
        ])
        .json();
    assert_eq!(v["operation"], "update", "{v}");
    assert_eq!(v["status"], "UPDATE_COMPLETE", "{v}");
    // (moto does not recompute outputs on update, so the new roles' outputs are not
    // asserted here; tests/template.rs and the infra tests cover them)

    // status
    let v = s.run(&["--output", "json", "status"]).json();
    assert_eq!(v["stack_status"], "UPDATE_COMPLETE");
    assert_eq!(v["is_healthy"], true);
    assert_eq!(v["schema_version"], zae_limiter::schema::SCHEMA_VERSION);
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    let text = s.run(&["status"]).ok();
    assert!(
        text.contains("IAM Policies") && text.contains("AcquireOnly"),
        "{text}"
    );
    assert!(text.contains(&format!("{}-acq", s.name)), "{text}");

    // list: this stack among the others of the parallel tests
    let v = s.run(&["--output", "json", "list"]).json();
    let mine: Vec<&Value> = v["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["name"] == s.name.as_str())
        .collect();
    assert_eq!(mine.len(), 1, "{v}");
    assert_eq!(mine[0]["stack_status"], "UPDATE_COMPLETE");
    let text = s.run(&["list"]).ok();
    assert!(
        text.starts_with("Rate Limiter Instances (us-east-1)"),
        "{text}"
    );
    assert!(
        text.contains(&format!("{}  ✓ UPDATE_COMPLETE", s.name))
            || text.contains("✓ UPDATE_COMPLETE"),
        "{text}"
    );
    assert!(text.contains("instance(s)"), "{text}");

    // check: the schema record deploy wrote
    let v = s.run(&["--output", "json", "check"]).json();
    assert_eq!(v["compatible"], true, "{v}");
    assert_eq!(
        v["table_schema_version"],
        zae_limiter::schema::SCHEMA_VERSION
    );
    // upgrade: new code to both functions
    let v = s.run(&["--output", "json", "upgrade"]).json();
    assert_eq!(v["functions"].as_array().unwrap().len(), 2, "{v}");
    let v = s.run(&["--output", "json", "check"]).json();
    assert_eq!(v["lambda_version"], env!("CARGO_PKG_VERSION"), "{v}");

    // delete: no terminal and no --yes is refused
    let line = s.run(&["delete"]).fails_with(2);
    assert!(line.contains("--yes"), "{line}");
    let v = s.run(&["--output", "json", "delete", "--yes"]).json();
    assert_eq!(v["status"], "DELETE_COMPLETE");
    let line = s.run(&["status"]).fails();
    assert!(
        line.contains("no stack") && line.contains("deploy"),
        "{line}"
    );
    let v = s.run(&["--output", "json", "list"]).json();
    assert!(!v["instances"].to_string().contains(&s.name), "{v}");
}

#[test]
fn no_iam_deploys_the_table_only_and_no_wait_returns_at_once() {
    let s = Stack::new("noiam");
    let v = s.run(&["--output", "json", "deploy", "--no-iam"]).json();
    assert_eq!(v["status"], "CREATE_COMPLETE", "{v}");
    assert!(v["outputs"].get("AcquireOnlyPolicyArn").is_none(), "{v}");
    assert!(v["outputs"].get("AggregatorFunctionArn").is_none(), "{v}");
    assert!(v["outputs"]["TableArn"].is_string());
    // --no-wait: the operation is only started (moto finishes it synchronously anyway)
    let v = s
        .run(&[
            "--output",
            "json",
            "deploy",
            "--no-iam",
            "--no-alarms",
            "--enable-deletion-protection",
            "--no-wait",
        ])
        .json();
    assert_eq!(v["operation"], "update", "{v}");
    assert!(v["status"].is_null(), "{v}");
    let v = s.run(&["--output", "json", "delete", "--yes"]).json();
    assert_eq!(v["status"], "DELETE_COMPLETE");
}

#[test]
fn a_missing_package_says_how_to_build_it() {
    let s = Stack::new("nozip");
    let mut c = s.cmd(&["deploy"]);
    c.env("ZAEL_LAMBDA_ZIP", "/nonexistent/lambda.zip");
    let line = Run::from(c.stdin(Stdio::null()).output().unwrap()).fails();
    assert!(line.contains("ZAEL_LAMBDA_ZIP"), "{line}");
    // nothing was created
    let line = s.run(&["status"]).fails();
    assert!(line.contains("no stack"), "{line}");
}

#[test]
fn lambda_export_writes_a_zip_with_an_executable_bootstrap() {
    let dir = scratch("export");
    let bin = dir.join("bin");
    std::fs::write(&bin, vec![7u8; 100_000]).unwrap();
    let out = dir.join("x.zip");
    let v = Run::from(
        base()
            .args(["--output", "json", "lambda-export", "--binary"])
            .arg(&bin)
            .arg("--output")
            .arg(&out)
            .output()
            .unwrap(),
    )
    .json();
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(v["bytes"], bytes.len());
    assert!(bytes.starts_with(b"PK\x03\x04"));
    // deflated: 100 kB of one byte shrinks
    assert!(bytes.len() < 5_000, "{}", bytes.len());
    assert!(bytes.windows(9).any(|w| w == b"bootstrap"));
    // copying the found package (ZAEL_LAMBDA_ZIP) gives the same bytes
    let again = dir.join("y.zip");
    Run::from(
        base()
            .env("ZAEL_LAMBDA_ZIP", &out)
            .args(["lambda-export", "-o"])
            .arg(&again)
            .output()
            .unwrap(),
    )
    .ok();
    assert_eq!(std::fs::read(&again).unwrap(), bytes);
}

#[test]
fn deploy_with_an_endpoint_creates_a_working_table_on_dynamodb_local() {
    let endpoint = std::env::var("ZAEL_TEST_DYNAMODB_ENDPOINT")
        .expect("ZAEL_TEST_DYNAMODB_ENDPOINT is not set: run through scripts/dynamodb-local.sh");
    let name = unique("local");
    let run = |args: &[&str]| {
        Run::from(
            base()
                .args(["--name", &name, "--endpoint-url", &endpoint])
                .args(args)
                .output()
                .unwrap(),
        )
    };
    // before: a command says how to create the table
    let line = run(&["entity", "show", "k"]).fails();
    assert!(
        line.contains("does not exist") && line.contains("deploy"),
        "{line}"
    );
    let v = run(&["--output", "json", "deploy"]).json();
    assert_eq!(v["status"], "created", "{v}");
    assert_eq!(v["schema_version"], zae_limiter::schema::SCHEMA_VERSION);
    // an acquire succeeds
    run(&["acquire", "k", "gpt-4o", "-l", "rpm:10", "-c", "rpm=1"]).ok();
    // the default namespace is registered and the schema recorded
    let v = run(&["--output", "json", "namespace", "list"]).json();
    assert!(v.to_string().contains("\"default\""), "{v}");
    let v = run(&["--output", "json", "check"]).json();
    assert_eq!(v["compatible"], true, "{v}");
    // idempotent
    let v = run(&["--output", "json", "deploy"]).json();
    assert_eq!(v["status"], "exists", "{v}");
}
