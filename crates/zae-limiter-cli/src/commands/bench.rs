//! `zae-limiter bench`: latency, throughput, client CPU and DynamoDB calls per operation of the
//! hot path, against DynamoDB (e.g. DynamoDB Local) or the embedded store.
//!
//! Every scenario prints one JSON object on stdout; progress and a summary table go to stderr.
//! After each scenario the buckets are read back and the consumed counters compared with what
//! the operations took (`post_check_ok`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use zae_limiter::store::{BucketKey, BucketState};
use zae_limiter::{
    ConfigScope, ConsumedCapacity, DynamoStore, Error, Limit, MemoryStore, NewEntity, RateLimiter,
    Store, StoredConfig,
};

use super::store::connect;
use super::Cli;
use crate::output::table;

/// Options of `bench`.
#[derive(Debug, clap::Args)]
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

const RESOURCE: &str = "api";
const WARMUP: u64 = 20;
const CONCURRENCY: usize = 16;
const CONTENTION_ATTEMPTS: u64 = 2000;
const CONTENTION_CAPACITY: u64 = 500;
const HUGE: u64 = 1_000_000_000;
const MILLI: i128 = 1000;
const TPM: u64 = 500;
const TPM_ADJUST: i64 = 300;

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

fn rpm() -> Limit {
    Limit::per_minute("rpm", HUGE)
}

fn b_limits() -> Vec<Limit> {
    vec![
        Limit::per_minute("rpm", HUGE),
        Limit::per_minute("tpm", HUGE),
    ]
}

/// What one timed operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// a: acquire rpm 1, commit.
    OneLimit,
    /// b, c, f: acquire rpm 1 + tpm 500, commit.
    TwoLimits,
    /// d: as `TwoLimits` with no limits in code: they are resolved from stored defaults.
    Stored,
    /// e: as `TwoLimits` with `adjust("tpm", 300)` before commit.
    Adjusted,
    /// h: `available()` with b's limits.
    Available,
}

impl Op {
    async fn run(self, limiter: &RateLimiter, entity: &str) -> Result<(), Error> {
        let lease = match self {
            Op::OneLimit => {
                limiter
                    .acquire(entity, RESOURCE)
                    .limits([rpm()])
                    .consume([("rpm", 1)])
                    .await?
            }
            Op::TwoLimits | Op::Adjusted => {
                limiter
                    .acquire(entity, RESOURCE)
                    .limits(b_limits())
                    .consume([("rpm", 1), ("tpm", TPM)])
                    .await?
            }
            Op::Stored => {
                limiter
                    .acquire(entity, RESOURCE)
                    .consume([("rpm", 1), ("tpm", TPM)])
                    .await?
            }
            Op::Available => {
                limiter.available(entity, RESOURCE, &b_limits()).await?;
                return Ok(());
            }
        };
        if self == Op::Adjusted {
            lease.adjust("tpm", TPM_ADJUST)?;
        }
        lease.commit().await
    }

    /// Millitokens one operation leaves consumed, per limit.
    fn consumed_per_op(self) -> Vec<(&'static str, i128)> {
        match self {
            Op::OneLimit => vec![("rpm", MILLI)],
            Op::TwoLimits | Op::Stored => vec![("rpm", MILLI), ("tpm", TPM as i128 * MILLI)],
            Op::Adjusted => vec![
                ("rpm", MILLI),
                ("tpm", (TPM as i128 + TPM_ADJUST as i128) * MILLI),
            ],
            Op::Available => vec![],
        }
    }
}

/// The store under test: the trait object the limiter uses, plus the DynamoDB handle for
/// call counts.
struct Bench {
    limiter: RateLimiter,
    store: Arc<dyn Store>,
    dynamo: Option<DynamoStore>,
    prefix: String,
    ops: u64,
    max: Duration,
}

/// Measurements of one scenario's timed window.
#[derive(Default)]
struct Window {
    ops: u64,
    concurrency: usize,
    wall: Duration,
    cpu: Duration,
    latencies: Vec<Duration>,
    calls: BTreeMap<String, u64>,
    capped: bool,
    contention: Option<(u64, u64)>,
    capacity: Option<ConsumedCapacity>,
}

