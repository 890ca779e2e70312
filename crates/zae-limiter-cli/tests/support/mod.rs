//! What the CLI test files share: one run of the binary and the assertions on it.
#![allow(dead_code)] // each test file uses its own subset

use serde_json::Value;

/// What one run of the binary gave.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Stdout.
    pub out: String,
    /// Stderr.
    pub err: String,
}

impl Run {
    /// Assert success and return stdout.
    pub fn ok(self) -> String {
        assert_eq!(self.code, 0, "expected success: {self:?}");
        self.out
    }
    /// Assert success and parse stdout as one JSON document.
    pub fn json(self) -> Value {
        let out = self.ok();
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not one JSON document ({e}): {out}"))
    }
    /// Assert the failure contract: exit 1, nothing on stdout, one `error: ...` line on
    /// stderr. Returns that line.
    pub fn fails(self) -> String {
        self.fails_with(1)
    }
    /// A usage error: exit 2, clap's whole message on stderr.
    pub fn usage_error(self) -> String {
        assert_eq!(self.code, 2, "expected a usage error: {self:?}");
        assert!(self.out.is_empty(), "stdout should be empty: {self:?}");
        assert!(self.err.starts_with("error: "), "{self:?}");
        self.err
    }

    /// [`Run::fails`] with exit `code` (2 usage, 3 rate limited, 4 unavailable).
    pub fn fails_with(self, code: i32) -> String {
        assert_eq!(self.code, code, "expected exit {code}: {self:?}");
        assert!(self.out.is_empty(), "stdout should be empty: {self:?}");
        let lines: Vec<&str> = self.err.lines().collect();
        assert_eq!(lines.len(), 1, "expected one stderr line: {self:?}");
        assert!(lines[0].starts_with("error: "), "{self:?}");
        lines[0].to_string()
    }
}

impl From<std::process::Output> for Run {
    fn from(out: std::process::Output) -> Self {
        Run {
            code: out.status.code().unwrap_or(-1),
            out: String::from_utf8_lossy(&out.stdout).into_owned(),
            err: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// A fresh table name on DynamoDB Local (`ZAEL_TEST_DYNAMODB_ENDPOINT`), and runs of the
/// binary against it.
pub struct LocalTable {
    /// The table.
    pub name: String,
    /// DynamoDB Local.
    pub endpoint: String,
}

impl LocalTable {
    /// A fresh table, created with `table create` (no other command creates tables).
    pub fn create(tag: &str) -> Self {
        let t = LocalTable::missing(tag);
        t.run(&["table", "create"]).ok();
        t
    }

    /// A fresh name with no table behind it.
    pub fn missing(tag: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let endpoint = std::env::var("ZAEL_TEST_DYNAMODB_ENDPOINT").expect(
            "ZAEL_TEST_DYNAMODB_ENDPOINT is not set: run through scripts/dynamodb-local.sh",
        );
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "t-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        LocalTable { name, endpoint }
    }

    /// `zae-limiter --name TABLE --endpoint-url ENDPOINT ARGS...`, stdin closed.
    pub fn run(&self, args: &[&str]) -> Run {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_zae-limiter"))
            .args(["--name", &self.name, "--endpoint-url", &self.endpoint])
            .args(args)
            .env_remove("ZAEL_PRINCIPAL")
            .env_remove("ZAEL_NAME")
            .env_remove("ZAEL_ENDPOINT_URL")
            .env_remove("ZAEL_NAMESPACE")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run zae-limiter");
        Run::from(out)
    }
}
