//! `zae-limiter lambda-export --output FILE`: write the Lambda package (the zip `deploy`
//! uploads: our binary as `bootstrap`).

use std::path::PathBuf;

use serde_json::json;
use zae_limiter_infra::package;

use super::store::print_json;
use super::Cli;
use crate::output::{emit, CliError, Output};

/// Options of `lambda-export`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the zip (`--output FILE` works too: a value other than table/json after
    /// `lambda-export` is taken as the file).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output_file: PathBuf,
    /// Package this binary as `bootstrap` instead of the built package (it must be a Linux
    /// build Lambda can run: static, or glibc <= 2.34 for provided.al2023).
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
}

/// `lambda-export --output FILE`: the global `--output` is the format (table|json), so
/// after `lambda-export` a `--output` whose value is not a format names the file
/// (`--output-file`). Called on argv before parsing.
pub fn rewrite_args(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    if !args.iter().any(|a| a == "lambda-export") {
        return args;
    }
    let mut out = Vec::with_capacity(args.len());
    let mut after = false;
    let mut it = args.into_iter().peekable();
    while let Some(a) = it.next() {
        if a == "lambda-export" {
            after = true;
            out.push(a);
            continue;
        }
        if after && a == "--output" {
            if let Some(v) = it.peek() {
                if v != "table" && v != "json" {
                    out.push("--output-file".into());
                    continue;
                }
            }
        }
        if let Some(v) = a.to_str().and_then(|s| s.strip_prefix("--output=")) {
            if after && v != "table" && v != "json" {
                out.push(format!("--output-file={v}").into());
                continue;
            }
        }
        out.push(a);
    }
    out
}

pub fn run(cli: &Cli, args: &Args) -> Result<(), CliError> {
    let (bytes, source) = match &args.binary {
        Some(b) => (package::zip_bootstrap(b)?, b.clone()),
        None => {
            let z = package::find_zip()?;
            let bytes = std::fs::read(&z).map_err(|e| format!("reading {}: {e}", z.display()))?;
            (bytes, z)
        }
    };
    std::fs::write(&args.output_file, &bytes)
        .map_err(|e| format!("writing {}: {e}", args.output_file.display()))?;
    match cli.output {
        Output::Json => print_json(&json!({
            "output": args.output_file.display().to_string(),
            "source": source.display().to_string(),
            "bytes": bytes.len(),
        }))
        .map_err(CliError::from),
        Output::Table => {
            emit(&format!(
                "Wrote {} ({:.2} MB, from {})",
                args.output_file.display(),
                bytes.len() as f64 / 1e6,
                source.display()
            ));
            Ok(())
        }
    }
}
