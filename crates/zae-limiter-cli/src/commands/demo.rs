//! `zae-limiter demo`: an LLM gateway on the embedded store, in simulated time.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use zae_limiter::{Clock, Error, Limit, ManualClock, MemoryStore, NewEntity, RateLimiter};

use super::Cli;
use crate::output::{table, Output};

/// Options of `demo`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example: zae-limiter demo --seconds 60 --seed 3 --output json")]
pub struct Args {
    /// Simulated seconds of traffic.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    seconds: u64,
    /// Random seed (the same seed gives the same run).
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

const RESOURCE: &str = "gpt-4o";
const PROJECT: &str = "acme";

/// One API key's traffic shape.
struct Client {
    key: &'static str,
    /// chance of a request per 250 ms tick
    rate: f64,
    /// tokens estimated per request
    estimate: u64,
}

#[derive(Default, serde::Serialize)]
struct Tally {
    sent: u64,
    admitted: u64,
    rejected: u64,
    failed_and_rolled_back: u64,
    tokens_estimated: u64,
    tokens_used: u64,
    rpm_available: i64,
    tpm_available: i64,
}

fn key_limits() -> Vec<Limit> {
    vec![
        Limit::per_minute("rpm", 30),
        Limit::per_minute("tpm", 6_000).burst(9_000),
    ]
}

fn project_limits() -> Vec<Limit> {
    vec![
        Limit::per_minute("rpm", 80),
        Limit::per_minute("tpm", 20_000),
    ]
}

pub async fn run(cli: &Cli, args: &Args) -> Result<(), String> {
    let e = |e: Error| e.to_string();
    let clock = ManualClock::new(1_767_225_600_000);
    let limiter = RateLimiter::builder(MemoryStore::new())
        .clock(clock.clone())
        .build();
    let mut rng = StdRng::seed_from_u64(args.seed);
    let human = cli.output == Output::Table;

    limiter
        .create_entity(NewEntity::new(PROJECT).name("Acme Corp"))
        .await
        .map_err(e)?;
    let clients = [
        Client {
            key: "key-web",
            rate: 0.10,
            estimate: 150,
        },
        Client {
            key: "key-batch",
            rate: 0.35,
            estimate: 600,
        },
        Client {
            key: "key-mobile",
            rate: 0.08,
            estimate: 100,
        },
    ];
    for c in &clients {
        limiter
            .create_entity(NewEntity::new(c.key).parent(PROJECT).cascade(true))
            .await
            .map_err(e)?;
    }
    if human {
        println!(
            "LLM gateway demo (embedded store, {} simulated seconds, seed {})",
            args.seconds, args.seed
        );
        println!(
            "  project '{PROJECT}': rpm 80, tpm 20000   each key: rpm 30, tpm 6000 (burst 9000)"
        );
        println!("  keys cascade to the project; estimates are reconciled with the real usage\n");
    }

    let mut tallies: BTreeMap<&str, Tally> =
        clients.iter().map(|c| (c.key, Tally::default())).collect();
    let mut backoff_until: BTreeMap<&str, i64> = BTreeMap::new();
    let mut shown = 0;
    let ticks = args.seconds * 4;
    for tick in 0..ticks {
        for c in &clients {
            if !rng.gen_bool(c.rate)
                || backoff_until
                    .get(c.key)
                    .is_some_and(|&t| t > clock.now_ms())
            {
                continue;
            }
            let t = tallies.get_mut(c.key).expect("known key");
            t.sent += 1;
            let acquired = limiter
                .acquire(c.key, RESOURCE)
                .limits(key_limits())
                .parent_limits(project_limits())
                .consume([("rpm", 1), ("tpm", c.estimate)])
                .await;
            match acquired {
                Ok(lease) => {
                    // the "LLM call": 3% fail upstream, the rest use 50%..180% of the estimate
                    if rng.gen_bool(0.03) {
                        lease.rollback().await.map_err(e)?;
                        t.failed_and_rolled_back += 1;
                        continue;
                    }
                    let used = (c.estimate as f64 * rng.gen_range(0.5..1.8)) as u64;
                    lease
                        .adjust("tpm", used as i64 - c.estimate as i64)
                        .map_err(e)?;
                    lease.commit().await.map_err(e)?;
                    t.admitted += 1;
                    t.tokens_estimated += c.estimate;
                    t.tokens_used += used;
                }
                Err(Error::RateLimited(x)) => {
                    t.rejected += 1;
                    let wait = x.retry_after().unwrap_or(Duration::from_secs(60));
                    backoff_until.insert(c.key, clock.now_ms() + wait.as_millis() as i64);
                    if human && shown < 4 {
                        shown += 1;
                        println!(
                            "t={:>6.2}s  429 for {}: {}\n           Retry-After: {}   {}",
                            tick as f64 / 4.0,
                            c.key,
                            x,
                            x.retry_after_header().unwrap_or_else(|| "-".into()),
                            x.ietf_headers()[1].1
                        );
                    }
                }
                Err(other) => return Err(other.to_string()),
            }
        }
        clock.advance(Duration::from_millis(250));
    }

    let mut rows = Vec::new();
    for (key, t) in tallies.iter_mut() {
        let a = limiter
            .available(key, RESOURCE, &key_limits())
            .await
            .map_err(e)?;
        (t.rpm_available, t.tpm_available) = (a["rpm"], a["tpm"]);
        rows.push(row(key, t));
    }
    let pa = limiter
        .available(PROJECT, RESOURCE, &project_limits())
        .await
        .map_err(e)?;
    let total = Tally {
        sent: tallies.values().map(|t| t.sent).sum(),
        admitted: tallies.values().map(|t| t.admitted).sum(),
        rejected: tallies.values().map(|t| t.rejected).sum(),
        failed_and_rolled_back: tallies.values().map(|t| t.failed_and_rolled_back).sum(),
        tokens_estimated: tallies.values().map(|t| t.tokens_estimated).sum(),
        tokens_used: tallies.values().map(|t| t.tokens_used).sum(),
        rpm_available: pa["rpm"],
        tpm_available: pa["tpm"],
    };
    match cli.output {
        Output::Json => {
            let doc = serde_json::json!({ "keys": tallies, "project": total, "seconds": args.seconds, "seed": args.seed });
            println!("{doc}");
        }
        Output::Table => {
            rows.push(row(&format!("{PROJECT} (project)"), &total));
            println!(
                "\n{}",
                table(
                    &[
                        "entity",
                        "sent",
                        "admitted",
                        "rejected",
                        "rolled back",
                        "est. tokens",
                        "used tokens",
                        "rpm left",
                        "tpm left"
                    ],
                    &rows
                )
            );
            println!(
                "\nEstimates were off by {:+} tokens in total; every difference was reconciled into the buckets.",
                total.tokens_used as i64 - total.tokens_estimated as i64
            );
        }
    }
    Ok(())
}

fn row(name: &str, t: &Tally) -> Vec<String> {
    vec![
        name.to_string(),
        t.sent.to_string(),
        t.admitted.to_string(),
        t.rejected.to_string(),
        t.failed_and_rolled_back.to_string(),
        t.tokens_estimated.to_string(),
        t.tokens_used.to_string(),
        t.rpm_available.to_string(),
        t.tpm_available.to_string(),
    ]
}
