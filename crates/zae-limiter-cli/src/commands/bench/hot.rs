//! Scenario `hot`: one entity behind the fault proxy's emulation of DynamoDB's per-partition
//! write limit (`zae-limiter-proxy`), split into 1, 2, 4 and 8 shards, then left to split
//! itself. Two phases per shard count:
//!
//! - **throughput**: tokens are plentiful, so the partition limit is what bounds admissions;
//! - **exactness**: tokens are scarce (the bucket refills half the partition limit per
//!   second), so the bucket bounds admissions: over-admission (admitted beyond what a
//!   single bucket could have given) must be 0, and under-admission (refill lost at full
//!   shards while requests were refused on others) is measured.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use zae_limiter::shard::level_of;
use zae_limiter::store::BucketKey;
use zae_limiter::{DynamoStore, Error, Limit, RateLimiter, Store};
use zae_limiter_proxy::{PartitionLimit, Proxy};

use super::super::store::store_config;
use super::super::Cli;
use super::ops::RESOURCE;
use crate::output::table;

/// Concurrent tasks writing the hot entity.
const CONCURRENCY: usize = 16;
/// Requests per task at most, whatever the time allows.
const MAX_PER_TASK: u64 = 20_000;

/// How the hot entity is split in one run.
#[derive(Debug, Clone, Copy)]
enum Split {
    /// Split ahead into this many shards, and never more.
    Fixed(u16),
    /// Start whole and let throttling split it (up to 16).
    Auto,
}

impl Split {
    fn label(self) -> String {
        match self {
            Split::Fixed(n) => n.to_string(),
            Split::Auto => "auto".into(),
        }
    }
}

/// What one phase saw.
#[derive(Debug, Default)]
struct Phase {
    admitted: u64,
    refused: u64,
    throttled: u64,
    /// Other failures (timeouts, commit errors).
    errors: u64,
    seconds: f64,
}

/// Run the scenario; one JSON object per run, and the failures (over-admission).
pub(super) async fn run(
    cli: &Cli,
    prefix: &str,
    partition_limit: u32,
    seconds: u64,
) -> Result<(Vec<Value>, Vec<String>), String> {
    let endpoint = cli
        .endpoint_url
        .as_deref()
        .ok_or("scenario hot runs DynamoDB Local behind a local proxy: it needs --endpoint-url")?;
    let proxy = Proxy::try_start(endpoint)
        .await
        .map_err(|e| format!("scenario hot: the proxy cannot front {endpoint}: {e}"))?;
    let faults = proxy.faults();
    let config = store_config(cli, &cli.namespace)
        .map_err(|e| e.to_string())?
        .endpoint_url(proxy.url());
    let store = DynamoStore::connect(config)
        .await
        .map_err(|e| e.to_string())?;
    let window = Duration::from_secs(seconds);
    let (mut lines, mut rows, mut failures) = (Vec::new(), Vec::new(), Vec::new());
    let mut base = None;
    for split in [
        Split::Fixed(1),
        Split::Fixed(2),
        Split::Fixed(4),
        Split::Fixed(8),
        Split::Auto,
    ] {
        let max = match split {
            Split::Fixed(n) => n,
            Split::Auto => 16,
        };
        // splits when all clients near the emulated limit, as on DynamoDB near its own
        let limiter = RateLimiter::builder(store.clone())
            .max_shards(max)
            .split_at_writes_per_sec(Some((partition_limit / 5 * 4).max(1)))
            .timeout(Duration::from_secs(5))
            .build();
        let n = f64::from(partition_limit);
        // throughput: a million tokens per second, the partition limit is the bound
        let plenty = [Limit::custom(
            "rps",
            1_000_000,
            1_000_000,
            Duration::from_secs(1),
        )];
        let entity = format!("{prefix}-hot-t{}", split.label());
        faults.set_partition_limit(None);
        prepare(&limiter, &entity, &plenty, split).await?;
        faults.set_partition_limit(Some(PartitionLimit::writes_per_sec(partition_limit)));
        let t = hammer(&limiter, &entity, &plenty, window).await;
        faults.set_partition_limit(None);
        let level = level(&store, &entity).await?;
        let ops_per_s = t.admitted as f64 / t.seconds;
        let base = *base.get_or_insert(ops_per_s);

        // exactness: capacity = the partition limit, refill half of it per second
        let capacity = u64::from(partition_limit);
        let refill = (capacity / 2).max(1);
        let scarce = [Limit::custom(
            "rps",
            capacity,
            refill,
            Duration::from_secs(1),
        )];
        let entity = format!("{prefix}-hot-x{}", split.label());
        prepare(&limiter, &entity, &scarce, split).await?;
        // new shards start empty: wait until every shard is full again
        let fill = Duration::from_secs_f64(capacity as f64 / refill as f64 + 0.2);
        tokio::time::sleep(fill).await;
        faults.set_partition_limit(Some(PartitionLimit::writes_per_sec(partition_limit)));
        let x = hammer(&limiter, &entity, &scarce, window).await;
        faults.set_partition_limit(None);
        limiter.flush().await;
        let leftover = limiter
            .available(&entity, RESOURCE, &scarce)
            .await
            .map_err(|e| format!("scenario hot: available: {e}"))?["rps"]
            .max(0) as u64;
        // what one bucket could have given: full at the start, plus the refill
        let ideal = capacity + (refill as f64 * x.seconds).floor() as u64;
        let over = x.admitted.saturating_sub(ideal);
        let under = ideal.saturating_sub(x.admitted + leftover);
        if over > 0 {
            failures.push(format!(
                "scenario hot, {} shards: over-admitted {over} (admitted {} of at most {ideal})",
                split.label(),
                x.admitted
            ));
        }
        let line = json!({
            "scenario": "hot",
            "shards": split.label(),
            "level_reached": level,
            "partition_limit_writes_per_s": partition_limit,
            "concurrency": CONCURRENCY,
            "throughput": {
                "admitted": t.admitted,
                "seconds": round(t.seconds),
                "ops_per_s": round(ops_per_s),
                "vs_one_shard": round(ops_per_s / base),
                "vs_partition_limit": round(ops_per_s / n),
                "throttled": t.throttled,
                "refused": t.refused,
                "errors": t.errors,
            },
            "exactness": {
                "capacity": capacity,
                "refill_per_s": refill,
                "seconds": round(x.seconds),
                "at_most": ideal,
                "admitted": x.admitted,
                "left": leftover,
                "over_admitted": over,
                "under_admitted": under,
                "under_admitted_share": round(under as f64 / ideal as f64),
                "refused": x.refused,
                "throttled": x.throttled,
                "errors": x.errors,
            },
        });
        println!("{line}");
        rows.push(vec![
            split.label(),
            (1u32 << level).to_string(),
            format!("{ops_per_s:.0}"),
            format!("{:.2}", ops_per_s / base),
            t.throttled.to_string(),
            format!("{}/{ideal}", x.admitted),
            over.to_string(),
            format!("{under} ({:.1}%)", 100.0 * under as f64 / ideal as f64),
        ]);
        lines.push(line);
    }
    eprintln!(
        "\nscenario hot: {CONCURRENCY} tasks on one entity, {partition_limit} writes/s per \
         partition (emulated), {seconds} s per phase:\n{}",
        table(
            &[
                "split",
                "shards",
                "ops/s",
                "x 1 shard",
                "throttled",
                "exact: admitted/at most",
                "over",
                "under"
            ],
            &rows
        )
    );
    Ok((lines, failures))
}

