//! What the `serve` test files share: a running `zae-limiter serve` and JSON over HTTP.
#![allow(dead_code)] // each test file uses its own subset

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

/// A running `serve`, killed on drop.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub stderr: mpsc::Receiver<String>,
}

impl Server {
    /// `zae-limiter GLOBAL... serve --listen 127.0.0.1:0 ARGS...`; waits (at most 20 s) for
    /// the address line.
    pub fn start(global: &[&str], args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_zae-limiter"))
            .args(global)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("ZAEL_ENDPOINT_URL")
            .env_remove("ZAEL_NAME")
            .env_remove("ZAEL_NAMESPACE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start zae-limiter serve");
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("serve printed its address");
        let base = line
            .strip_prefix("serve: HTTP API on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_string();
        Server {
            child,
            base,
            stderr: rx,
        }
    }

    pub fn memory(args: &[&str]) -> Server {
        Server::start(&[], &[&["--store", "memory"][..], args].concat())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGTERM, then the exit status and the rest of stderr (at most 20 s).
    pub fn terminate(mut self) -> (bool, String) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "serve did not stop"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut rest = Vec::new();
        while let Ok(l) = self.stderr.recv_timeout(Duration::from_secs(2)) {
            rest.push(l);
        }
        (status.success(), rest.join("\n"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn post(
    c: &reqwest::Client,
    url: String,
    body: Value,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let r = c.post(url).body(body.to_string()).send().await.unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, headers, v)
}

pub async fn get_json(c: &reqwest::Client, url: String) -> Value {
    let text = c.get(url).send().await.unwrap().text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

pub fn h<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

/// The waits (whole seconds) a refill of `full` seconds can show `start.elapsed()` later:
/// the servers run on the real clock, and a loaded machine takes whole seconds.
pub fn waits_since(start: std::time::Instant, full: u64) -> Vec<u64> {
    let passed = start.elapsed().as_secs() + 1;
    (full.saturating_sub(passed)..=full).collect()
}