/// Result of a post-check: `Ok` or what differed.
type Check = Result<(), String>;

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
    for (id, description) in SCENARIOS.iter().filter(|(id, _)| selected.contains(id)) {
        eprintln!("bench: scenario {id}: {description} ...");
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
    for id in selected.iter().filter(|id| **id != "g") {
        eprintln!("bench: capacity pass, scenario {id} ...");
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

/// One bucket as stored (`None` if it does not exist).
async fn read_bucket(store: &dyn Store, entity: &str) -> Result<Option<BucketState>, String> {
    store
        .get_bucket(&BucketKey::new(entity, RESOURCE))
        .await
        .map_err(|e| format!("reading the bucket of {entity}: {e}"))
}

/// Compare a bucket's consumed counters with `expected` (millitokens per limit).
async fn check_bucket(store: &dyn Store, entity: &str, expected: &[(&str, i128)]) -> Check {
    let state = read_bucket(store, entity).await?.unwrap_or_default();
    for (name, want) in expected {
        let got = state.limits.get(*name).map_or(0, |s| s.consumed);
        if got != *want {
            return Err(format!(
                "{entity} {name}: consumed {got} millitokens, expected {want}"
            ));
        }
    }
    Ok(())
}

fn times(per_op: Vec<(&'static str, i128)>, n: u64) -> Vec<(&'static str, i128)> {
    per_op
        .into_iter()
        .map(|(k, v)| (k, v * n as i128))
        .collect()
}

impl Bench {
    fn entity(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix)
    }

    /// Start a timed window: reset call counts, read the clocks.
    fn start(&self) -> (Instant, cpu_time::ProcessTime) {
        if let Some(d) = &self.dynamo {
            d.reset_call_counts();
            d.reset_consumed_capacity();
        }
        (Instant::now(), cpu_time::ProcessTime::now())
    }

    /// End a timed window (before any post-check read).
    fn finish(&self, w: &mut Window, (wall, cpu): (Instant, cpu_time::ProcessTime)) {
        w.wall = wall.elapsed();
        w.cpu = cpu.elapsed();
        w.calls = self
            .dynamo
            .as_ref()
            .map(DynamoStore::call_counts)
            .unwrap_or_default();
        w.capacity = self.dynamo.as_ref().map(DynamoStore::consumed_capacity);
    }

    /// Run scenario `id`.
    async fn scenario(&self, id: &str) -> Result<(Window, Check), String> {
        match id {
            "a" => self.sequential("a", Op::OneLimit).await,
            "b" => self.sequential("b", Op::TwoLimits).await,
            "c" => self.cascade().await,
            "d" => self.stored_defaults().await,
            "e" => self.sequential("e", Op::Adjusted).await,
            "f" => self.concurrent().await,
            "g" => self.contention().await,
            "h" => self.available().await,
            other => Err(format!("unknown scenario '{other}'")),
        }
    }

    /// d: b's operation with no limits in code; they come from stored system defaults
    /// (= b's limits) through the warm config cache. The defaults are removed afterwards; a
    /// table that already has system defaults is left alone.
    async fn stored_defaults(&self) -> Result<(Window, Check), String> {
        let system = ConfigScope::System;
        let e = |e: Error| format!("system defaults: {e}");
        if self.limiter.get_config(&system).await.map_err(e)?.is_some() {
            return Err("this table already has system defaults; scenario d would replace them (run it on another table, or leave d out with --scenarios)".into());
        }
        self.limiter
            .set_config(&system, StoredConfig::limits(b_limits()))
            .await
            .map_err(e)?;
        let result = self.sequential("d", Op::Stored).await;
        self.limiter.delete_config(&system).await.map_err(e)?;
        result
    }

    /// `n` operations on `entity` one after the other, stopping at the deadline if given.
    async fn serial(
        &self,
        op: Op,
        entity: &str,
        n: u64,
        deadline: Option<Instant>,
    ) -> Result<(Vec<Duration>, bool), String> {
        let mut lat = Vec::with_capacity(n as usize);
        for i in 0..n {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok((lat, true));
            }
            let t = Instant::now();
            op.run(&self.limiter, entity)
                .await
                .map_err(|e| format!("operation {i} on {entity}: {e}"))?;
            lat.push(t.elapsed());
        }
        Ok((lat, false))
    }

    /// Warm-up, then `ops` timed operations on `entity` one after the other.
    async fn timed_serial(&self, op: Op, entity: &str) -> Result<Window, String> {
        self.serial(op, entity, WARMUP, None).await?;
        let mut w = Window {
            concurrency: 1,
            ..Window::default()
        };
        let clocks = self.start();
        let (lat, capped) = self
            .serial(op, entity, self.ops, Some(Instant::now() + self.max))
            .await?;
        self.finish(&mut w, clocks);
        (w.ops, w.latencies, w.capped) = (lat.len() as u64, lat, capped);
        Ok(w)
    }

    /// a, b, e: warm-up then `ops` timed operations on one entity.
    async fn sequential(&self, tag: &str, op: Op) -> Result<(Window, Check), String> {
        let entity = self.entity(tag);
        let w = self.timed_serial(op, &entity).await?;
        let check = check_bucket(
            &*self.store,
            &entity,
            &times(op.consumed_per_op(), WARMUP + w.ops),
        )
        .await;
        Ok((w, check))
    }

    /// c: a cascading child; every operation also takes from the parent.
    async fn cascade(&self) -> Result<(Window, Check), String> {
        let (parent, child) = (self.entity("c-parent"), self.entity("c-child"));
        let e = |e: Error| e.to_string();
        self.limiter
            .create_entity(NewEntity::new(&parent))
            .await
            .map_err(e)?;
        self.limiter
            .create_entity(NewEntity::new(&child).parent(&parent).cascade(true))
            .await
            .map_err(e)?;
        let op = Op::TwoLimits;
        let w = self.timed_serial(op, &child).await?;
        let want = times(op.consumed_per_op(), WARMUP + w.ops);
        let check = match check_bucket(&*self.store, &child, &want).await {
            Ok(()) => check_bucket(&*self.store, &parent, &want).await,
            Err(e) => Err(e),
        };
        Ok((w, check))
    }

    /// f: 16 tasks, each on its own entity, `ops` operations in total.
    async fn concurrent(&self) -> Result<(Window, Check), String> {
        let op = Op::TwoLimits;
        let entities: Vec<String> = (0..CONCURRENCY)
            .map(|i| self.entity(&format!("f-{i}")))
            .collect();
        let share = |i: usize| {
            self.ops / CONCURRENCY as u64 + u64::from((i as u64) < self.ops % CONCURRENCY as u64)
        };
        // warm-up: each task's entity once through the caches
        let mut warm = Vec::new();
        for e in &entities {
            let (l, e) = (self.limiter.clone(), e.clone());
            warm.push(tokio::spawn(async move {
                for _ in 0..WARMUP {
                    op.run(&l, &e)
                        .await
                        .map_err(|x| format!("warm-up on {e}: {x}"))?;
                }
                Ok::<_, String>(())
            }));
        }
        for h in warm {
            h.await.map_err(|e| e.to_string())??;
        }
        let mut w = Window {
            concurrency: CONCURRENCY,
            ..Window::default()
        };
        let deadline = Instant::now() + self.max;
        let clocks = self.start();
        let mut tasks = Vec::new();
        for (i, e) in entities.iter().enumerate() {
            let (l, e, n) = (self.limiter.clone(), e.clone(), share(i));
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(n as usize);
                for k in 0..n {
                    if Instant::now() >= deadline {
                        return Ok((lat, true));
                    }
                    let t = Instant::now();
                    op.run(&l, &e)
                        .await
                        .map_err(|x| format!("operation {k} on {e}: {x}"))?;
                    lat.push(t.elapsed());
                }
                Ok::<_, String>((lat, false))
            }));
        }
        let mut per_entity = Vec::new();
        for h in tasks {
            let (lat, capped) = h.await.map_err(|e| e.to_string())??;
            per_entity.push(lat.len() as u64);
            w.capped |= capped;
            w.latencies.extend(lat);
        }
        self.finish(&mut w, clocks);
        w.ops = w.latencies.len() as u64;
        let mut check = Ok(());
        for (e, n) in entities.iter().zip(per_entity) {
            check = check_bucket(&*self.store, e, &times(op.consumed_per_op(), WARMUP + n)).await;
            if check.is_err() {
                break;
            }
        }
        Ok((w, check))
    }

    /// g: 16 tasks race for 500 tokens on one entity with 2000 attempts; no warm-up.
    async fn contention(&self) -> Result<(Window, Check), String> {
        let entity = self.entity("g");
        let limits = vec![Limit::per_day("x", CONTENTION_CAPACITY)];
        let next = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + self.max;
        let mut w = Window {
            concurrency: CONCURRENCY,
            ..Window::default()
        };
        let clocks = self.start();
        let mut tasks = Vec::new();
        for _ in 0..CONCURRENCY {
            let (l, e, lim, next) = (
                self.limiter.clone(),
                entity.clone(),
                limits.clone(),
                next.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let (mut lat, mut admitted, mut rejected, mut capped) =
                    (Vec::new(), 0u64, 0u64, false);
                while next.fetch_add(1, Ordering::Relaxed) < CONTENTION_ATTEMPTS {
                    if Instant::now() >= deadline {
                        capped = true;
                        break;
                    }
                    let t = Instant::now();
                    match l
                        .acquire(e.as_str(), RESOURCE)
                        .limits(lim.clone())
                        .consume([("x", 1)])
                        .await
                    {
                        Ok(lease) => {
                            lease.commit().await.map_err(|x| x.to_string())?;
                            admitted += 1;
                        }
                        Err(Error::RateLimited(_)) => rejected += 1,
                        Err(x) => return Err(format!("attempt on {e}: {x}")),
                    }
                    lat.push(t.elapsed());
                }
                Ok::<_, String>((lat, admitted, rejected, capped))
            }));
        }
        let (mut admitted, mut rejected) = (0, 0);
        for h in tasks {
            let (lat, a, r, capped) = h.await.map_err(|e| e.to_string())??;
            w.latencies.extend(lat);
            (admitted, rejected) = (admitted + a, rejected + r);
            w.capped |= capped;
        }
        self.finish(&mut w, clocks);
        w.ops = w.latencies.len() as u64;
        w.contention = Some((admitted, rejected));
        let check = check_bucket(&*self.store, &entity, &[("x", admitted as i128 * MILLI)]).await;
        Ok((w, check))
    }

    /// h: `available()`; the bucket is created by one untimed acquire and must not change.
    async fn available(&self) -> Result<(Window, Check), String> {
        let entity = self.entity("h");
        Op::TwoLimits
            .run(&self.limiter, &entity)
            .await
            .map_err(|e| format!("seeding {entity}: {e}"))?;
        let before = read_bucket(&*self.store, &entity).await?;
        let op = Op::Available;
        let w = self.timed_serial(op, &entity).await?;
        let after = read_bucket(&*self.store, &entity).await?;
        let counters = |s: &Option<BucketState>| -> BTreeMap<String, i128> {
            s.iter()
                .flat_map(|s| s.limits.iter().map(|(k, v)| (k.clone(), v.consumed)))
                .collect()
        };
        let check = if before.is_some() && counters(&before) == counters(&after) {
            Ok(())
        } else {
            Err(format!(
                "counters changed: {:?} -> {:?}",
                counters(&before),
                counters(&after)
            ))
        };
        Ok((w, check))
    }
}