/// Split the new entity's bucket as `split` says (with the limit off).
async fn prepare(
    limiter: &RateLimiter,
    entity: &str,
    limits: &[Limit],
    split: Split,
) -> Result<(), String> {
    if let Split::Fixed(n) = split {
        limiter
            .shard_bucket(entity, RESOURCE, limits, n)
            .await
            .map_err(|e| format!("scenario hot: splitting {entity}: {e}"))?;
    }
    Ok(())
}

/// The shard level of the entity's bucket, read from shard 0.
async fn level(store: &DynamoStore, entity: &str) -> Result<u8, String> {
    Ok(store
        .get_bucket(&BucketKey::new(entity, RESOURCE))
        .await
        .map_err(|e| format!("scenario hot: reading {entity}: {e}"))?
        .map_or(0, |s| level_of(s.version())))
}

/// [`CONCURRENCY`] tasks acquiring 1 and committing for `window`.
async fn hammer(limiter: &RateLimiter, entity: &str, limits: &[Limit], window: Duration) -> Phase {
    let counts = Arc::new([
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    ]);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (l, limits, entity, counts) = (
            limiter.clone(),
            limits.to_vec(),
            entity.to_string(),
            counts.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for _ in 0..MAX_PER_TASK {
                if started.elapsed() >= window {
                    break;
                }
                let r = l
                    .acquire(&entity, RESOURCE)
                    .limits(limits.clone())
                    .consume([("rps", 1)])
                    .await;
                let k = match r {
                    Ok(lease) => match lease.commit().await {
                        Ok(()) => 0,
                        Err(_) => 3,
                    },
                    Err(Error::RateLimited(_)) => 1,
                    Err(Error::Throttled { .. }) => 2,
                    Err(_) => 3,
                };
                counts[k].fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let seconds = started.elapsed().as_secs_f64();
    Phase {
        admitted: counts[0].load(Ordering::Relaxed),
        refused: counts[1].load(Ordering::Relaxed),
        throttled: counts[2].load(Ordering::Relaxed),
        errors: counts[3].load(Ordering::Relaxed),
        seconds,
    }
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
