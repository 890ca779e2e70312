//! `zae-limiter local up|status|down` end to end: the real binary starts its own DynamoDB
//! Local (the jar `scripts/dynamodb-local.sh` fetched into `<repo>/.cache/dynamodb-local`)
//! on a free port, the CLI works against it, it listens on 127.0.0.1 only, and `down`
//! stops it. Needs Java 17+ with javac.
#![cfg(feature = "dynamodb-local-tests")]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

mod support;
use support::Run;

/// Run the binary in `cwd` with no endpoint or AWS settings from the environment.
fn zael(cwd: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_zae-limiter"))
        .args(args)
        .current_dir(cwd)
        .env_remove("ZAEL_ENDPOINT_URL")
        .env_remove("ZAEL_NAME")
        .env_remove("ZAEL_DYNAMODB_LOCAL_JAR")
        .output()
        .expect("run zae-limiter");
    Run::from(out)
}

/// The jar `scripts/dynamodb-local.sh` fetched; a clear failure when it is missing.
fn cached_jar() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let lib = root.join(".cache/dynamodb-local/package/lib");
    let jar = std::fs::read_dir(&lib)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("dynamodb_local_")
        })
        .map(|e| e.path().join("DynamoDBLocal.jar"))
        .find(|j| j.is_file());
    jar.unwrap_or_else(|| {
        panic!(
            "no DynamoDB Local jar under {}/dynamodb_local_*/: run the tests through \
             scripts/test.sh or scripts/dynamodb-local.sh, which fetch it",
            lib.display()
        )
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn connects(port: u16) -> bool {
    TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    )
    .is_ok()
}

/// The local addresses (hex, as in /proc/net/tcp{,6}) listening on `port`.
fn listeners(port: u16) -> Vec<String> {
    let suffix = format!(":{port:04X}");
    let mut found = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // cols: sl local_address rem_address st ...; 0A is LISTEN
            if cols.len() > 3 && cols[3] == "0A" && cols[1].ends_with(&suffix) {
                found.push(cols[1].to_string());
            }
        }
    }
    found
}

/// Stops the server whatever happens to the test.
struct Down<'a>(&'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        if self.0.join("state/local.json").exists() {
            let _ = zael(self.0, &["local", "down", "--state-dir", "state"]);
        }
    }
}

#[test]
fn local_up_status_use_down() {
    let jar = cached_jar();
    let port = free_port();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("zael-local-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port_s = port.to_string();
    let jar_s = jar.to_str().unwrap();
    let state = ["--state-dir", "state"];

    // nothing yet
    let r = zael(&dir, &["local", "status", "--state-dir", "state"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.err.contains("not running"), "{r:?}");

    let down = Down(&dir);
    let out = zael(
        &dir,
        &[
            "--name", "local-t", "local", "up", "--port", &port_s, "--jar", jar_s, state[0],
            state[1],
        ],
    )
    .ok();
    let endpoint = format!("http://127.0.0.1:{port}");
    assert!(
        out.contains(&format!("DynamoDB Local on {endpoint} (pid "))
            && out.contains("table 'local-t' ready")
            && out
                .trim_end()
                .ends_with(&format!("use --endpoint-url {endpoint}")),
        "{out}"
    );
    let recorded: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state/local.json")).unwrap())
            .unwrap();
    assert_eq!(recorded["port"], port);
    assert_eq!(recorded["endpoint"], endpoint.as_str());
    assert_eq!(recorded["table"], "local-t");
    let pid = recorded["pid"].as_u64().unwrap();

    // status answers, as text and as JSON
    let out = zael(&dir, &["local", "status", "--state-dir", "state"]).ok();
    assert!(out.contains("answers"), "{out}");
    let doc = zael(
        &dir,
        &[
            "--output",
            "json",
            "local",
            "status",
            "--state-dir",
            "state",
        ],
    )
    .json();
    assert_eq!(doc["answers"], true, "{doc}");
    assert_eq!(doc["pid"], pid, "{doc}");

    // a second `up` finds it running
    let doc = zael(
        &dir,
        &[
            "--output", "json", "--name", "local-t", "local", "up", "--port", &port_s, "--jar",
            jar_s, state[0], state[1],
        ],
    )
    .json();
    assert_eq!(doc["status"], "already running", "{doc}");
    assert_eq!(doc["pid"], pid, "{doc}");

    // the CLI works against the printed endpoint, in the table `up` created
    let e = ["--endpoint-url", endpoint.as_str(), "--name", "local-t"];
    let out = zael(&dir, &[e[0], e[1], e[2], e[3], "entity", "create", "x"]).ok();
    assert!(out.contains("Created entity 'x'"), "{out}");
    let doc = zael(
        &dir,
        &[
            e[0], e[1], e[2], e[3], "--output", "json", "entity", "show", "x",
        ],
    )
    .json();
    assert_eq!(doc["id"], "x", "{doc}");

    // 127.0.0.1 only: no wildcard listener on the port
    assert!(connects(port));
    if Path::new("/proc/net/tcp").exists() {
        let found = listeners(port);
        assert!(
            !found.is_empty(),
            "nothing listens on port {port} in /proc/net/tcp{{,6}}"
        );
        for addr in &found {
            let host = addr.rsplit_once(':').unwrap().0;
            assert!(
                host.chars().any(|c| c != '0'),
                "a wildcard listener on port {port}: {found:?}"
            );
            assert!(
                host == "0100007F" || host == "0000000000000000FFFF00000100007F",
                "port {port} listens on something other than 127.0.0.1: {found:?}"
            );
        }
    }

    let out = zael(&dir, &["local", "down", "--state-dir", "state"]).ok();
    assert!(
        out.contains(&format!("Stopped DynamoDB Local on {endpoint} (pid {pid})")),
        "{out}"
    );
    assert!(!dir.join("state/local.json").exists());
    let r = zael(&dir, &["local", "status", "--state-dir", "state"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.out.is_empty() && r.err.starts_with("error: "), "{r:?}");
    assert!(!connects(port), "port {port} still answers after down");

    // down again: nothing to stop, still exit 0
    let out = zael(&dir, &["local", "down", "--state-dir", "state"]).ok();
    assert!(out.contains("not running"), "{out}");
    drop(down);
    let _ = std::fs::remove_dir_all(&dir);
}
