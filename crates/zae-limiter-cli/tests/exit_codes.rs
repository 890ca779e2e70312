//! Exit codes and the shape of failures: 0 ok, 1 error, 2 usage, 3 rate limited, 4 store
//! unavailable; a closed stdout ends quietly with 0; clap's messages in full; library errors
//! on one short line. The DynamoDB Local cases need the feature `dynamodb-local-tests`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// Exit code, stdout, stderr of `zae-limiter ARGS...` (without the test environment's
/// `ZAEL_*` variables).
fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_zae-limiter"))
        .args(args)
        .env_remove("ZAEL_NAME")
        .env_remove("ZAEL_ENDPOINT_URL")
        .env_remove("ZAEL_NAMESPACE")
        .env_remove("ZAEL_PRINCIPAL")
        .output()
        .expect("run zae-limiter");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `zae-limiter ARGS | head -n 1`: read one line, close the pipe, wait.
fn first_line_then_close(args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_zae-limiter"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn zae-limiter");
    let mut line = String::new();
    {
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        reader.read_line(&mut line).unwrap();
    } // the reader (the read end of the pipe) is dropped here
    let out = child.wait_with_output().expect("wait zae-limiter");
    (
        out.status.code().unwrap_or(-1),
        line,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_stdout_ends_quietly_with_0() {
    for args in [
        &["demo"][..],
        &["demo", "--output", "json"][..],
        &["--help"][..],
    ] {
        let (code, line, err) = first_line_then_close(args);
        assert!(!line.is_empty(), "{args:?}: no first line");
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: stderr should be empty: {err}");
    }
}

#[test]
fn help_and_version_go_to_stdout_with_0() {
    let (code, out, err) = cli(&["--help"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Exit codes: 0 ok, 1 error, 2 usage"), "{out}");
    assert!(out.contains("3 rate limited"), "{out}");
    assert!(out.contains("4 store unavailable"), "{out}");
    let (code, out, _) = cli(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("zae-limiter "), "{out}");
}

/// A usage error: exit 2, nothing on stdout, clap's full rendering on stderr.
fn usage_error(args: &[&str]) -> String {
    let (code, out, err) = cli(args);
    assert_eq!(code, 2, "{args:?}: {err}");
    assert!(out.is_empty(), "{args:?}: {out}");
    assert!(err.starts_with("error: "), "{args:?}: {err}");
    err
}

#[test]
fn usage_errors_exit_2_with_clap_in_full() {
    let err = usage_error(&["entity", "create"]);
    assert!(err.contains("<ENTITY_ID>") || err.contains("<ID>"), "{err}");
    assert!(err.contains("Usage: zae-limiter entity create"), "{err}");
    assert!(err.contains("For more information, try '--help'."), "{err}");

    let err = usage_error(&["acquir", "k", "r"]);
    assert!(err.contains("unrecognized subcommand 'acquir'"), "{err}");
    assert!(
        err.contains("tip: ") && err.contains("similar subcommand") && err.contains("'acquire'"),
        "{err}"
    );
    assert!(err.contains("Usage: zae-limiter"), "{err}");

    let err = usage_error(&["system", "set-defaults", "--on-unavailable", "maybe"]);
    assert!(
        err.contains("invalid value 'maybe' for '--on-unavailable"),
        "{err}"
    );
    assert!(err.contains("[possible values: block, allow]"), "{err}");

    let err = usage_error(&["acquire", "k", "r", "-l", "rpm=1"]);
    assert!(err.contains("invalid value 'rpm=1' for '--limit"), "{err}");
    assert!(err.contains("expected name:rate"), "{err}");

    let err = usage_error(&["--output", "yaml", "version"]);
    assert!(err.contains("[possible values: table, json]"), "{err}");
}

#[test]
fn bad_input_clap_cannot_check_exits_2_on_one_escaped_line() {
    let (code, out, err) = cli(&["acquire", "k", "r", "-l", "rpm:1", "-c", "rpm\n\u{1b}[31m"]);
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty(), "{out}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!err.contains('\u{1b}'), "{err:?}");
    assert!(err.contains(r"rpm\n\u{1b}[31m"), "{err}");
}

/// A library error: one `error: ...` line, short, no debug dump of the SDK.
fn one_line(err: &str) {
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.len() < 300, "{} characters: {err}", err.len());
    assert!(!err.contains("Request {"), "{err}");
    assert!(!err.contains("DispatchFailure("), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn an_unreachable_store_exits_4_on_one_line() {
    let at = [
        "--endpoint-url",
        "http://127.0.0.1:9",
        "--name",
        "t-unreachable",
    ];
    for cmd in [
        &["acquire", "k", "r", "-l", "rpm:1"][..],
        &["available", "k", "r", "-l", "rpm:1"][..],
        &["entity", "show", "k"][..],
        &["system", "get-defaults"][..],
    ] {
        let args: Vec<&str> = at.iter().chain(cmd).copied().collect();
        let (code, out, err) = cli(&args);
        assert_eq!(code, 4, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        one_line(&err);
        assert!(err.contains("unavailable"), "{err}");
        assert!(err.contains("the endpoint is unreachable"), "{err}");
    }
}

#[cfg(feature = "dynamodb-local-tests")]
mod dynamodb_local {
    use super::*;

    fn endpoint() -> String {
        std::env::var("ZAEL_TEST_DYNAMODB_ENDPOINT")
            .expect("ZAEL_TEST_DYNAMODB_ENDPOINT is not set: run through scripts/dynamodb-local.sh")
    }

    fn table(tag: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        format!("t-exit-{tag}-{}-{nanos}", std::process::id())
    }

    fn on(name: &str, args: &[&str]) -> (i32, String, String) {
        let ep = endpoint();
        let all: Vec<&str> = ["--name", name, "--endpoint-url", &ep]
            .iter()
            .copied()
            .chain(args.iter().copied())
            .collect();
        cli(&all)
    }

    #[test]
    fn a_missing_table_exits_1_with_the_hint() {
        let name = table("missing");
        for cmd in [
            &["acquire", "k", "r", "-l", "rpm:1"][..],
            &["entity", "show", "k"][..],
        ] {
            let (code, out, err) = on(&name, cmd);
            assert_eq!(code, 1, "{cmd:?}: {err}");
            assert!(out.is_empty(), "{out}");
            one_line(&err);
            assert!(
                err.contains(&format!("table '{name}' does not exist")),
                "{err}"
            );
            assert!(err.contains("zae-limiter table create"), "{err}");
        }
    }

    #[test]
    fn a_refused_acquire_exits_3() {
        let name = table("refused");
        let (code, _, err) = on(&name, &["table", "create"]);
        assert_eq!(code, 0, "{err}");
        let (code, _, err) = on(&name, &["resource", "set-defaults", "r", "-l", "rpm:1"]);
        assert_eq!(code, 0, "{err}");
        let (code, _, err) = on(&name, &["acquire", "k", "r", "-c", "rpm=1"]);
        assert_eq!(code, 0, "first acquire: {err}");

        // table output: one line with the retry-after on stderr
        let (code, out, err) = on(&name, &["acquire", "k", "r", "-c", "rpm=1"]);
        assert_eq!(code, 3, "{out} {err}");
        assert!(out.is_empty(), "{out}");
        one_line(&err);
        assert!(err.contains("Retry-After: "), "{err}");

        // JSON: the RateLimitExceeded document on stdout, nothing on stderr
        let (code, out, err) = on(
            &name,
            &["--output", "json", "acquire", "k", "r", "-c", "rpm=1"],
        );
        assert_eq!(code, 3, "{out} {err}");
        assert!(err.is_empty(), "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
        assert_eq!(v["error"], "rate_limit_exceeded", "{v}");
        assert!(v["retry_after_seconds"].as_f64().unwrap() > 0.0, "{v}");
        assert_eq!(v["limits"][0]["limit_name"], "rpm", "{v}");
    }
}
