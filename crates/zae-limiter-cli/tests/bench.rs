//! `zae-limiter bench` end to end on the embedded store: the real binary, its JSON lines on
//! stdout, its exit code, and one-line errors for bad input.

use std::process::{Command, Output};

use serde_json::Value;

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zae-limiter"))
        .arg("bench")
        .args(args)
        // keep the environment from choosing a store or an endpoint for us
        .env_remove("ZAEL_ENDPOINT_URL")
        .output()
        .expect("run zae-limiter")
}

#[test]
fn memory_store_reports_every_scenario() {
    let out = bench(&["--store", "memory", "--ops", "50"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}; stderr:\n{stderr}",
        out.status
    );

    let stdout = String::from_utf8(out.stdout).expect("utf-8 stdout");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let ids: Vec<&str> = lines
        .iter()
        .map(|l| l["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b", "c", "d", "e", "f", "g", "h"]);

    for l in &lines {
        let id = l["scenario"].as_str().unwrap();
        assert_eq!(l["store"], "memory", "{l}");
        assert_eq!(l["post_check_ok"], true, "{l}");
        assert_eq!(l["ddb_calls_per_op"], serde_json::json!({}), "{l}");
        let want_ops = if id == "g" { 2000 } else { 50 };
        assert_eq!(l["ops"], want_ops, "{l}");
        let want_conc = if matches!(id, "f" | "g") { 16 } else { 1 };
        assert_eq!(l["concurrency"], want_conc, "{l}");
        assert!(l["ops_per_s"].as_f64().unwrap() > 0.0, "{l}");
        assert!(l["wall_s"].as_f64().unwrap() > 0.0, "{l}");
        assert!(l["client_cpu_ms_per_op"].as_f64().unwrap() >= 0.0, "{l}");
        let lat = &l["latency_ms"];
        let get = |k: &str| {
            lat[k]
                .as_f64()
                .unwrap_or_else(|| panic!("latency_ms.{k} in {l}"))
        };
        assert!(get("min") <= get("p50") && get("p50") <= get("p95"), "{l}");
        assert!(get("p95") <= get("p99") && get("p99") <= get("max"), "{l}");
        assert!(
            get("min") <= get("mean") && get("mean") <= get("max"),
            "{l}"
        );
    }

    let g = &lines[6];
    assert_eq!(g["admitted"], 500, "{g}");
    assert_eq!(g["rejected"], 1500, "{g}");
    assert_eq!(g["over_admission"], 0, "{g}");

    // progress per scenario and the summary table go to stderr
    assert!(stderr.contains("bench: scenario a:"), "{stderr}");
    // not a terminal: plain lines, no spinner (no carriage returns, no escape sequences)
    assert!(
        !stderr.contains('\r') && !stderr.contains('\u{1b}'),
        "{stderr:?}"
    );
    assert!(stderr.contains("post-check"), "{stderr}");
}

#[test]
fn a_subset_of_scenarios() {
    let out = bench(&["--store", "memory", "--ops", "5", "--scenarios", "h,a"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["scenario"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids, ["a", "h"]);
}

fn assert_one_line_error(args: &[&str], needle: &str) {
    let out = bench(args);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "{args:?}: not one line:\n{stderr}"
    );
    assert!(
        stderr.starts_with("error: ") && stderr.contains(needle),
        "{args:?}: {stderr}"
    );
}

#[test]
fn bad_input_fails_with_one_line() {
    assert_one_line_error(
        &["--store", "memory", "--ops", "0"],
        "--ops must be at least 1",
    );
    assert_one_line_error(
        &["--store", "memory", "--scenarios", "a,zz"],
        "unknown scenario 'zz'",
    );
}

#[test]
fn help_says_an_endpoint_table_is_created() {
    let out = bench(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.contains("creates the table") && help.contains("table create"),
        "{help}"
    );
}
