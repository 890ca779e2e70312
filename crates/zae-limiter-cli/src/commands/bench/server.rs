//! The server side of a measurement: the CPU time of the DynamoDB Local JVM (from
//! `/proc/{pid}/stat`), so that client and server costs per operation are told apart, and
//! the untimed server warm-up that runs before any timed window.

use std::time::Duration;

use zae_limiter::{Limit, RateLimiter};

use super::ops::RESOURCE;

/// Linux reports process times in clock ticks of `USER_HZ`, which is 100 on every
/// architecture the kernel's user ABI supports.
const TICKS_PER_SECOND: u64 = 100;

/// A process whose CPU time is read around each timed window.
#[derive(Debug, Clone, Copy)]
pub(super) struct ServerCpu {
    pub(super) pid: u32,
}

impl ServerCpu {
    /// `pid` if given, else the DynamoDB Local JVM listening on `endpoint`'s port (found by
    /// its command line in `/proc`); `None` when there is none on this machine.
    pub(super) fn find(endpoint: Option<&str>, pid: Option<u32>) -> Option<Self> {
        if let Some(pid) = pid {
            return Some(ServerCpu { pid });
        }
        let port = port_of(endpoint?)?;
        let entries = std::fs::read_dir("/proc").ok()?;
        entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .find(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|raw| {
                    let args: Vec<&str> = raw
                        .split(|b| *b == 0)
                        .filter_map(|a| std::str::from_utf8(a).ok())
                        .collect();
                    is_dynamodb_local(&args, port)
                })
            })
            .map(|pid| ServerCpu { pid })
    }

    /// The process's CPU time so far (user + system, all threads); `None` once it is gone.
    pub(super) fn now(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        cpu_of_stat(&stat)
    }
}

/// The port of an endpoint URL (`http://127.0.0.1:8000/` → 8000).
fn port_of(endpoint: &str) -> Option<u16> {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let authority = rest.split('/').next()?;
    authority.rsplit_once(':')?.1.parse().ok()
}

/// Whether a command line is DynamoDB Local's (`java … -jar DynamoDBLocal.jar … -port P`).
fn is_dynamodb_local(args: &[&str], port: u16) -> bool {
    let port = port.to_string();
    args.iter().any(|a| a.ends_with("DynamoDBLocal.jar"))
        && args.windows(2).any(|w| w[0] == "-port" && w[1] == port)
}

/// User + system time from the text of `/proc/{pid}/stat` (fields 14 and 15; the command
/// name in field 2 may hold spaces and parentheses, so fields are counted after its last
/// `)`).
fn cpu_of_stat(stat: &str) -> Option<Duration> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // after the name: field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND))
}

/// Entities the warm-up spreads its operations over.
const WARMUP_ENTITIES: usize = 64;
/// Tasks running the warm-up.
const WARMUP_TASKS: usize = 8;

/// Untimed operations before any scenario, so every comparison starts from a warm server
/// (JIT-compiled paths, grown pools): acquire + commit, acquire + adjust + commit and
/// `available()` in turn, on entities of their own.
pub(super) async fn warm_up(limiter: &RateLimiter, prefix: &str, ops: u64) -> Result<(), String> {
    let limits = vec![
        Limit::per_minute("rpm", 1_000_000_000),
        Limit::per_minute("tpm", 1_000_000_000),
    ];
    let mut tasks = Vec::new();
    for t in 0..WARMUP_TASKS {
        let (l, limits, prefix) = (limiter.clone(), limits.clone(), prefix.to_string());
        let n = ops / WARMUP_TASKS as u64 + u64::from((t as u64) < ops % WARMUP_TASKS as u64);
        tasks.push(tokio::spawn(async move {
            for i in 0..n {
                let k = (i as usize * WARMUP_TASKS + t) % WARMUP_ENTITIES;
                let entity = format!("{prefix}-warm-{k}");
                let fail = |e: zae_limiter::Error| format!("server warm-up on {entity}: {e}");
                if i % 3 == 2 {
                    l.available(&entity, RESOURCE, &limits)
                        .await
                        .map_err(fail)?;
                    continue;
                }
                let lease = l
                    .acquire(&entity, RESOURCE)
                    .limits(limits.clone())
                    .consume([("rpm", 1), ("tpm", 100)])
                    .await
                    .map_err(fail)?;
                if i % 3 == 1 {
                    lease.adjust("tpm", 50).map_err(fail)?;
                }
                lease.commit().await.map_err(fail)?;
            }
            Ok::<_, String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_of_endpoints() {
        assert_eq!(port_of("http://127.0.0.1:8000"), Some(8000));
        assert_eq!(port_of("http://127.0.0.1:41995/"), Some(41995));
        assert_eq!(port_of("https://dynamodb.us-east-1.amazonaws.com"), None);
        assert_eq!(port_of("127.0.0.1:9"), Some(9));
    }

    #[test]
    fn dynamodb_local_is_found_by_jar_and_port() {
        let cmd = [
            "java",
            "-Djava.library.path=./DynamoDBLocal_lib",
            "-jar",
            "/x/DynamoDBLocal.jar",
            "-inMemory",
            "-port",
            "8000",
        ];
        assert!(is_dynamodb_local(&cmd, 8000));
        assert!(!is_dynamodb_local(&cmd, 8001));
        assert!(!is_dynamodb_local(&["java", "-port", "8000"], 8000));
    }

    #[test]
    fn cpu_time_from_proc_stat() {
        // a command name with a space and a parenthesis; utime 250, stime 50 ticks
        let stat = "1234 (java (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0";
        assert_eq!(cpu_of_stat(stat), Some(Duration::from_secs(3)));
        assert_eq!(cpu_of_stat("garbage"), None);
        let own = ServerCpu {
            pid: std::process::id(),
        };
        assert!(own.now().is_some(), "this process's own stat parses");
    }
}
