//! Benchmark (not a test): decisions per second and p50/p99 latency of acquire + commit,
//! through `zae-limiter serve`'s HTTP API and by direct library calls, side by side in one
//! run, on the embedded store and (when `ZAEL_TEST_DYNAMODB_ENDPOINT` is set, e.g. under
//! `scripts/dynamodb-local.sh`) on DynamoDB Local.
//!
//! ```sh
//! cargo build -p zae-limiter-cli && \
//!   scripts/dynamodb-local.sh cargo run -p zae-limiter-cli --example sidecar_bench -- --ops 2000
//! ```
//!
//! Every loop is bounded: `--ops` decisions per row (default 2000) by `--concurrency` tasks
//! (default 16), one entity per task, and at most 120 s per row.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use zae_limiter::{DynamoStore, Limit, MemoryStore, RateLimiter, StoreConfig};

const SPEC: &str = "rpm:100000000/min";
const ROW_BUDGET: Duration = Duration::from_secs(120);

struct Opts {
    ops: usize,
    concurrency: usize,
    bin: String,
}

fn opts() -> Result<Opts, String> {
    let mut o = Opts {
        ops: 2000,
        concurrency: 16,
        bin: concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../target/debug/zae-limiter"
        )
        .to_string(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().ok_or(format!("{a} needs a value"))?;
        match a.as_str() {
            "--ops" => o.ops = v.parse().map_err(|e| format!("--ops: {e}"))?,
            "--concurrency" => {
                o.concurrency = v.parse().map_err(|e| format!("--concurrency: {e}"))?
            }
            "--bin" => o.bin = v,
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    if o.ops == 0 || o.concurrency == 0 {
        return Err("--ops and --concurrency must be at least 1".into());
    }
    Ok(o)
}

/// Run `ops` decisions over `concurrency` tasks; each task calls `one(task)` and times it.
async fn measure<F, Fut>(o: &Opts, one: F) -> Result<(f64, f64, f64), String>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let one = Arc::new(one);
    // warm-up: each task once (config cache, connections)
    for t in 0..o.concurrency {
        one(t).await?;
    }
    let per_task = o.ops.div_ceil(o.concurrency);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..o.concurrency {
        let one = one.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                if start.elapsed() > ROW_BUDGET {
                    break;
                }
                let s = Instant::now();
                one(t).await?;
                lat.push(s.elapsed());
            }
            Ok::<_, String>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.map_err(|e| e.to_string())??);
    }
    let wall = start.elapsed().as_secs_f64();
    all.sort();
    let q = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_secs_f64() * 1e3;
    Ok((all.len() as f64 / wall, q(0.50), q(0.99)))
}

fn direct(
    limiter: RateLimiter,
) -> impl Fn(usize) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
       + Send
       + Sync
       + 'static {
    let limit: Limit = SPEC.parse().unwrap();
    move |t| {
        let (limiter, limit) = (limiter.clone(), limit.clone());
        Box::pin(async move {
            let lease = limiter
                .acquire(format!("direct-{t}"), "bench")
                .limits([limit])
                .consume([("rpm", 1)])
                .await
                .map_err(|e| e.to_string())?;
            lease.commit().await.map_err(|e| e.to_string())
        })
    }
}

fn sidecar(
    base: String,
) -> impl Fn(usize) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
       + Send
       + Sync
       + 'static {
    let client = reqwest::Client::new();
    move |t| {
        let (client, base) = (client.clone(), base.clone());
        Box::pin(async move {
            let body = json!({"entity": format!("sidecar-{t}"), "resource": "bench", "consume": {"rpm": 1}, "limits": [SPEC]});
            let r = client
                .post(format!("{base}/v1/acquire"))
                .body(body.to_string())
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if r.status() != 200 {
                return Err(format!("acquire: {}", r.status()));
            }
            let v: Value = serde_json::from_str(&r.text().await.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
            let id = v["lease_id"].as_str().ok_or("no lease id")?;
            let r = client
                .post(format!("{base}/v1/leases/{id}/commit"))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if r.status() != 200 {
                return Err(format!("commit: {}", r.status()));
            }
            Ok(())
        })
    }
}

/// Start `serve` with these global and serve flags; the child and its base URL.
fn start(bin: &str, global: &[&str], store: &[&str]) -> Result<(Child, String), String> {
    let mut child = Command::new(bin)
        .args(global)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(store)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{bin}: {e} (build it with cargo build -p zae-limiter-cli)"))?;
    let mut line = String::new();
    let err = child.stderr.take().ok_or("no stderr")?;
    BufReader::new(err)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let base = line
        .trim()
        .strip_prefix("serve: HTTP API on ")
        .ok_or(format!("serve said: {line}"))?;
    Ok((child, base.to_string()))
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let o = opts()?;
    let endpoint = std::env::var("ZAEL_TEST_DYNAMODB_ENDPOINT").ok();
    let table = format!("zael-bench-sidecar-{}", std::process::id());
    let mut rows = Vec::new();
    let mut stores = vec!["memory"];
    if endpoint.is_some() {
        stores.push("dynamodb-local");
    }
    for store in stores {
        let (limiter, global, flags): (RateLimiter, Vec<String>, Vec<&str>) =
            match (store, &endpoint) {
                ("memory", _) => (
                    RateLimiter::builder(MemoryStore::new()).build(),
                    vec![],
                    vec!["--store", "memory"],
                ),
                (_, Some(url)) => {
                    let s = DynamoStore::connect(
                        StoreConfig::new(&table)
                            .endpoint_url(url)
                            .static_credentials("local", "local"),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                    s.create_table().await.map_err(|e| e.to_string())?;
                    let g = vec![
                        "--name".into(),
                        table.clone(),
                        "--endpoint-url".into(),
                        url.clone(),
                    ];
                    (RateLimiter::builder(s).build(), g, vec![])
                }
                _ => unreachable!("dynamodb-local only with an endpoint"),
            };
        let (ops, p50, p99) = measure(&o, direct(limiter)).await?;
        rows.push(format!(
            "| direct library call | {store} | {ops:.0} | {p50:.2} | {p99:.2} |"
        ));
        let global: Vec<&str> = global.iter().map(String::as_str).collect();
        let (mut child, base) = start(&o.bin, &global, &flags)?;
        let r = measure(&o, sidecar(base)).await;
        let _ = child.kill();
        let _ = child.wait();
        let (ops, p50, p99) = r?;
        rows.push(format!(
            "| sidecar HTTP (`serve`) | {store} | {ops:.0} | {p50:.2} | {p99:.2} |"
        ));
    }
    println!(
        "{} decisions (acquire + commit) per row, {} concurrent tasks, one entity each\n",
        o.ops, o.concurrency
    );
    println!("| path | store | decisions/s | p50 ms | p99 ms |\n| --- | --- | --- | --- | --- |");
    for r in rows {
        println!("{r}");
    }
    Ok(())
}
