//! `zae-limiter`: the command-line interface. Parses arguments and calls the library.
//!
//! Exit codes: 0 ok, 1 error, 2 usage, 3 rate limited (refused), 4 store unavailable.

mod commands;
mod lambda;
mod output;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

#[tokio::main]
async fn main() -> ExitCode {
    output::quiet_broken_pipe();
    // clap's own rendering, in full: usage errors on stderr with exit 2, --help / --version
    // on stdout with exit 0
    let matches = commands::Cli::command()
        .try_get_matches()
        .unwrap_or_else(|e| e.exit());
    let mut cli = commands::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // -N/--namespace given on the command line (not from ZAEL_NAMESPACE or the default)
    cli.namespace_given =
        matches.value_source("namespace") == Some(clap::parser::ValueSource::CommandLine);
    match commands::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.message.is_empty() {
                eprintln!("{}", e.line());
            }
            ExitCode::from(e.code)
        }
    }
}
