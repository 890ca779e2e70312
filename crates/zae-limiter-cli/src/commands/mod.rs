//! One file per command.

mod acquire;
mod aggregator; // issue 10
mod audit;
mod bench;
mod cfn_template;
mod check;
mod completions;
mod demo;
mod deploy;
mod deploy_args;
mod entity;
pub mod lambda_export;
mod limits;
mod local;
mod namespace;
mod resource;
mod serve;
mod stack;
mod store;
mod system;
mod table;
mod usage; // issue 10
mod version;

use clap::{Parser, Subcommand};

use crate::output::{CliError, Output};

/// Distributed token-bucket rate limiter for API and LLM workloads, backed by DynamoDB.
#[derive(Debug, Parser)]
#[command(
    name = "zae-limiter",
    version,
    about,
    long_about = None,
    after_help = "The table must exist before other commands use it: create it with \
                  'zae-limiter table create' (DynamoDB Local / development) or deploy the stack.\n\
                  Example: zae-limiter --endpoint-url http://127.0.0.1:8000 table create\n\n\
                  Exit codes: 0 ok, 1 error, 2 usage (bad arguments or input), 3 rate limited \
                  (acquire refused), 4 store unavailable (DynamoDB unreachable or timed out)"
)]
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
    /// Namespace (tenant) to work in; it must be registered (`default` is created on first use).
    #[arg(
        long,
        short = 'N',
        global = true,
        default_value = zae_limiter::DEFAULT_NAMESPACE,
        env = "ZAEL_NAMESPACE"
    )]
    pub namespace: String,
    /// Whether -N/--namespace was given on the command line (set by `main`): the commands
    /// that work on no namespace refuse it then.
    #[arg(skip)]
    pub namespace_given: bool,
    /// Who makes the changes, recorded in audit events.
    #[arg(long, global = true, env = "ZAEL_PRINCIPAL")]
    pub principal: Option<String>,
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
    /// With --endpoint-url it creates its table if missing (as `table create` does).
    Bench(bench::Args),
    /// The DynamoDB table: `table create` for DynamoDB Local and development (no other
    /// command creates it).
    #[command(
        subcommand,
        after_help = "Example: zae-limiter --endpoint-url http://127.0.0.1:8000 table create"
    )]
    Table(table::Cmd),
    /// DynamoDB Local for development (no Docker): `local up` starts it on 127.0.0.1 and
    /// creates the table of --name, `local status`, `local down`.
    #[command(
        subcommand,
        after_help = "Example: zae-limiter local up --port 8000 && \
                      zae-limiter --endpoint-url http://127.0.0.1:8000 entity create key-1"
    )]
    Local(local::Cmd),
    /// Entities and their stored limits.
    #[command(
        subcommand,
        after_help = "Example: zae-limiter entity create key-1 --parent acme --cascade"
    )]
    Entity(entity::Cmd),
    /// Resource default limits.
    #[command(
        subcommand,
        after_help = "Example: zae-limiter resource set-defaults gpt-4o -l rpm:500 -l tpm:50000"
    )]
    Resource(resource::Cmd),
    /// System default limits and the on_unavailable policy.
    #[command(
        subcommand,
        after_help = "Example: zae-limiter system set-defaults -l rpm:1000 --on-unavailable allow"
    )]
    System(system::Cmd),
    /// Declarative limits: plan, apply and diff a YAML manifest of a namespace's stored
    /// limits; print a CloudFormation template for it.
    #[command(
        subcommand,
        after_help = "Example: zae-limiter -n my-app limits plan -f limits.yaml\n\
                      Exit codes of plan and diff: 0 nothing to do, 2 changes, 1 error"
    )]
    Limits(limits::Cmd),
    /// The audit log of changes.
    #[command(
        subcommand,
        after_help = "Example: zae-limiter audit list key-1 --page-size 50"
    )]
    Audit(audit::Cmd),
    /// Namespaces (tenants): register, list, show, delete, recover, purge.
    #[command(
        subcommand,
        after_help = "Example: zae-limiter namespace register tenant-a tenant-b"
    )]
    Namespace(namespace::Cmd),
    /// Take capacity once (acquire + commit) with the limits resolved from the table; exits
    /// 3 with the retry-after when refused.
    #[command(after_help = "Example: zae-limiter acquire key-1 gpt-4o -c rpm=1 -c tpm=500")]
    Acquire(acquire::AcquireArgs),
    /// Tokens available now per limit, consuming nothing.
    #[command(after_help = "Example: zae-limiter available key-1 gpt-4o -l rpm:100")]
    Available(acquire::AvailableArgs),
    /// Print the client version.
    #[command(after_help = "Example: zae-limiter version")]
    Version,
    /// Deploy the stack to AWS (CloudFormation: table, IAM policies, aggregator and
    /// provisioner Lambdas, alarms, archive bucket), or update it through a change set; with
    /// --endpoint-url only the table is created (DynamoDB Local, no CloudFormation). Records
    /// the schema version and registers the `default` namespace.
    #[command(
        after_help = "Examples:\n  zae-limiter --name prod --region us-east-1 deploy \
                            --pitr-recovery-days 7 --log-retention-days 90\n  \
                            zae-limiter --endpoint-url http://127.0.0.1:8000 deploy\n\n\
                            The Lambda package comes from scripts/build-lambda.sh \
                            (target/lambda/bootstrap.zip) or $ZAEL_LAMBDA_ZIP."
    )]
    Deploy(deploy::Args),
    /// Delete the stack and its table (asks first unless --yes).
    #[command(after_help = "Example: zae-limiter --name dev delete --yes")]
    Delete(stack::DeleteArgs),
    /// The stack: status, versions, table, functions and IAM policy ARNs.
    #[command(after_help = "Example: zae-limiter --name prod status --output json")]
    Status,
    /// Every zae-limiter stack of the region, with health markers.
    #[command(after_help = "Example: zae-limiter --region us-east-1 list")]
    List,
    /// Write the Lambda package (our binary as `bootstrap` in a zip).
    #[command(
        name = "lambda-export",
        after_help = "Example: zae-limiter lambda-export --output lambda.zip"
    )]
    LambdaExport(lambda_export::Args),
    /// Client / table schema / Lambda compatibility; exits 1 when incompatible.
    #[command(after_help = "Example: zae-limiter --name prod check")]
    Check,
    /// Upload this client's Lambda code to the stack's functions and record its schema.
    #[command(after_help = "Example: zae-limiter --name prod upgrade")]
    Upgrade,
    /// Print the CloudFormation template (JSON) for these options; every parameter has a
    /// Description and defaults to the option's value.
    #[command(
        name = "cfn-template",
        after_help = "Example: zae-limiter --name prod cfn-template --pitr-recovery-days 7 > template.json"
    )]
    CfnTemplate(cfn_template::Args),
    /// Print a shell completion script (bash, zsh, fish, powershell) to stdout.
    Completions(completions::Args),
    /// Serve the limiter to other processes: an HTTP/JSON API (acquire, adjust, commit,
    /// rollback, available; leases expire by themselves), /healthz and /metrics
    /// (Prometheus). Stops on SIGINT/SIGTERM, rolling back the open leases.
    #[command(
        after_help = "Examples:\n  zae-limiter serve --store memory --listen 127.0.0.1:8080\n  \
                      zae-limiter --endpoint-url http://127.0.0.1:8000 serve --listen 0.0.0.0:8080"
    )]
    Serve(serve::Args),
    /// Usage snapshots (hourly / daily consumption per entity and resource): list, chart,
    /// summary.
    #[command(
        subcommand,
        after_help = "Example: zae-limiter usage list --entity key-1 --plot tpm"
    )]
    Usage(usage::Cmd),
    /// The usage aggregator as a standalone DynamoDB Streams reader (DynamoDB Local, ECS).
    #[command(
        subcommand,
        after_help = "Example: zae-limiter --endpoint-url http://127.0.0.1:8000 aggregator run --once"
    )]
    Aggregator(aggregator::Cmd),
}

