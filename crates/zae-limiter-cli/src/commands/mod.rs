//! One file per command.

mod bench;
mod demo;
mod version;

use clap::{Parser, Subcommand};

use crate::output::Output;

/// Distributed token-bucket rate limiter for API and LLM workloads, backed by DynamoDB.
#[derive(Debug, Parser)]
#[command(name = "zae-limiter", version, about, long_about = None)]
pub struct Cli {
    /// Table (and stack) name.
    #[arg(
        long,
        short = 'n',
        global = true,
        default_value = "zae-limiter",
        env = "ZAEL_NAME"
    )]
    pub name: String,
    /// AWS region (default: from the AWS environment/profile).
    #[arg(long, global = true, env = "AWS_REGION")]
    pub region: Option<String>,
    /// DynamoDB endpoint, e.g. http://127.0.0.1:8000 for DynamoDB Local.
    #[arg(long, global = true, env = "ZAEL_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Simulate an LLM gateway on the embedded store: a project with several API keys,
    /// rpm + tpm limits, estimates reconciled after each call, rejections with retry-after.
    Demo(demo::Args),
    /// Measure the hot path (latency, throughput, client CPU, DynamoDB calls per operation)
    /// against DynamoDB / DynamoDB Local or the embedded store; one JSON line per scenario.
    Bench(bench::Args),
    /// Print the client version.
    Version,
}

/// Run the parsed command.
pub async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Demo(ref args) => demo::run(&cli, args).await,
        Command::Bench(ref args) => bench::run(&cli, args).await,
        Command::Version => version::run(&cli),
    }
}
