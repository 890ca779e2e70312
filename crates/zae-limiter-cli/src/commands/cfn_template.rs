//! `zae-limiter cfn-template [options]`: print the CloudFormation template (JSON).

use super::deploy_args::StackArgs;
use super::Cli;
use crate::output::CliError;

/// Options of `cfn-template`: the same as `deploy`'s.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub stack: StackArgs,
}

pub fn run(cli: &Cli, args: &Args) -> Result<(), CliError> {
    let opts = args.stack.options(cli)?;
    let t = zae_limiter_infra::render(&opts).map_err(|e| CliError::usage(e.0))?;
    let text = serde_json::to_string_pretty(&t).map_err(|e| CliError::from(e.to_string()))?;
    crate::output::emit(&text);
    Ok(())
}