/// Round to `d` decimals (for readable JSON).
fn round(x: f64, d: i32) -> f64 {
    let f = 10f64.powi(d);
    (x * f).round() / f
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile of sorted latencies, in ms.
fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    ms(sorted[rank - 1])
}

struct Stats {
    ops_per_s: f64,
    p50: f64,
    p95: f64,
    p99: f64,
    mean: f64,
    min: f64,
    max: f64,
    cpu_per_op: f64,
    calls_per_op: BTreeMap<String, f64>,
}

fn stats(w: &Window) -> Stats {
    let mut lat = w.latencies.clone();
    lat.sort();
    let n = w.ops.max(1) as f64;
    Stats {
        ops_per_s: w.ops as f64 / w.wall.as_secs_f64().max(1e-9),
        p50: pct(&lat, 0.50),
        p95: pct(&lat, 0.95),
        p99: pct(&lat, 0.99),
        mean: lat.iter().map(|d| ms(*d)).sum::<f64>() / lat.len().max(1) as f64,
        min: lat.first().map_or(0.0, |d| ms(*d)),
        max: lat.last().map_or(0.0, |d| ms(*d)),
        cpu_per_op: ms(w.cpu) / n,
        calls_per_op: w
            .calls
            .iter()
            .map(|(k, v)| (k.clone(), *v as f64 / n))
            .collect(),
    }
}

