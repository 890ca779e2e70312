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

/// The subcommand names listed under "Commands:" in a `--help` output (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(String::from)
        .collect()
}

#[test]
fn every_subcommand_help_has_an_example() {
    let (code, top, _) = cli(&["--help"]);
    assert_eq!(code, 0);
    let mut todo: Vec<Vec<String>> = subcommands(&top).into_iter().map(|c| vec![c]).collect();
    for want in [
        "entity",
        "resource",
        "system",
        "audit",
        "namespace",
        "acquire",
        "available",
        "table",
        "completions",
    ] {
        assert!(todo.iter().any(|p| p[0] == want), "{want} missing: {top}");
    }
    let mut checked = 0;
    while let Some(path) = todo.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let (code, out, err) = cli(&args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(
            out.contains("Example"),
            "{args:?} --help has no example:\n{out}"
        );
        for sub in subcommands(&out) {
            let mut p = path.clone();
            p.push(sub);
            todo.push(p);
        }
        checked += 1;
    }
    assert!(checked > 30, "only {checked} commands checked");
}

#[test]
fn completions_for_every_shell() {
    let (code, out, err) = cli(&["completions", "bash"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("zae-limiter"), "{out}");
    assert!(
        out.contains("namespace") && out.contains("set-limits"),
        "{out}"
    );
    for shell in ["zsh", "fish", "powershell"] {
        let (code, out, err) = cli(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(
            out.contains("zae-limiter") && out.contains("entity"),
            "{shell}"
        );
    }
    let (code, _, _) = cli(&["completions", "tcsh"]);
    assert_eq!(code, 2);
}

/// Commands that work on no namespace refuse an explicit -N (usage error, exit 2), before
/// or after the subcommand; ZAEL_NAMESPACE from the environment is not refused.
#[test]
fn commands_without_a_namespace_refuse_an_explicit_one() {
    for args in [
        &["-N", "tenant-a", "version"][..],
        &["version", "--namespace", "tenant-a"],
        &["-N", "tenant-a", "completions", "bash"],
        &["-N", "tenant-a", "demo", "--seconds", "1"],
        &["-N", "tenant-a", "namespace", "list"],
        &["-N", "tenant-a", "local", "status"],
    ] {
        let (code, out, err) = cli(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(
            err.starts_with("error: -N/--namespace does not apply to `"),
            "{args:?}: {err}"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_zae-limiter"))
        .arg("version")
        .env("ZAEL_NAMESPACE", "tenant-a")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// Colours only on a terminal, never with NO_COLOR: clap's messages are plain when stderr is
/// not a terminal, coloured when forced (CLICOLOR_FORCE, the control), and plain again when
/// NO_COLOR is set, which wins. The tables are plain text always (output::table).
#[test]
fn no_color_and_non_tty_are_respected() {
    let run = |env: &[(&str, &str)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_zae-limiter"));
        c.arg("no-such-command")
            .env_remove("NO_COLOR")
            .env_remove("CLICOLOR_FORCE");
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        String::from_utf8_lossy(&out.stderr).contains('\u{1b}')
    };
    assert!(!run(&[]), "not a terminal: no escapes");
    assert!(run(&[("CLICOLOR_FORCE", "1")]), "forced: coloured");
    assert!(
        !run(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]),
        "NO_COLOR wins"
    );
}
