//! The recorded DynamoDB Local process: is it ours, alive, answering; stopping it.

use crate::output::CliError;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::LAUNCHER_CLASS;

pub(super) fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Whether DynamoDB Local answers on 127.0.0.1:`port`: a ListTables request (unsigned; Local
/// does not check signatures) gets HTTP 200.
pub(super) fn answers(port: u16) -> bool {
    let probe = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&loopback(port), Duration::from_millis(500))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.set_write_timeout(Some(Duration::from_secs(2)))?;
        let body = "{}";
        write!(
            s,
            "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             Content-Type: application/x-amz-json-1.0\r\n\
             X-Amz-Target: DynamoDB_20120810.ListTables\r\n\
             Authorization: AWS4-HMAC-SHA256 \
             Credential=local/20260101/us-east-1/dynamodb/aws4_request, \
             SignedHeaders=host, Signature=0\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head)?;
        Ok(head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"))
    };
    probe().unwrap_or(false)
}

/// Whether `pid` is alive (not a zombie) and runs the launcher: `down` never signals a
/// process that merely reuses a recorded pid.
pub(super) fn is_ours(pid: u32) -> bool {
    if !alive(pid) {
        return false;
    }
    if !Path::new("/proc/self").exists() {
        return true; // no /proc: `kill -0` is all there is
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&cmdline).contains(LAUNCHER_CLASS)
}

/// Whether `pid` exists and is not a zombie. An exiting process keeps its sockets until it
/// turns into a zombie (its command line is gone earlier), so this, not [`is_ours`], tells
/// `down` when the port is free.
pub(super) fn alive(pid: u32) -> bool {
    if Path::new("/proc/self").exists() {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // `pid (comm) S ...`: the state follows the last ')'
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        return !matches!(state, Some('Z') | Some('X') | None);
    }
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub(super) fn signal(pid: u32, sig: &str) -> Result<(), CliError> {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .map_err(|e| format!("running kill: {e}"))?;
    if status.success() || !alive(pid) {
        Ok(())
    } else {
        Err(format!("kill -{sig} {pid} failed ({status})").into())
    }
}

/// Wait until `pid` is gone (a zombie counts as gone), then until `port` no longer accepts
/// connections; false if the process outlives `timeout`.
pub(super) async fn wait_gone(pid: u32, port: u16, timeout: Duration) -> bool {
    let started = Instant::now();
    while alive(pid) {
        if started.elapsed() > timeout {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    while started.elapsed() < timeout
        && TcpStream::connect_timeout(&loopback(port), Duration::from_millis(200)).is_ok()
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}