/// One scenario's JSON line. Field order is the output order.
#[derive(Debug, Default, serde::Serialize)]
struct Report {
    scenario: &'static str,
    description: &'static str,
    store: &'static str,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    measured: Option<Measured>,
}

/// The measured part of a [`Report`].
#[derive(Debug, serde::Serialize)]
struct Measured {
    ops: u64,
    concurrency: usize,
    wall_s: f64,
    ops_per_s: f64,
    latency_ms: Latency,
    client_cpu_ms_per_op: f64,
    ddb_calls_per_op: BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    admitted: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rejected: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    over_admission: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    capped_by_max_seconds: bool,
    post_check_ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    post_check_error: Option<String>,
}

/// Latency of one operation in ms (nearest-rank percentiles).
#[derive(Debug, serde::Serialize)]
struct Latency {
    p50: f64,
    p95: f64,
    p99: f64,
    mean: f64,
    min: f64,
    max: f64,
}

fn measured(w: &Window, check: &Check) -> Measured {
    let s = stats(w);
    Measured {
        ops: w.ops,
        concurrency: w.concurrency,
        wall_s: round(w.wall.as_secs_f64(), 4),
        ops_per_s: round(s.ops_per_s, 1),
        latency_ms: Latency {
            p50: round(s.p50, 4),
            p95: round(s.p95, 4),
            p99: round(s.p99, 4),
            mean: round(s.mean, 4),
            min: round(s.min, 4),
            max: round(s.max, 4),
        },
        client_cpu_ms_per_op: round(s.cpu_per_op, 4),
        ddb_calls_per_op: s
            .calls_per_op
            .into_iter()
            .map(|(k, v)| (k, round(v, 4)))
            .collect(),
        admitted: w.contention.map(|(a, _)| a),
        rejected: w.contention.map(|(_, r)| r),
        over_admission: w
            .contention
            .map(|(a, _)| a.saturating_sub(CONTENTION_CAPACITY)),
        capped_by_max_seconds: w.capped,
        post_check_ok: check.is_ok(),
        post_check_error: check.as_ref().err().cloned(),
    }
}

