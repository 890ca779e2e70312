//! The management commands (`table`, `entity`, `resource`, `system`, `audit`, `namespace`,
//! `acquire`, `available`, `bench --store dynamodb`) end to end: the real binary against
//! DynamoDB Local (endpoint in `ZAEL_TEST_DYNAMODB_ENDPOINT`, set by
//! `scripts/dynamodb-local.sh`). Each test works in its own table.
#![cfg(feature = "dynamodb-local-tests")]

use std::process::Command;

use serde_json::Value;

mod support;
use support::LocalTable;

/// The `spec` of every limit in a config JSON document.
fn specs(v: &Value) -> Vec<&str> {
    v["limits"]
        .as_array()
        .unwrap_or_else(|| panic!("no limits in {v}"))
        .iter()
        .map(|l| l["spec"].as_str().unwrap())
        .collect()
}

#[test]
fn table_create_is_idempotent() {
    let t = LocalTable::missing("create");
    let at = format!(" (at {})", t.endpoint);
    assert_eq!(
        t.run(&["table", "create"]).ok(),
        format!("Created table '{}'{at}\n", t.name)
    );
    assert_eq!(
        t.run(&["table", "create"]).ok(),
        format!("Table '{}' already exists{at}\n", t.name)
    );
    let v = t.run(&["--output", "json", "table", "create"]).json();
    assert_eq!(
        v,
        serde_json::json!({ "table": t.name, "status": "exists" })
    );
    // the new table records its schema, as `deploy` does
    let v = t.run(&["--output", "json", "check"]).json();
    assert_eq!(v["table_schema_version"], v["client_schema_version"], "{v}");
    assert_eq!(v["compatible"], true, "{v}");
    // the table is usable: GSIs, registry, audit
    t.run(&["entity", "create", "acme"]).ok();
    t.run(&["entity", "show", "acme"]).ok();

    let fresh = LocalTable::missing("create-json");
    let v = fresh.run(&["table", "create", "--output", "json"]).json();
    assert_eq!(
        v,
        serde_json::json!({ "table": fresh.name, "status": "created" })
    );
}

#[test]
fn a_missing_table_is_one_line_naming_it_and_table_create() {
    let t = LocalTable::missing("gone");
    let want = format!(
        "error: table '{}' does not exist (at {}); create it with 'zae-limiter table create' \
         (DynamoDB Local / development) or deploy the stack",
        t.name, t.endpoint
    );
    for args in [
        &["entity", "show", "k"][..],
        &["entity", "create", "k"],
        &["system", "get-defaults"],
        &["--output", "json", "resource", "list"],
        &["namespace", "list"],
        &["namespace", "register", "tenant-a"],
        &["audit", "list", "k"],
        &["acquire", "k", "gpt-4o", "-l", "rpm:10", "-c", "rpm=1"],
        &["available", "k", "gpt-4o", "-l", "rpm:10"],
    ] {
        assert_eq!(t.run(args).fails(), want, "{args:?}");
    }
    // none of them created it
    assert!(t
        .run(&["table", "create"])
        .ok()
        .starts_with("Created table"));
}