/// Run the parsed command; a failure is one line and an exit code (a missing table says how
/// to create it).
pub async fn run(cli: Cli) -> Result<(), CliError> {
    if cli.namespace_given {
        if let Some(why) = ignores_namespace(&cli.command) {
            return Err(CliError::usage(format!(
                "-N/--namespace does not apply to {why}"
            )));
        }
    }
    let result: Result<(), CliError> = match cli.command {
        Command::Demo(ref args) => demo::run(&cli, args).await.map_err(CliError::from),
        Command::Bench(ref args) => bench::run(&cli, args).await.map_err(CliError::from),
        Command::Table(ref cmd) => table::run(&cli, cmd).await.map_err(CliError::from),
        Command::Local(ref cmd) => local::run(&cli, cmd).await,
        Command::Entity(ref cmd) => entity::run(&cli, cmd).await.map_err(CliError::from),
        Command::Resource(ref cmd) => resource::run(&cli, cmd).await.map_err(CliError::from),
        Command::System(ref cmd) => system::run(&cli, cmd).await.map_err(CliError::from),
        Command::Limits(ref cmd) => limits::run(&cli, cmd).await,
        Command::Audit(ref cmd) => audit::run(&cli, cmd).await.map_err(CliError::from),
        Command::Namespace(ref cmd) => namespace::run(&cli, cmd).await.map_err(CliError::from),
        Command::Acquire(ref args) => acquire::acquire(&cli, args).await,
        Command::Available(ref args) => acquire::available(&cli, args).await,
        Command::Version => version::run(&cli).map_err(CliError::from),
        Command::CfnTemplate(ref args) => cfn_template::run(&cli, args),
        Command::Deploy(ref args) => deploy::run(&cli, args).await,
        Command::Delete(ref args) => stack::delete(&cli, args).await,
        Command::Status => stack::status(&cli).await,
        Command::List => stack::list(&cli).await,
        Command::LambdaExport(ref args) => lambda_export::run(&cli, args),
        Command::Check => check::check(&cli).await,
        Command::Upgrade => check::upgrade(&cli).await,
        Command::Completions(ref args) => completions::run(args).map_err(CliError::from),
        Command::Serve(ref args) => serve::run(&cli, args).await,
        Command::Usage(ref cmd) => usage::run(&cli, cmd).await.map_err(CliError::from),
        Command::Aggregator(ref cmd) => aggregator::run(&cli, cmd).await.map_err(CliError::from),
    };
    result.map_err(|e| store::explain_missing_table(&cli, e))
}

/// Why a command does not take `-N/--namespace`, for the commands that work on no namespace.
fn ignores_namespace(command: &Command) -> Option<&'static str> {
    match command {
        Command::Namespace(_) => Some(
            "`namespace` commands: they manage every namespace (name it as the argument, \
             e.g. `namespace show tenant-a`)",
        ),
        Command::Demo(_) => Some("`demo`: it runs on its own embedded store"),
        Command::Local(_) => Some("`local`: it manages the DynamoDB Local process"),
        Command::Version => Some("`version`"),
        Command::Completions(_) => Some("`completions`"),
        Command::Aggregator(_) => Some("`aggregator`: it reads every namespace's changes"),
        _ => None,
    }
}
