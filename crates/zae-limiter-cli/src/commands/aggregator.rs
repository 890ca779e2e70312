//! `zae-limiter aggregator run`: the usage aggregator as a standalone reader of the table's
//! DynamoDB stream (DynamoDB Local, ECS, anywhere without Lambda). Same aggregation and
//! archival code as the Lambda handler; checkpoints in the table; Ctrl-C / SIGTERM stop it
//! after the current page.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{store, Cli};
use crate::aggregator::archive::Archive;
use crate::aggregator::checkpoint::Checkpoints;
use crate::aggregator::streams::{progress_line, Reader, Totals};
use crate::aggregator::Sinks;

/// The `aggregator` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Read the table's stream into usage snapshots (and archive expired audit items).
    #[command(
        after_help = "Example: zae-limiter --endpoint-url http://127.0.0.1:8000 aggregator run --once\n\
                            Example: zae-limiter aggregator run --archive-bucket my-audit-archive"
    )]
    Run(RunArgs),
}

/// `aggregator run` options.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Read every shard up to its current end, then exit (otherwise follow the stream).
    #[arg(long)]
    pub once: bool,
    /// Archive TTL-expired audit items to this S3 bucket (gzip JSON Lines).
    #[arg(long, value_name = "BUCKET", env = "ZAEL_ARCHIVE_BUCKET")]
    pub archive_bucket: Option<String>,
    /// S3 endpoint (e.g. moto or MinIO at http://127.0.0.1:5000; path-style addressing).
    #[arg(long, value_name = "URL")]
    pub s3_endpoint_url: Option<String>,
    /// Days a snapshot is kept after the end of its window.
    #[arg(long, default_value_t = 90, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub usage_retention_days: u32,
    /// Pause between passes over the stream when following it (ms).
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub poll_interval_ms: u64,
    /// Print a progress line (records/s, lag) to stderr every 2 s.
    #[arg(long)]
    pub progress: bool,
    /// Records per GetRecords call (and per checkpoint).
    #[arg(long, default_value_t = 1000, value_name = "N", value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub page_size: i32,
}

/// The AWS configuration of the global flags (static credentials for a local endpoint).
async fn sdk_config(cli: &Cli) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    match (&cli.region, &cli.endpoint_url) {
        (Some(r), _) => loader = loader.region(aws_config::Region::new(r.clone())),
        (None, Some(_)) => loader = loader.region(aws_config::Region::new("us-east-1")),
        _ => {}
    }
    if cli.endpoint_url.is_some() && std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        loader = loader.credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "local",
            "local",
            None,
            None,
            "zae-limiter-local",
        ));
    }
    loader.load().await
}

pub async fn run(cli: &Cli, cmd: &Cmd) -> Result<(), String> {
    let Cmd::Run(args) = cmd;
    let usage = store::connect(cli, false).await.map_err(|e| e.message)?;
    let sdk = sdk_config(cli).await;
    let mut ddb = aws_sdk_dynamodb::config::Builder::from(&sdk);
    let mut streams = aws_sdk_dynamodbstreams::config::Builder::from(&sdk);
    if let Some(url) = &cli.endpoint_url {
        ddb = ddb.endpoint_url(url);
        streams = streams.endpoint_url(url);
    }
    let ddb = aws_sdk_dynamodb::Client::from_conf(ddb.build());
    let streams = aws_sdk_dynamodbstreams::Client::from_conf(streams.build());
    let table = ddb
        .describe_table()
        .table_name(&cli.name)
        .send()
        .await
        .map_err(|e| {
            format!(
                "DescribeTable {}{}: {}",
                cli.name,
                store::location(cli),
                aws_sdk_dynamodb::error::DisplayErrorContext(&e)
            )
        })?;
    let stream_arn = table
        .table()
        .and_then(|t| t.latest_stream_arn())
        .ok_or_else(|| format!("table {} has no stream", cli.name))?
        .to_string();
    let archive = args.archive_bucket.as_ref().map(|b| {
        Archive::new(
            Archive::client(&sdk, args.s3_endpoint_url.as_deref()),
            b.clone(),
        )
    });
    let stop = Arc::new(AtomicBool::new(false));
    spawn_signal_handler(stop.clone());
    let reader = Reader {
        streams,
        checkpoints: Checkpoints::new(ddb, &cli.name, &stream_arn),
        stream_arn: stream_arn.clone(),
        sinks: Sinks {
            usage: &usage,
            retention_ms: i64::from(args.usage_retention_days) * 86_400_000,
            archive: archive.as_ref(),
        },
        stop: stop.clone(),
        progress: args.progress,
        page: args.page_size,
        local_endpoint: cli.endpoint_url.clone(),
    };
    eprintln!(
        "{}",
        json!({"level": "info", "msg": "aggregator started", "table": cli.name, "stream": stream_arn,
               "once": args.once, "archive_bucket": args.archive_bucket})
    );
    let started = Instant::now();
    let mut totals = Totals::default();
    let mut failures = 0u32;
    loop {
        match reader.pass(&mut totals, started).await {
            Ok(_) => failures = 0,
            Err(e) if args.once => return Err(e),
            Err(e) => {
                failures += 1;
                eprintln!(
                    "{}",
                    json!({"level": "error", "msg": e, "consecutive_failures": failures})
                );
            }
        }
        if args.once || stop.load(Ordering::SeqCst) {
            break;
        }
        // back off on failures (up to 30 s), else the poll interval; wake early on a signal
        let pause = if failures > 0 {
            Duration::from_millis((500u64 << failures.min(6)).min(30_000))
        } else {
            Duration::from_millis(args.poll_interval_ms)
        };
        let until = Instant::now() + pause;
        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50).min(pause)).await;
        }
        if stop.load(Ordering::SeqCst) {
            break;
        }
    }
    let mut line: serde_json::Value =
        serde_json::from_str(&progress_line(&totals, started)).unwrap_or_default();
    line["msg"] = json!("aggregator stopped");
    line["elapsed_s"] = json!((started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0);
    line["bucket_changes"] = json!(totals.bucket_changes);
    println!("{line}");
    Ok(())
}

/// Ctrl-C and SIGTERM set `stop`: the reader finishes its page, checkpoints, and exits.
fn spawn_signal_handler(stop: Arc<AtomicBool>) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let term = signal(SignalKind::terminate());
            match term {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        eprintln!(
            "{}",
            json!({"level": "info", "msg": "stopping after the current page"})
        );
        stop.store(true, Ordering::SeqCst);
    });
}