fn json_line(r: &Report) -> Result<(), String> {
    println!("{}", serde_json::to_string(r).map_err(|e| e.to_string())?);
    Ok(())
}

/// A number with three significant digits (ms values span µs on the embedded store to tens of
/// ms on DynamoDB).
fn sig3(x: f64) -> String {
    if x <= 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let decimals = (2 - x.log10().floor() as i32).clamp(0, 6) as usize;
    format!("{x:.decimals$}")
}

fn row(id: &str, w: &Window, check: &Check) -> Vec<String> {
    let s = stats(w);
    let calls = if s.calls_per_op.is_empty() {
        "-".to_string()
    } else {
        s.calls_per_op
            .iter()
            .map(|(k, v)| format!("{k} {v:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut check_col = if check.is_ok() {
        "ok".to_string()
    } else {
        "FAILED".to_string()
    };
    if let Some((a, r)) = w.contention {
        check_col.push_str(&format!(
            " (admitted {a}, rejected {r}, over {})",
            a.saturating_sub(CONTENTION_CAPACITY)
        ));
    }
    vec![
        id.to_string(),
        format!("{}{}", w.ops, if w.capped { "*" } else { "" }),
        w.concurrency.to_string(),
        format!("{:.0}", s.ops_per_s),
        sig3(s.p50),
        sig3(s.p95),
        sig3(s.p99),
        sig3(s.cpu_per_op),
        calls,
        check_col,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let lat: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(pct(&lat, 0.50), 50.0);
        assert_eq!(pct(&lat, 0.99), 99.0);
        assert_eq!(pct(&lat[..1], 0.95), 1.0);
        assert_eq!(pct(&[], 0.5), 0.0);
    }

    #[test]
    fn three_significant_digits() {
        assert_eq!(sig3(0.0037215), "0.00372");
        assert_eq!(sig3(3.3315), "3.33");
        assert_eq!(sig3(22.97), "23.0");
        assert_eq!(sig3(1234.6), "1235");
        assert_eq!(sig3(0.0), "0");
    }

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
