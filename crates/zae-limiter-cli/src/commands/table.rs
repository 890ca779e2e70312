//! `zae-limiter table …`: the DynamoDB table itself. Tables are only ever created here (or by
//! `bench` against an `--endpoint-url`), never as a side effect of another command.

use serde_json::json;
use zae_limiter::{DynamoStore, Store};

use super::store::{self, print_json, MISSING_TABLE};
use super::Cli;
use crate::output::Output;

/// Table commands.
#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Create the table through the DynamoDB API (DynamoDB Local / development)
    ///
    /// The table gets its key schema, the global secondary indexes, a stream (new and old
    /// images, for the usage aggregator) and TTL on `ttl`; the command waits until it is
    /// active. Idempotent: a table that already exists is left as it is. With --output json
    /// it prints {"table": NAME, "status": "created" | "exists"} ("ready" when a failed read
    /// left it unknown whether the table was there before).
    ///
    /// Meant for DynamoDB Local and development. Production tables come from the
    /// CloudFormation stack (`zae-limiter deploy`, not yet implemented), which adds IAM
    /// policies, alarms, PITR and the aggregator.
    ///
    /// Example (DynamoDB Local):
    ///
    ///   zae-limiter --endpoint-url http://127.0.0.1:8000 --name my-limits table create
    #[command(verbatim_doc_comment)]
    Create,
}

pub async fn run(cli: &Cli, cmd: &Cmd) -> Result<(), String> {
    match cmd {
        Cmd::Create => {
            let store = store::connect(cli, false).await?;
            let status = create(&store).await?;
            let at = store::location(cli);
            match cli.output {
                Output::Json => {
                    print_json(&json!({ "table": cli.name, "status": status.as_str() }))
                }
                Output::Table => {
                    match status {
                        TableStatus::Created => println!("Created table '{}'{at}", cli.name),
                        TableStatus::Existed => println!("Table '{}' already exists{at}", cli.name),
                        TableStatus::Ready => println!("Table '{}' is ready{at}", cli.name),
                    }
                    Ok(())
                }
            }
        }
    }
}

/// What [`create`] found: the `status` of `table create`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TableStatus {
    /// The table was missing and this call created it.
    Created,
    /// The table was already there.
    Existed,
    /// The table is there now; whether it was before could not be told (the read that
    /// checks for it failed for another reason).
    Ready,
}

impl TableStatus {
    /// The `status` of `table create --output json`.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            TableStatus::Created => "created",
            TableStatus::Existed => "exists",
            TableStatus::Ready => "ready",
        }
    }
}

/// Create the table of `store` if it is missing and wait until it is active (a new table gets
/// the schema record). A read of the
/// namespace registry first tells whether it existed (a missing table answers
/// `ResourceNotFoundException`).
pub(super) async fn create(store: &DynamoStore) -> Result<TableStatus, String> {
    let before = match Store::namespaces(store).await {
        Ok(_) => TableStatus::Existed,
        Err(e) if e.to_string().contains(MISSING_TABLE) => TableStatus::Created,
        Err(_) => TableStatus::Ready,
    };
    store
        .create_table()
        .await
        .map_err(|e| format!("creating table '{}': {e}", store.table_name()))?;
    if before == TableStatus::Created {
        // a new table records the schema it was created with (as `deploy` does)
        store
            .write_schema_record(env!("CARGO_PKG_VERSION"), super::deploy::now_ms())
            .await
            .map_err(|e| format!("recording the schema of '{}': {e}", store.table_name()))?;
    }
    Ok(before)
}
