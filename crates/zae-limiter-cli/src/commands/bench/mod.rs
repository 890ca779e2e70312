//! `zae-limiter bench`: latency, throughput, client CPU and DynamoDB calls per operation of the
//! hot path, against DynamoDB (e.g. DynamoDB Local) or the embedded store.
//!
//! Every scenario prints one JSON object on stdout; progress and a summary table go to stderr.
//! After each scenario the buckets are read back and the consumed counters compared with what
//! the operations took (`post_check_ok`).

mod check;
mod hot;
mod measure;
mod ops;
mod raw;
mod report;
mod scenarios;
mod server;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use zae_limiter::{DynamoStore, MemoryStore, RateLimiter, Store};

use super::store::{connect, store_config};
use super::Cli;
use crate::output::table;
use measure::round;
use report::{json_line, measured, row, Report};
use scenarios::{Bench, CONTENTION_CAPACITY};

/// Options of `bench`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  zae-limiter bench --store embedded --scenarios a,b --ops 500\n  \
    zae-limiter --endpoint-url http://127.0.0.1:8000 bench --scenarios a,raw\n  \
    zae-limiter --endpoint-url http://127.0.0.1:8000 bench --scenarios hot --partition-limit 50"
)]
pub struct Args {
    /// Where the buckets live: DynamoDB (needs --endpoint-url or an AWS environment) or the
    /// embedded in-process store. With --endpoint-url (DynamoDB Local) bench creates the table
    /// named by --name if it is missing, as `table create` does; against AWS the table must
    /// exist.
    #[arg(long, value_enum, default_value_t = StoreKind::Dynamodb)]
    store: StoreKind,
    /// Timed operations per scenario (scenario g always makes 2000 attempts).
    #[arg(long, default_value_t = 2000)]
    ops: u64,
    /// Comma-separated scenarios to run (default: all of a,raw,b,c,d,e,f,g,h the store can
    /// run; hot only when named).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Upper bound on the timed part of each scenario, in seconds.
    #[arg(long, default_value_t = 60)]
    max_seconds: u64,
    /// Untimed operations (acquire, adjust, available on entities of their own) before the
    /// first scenario, so that every comparison starts from a warm server; 0 for none.
    #[arg(long, default_value_t = 5000)]
    server_warmup_ops: u64,
    /// Process whose CPU time is reported per operation (server_cpu_ms_per_op); by default
    /// the DynamoDB Local JVM listening on --endpoint-url's port, if it runs on this machine.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Send every request to DynamoDB, even one the last state seen proves refused (to
    /// measure what local refusals save in scenario g).
    #[arg(long)]
    no_local_refusals: bool,
    /// Per-attempt timeout of DynamoDB requests, in milliseconds (the library's default is
    /// 1000). On an overloaded machine, an attempt that times out after its write landed is
    /// retried, and under contention its tokens may stay spent (docs/architecture.md,
    /// "At-most-once writes"): the post-check then reports it.
    #[arg(long, default_value_t = 1000)]
    attempt_timeout_ms: u64,
    /// Scenario hot: the per-partition write limit (writes/s) the local proxy emulates in
    /// front of --endpoint-url (DynamoDB's own is about 1,000; lower shows the effect on a
    /// small machine).
    #[arg(long, default_value_t = 50)]
    partition_limit: u32,
    /// Scenario hot: seconds per phase (throughput and exactness, for each split).
    #[arg(long, default_value_t = 3)]
    hot_seconds: u64,
    /// The tokio runtime the scenarios run on: `multi-thread` (a worker per core, what
    /// `#[tokio::main]` gives) or `current-thread` (one thread for the client and its
    /// connections: no wake-ups across threads, less CPU per operation; docs/performance.md,
    /// "Client settings").
    #[arg(long, value_enum, default_value_t = Runtime::MultiThread)]
    runtime: Runtime,
}

/// The tokio runtime of a bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Runtime {
    /// One worker thread per core.
    MultiThread,
    /// One thread.
    CurrentThread,
}

/// The store a bench runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StoreKind {
    /// DynamoDB (or DynamoDB Local through --endpoint-url).
    Dynamodb,
    /// The embedded in-process store.
    Memory,
}

/// Every scenario, in run order: id and one-line description.
const SCENARIOS: [(&str, &str); 10] = [
    ("a", "acquire+commit, 1 limit (rpm), 1 entity"),
    (
        "raw",
        "bare conditional UpdateItem (ADD, ALL_NEW) on a bucket item; DynamoDB only, in blocks interleaved with a",
    ),
    ("b", "acquire+commit, 2 limits (rpm, tpm), 1 entity"),
    ("c", "cascade: child + parent, 2 limits each"),
    (
        "d",
        "limits from stored system defaults (= b), warm config cache",
    ),
    ("e", "as b, plus adjust(tpm, +300) before commit"),
    ("f", "as b, 16 concurrent tasks, one entity each"),
    (
        "g",
        "contention: 16 tasks, 2000 attempts, 1 entity, per_day(x, 500)",
    ),
    ("h", "available() with b's limits, 1 entity"),
    (
        "hot",
        "1 entity, 16 tasks, behind an emulated per-partition write limit: 1, 2, 4, 8 shards and automatic splitting (only when asked for)",
    ),
];

