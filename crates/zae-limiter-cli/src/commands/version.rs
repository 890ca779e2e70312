//! `zae-limiter version`

use super::Cli;
use crate::output::Output;

pub fn run(cli: &Cli) -> Result<(), String> {
    let v = env!("CARGO_PKG_VERSION");
    match cli.output {
        Output::Json => println!("{}", serde_json::json!({ "client_version": v })),
        Output::Table => println!("zae-limiter {v}"),
    }
    Ok(())
}