#[test]
fn bench_on_an_endpoint_creates_its_table() {
    let t = LocalTable::missing("bench");
    let r = t.run(&[
        "bench",
        "--store",
        "dynamodb",
        "--ops",
        "20",
        "--scenarios",
        "a,raw,h",
        "--server-warmup-ops",
        "30",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.err.contains(&format!("bench: table {}: created", t.name)),
        "{r:?}"
    );
    assert!(r.err.contains("bench: server warm-up, 30 untimed"), "{r:?}");
    let lines: Vec<Value> = r
        .out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let timed: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("scenario").is_some() && l.get("pass").is_none())
        .collect();
    let ids: Vec<&str> = timed
        .iter()
        .map(|l| l["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "raw", "h"], "{r:?}");
    for l in &timed {
        assert_eq!(l["post_check_ok"], true, "{l}");
        assert_eq!(l["ops"], 20, "{l}");
        // the DynamoDB Local JVM the test script started is found by its port
        assert!(l["server_cpu_ms_per_op"].as_f64().is_some(), "{l}");
    }
    assert_eq!(
        timed[1]["ddb_calls_per_op"],
        serde_json::json!({"UpdateItem": 1.0})
    );
    // the side-by-side ratios of a over raw
    let cmp = lines
        .iter()
        .find(|l| l.get("comparison").is_some())
        .unwrap_or_else(|| panic!("no comparison line: {r:?}"));
    assert_eq!(cmp["comparison"], "a/raw");
    for k in ["ops_per_s", "p50", "p99", "client_cpu"] {
        assert!(cmp["ratios"][k].as_f64().unwrap() > 0.0, "{cmp}");
    }
    assert!(r.err.contains("library / bare write (a / raw"), "{r:?}");
    assert!(t
        .run(&["table", "create"])
        .ok()
        .starts_with(&format!("Table '{}' already exists", t.name)));
}

#[test]
fn limits_at_every_level() {
    let t = LocalTable::create("levels");

    // system
    let out = t
        .run(&[
            "system",
            "set-defaults",
            "-l",
            "rpm:1000",
            "-l",
            "tpm:100000/min",
            "--on-unavailable",
            "allow",
        ])
        .ok();
    assert_eq!(
        out,
        "Set system defaults:\n  rpm:1000/min\n  tpm:100000/min\n  on_unavailable: allow\n"
    );
    // setting only the policy keeps the stored limits
    t.run(&["system", "set-defaults", "--on-unavailable", "block"])
        .ok();
    let v = t
        .run(&["system", "get-defaults", "--output", "json"])
        .json();
    assert_eq!(v["level"], "system");
    assert_eq!(v["stored"], true);
    assert_eq!(v["on_unavailable"], "block");
    assert_eq!(specs(&v), ["rpm:1000/min", "tpm:100000/min"]);
    assert_eq!(v["limits"][1]["refill_amount"], 100_000);
    assert_eq!(v["limits"][1]["refill_period_ms"], 60_000);
    // ... and setting only limits keeps the policy
    t.run(&["system", "set-defaults", "-l", "rpm:900"]).ok();
    assert_eq!(
        t.run(&["system", "get-defaults"]).ok(),
        "Limits for the system:\n  rpm:900/min\n  on_unavailable: block\n"
    );

    // resource
    let out = t
        .run(&[
            "resource",
            "set-defaults",
            "gpt-4o",
            "-l",
            "rpm:500",
            "--limit",
            "tpm:50000/min:75000",
        ])
        .ok();
    assert_eq!(
        out,
        "Set 2 limit(s) for resource 'gpt-4o':\n  rpm:500/min\n  tpm:50000/min:75000\n"
    );
    t.run(&["resource", "set-defaults", "claude", "-l", "rph:100/hour"])
        .ok();
    let v = t
        .run(&["resource", "get-defaults", "gpt-4o", "--output", "json"])
        .json();
    assert_eq!(v["level"], "resource");
    assert_eq!(v["resource"], "gpt-4o");
    assert_eq!(specs(&v), ["rpm:500/min", "tpm:50000/min:75000"]);
    assert_eq!(v["limits"][1]["capacity"], 75_000);
    assert_eq!(t.run(&["resource", "list"]).ok(), "claude\ngpt-4o\n");
    assert_eq!(
        t.run(&["resource", "list", "--output", "json"]).json()["resources"],
        serde_json::json!(["claude", "gpt-4o"])
    );

    // entity default (no --resource) and entity + resource
    let out = t
        .run(&["entity", "set-limits", "acme", "-l", "rpm:200"])
        .ok();
    assert_eq!(
        out,
        "Set 1 limit(s) for entity 'acme' on resource '_default_':\n  rpm:200/min\n"
    );
    let out = t
        .run(&[
            "entity",
            "set-limits",
            "key-1",
            "--resource",
            "gpt-4o",
            "-l",
            "rpm:60",
            "-l",
            "tpm:6000/min:9000",
        ])
        .ok();
    assert_eq!(
        out,
        "Set 2 limit(s) for entity 'key-1' on resource 'gpt-4o':\n  rpm:60/min\n  tpm:6000/min:9000\n"
    );
    t.run(&[
        "entity",
        "set-limits",
        "acme",
        "--resource",
        "gpt-4o",
        "-l",
        "x:10/5min",
    ])
    .ok();
    assert_eq!(
        t.run(&["entity", "get-limits", "acme"]).ok(),
        "Limits for entity 'acme' on resource '_default_':\n  rpm:200/min\n"
    );
    let v = t
        .run(&["entity", "get-limits", "acme", "--resource", "_default_"])
        .ok();
    assert!(v.contains("rpm:200/min"), "{v}");
    let v = t
        .run(&[
            "--output",
            "json",
            "entity",
            "get-limits",
            "key-1",
            "--resource",
            "gpt-4o",
        ])
        .json();
    assert_eq!(v["level"], "entity");
    assert_eq!(v["entity_id"], "key-1");
    assert_eq!(v["resource"], "gpt-4o");
    assert_eq!(specs(&v), ["rpm:60/min", "tpm:6000/min:9000"]);
    let v = t
        .run(&["entity", "get-limits", "key-1", "--output", "json"])
        .json();
    assert_eq!(v["level"], "entity_default");
    assert_eq!(v["stored"], false);
    assert_eq!(v["limits"], serde_json::json!([]));
    assert_eq!(
        t.run(&["entity", "get-limits", "key-1"]).ok(),
        "No limits stored for entity 'key-1' on resource '_default_'\n"
    );
    assert_eq!(
        t.run(&["resource", "entities", "gpt-4o"]).ok(),
        "acme\nkey-1\n"
    );
    assert_eq!(
        t.run(&["resource", "entities", "claude"]).ok(),
        "No entities with their own limits on 'claude'\n"
    );

    // deletes, at every level
    assert_eq!(
        t.run(&["entity", "delete-limits", "key-1", "--resource", "gpt-4o"])
            .ok(),
        "Deleted limits for entity 'key-1' on resource 'gpt-4o'\n"
    );
    let e = t
        .run(&["entity", "delete-limits", "key-1", "--resource", "gpt-4o"])
        .fails();
    assert_eq!(
        e,
        "error: no limits stored for entity 'key-1' on resource 'gpt-4o'"
    );
    assert_eq!(t.run(&["resource", "entities", "gpt-4o"]).ok(), "acme\n");
    let v = t
        .run(&["entity", "delete-limits", "acme", "--output", "json"])
        .json();
    // every delete prints {"deleted": <the item as it was>}
    assert_eq!(v["deleted"]["level"], "entity_default");
    assert_eq!(v["deleted"]["entity_id"], "acme");
    assert_eq!(v["deleted"]["stored"], true);
    assert!(
        !v["deleted"]["limits"].as_array().unwrap().is_empty(),
        "{v}"
    );
    assert_eq!(
        t.run(&["resource", "delete-defaults", "claude"]).ok(),
        "Deleted limits for resource 'claude'\n"
    );
    assert_eq!(t.run(&["resource", "list"]).ok(), "gpt-4o\n");
    assert_eq!(
        t.run(&["resource", "get-defaults", "claude"]).ok(),
        "No limits stored for resource 'claude'\n"
    );
    assert_eq!(
        t.run(&["system", "delete-defaults"]).ok(),
        "Deleted limits for the system\n"
    );
    let v = t
        .run(&["system", "get-defaults", "--output", "json"])
        .json();
    assert_eq!(v["stored"], false);
    assert_eq!(v["on_unavailable"], Value::Null);
}

#[test]
fn audit_lists_changes_newest_first() {
    let t = LocalTable::create("audit");
    let p = ["--principal", "alice"];
    t.run(&[&p[..], &["entity", "create", "proj"]].concat())
        .ok();
    t.run(&[&p[..], &["entity", "set-limits", "proj", "-l", "rpm:10"]].concat())
        .ok();
    t.run(
        &[
            &p[..],
            &[
                "entity",
                "set-limits",
                "proj",
                "--resource",
                "gpt-4o",
                "-l",
                "tpm:100",
            ],
        ]
        .concat(),
    )
    .ok();
    // the principal also comes from the environment
    let out = Command::new(env!("CARGO_BIN_EXE_zae-limiter"))
        .args(["--name", &t.name, "--endpoint-url", &t.endpoint])
        .args(["entity", "delete-limits", "proj"])
        .env("ZAEL_PRINCIPAL", "bob")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let v = t.run(&["audit", "list", "proj", "--output", "json"]).json();
    assert_eq!(v["entity_id"], "proj");
    assert_eq!(v["next"], Value::Null);
    let events = v["events"].as_array().unwrap();
    let field = |f: &str| -> Vec<Value> { events.iter().map(|e| e[f].clone()).collect() };
    assert_eq!(
        field("action"),
        [
            "limits_deleted",
            "limits_set",
            "limits_set",
            "entity_created"
        ]
    );
    assert_eq!(field("principal"), ["bob", "alice", "alice", "alice"]);
    assert_eq!(
        field("resource"),
        [
            Value::from("_default_"),
            Value::from("gpt-4o"),
            Value::from("_default_"),
            Value::Null
        ]
    );
    let ids: Vec<&str> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "newest first");
    assert_eq!(events[0]["details"]["old"]["limits"][0]["name"], "rpm");
    assert_eq!(events[0]["details"]["new"], Value::Null);
    assert!(events[0]["time"].as_str().unwrap().ends_with('Z'));

    // the table, one page at a time
    let out = t.run(&["audit", "list", "proj", "--page-size", "2"]).ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["Time", "Action", "Principal", "Resource", "Event"]);
    let row: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(row[1..], ["limits_deleted", "bob", "_default_", ids[0]]);
    let row: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(row[1..], ["limits_set", "alice", "gpt-4o", ids[1]]);
    let next = lines[4]
        .strip_prefix("More events: --before ")
        .unwrap_or_else(|| panic!("{out}"));
    let out = t
        .run(&[
            "audit",
            "list",
            "proj",
            "--page-size",
            "2",
            "--before",
            next,
        ])
        .ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[2].contains("limits_set") && lines[2].contains(ids[2]),
        "{out}"
    );
    assert!(
        lines[3].contains("entity_created") && lines[3].contains(ids[3]),
        "{out}"
    );
    assert!(lines[3].contains(" - "), "no resource: {out}");

    // event ids are ULIDs (26 Crockford base32 characters); times select too
    assert!(
        ids.iter().all(|id| id.len() == 26
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())),
        "{ids:?}"
    );
    let times = field("time");
    let at = |i: usize| times[i].as_str().unwrap().to_string();
    let listed = |args: &[&str]| -> Vec<String> {
        let v = t
            .run(&[&["audit", "list", "proj", "--output", "json"], args].concat())
            .json();
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event_id"].as_str().unwrap().to_string())
            .collect()
    };
    // each change was a separate process: distinct milliseconds
    assert_eq!(listed(&["--since", &at(1)]), ids[..2]);
    assert_eq!(listed(&["--before", &at(1)]), ids[2..]);
    let e = t
        .run(&["audit", "list", "proj", "--since", "yesterday"])
        .usage_error();
    assert!(e.contains("not an RFC 3339 timestamp"), "{e}");

    // default changes are filed under $SYSTEM / $RESOURCE:<resource>
    t.run(&["system", "set-defaults", "--on-unavailable", "allow"])
        .ok();
    t.run(&["resource", "set-defaults", "gpt-4o", "-l", "rpm:5"])
        .ok();
    let v = t
        .run(&["audit", "list", "$SYSTEM", "--output", "json"])
        .json();
    assert_eq!(v["events"][0]["details"]["level"], "system");
    assert_eq!(v["events"][0]["details"]["new"]["on_unavailable"], "allow");
    let v = t
        .run(&["audit", "list", "$RESOURCE:gpt-4o", "--output", "json"])
        .json();
    assert_eq!(v["events"].as_array().unwrap().len(), 1);
    assert_eq!(v["events"][0]["resource"], "gpt-4o");
    assert_eq!(
        t.run(&["audit", "list", "nobody"]).ok(),
        "No audit events for 'nobody'\n"
    );
}