pub async fn run(cli: &Cli, args: &Args) -> Result<(), String> {
    match args.runtime {
        Runtime::MultiThread => run_here(cli, args).await,
        // on a thread of its own, while this runtime's workers stay parked
        Runtime::CurrentThread => tokio::task::block_in_place(|| {
            std::thread::scope(|s| {
                s.spawn(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| format!("bench: a current-thread runtime: {e}"))?
                        .block_on(run_here(cli, args))
                })
                .join()
                .unwrap_or_else(|_| Err("bench: the benchmark thread panicked".into()))
            })
        }),
    }
}

async fn run_here(cli: &Cli, args: &Args) -> Result<(), String> {
    if args.ops == 0 {
        return Err("--ops must be at least 1".into());
    }
    if args.max_seconds == 0 {
        return Err("--max-seconds must be at least 1".into());
    }
    let selected = select(&args.scenarios, args.store)?;
    let (store, dynamo): (Arc<dyn Store>, Option<DynamoStore>) = match args.store {
        StoreKind::Memory => (Arc::new(MemoryStore::new()), None),
        StoreKind::Dynamodb => {
            let config = store_config(cli, &cli.namespace)?;
            let config = config
                .local_refusals(!args.no_local_refusals)
                .attempt_timeout(Duration::from_millis(args.attempt_timeout_ms.max(1)));
            let d = DynamoStore::connect(config)
                .await
                .map_err(|e| e.to_string())?;
            // a benchmark tool: against an endpoint (DynamoDB Local) it creates its own table
            if cli.endpoint_url.is_some() {
                let status = super::table::create(&d).await?;
                eprintln!("bench: table {}: {}", cli.name, status.as_str());
            }
            (Arc::new(d.clone()), Some(d))
        }
    };
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_millis();
    let bench = Bench {
        limiter: RateLimiter::builder_shared(store.clone()).build(),
        store,
        dynamo,
        prefix: format!("bench-{stamp}"),
        ops: args.ops,
        max: Duration::from_secs(args.max_seconds),
        server: match args.store {
            StoreKind::Dynamodb => {
                server::ServerCpu::find(cli.endpoint_url.as_deref(), args.server_pid)
            }
            StoreKind::Memory => None,
        },
    };
    let store_name = match args.store {
        StoreKind::Memory => "memory",
        StoreKind::Dynamodb => "dynamodb",
    };
    eprintln!(
        "bench: store {store_name}{}, {} ops per scenario, {:?} runtime, entity prefix {}",
        match (&bench.dynamo, &cli.endpoint_url) {
            (Some(_), Some(u)) => format!(" (table {} at {u})", cli.name),
            (Some(_), None) => format!(" (table {})", cli.name),
            _ => String::new(),
        },
        args.ops,
        args.runtime,
        bench.prefix
    );

    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let mut comparison = None;
    let progress = crate::output::Progress::new();
    if args.server_warmup_ops > 0 {
        progress.step(format!(
            "bench: server warm-up, {} untimed operations ...",
            args.server_warmup_ops
        ));
        server::warm_up(&bench.limiter, &bench.prefix, args.server_warmup_ops).await?;
    }
    let paired = selected.contains(&"a") && selected.contains(&"raw");
    for (id, description) in SCENARIOS.iter().filter(|(id, _)| selected.contains(id)) {
        if paired && *id == "raw" {
            continue; // measured with a
        }
        if *id == "hot" {
            progress.step(format!("bench: scenario hot: {description} ..."));
            let (_, failed) =
                hot::run(cli, &bench.prefix, args.partition_limit, args.hot_seconds).await?;
            failures.extend(failed);
            continue;
        }
        progress.step(format!("bench: scenario {id}: {description} ..."));
        let results = if paired && *id == "a" {
            let [a, raw] = bench
                .paired()
                .await
                .map_err(|e| format!("scenario a/raw: {e}"))?;
            comparison = Some(raw::ratios(&a.0, &raw.0));
            vec![("a", SCENARIOS[0].1, a), ("raw", SCENARIOS[1].1, raw)]
        } else {
            let result = bench.scenario(id).await;
            vec![(
                *id,
                *description,
                result.map_err(|e| format!("scenario {id}: {e}"))?,
            )]
        };
        for (id, description, (w, check)) in results {
            let over = w
                .contention
                .map_or(0, |(adm, _)| adm.saturating_sub(CONTENTION_CAPACITY));
            if let Err(why) = &check {
                failures.push(format!("scenario {id} post-check failed: {why}"));
            }
            if over > 0 {
                failures.push(format!("scenario {id} over-admitted {over}"));
            }
            let rep = Report {
                scenario: id,
                description,
                store: store_name,
                measured: Some(measured(&w, &check)),
            };
            json_line(&rep)?;
            rows.push(row(id, &w, &check));
        }
    }
    drop(progress);
    eprintln!(
        "\n{}",
        table(
            &[
                "scenario",
                "ops",
                "conc",
                "ops/s",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "cpu ms/op",
                "server cpu ms/op",
                "calls/op",
                "post-check"
            ],
            &rows
        )
    );
    if let Some(ratios) = comparison {
        let map: serde_json::Map<String, serde_json::Value> = ratios
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
            .collect();
        println!(
            "{}",
            serde_json::json!({"comparison": "a/raw", "ratios": map})
        );
        eprintln!(
            "\nlibrary / bare write (a / raw, same server, interleaved blocks): {}",
            ratios
                .iter()
                .map(|(k, v)| format!("{k} {v:.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if args.store == StoreKind::Dynamodb {
        capacity_pass(cli, &bench, &selected).await?;
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// A separate pass with `ReturnConsumedCapacity=TOTAL` (kept out of the timed pass so its
/// extra response parsing does not skew latency): capacity units per operation as DynamoDB
/// reports them. Failed conditional writes are billed but not reported, so g is left out.
async fn capacity_pass(cli: &Cli, timed: &Bench, selected: &[&str]) -> Result<(), String> {
    let store = connect(cli, true).await?;
    let bench = Bench {
        limiter: RateLimiter::builder(store.clone()).build(),
        store: Arc::new(store.clone()),
        dynamo: Some(store),
        prefix: format!("{}-cap", timed.prefix),
        ops: timed.ops.min(200),
        max: timed.max,
        server: None,
    };
    let mut rows = Vec::new();
    let progress = crate::output::Progress::new();
    // g: failed conditional writes are billed but not reported; raw is no library operation
    for id in selected
        .iter()
        .filter(|id| !matches!(**id, "g" | "raw" | "hot"))
    {
        progress.step(format!("bench: capacity pass, scenario {id} ..."));
        let (w, _) = bench
            .scenario(id)
            .await
            .map_err(|e| format!("capacity pass, scenario {id}: {e}"))?;
        let cap = w.capacity.unwrap_or_default();
        let per = |x: f64| round(x / w.ops.max(1) as f64, 4);
        let line = serde_json::json!({
            "scenario": id,
            "pass": "capacity",
            "ops": w.ops,
            "read_cu_per_op": per(cap.read),
            "write_cu_per_op": per(cap.write),
        });
        println!("{line}");
        rows.push(vec![
            id.to_string(),
            w.ops.to_string(),
            per(cap.read).to_string(),
            per(cap.write).to_string(),
        ]);
    }
    drop(progress);
    eprintln!(
        "\ncapacity units per op as reported by the endpoint:\n{}",
        table(&["scenario", "ops", "read CU/op", "write CU/op"], &rows)
    );
    Ok(())
}

/// The scenarios asked for, validated (default: all the store can run but hot; raw and hot
/// need DynamoDB).
fn select(asked: &[String], store: StoreKind) -> Result<Vec<&'static str>, String> {
    let runs = |id: &str| store == StoreKind::Dynamodb || !matches!(id, "raw" | "hot");
    if asked.is_empty() {
        return Ok(SCENARIOS
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| runs(id) && *id != "hot")
            .collect());
    }
    let mut out = Vec::new();
    for s in asked.iter().map(|s| s.trim()) {
        let id = SCENARIOS
            .iter()
            .map(|(id, _)| *id)
            .find(|id| *id == s)
            .ok_or_else(|| format!("unknown scenario '{s}' (known: a,raw,b,c,d,e,f,g,h,hot)"))?;
        if !runs(id) {
            return Err(format!(
                "scenario {id} runs against DynamoDB (Local): it needs --store dynamodb"
            ));
        }
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_selection() {
        let (d, m) = (StoreKind::Dynamodb, StoreKind::Memory);
        assert_eq!(select(&[], d).unwrap().len(), 9);
        assert_eq!(select(&[], m).unwrap().len(), 8, "raw needs DynamoDB");
        assert_eq!(
            select(&["b".into(), " a".into(), "b".into()], d).unwrap(),
            vec!["b", "a"]
        );
        assert!(select(&["z".into()], d)
            .unwrap_err()
            .contains("unknown scenario 'z'"));
        assert!(select(&["raw".into()], m)
            .unwrap_err()
            .contains("needs --store dynamodb"));
        assert!(select(&["hot".into()], m)
            .unwrap_err()
            .contains("needs --store dynamodb"));
        assert_eq!(select(&["hot".into()], d).unwrap(), vec!["hot"]);
    }
}
