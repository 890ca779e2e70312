//! `zae-limiter completions SHELL`: the shell completion script, printed to stdout.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;

use super::Cli;

/// `completions` arguments.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example: zae-limiter completions bash > /etc/bash_completion.d/zae-limiter\n\
                        Example: zae-limiter completions zsh > \"${fpath[1]}/_zae-limiter\""
)]
pub struct Args {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

/// Write the script for `args.shell` to stdout. Generated into memory first: clap_complete
/// panics on a write error, and a closed pipe (`| head`) is not worth a panic.
pub fn run(args: &Args) -> Result<(), String> {
    let mut cmd = Cli::command();
    let name = cmd.get_name().to_string();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, name, &mut script);
    let mut out = std::io::stdout().lock();
    match out.write_all(&script).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("writing the completion script: {e}"))
        }
        _ => Ok(()),
    }
}