#[test]
fn entity_create_show_children_delete() {
    let t = LocalTable::create("entity");
    assert_eq!(
        t.run(&[
            "entity",
            "create",
            "acme",
            "--display-name",
            "Acme Corp",
            "--metadata",
            "tier=gold",
            "--metadata",
            "region=eu"
        ])
        .ok(),
        "Created entity 'acme'\n"
    );
    let v = t
        .run(&[
            "entity",
            "create",
            "key-web",
            "--parent",
            "acme",
            "--cascade",
            "--output",
            "json",
        ])
        .json();
    assert_eq!(v["id"], "key-web");
    assert_eq!(v["parent_id"], "acme");
    assert_eq!(v["cascade"], true);
    t.run(&["entity", "create", "key-batch", "--parent", "acme"])
        .ok();

    let out = t.run(&["entity", "show", "acme"]).ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "{out}");
    assert_eq!(lines[0], "Entity: acme");
    assert_eq!(lines[1], "  Name: Acme Corp");
    assert_eq!(lines[2], "  Parent: (none)");
    assert_eq!(lines[3], "  Cascade: false");
    let created = lines[4].strip_prefix("  Created: ").unwrap();
    assert_eq!(created.len(), "2026-01-01T00:00:00.000Z".len(), "{out}");
    assert_eq!(&created[10..11], "T");
    assert!(created.ends_with('Z'), "{out}");
    assert_eq!(lines[5], "  Metadata: region=eu, tier=gold");
    let out = t.run(&["entity", "show", "key-web"]).ok();
    assert!(out.contains("  Parent: acme\n  Cascade: true\n"), "{out}");
    assert!(out.contains("  Name: (none)\n"), "{out}");
    let v = t
        .run(&["entity", "show", "acme", "--output", "json"])
        .json();
    assert_eq!(v["name"], "Acme Corp");
    assert_eq!(v["metadata"]["tier"], "gold");
    assert_eq!(v["created_at"], created);
    assert!(v["created_at_ms"].as_i64().unwrap() > 0);

    assert_eq!(
        t.run(&["entity", "children", "acme"]).ok(),
        "key-batch\nkey-web\n"
    );
    let v = t
        .run(&["entity", "children", "acme", "--output", "json"])
        .json();
    assert_eq!(v["children"][1]["id"], "key-web");
    assert_eq!(
        t.run(&["entity", "children", "key-web"]).ok(),
        "No children of 'key-web'\n"
    );

    let e = t.run(&["entity", "create", "acme"]).fails();
    assert_eq!(e, "error: entity 'acme' already exists");

    t.run(&["entity", "set-limits", "key-web", "-l", "rpm:5"])
        .ok();
    assert_eq!(
        t.run(&["entity", "delete", "key-web"]).ok(),
        "Deleted entity 'key-web'\n"
    );
    assert_eq!(
        t.run(&["entity", "show", "key-web"]).fails(),
        "error: entity 'key-web' not found"
    );
    // its limits went with it
    assert_eq!(
        t.run(&["entity", "get-limits", "key-web"]).ok(),
        "No limits stored for entity 'key-web' on resource '_default_'\n"
    );
    assert_eq!(t.run(&["entity", "children", "acme"]).ok(), "key-batch\n");
    assert_eq!(
        t.run(&["entity", "delete", "key-web"]).fails(),
        "error: entity 'key-web' not found"
    );
    let v = t
        .run(&["entity", "delete", "key-batch", "--output", "json"])
        .json();
    assert_eq!(v["deleted"]["id"], "key-batch");
    assert_eq!(v["deleted"]["parent_id"], "acme");
    assert!(
        v["deleted"]["created_at"].as_str().unwrap().ends_with('Z'),
        "{v}"
    );
    // a parent with children is refused unless forced; forcing detaches the children
    t.run(&[
        "entity",
        "create",
        "key-late",
        "--parent",
        "acme",
        "--cascade",
    ])
    .ok();
    let e = t.run(&["entity", "delete", "acme"]).fails();
    assert!(
        e.contains("1 child (key-late)") && e.contains("force"),
        "{e}"
    );
    t.run(&["entity", "delete", "acme", "--force"]).ok();
    let v = t
        .run(&["entity", "show", "key-late", "--output", "json"])
        .json();
    assert!(v["parent_id"].is_null(), "{v}");
    assert_eq!(v["cascade"], false);
    let out = t.run(&["audit", "list", "key-web"]).ok();
    assert!(
        out.lines().nth(2).unwrap().contains("entity_deleted"),
        "{out}"
    );
}

