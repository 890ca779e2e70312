//! `zae-limiter`: the command-line interface. Parses arguments and calls the library.
//!
//! Exit codes: 0 ok, 1 error, 2 usage, 3 rate limited (refused), 4 store unavailable.

mod aggregator;
mod commands;
mod lambda;
mod output;
mod serve;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

#[tokio::main]
async fn main() -> ExitCode {
    output::quiet_broken_pipe();
    if lambda::is_lambda() {
        let handlers = lambda::Handlers {
            aggregator: Some(lambda::aggregator::handle),
            provisioner: Some(|e| Box::pin(lambda::provisioner::handle(e))),
        };
        return match lambda::main(handlers).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(output::exit::ERROR)
            }
        };
    }
    // clap's own rendering, in full: usage errors on stderr with exit 2, --help / --version
    // on stdout with exit 0
    let args = commands::lambda_export::rewrite_args(std::env::args_os().collect());
    let matches = commands::Cli::command()
        .try_get_matches_from(args)
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
