//! `limits plan|apply|diff|cfn-template` end to end against DynamoDB Local: outputs, exit
//! codes 0 (nothing to do) / 2 (changes) / 1 (error), `--output json`.
#![cfg(feature = "dynamodb-local-tests")]

use std::path::PathBuf;

mod support;
use support::LocalTable;

const LIMITS: &str = "\
namespace: default
system:
  on_unavailable: block
  limits:
    rpm: {capacity: 1000}
resources:
  gpt-4:
    limits:
      rpm: {capacity: 500}
      tpm: \"50000/min:75000\"
entities:
  user-premium:
    resources:
      gpt-4:
        limits:
          rpm: {capacity: 1000, refill_amount: 100, refill_period: 6}
";

/// A manifest file in the test's temporary directory.
fn file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("zael-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn plan_apply_again_drift_and_exit_codes() {
    let t = LocalTable::create("limits");
    let f = file("a.yaml", LIMITS);
    let f = f.to_str().unwrap();

    let plan = t.run(&["limits", "plan", "-f", f]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert_eq!(
        plan.out,
        "+ system                     rpm:1000/min on_unavailable=block\n\
         + resource gpt-4             rpm:500/min tpm:50000/min:75000\n\
         + entity user-premium/gpt-4  rpm:100/6sec:1000\n\
         Plan: 3 to create, 0 to update, 0 to delete, 0 to take over, 0 unchanged.\n"
    );
    // no terminal and no --yes: refused, nothing written
    let refused = t.run(&["limits", "apply", "-f", f]);
    assert_eq!(refused.code, 1);
    assert!(refused.err.contains("pass --yes"), "{refused:?}");
    assert_eq!(t.run(&["limits", "plan", "-f", f]).code, 2);

    let applied = t.run(&["limits", "apply", "-f", f, "--yes"]).ok();
    assert!(
        applied.ends_with(
            "Applied to namespace 'default': 3 created, 0 updated, 0 deleted, 0 taken over (5 writes).\n"
        ),
        "{applied}"
    );
    let again = t.run(&["limits", "apply", "-f", f, "--yes"]).ok();
    assert_eq!(
        again,
        "No changes: namespace 'default' matches the file (3 items).\n"
    );
    assert_eq!(t.run(&["limits", "plan", "-f", f]).ok(), again);
    let json = t
        .run(&["--output", "json", "limits", "plan", "-f", f])
        .json();
    assert_eq!(json["summary"]["unchanged"], 3);
    assert_eq!(json["changes"], serde_json::json!([]));
    assert_eq!(
        t.run(&["limits", "diff", "-f", f]).ok(),
        "No drift: namespace 'default' matches the file (3 items).\n"
    );

    // an imperative change: diff shows exactly it, exit 2
    t.run(&[
        "resource",
        "set-defaults",
        "gpt-4",
        "-l",
        "rpm:600",
        "-l",
        "tpm:50000/min:75000",
    ])
    .ok();
    let diff = t.run(&["limits", "diff", "-f", f]);
    assert_eq!(diff.code, 2);
    assert_eq!(
        diff.out,
        "~ resource gpt-4  rpm:600/min -> rpm:500/min\n\
         Drift: 1 item(s) in namespace 'default' differ from the file.\n"
    );
    let out = t.run(&["--output", "json", "limits", "diff", "-f", f]);
    assert_eq!(out.code, 2);
    let v: serde_json::Value = serde_json::from_str(&out.out).unwrap();
    assert_eq!(v["drift"][0]["target"], "gpt-4");
    assert_eq!(v["drift"][0]["limit_changes"][0]["old"], "rpm:600/min");
    assert_eq!(v["drift"][0]["limit_changes"][0]["new"], "rpm:500/min");

    // apply puts it back; the entity removed from the file is deleted
    let f2 = file("b.yaml", &LIMITS[..LIMITS.find("entities:").unwrap()]);
    let f2 = f2.to_str().unwrap();
    let plan = t.run(&["limits", "plan", "-f", f2]);
    assert_eq!(plan.code, 2);
    assert!(plan.out.contains("~ resource gpt-4"), "{plan:?}");
    assert!(
        plan.out
            .contains("- entity user-premium/gpt-4  rpm:100/6sec:1000"),
        "{plan:?}"
    );
    let v = t
        .run(&["--output", "json", "limits", "apply", "-f", f2, "--yes"])
        .json();
    assert_eq!(v["applied"]["updated"], 1);
    assert_eq!(v["applied"]["deleted"], 1);
    assert_eq!(t.run(&["limits", "plan", "-f", f2]).code, 0);
    let got = t
        .run(&["--output", "json", "resource", "get-defaults", "gpt-4"])
        .json();
    assert_eq!(got["limits"][0]["spec"], "rpm:500/min");
}

#[test]
fn bad_files_are_errors_with_their_place() {
    let t = LocalTable::create("limits-bad");
    let f = file(
        "bad.yaml",
        "resources:\n  gpt-4:\n    limits:\n      rpm: {capacity: 0}\n",
    );
    let line = t
        .run(&["limits", "plan", "-f", f.to_str().unwrap()])
        .fails();
    assert_eq!(
        line,
        format!(
            "error: {}:4:23: resources.gpt-4.limits.rpm.capacity: must be > 0",
            f.display()
        )
    );
    let line = t
        .run(&["limits", "apply", "-f", "/nonexistent/l.yaml", "--yes"])
        .fails();
    assert!(
        line.starts_with("error: cannot read /nonexistent/l.yaml: "),
        "{line}"
    );
    // the file's namespace and -N disagree
    let f = file(
        "ns.yaml",
        "namespace: tenant-a\nresources: {r: {limits: {a: 1}}}\n",
    );
    // an explicit -N that differs from the file's, even `default`, is an error
    for ns in ["tenant-b", "default"] {
        let line = t
            .run(&["-N", ns, "limits", "plan", "-f", f.to_str().unwrap()])
            .fails();
        assert!(line.contains("targets namespace 'tenant-a'"), "{line}");
    }
}

#[test]
fn namespace_from_the_flag_and_cfn_template() {
    let t = LocalTable::create("limits-ns");
    let f = file(
        "plain.yaml",
        "resources: {gpt-4: {limits: {rpm: {capacity: 5}}}}\n",
    );
    let f = f.to_str().unwrap();
    let plan = t.run(&["-N", "tenant-x", "limits", "plan", "-f", f]);
    assert_eq!(plan.code, 2);
    assert!(
        plan.out
            .starts_with("+ namespace 'tenant-x' (registered first)\n"),
        "{plan:?}"
    );
    t.run(&["-N", "tenant-x", "limits", "apply", "-f", f, "-y"])
        .ok();
    let v = t
        .run(&[
            "-N",
            "tenant-x",
            "--output",
            "json",
            "available",
            "k",
            "gpt-4",
        ])
        .json();
    assert_eq!(v["available"]["rpm"], 5, "{v}");
    assert_eq!(
        t.run(&["-N", "tenant-x", "limits", "plan", "-f", f]).code,
        0
    );

    let doc = t
        .run(&["--output", "json", "limits", "cfn-template", "-f", f])
        .json();
    let props = &doc["Resources"]["ZaeLimiterLimits"]["Properties"];
    assert_eq!(
        doc["Resources"]["ZaeLimiterLimits"]["Type"],
        "Custom::ZaeLimiterLimits"
    );
    assert_eq!(props["TableName"], t.name.as_str());
    assert_eq!(
        props["ServiceToken"]["Fn::ImportValue"],
        format!("{}-ProvisionerArn", t.name).as_str()
    );
    assert_eq!(props["Resources"]["gpt-4"]["Limits"]["rpm"]["Capacity"], 5);
}