#[test]
fn bad_input_fails_with_one_line() {
    let t = LocalTable::create("bad");
    let e = t
        .run(&["entity", "set-limits", "k", "-l", "rpm:10", "-l", "tpm=100"])
        .usage_error(); // a bad spec is a usage error, reported by clap
    assert!(e.contains("expected name:rate"), "{e}");
    assert!(e.contains("tpm=100"), "{e}");
    let e = t
        .run(&[
            "resource",
            "set-defaults",
            "gpt-4o",
            "-l",
            "rpm:10/fortnight",
        ])
        .usage_error();
    assert!(e.contains("expected name:rate"), "{e}");
    let e = t
        .run(&["system", "set-defaults", "-l", "rpm"])
        .usage_error();
    assert!(e.contains("expected name:rate"), "{e}");
    // nothing was stored by the failed commands
    assert_eq!(
        t.run(&["entity", "get-limits", "k"]).ok(),
        "No limits stored for entity 'k' on resource '_default_'\n"
    );

    assert_eq!(
        t.run(&["entity", "show", "nobody"]).fails(),
        "error: entity 'nobody' not found"
    );
    let e = t.run(&["system", "set-defaults"]).fails();
    assert!(e.contains("nothing to set"), "{e}");
    // checked by clap: exit 2 with clap's message in full
    let r = t.run(&["system", "set-defaults", "--on-unavailable", "maybe"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.err.contains("[possible values: block, allow]"), "{r:?}");
    let e = t.run(&["entity", "set-limits", "k"]).fails();
    assert!(e.contains("at least one limit"), "{e}");
    let e = t.run(&["audit", "list", "k", "--page-size", "0"]).fails();
    assert!(e.contains("between 1 and 1000"), "{e}");
    let e = t
        .run(&["audit", "list", "k", "--page-size", "1001"])
        .fails();
    assert!(e.contains("between 1 and 1000"), "{e}");
    let e = t
        .run(&["entity", "create", "k", "--metadata", "novalue"])
        .fails();
    assert!(e.contains("KEY=VALUE"), "{e}");
    let e = t
        .run(&["entity", "create", "k", "--parent", "nobody"])
        .fails();
    assert_eq!(e, "error: entity 'nobody' not found");
    let e = t.run(&["entity", "create", "k", "--cascade"]).fails();
    assert!(e.contains("cascade"), "{e}");
    let e = t.run(&["entity", "show", "bad id!"]).fails();
    assert!(e.contains("not allowed"), "{e}");
    assert_eq!(
        t.run(&["system", "delete-defaults"]).fails(),
        "error: no limits stored for the system"
    );
    // the same in JSON mode: the error still goes to stderr, stdout stays empty
    let e = t
        .run(&["--output", "json", "entity", "show", "nobody"])
        .fails();
    assert_eq!(e, "error: entity 'nobody' not found");
}

#[test]
fn namespaces_register_isolate_delete_recover_purge() {
    let t = LocalTable::create("ns");
    let out = t.run(&["namespace", "register", "tenant-a"]).ok();
    assert!(
        out.starts_with("Registered namespace 'tenant-a'\n  Namespace ID: "),
        "{out}"
    );
    let show = t
        .run(&["--output", "json", "namespace", "show", "tenant-a"])
        .json();
    let id = show["namespace_id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 11);
    assert_eq!(show["status"], "active");
    let human = t.run(&["namespace", "show", "tenant-a"]).ok();
    assert!(human.contains(&format!("Namespace ID: {id}")), "{human}");

    // -N scopes every command; the same entity id elsewhere is independent
    t.run(&["-N", "tenant-a", "entity", "create", "acme"]).ok();
    t.run(&["-N", "tenant-a", "entity", "show", "acme"]).ok();
    let line = t.run(&["entity", "show", "acme"]).fails();
    assert!(line.contains("not found"), "{line}");
    let line = t.run(&["-N", "nope", "entity", "show", "acme"]).fails();
    assert!(line.contains("namespace 'nope' not found"), "{line}");

    let list = t.run(&["--output", "json", "namespace", "list"]).json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "tenant-a"]);

    // delete keeps the data; recover brings it back; purge needs --yes and a deleted namespace
    let line = t.run(&["namespace", "purge", &id]).fails();
    assert!(line.contains("--yes"), "{line}");
    let line = t.run(&["namespace", "purge", &id, "--yes"]).fails();
    assert!(line.contains("delete it first"), "{line}");
    let out = t.run(&["namespace", "delete", "tenant-a"]).ok();
    assert!(out.contains(&format!("namespace recover {id}")), "{out}");
    t.run(&["namespace", "show", "tenant-a"]).fails();
    t.run(&["namespace", "recover", &id]).ok();
    t.run(&["-N", "tenant-a", "entity", "show", "acme"]).ok();
    let line = t.run(&["namespace", "recover", &id]).fails();
    assert!(line.contains("already active"), "{line}");
    t.run(&["namespace", "delete", "tenant-a"]).ok();
    let out = t.run(&["namespace", "purge", &id, "--yes"]).ok();
    assert!(out.contains("items deleted"), "{out}");
    t.run(&["namespace", "recover", &id]).fails();
    let line = t.run(&["namespace", "register", "_"]).fails();
    assert!(line.contains("reserved"), "{line}");

    // namespace changes are audited
    let audit = t
        .run(&["--output", "json", "audit", "list", "$NAMESPACE"])
        .json();
    let actions: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "namespace_purged",
            "namespace_deleted",
            "namespace_recovered",
            "namespace_deleted",
            "namespace_registered"
        ]
    );
}

