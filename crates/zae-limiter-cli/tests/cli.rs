//! The real binary: output and exit codes.

use std::process::Command;

fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_zae-limiter"))
        .args(args)
        .output()
        .expect("run zae-limiter");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn demo_prints_a_summary_with_rejections() {
    let (code, out, _) = cli(&["demo"]);
    assert_eq!(code, 0);
    assert!(out.contains("429 for key-batch"), "{out}");
    assert!(out.contains("Retry-After:"), "{out}");
    assert!(out.contains("acme (project)"), "{out}");
}

#[test]
fn demo_json_is_consistent() {
    let (code, out, _) = cli(&["demo", "--output", "json", "--seconds", "60", "--seed", "3"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON document");
    let keys = v["keys"].as_object().unwrap();
    assert_eq!(keys.len(), 3);
    let sum = |f: &str| keys.values().map(|k| k[f].as_u64().unwrap()).sum::<u64>();
    // every request is admitted, rejected or rolled back, and the project saw all of them
    assert_eq!(
        sum("sent"),
        sum("admitted") + sum("rejected") + sum("failed_and_rolled_back")
    );
    assert_eq!(v["project"]["admitted"].as_u64().unwrap(), sum("admitted"));
    assert!(sum("rejected") > 0, "the demo should show rejections: {v}");
    // same seed, same run
    let (_, again, _) = cli(&["demo", "--output", "json", "--seconds", "60", "--seed", "3"]);
    assert_eq!(out, again);
}

#[test]
fn bad_arguments_fail_with_one_line() {
    let (code, out, err) = cli(&["demo", "--seconds", "0"]);
    assert_ne!(code, 0);
    assert!(out.is_empty());
    assert!(err.contains("--seconds"), "{err}");
    let (code, _, err) = cli(&["no-such-command"]);
    assert_ne!(code, 0);
    assert!(err.contains("unrecognized subcommand"), "{err}");
}

#[test]
fn version() {
    let (code, out, _) = cli(&["version", "--output", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["client_version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn help_mentions_table_create() {
    let (code, out, _) = cli(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("table create"), "{out}");
    let (code, out, _) = cli(&["table", "create", "--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("Idempotent"), "{out}");
    assert!(out.contains("CloudFormation"), "{out}");
    assert!(
        out.contains("zae-limiter --endpoint-url http://127.0.0.1:8000"),
        "{out}"
    );
}
