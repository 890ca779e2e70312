//! `zae-limiter cfn-template`: the flags reach the template, contradictions are usage errors.

use std::process::Command;

use serde_json::Value;

mod support;
use support::Run;

fn run(args: &[&str]) -> Run {
    Command::new(env!("CARGO_BIN_EXE_zae-limiter"))
        .args(args)
        .env_remove("ZAEL_NAME")
        .output()
        .expect("run zae-limiter")
        .into()
}

#[test]
fn prints_the_template_of_the_flags() {
    let t: Value = run(&[
        "--name",
        "prod",
        "cfn-template",
        "--create-iam-roles",
        "--pitr-recovery-days",
        "7",
    ])
    .json();
    assert!(t["Resources"]["AppRole"].is_object());
    assert_eq!(t["Parameters"]["PITRRecoveryPeriodDays"]["Default"], 7);
    let t: Value = run(&["cfn-template", "--no-iam", "--no-alarms"]).json();
    assert!(t["Resources"].get("AcquireOnlyPolicy").is_none());
    assert!(t["Resources"].get("AggregatorFunction").is_none());
    assert!(t["Resources"].get("ReadThrottleAlarm").is_none());
    // --no-iam with an external role keeps the aggregator
    let t: Value = run(&[
        "cfn-template",
        "--no-iam",
        "--aggregator-role-arn",
        "arn:aws:iam::123456789012:role/R",
    ])
    .json();
    assert_eq!(
        t["Resources"]["AggregatorFunction"]["Properties"]["Role"],
        "arn:aws:iam::123456789012:role/R"
    );
}

#[test]
fn contradictions_are_usage_errors() {
    let line = run(&["cfn-template", "--no-iam", "--create-iam-roles"]).fails_with(2);
    assert!(
        line.contains("--no-iam") && line.contains("--create-iam-roles"),
        "{line}"
    );
    let line = run(&["cfn-template", "--log-retention-days", "31"]).fails_with(2);
    assert!(line.contains("--log-retention-days"), "{line}");
    let line = run(&["cfn-template", "--tag", "novalue"]).usage_error();
    assert!(line.contains("KEY=VALUE"), "{line}");
}