#[test]
fn usage_errors_are_clap_in_full() {
    let t = LocalTable::create("usage");
    let r = t.run(&["entity", "show"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.err.starts_with("error: "), "{r:?}");
    assert!(
        r.err.contains("Usage: zae-limiter entity show <ID>"),
        "{r:?}"
    );
}

#[test]
fn acquire_and_available_resolve_stored_levels() {
    let t = LocalTable::create("acq");
    // nothing stored and no -l: a clear error naming entity and resource
    let line = t.run(&["available", "k", "gpt-4o"]).fails();
    assert!(line.contains("'k'") && line.contains("'gpt-4o'"), "{line}");
    // -l is the fallback
    let v = t
        .run(&[
            "--output",
            "json",
            "available",
            "k",
            "gpt-4o",
            "-l",
            "rpm:5",
        ])
        .json();
    assert_eq!(v["available"]["rpm"], 5);
    t.run(&["system", "set-defaults", "-l", "rpm:1000"]).ok();
    t.run(&["resource", "set-defaults", "gpt-4o", "-l", "rpm:500"])
        .ok();
    t.run(&["entity", "create", "proj"]).ok();
    t.run(&["entity", "create", "k", "--parent", "proj", "--cascade"])
        .ok();
    t.run(&["entity", "set-limits", "proj", "-l", "rpm:200/day"])
        .ok();
    t.run(&[
        "entity",
        "set-limits",
        "k",
        "--resource",
        "gpt-4o",
        "-l",
        "rpm:2/hour",
    ])
    .ok();
    for _ in 0..2 {
        let v = t
            .run(&["--output", "json", "acquire", "k", "gpt-4o", "-c", "rpm=1"])
            .json();
        assert_eq!(v["acquired"], true);
    }
    let line = t
        .run(&["acquire", "k", "gpt-4o", "-c", "rpm=1"])
        .fails_with(3);
    assert!(
        line.contains("rate limit exceeded for k/gpt-4o: [rpm]")
            // one token per 1800 s, counted from the first acquire on the real clock: a few
            // seconds may pass between the CLI runs on a loaded machine
            && line
                .split("Retry-After: ")
                .nth(1)
                .and_then(|r| r.trim_end_matches(')').parse::<u64>().ok())
                .is_some_and(|s| (1790..=1800).contains(&s)),
        "{line}"
    );
    let avail = |e: &str, r: &str| {
        t.run(&["--output", "json", "available", e, r]).json()["available"]["rpm"].clone()
    };
    assert_eq!(avail("k", "gpt-4o"), 0); // entity + resource
    assert_eq!(avail("proj", "gpt-4o"), 198); // entity default, took the cascade
    assert_eq!(avail("other", "gpt-4o"), 500); // resource default
    assert_eq!(avail("other", "embeddings"), 1000); // system default
    let line = t
        .run(&["acquire", "k", "gpt-4o", "-c", "rpm"])
        .fails_with(2);
    assert!(line.contains("NAME=AMOUNT"), "{line}");
}

#[test]
fn entity_update_and_list_pages() {
    let t = LocalTable::create("entity-upd");
    for id in ["acme", "other"] {
        t.run(&["entity", "create", id]).ok();
    }
    t.run(&[
        "entity",
        "create",
        "key-1",
        "--metadata",
        "tier=free",
        "--metadata",
        "trial=yes",
    ])
    .ok();

    // update prints the entity after the change
    let v = t
        .run(&[
            "entity",
            "update",
            "key-1",
            "--display-name",
            "Web key",
            "--parent",
            "acme",
            "--cascade",
            "true",
            "--metadata",
            "tier=gold",
            "--metadata",
            "region=eu",
            "--remove-metadata",
            "trial",
            "--output",
            "json",
        ])
        .json();
    assert_eq!(v["id"], "key-1");
    assert_eq!(v["name"], "Web key");
    assert_eq!(v["parent_id"], "acme");
    assert_eq!(v["cascade"], true);
    assert_eq!(
        v["metadata"],
        serde_json::json!({"tier": "gold", "region": "eu"})
    );
    let shown = t
        .run(&["entity", "show", "key-1", "--output", "json"])
        .json();
    assert_eq!(shown, v);

    let v = t
        .run(&[
            "entity",
            "update",
            "key-1",
            "--cascade",
            "false",
            "--clear-display-name",
            "--output",
            "json",
        ])
        .json();
    assert_eq!(
        (v["cascade"].clone(), v["name"].clone()),
        (false.into(), Value::Null)
    );
    assert_eq!(v["parent_id"], "acme");
    let out = t
        .run(&["entity", "update", "key-1", "--parent", "other"])
        .ok();
    assert!(out.starts_with("Updated entity 'key-1'\n"), "{out}");
    assert!(out.contains("  Parent: other\n"), "{out}");
    let v = t
        .run(&[
            "entity",
            "update",
            "key-1",
            "--clear-parent",
            "--output",
            "json",
        ])
        .json();
    assert_eq!(v["parent_id"], Value::Null);

    let e = t.run(&["entity", "update", "key-1"]).fails();
    assert!(e.contains("nothing to update"), "{e}");
    let e = t
        .run(&["entity", "update", "nobody", "--display-name", "x"])
        .fails();
    assert!(e.contains("nobody"), "{e}");
    let e = t
        .run(&["entity", "update", "key-1", "--metadata", "novalue"])
        .fails();
    assert!(e.contains("KEY=VALUE"), "{e}");
    // usage errors (clap): exit 2, one line
    for (args, want) in [
        (
            &[
                "entity",
                "update",
                "key-1",
                "--parent",
                "a",
                "--clear-parent",
            ][..],
            "cannot be used with",
        ),
        (
            &["entity", "update", "key-1", "--cascade", "maybe"][..],
            "maybe",
        ),
    ] {
        let r = t.run(args);
        assert_eq!(r.code, 2, "{r:?}");
        assert!(
            r.err.starts_with("error: ") && r.err.contains(want),
            "{r:?}"
        );
    }

    // list: children of --parent, a page at a time, sorted by id
    for id in ["k-c", "k-a", "k-e", "k-b", "k-d"] {
        t.run(&["entity", "create", id, "--parent", "acme"]).ok();
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut args = vec!["entity", "list", "--parent", "acme", "--page-size", "2"];
        if let Some(a) = after.as_deref() {
            args.extend(["--after", a]);
        }
        args.extend(["--output", "json"]);
        let v = t.run(&args).json();
        pages += 1;
        let ents = v["entities"].as_array().unwrap();
        assert!(ents.len() <= 2, "{v}");
        for e in ents {
            assert_eq!(e["parent_id"], "acme", "{v}");
            seen.push(e["id"].as_str().unwrap().to_string());
        }
        match &v["next"] {
            Value::Null => break,
            Value::String(n) => after = Some(n.clone()),
            other => panic!("next is {other}"),
        }
    }
    assert_eq!(seen, ["k-a", "k-b", "k-c", "k-d", "k-e"]);
    assert_eq!(pages, 3);
    let out = t
        .run(&["entity", "list", "--parent", "acme", "--page-size", "4"])
        .ok();
    assert!(out.contains("k-d"), "{out}");
    assert!(!out.contains("k-e"), "{out}");
    assert!(out.ends_with("More entities: --after k-d\n"), "{out}");
    assert_eq!(
        t.run(&["entity", "list", "--parent", "other", "--output", "json"])
            .json(),
        serde_json::json!({"entities": [], "next": null})
    );
    let e = t
        .run(&["entity", "list", "--parent", "acme", "--page-size", "1001"])
        .fails();
    assert!(e.contains("between 1 and 1000"), "{e}");

    // without --parent: every entity of the namespace, sorted by id, paged the same way
    let all = t.run(&["entity", "list", "--output", "json"]).json();
    let all: Vec<String> = all["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted);
    for id in ["acme", "k-a", "k-b", "k-c", "k-d", "k-e"] {
        assert!(all.iter().any(|a| a == id), "{id} in {all:?}");
    }
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..all.len() + 1 {
        let mut args = vec!["entity", "list", "--page-size", "3", "--output", "json"];
        if let Some(a) = after.as_deref() {
            args.extend(["--after", a]);
        }
        let v = t.run(&args).json();
        paged.extend(
            v["entities"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_string()),
        );
        match &v["next"] {
            Value::Null => break,
            Value::String(n) => after = Some(n.clone()),
            other => panic!("next is {other}"),
        }
    }
    assert_eq!(paged, all);
    // in another namespace: none of these
    t.run(&["namespace", "register", "empty-ns"]).ok();
    assert_eq!(
        t.run(&["-N", "empty-ns", "entity", "list"]).ok(),
        "No entities\n"
    );

    // resource entities pages with --page-size too
    for id in ["k-a", "k-b"] {
        t.run(&[
            "entity",
            "set-limits",
            id,
            "--resource",
            "gpt-4o",
            "-l",
            "rpm:5",
        ])
        .ok();
    }
    let v = t
        .run(&[
            "resource",
            "entities",
            "gpt-4o",
            "--page-size",
            "1",
            "--output",
            "json",
        ])
        .json();
    assert_eq!(v["entities"], serde_json::json!(["k-a"]), "{v}");
    assert_eq!(v["next"], "k-a", "{v}");
}

#[test]
fn the_default_namespace_is_protected_and_recoverable() {
    let t = LocalTable::create("nsdef");
    t.run(&["entity", "create", "acme"]).ok();
    let id = t
        .run(&["--output", "json", "namespace", "show", "default"])
        .json()["namespace_id"]
        .as_str()
        .unwrap()
        .to_string();

    // deleting `default` needs --force
    let line = t.run(&["namespace", "delete", "default"]).fails();
    assert!(
        line.contains("protected") && line.contains("--force"),
        "{line}"
    );
    t.run(&["namespace", "show", "default"]).ok();
    let out = t.run(&["namespace", "delete", "default", "--force"]).ok();
    assert!(out.contains(&format!("namespace recover {id}")), "{out}");

    // while it is deleted nothing re-creates it: every use points to `recover`
    let hint = format!("namespace recover {id}");
    let line = t.run(&["entity", "show", "acme"]).fails();
    assert!(line.contains(&hint), "{line}");
    let line = t.run(&["namespace", "register", "default"]).fails();
    assert!(line.contains(&hint), "{line}");
    let list = t.run(&["--output", "json", "namespace", "list"]).json();
    let defaults: Vec<&Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["name"] == "default")
        .collect();
    assert_eq!(defaults.len(), 1, "{list}");
    assert_eq!(defaults[0]["namespace_id"], id.as_str());
    assert_eq!(defaults[0]["status"], "deleted");

    // recover brings the same namespace and its data back
    let out = t.run(&["namespace", "recover", &id]).ok();
    assert!(out.contains("Recovered namespace 'default'"), "{out}");
    t.run(&["entity", "show", "acme"]).ok();
    let audit = t
        .run(&["--output", "json", "audit", "list", "$NAMESPACE"])
        .json();
    let actions: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions[..2], ["namespace_recovered", "namespace_deleted"]);
}
