//! `zae-limiter bench`: latency, throughput, client CPU and DynamoDB calls per operation of the
//! hot path, against DynamoDB (e.g. DynamoDB Local) or the embedded store.
//!
//! Every scenario prints one JSON object on stdout; progress and a summary table go to stderr.
//! After each scenario the buckets are read back and the consumed counters compared with what
//! the operations took (`post_check_ok`).

mod check;
mod measure;
mod ops;
mod report;
mod scenarios;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use zae_limiter::{DynamoStore, MemoryStore, RateLimiter, Store};

use super::store::connect;
use super::Cli;
use crate::output::table;
use measure::round;
use report::{json_line, measured, row, Report};
use scenarios::{Bench, CONTENTION_CAPACITY};

/// Options of `bench`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example: zae-limiter bench --store embedded --scenarios a,b --ops 500")]
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
    /// Comma-separated scenarios to run (default: all of a,b,c,d,e,f,g,h).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Upper bound on the timed part of each scenario, in seconds.
    #[arg(long, default_value_t = 60)]
    max_seconds: u64,
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
const SCENARIOS: [(&str, &str); 8] = [
    ("a", "acquire+commit, 1 limit (rpm), 1 entity"),
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
];

pub async fn run(cli: &Cli, args: &Args) -> Result<(), String> {
    if args.ops == 0 {
        return Err("--ops must be at least 1".into());
    }
    if args.max_seconds == 0 {
        return Err("--max-seconds must be at least 1".into());
    }
    let selected = select(&args.scenarios)?;
    let (store, dynamo): (Arc<dyn Store>, Option<DynamoStore>) = match args.store {
        StoreKind::Memory => (Arc::new(MemoryStore::new()), None),
        StoreKind::Dynamodb => {
            let d = connect(cli, false).await?;
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
    };
    let store_name = match args.store {
        StoreKind::Memory => "memory",
        StoreKind::Dynamodb => "dynamodb",
    };
    eprintln!(
        "bench: store {store_name}{}, {} ops per scenario, entity prefix {}",
        match (&bench.dynamo, &cli.endpoint_url) {
            (Some(_), Some(u)) => format!(" (table {} at {u})", cli.name),
            (Some(_), None) => format!(" (table {})", cli.name),
            _ => String::new(),
        },
        args.ops,
        bench.prefix
    );

    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let progress = crate::output::Progress::new();
    for (id, description) in SCENARIOS.iter().filter(|(id, _)| selected.contains(id)) {
        progress.step(format!("bench: scenario {id}: {description} ..."));
        let mut rep = Report {
            scenario: id,
            description,
            store: store_name,
            ..Report::default()
        };
        let result = bench.scenario(id).await;
        let (w, check) = result.map_err(|e| format!("scenario {id}: {e}"))?;
        let over = w
            .contention
            .map_or(0, |(adm, _)| adm.saturating_sub(CONTENTION_CAPACITY));
        if let Err(why) = &check {
            failures.push(format!("scenario {id} post-check failed: {why}"));
        }
        if over > 0 {
            failures.push(format!("scenario {id} over-admitted {over}"));
        }
        rep.measured = Some(measured(&w, &check));
        json_line(&rep)?;
        rows.push(row(id, &w, &check));
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
                "calls/op",
                "post-check"
            ],
            &rows
        )
    );
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
    };
    let mut rows = Vec::new();
    let progress = crate::output::Progress::new();
    for id in selected.iter().filter(|id| **id != "g") {
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

/// The scenarios asked for, validated (default: all).
fn select(asked: &[String]) -> Result<Vec<&'static str>, String> {
    if asked.is_empty() {
        return Ok(SCENARIOS.iter().map(|(id, _)| *id).collect());
    }
    let mut out = Vec::new();
    for s in asked.iter().map(|s| s.trim()) {
        let id = SCENARIOS
            .iter()
            .map(|(id, _)| *id)
            .find(|id| *id == s)
            .ok_or_else(|| format!("unknown scenario '{s}' (known: a,b,c,d,e,f,g,h)"))?;
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
        assert_eq!(select(&[]).unwrap().len(), 8);
        assert_eq!(
            select(&["b".into(), " a".into(), "b".into()]).unwrap(),
            vec!["b", "a"]
        );
        assert!(select(&["z".into()])
            .unwrap_err()
            .contains("unknown scenario 'z'"));
    }
}
