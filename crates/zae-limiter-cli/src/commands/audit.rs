//! `zae-limiter audit list`: the recorded changes of an entity (or of the system / resource
//! defaults), newest first, one page at a time.

use serde_json::json;
use zae_limiter::{AuditEvent, MAX_AUDIT_PAGE};

use super::store::{self, print_json, rfc3339};
use super::Cli;
use crate::output::{table, Output};

/// The `audit` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// List audit events, newest first.
    #[command(after_help = "Example: zae-limiter audit list key-1 --page-size 50\n\
                            Example: zae-limiter audit list '$RESOURCE:gpt-4o'\n\
                            Example: zae-limiter audit list key-1 --since 2026-01-01T00:00:00Z")]
    List {
        /// Entity id, or '$SYSTEM' / '$RESOURCE:<resource>' for changes of the system /
        /// resource defaults (quote the '$' in a shell).
        entity: String,
        /// Events per page (1 to 1000).
        #[arg(long, default_value_t = 20, value_name = "N")]
        page_size: usize,
        /// Continue after this event id (printed as "More events: --before ..." at the end of
        /// the previous page), or list the events before an RFC 3339 time
        /// (`2026-01-01T00:00:00Z`).
        #[arg(long, value_name = "EVENT_ID|TIME")]
        before: Option<String>,
        /// Only the events at or after this RFC 3339 time (`2026-01-01T00:00:00Z`); the
        /// listing ends at the first older event.
        #[arg(long, value_name = "TIME", value_parser = store::parse_rfc3339)]
        since: Option<i64>,
    },
}

pub async fn run(cli: &Cli, cmd: &Cmd) -> Result<(), String> {
    let Cmd::List {
        entity,
        page_size,
        before,
        since,
    } = cmd;
    if *page_size == 0 || *page_size > MAX_AUDIT_PAGE {
        return Err(format!(
            "--page-size must be between 1 and {MAX_AUDIT_PAGE}, got {page_size}"
        ));
    }
    // a time: the smallest event id (a ULID) of that millisecond, so the events strictly before
    let before = match before.as_deref().map(store::parse_rfc3339) {
        Some(Ok(ms)) => Some(ulid::Ulid::from_parts(ms.max(0) as u64, 0).to_string()),
        _ => before.clone(),
    };
    let limiter = store::limiter(cli).await?;
    let mut page = limiter
        .audit_events(entity, *page_size, before.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    if let Some(since) = since {
        let all = page.events.len();
        page.events.retain(|e| e.timestamp_ms >= *since);
        if page.events.len() < all {
            page.next = None;
        }
    }
    match cli.output {
        Output::Json => print_json(&json!({
            "entity_id": entity,
            "events": page.events.iter().map(event_json).collect::<Vec<_>>(),
            "next": page.next,
        })),
        Output::Table => {
            if page.events.is_empty() {
                println!("No audit events for '{entity}'");
            } else {
                let rows: Vec<Vec<String>> = page.events.iter().map(row).collect();
                println!(
                    "{}",
                    table(&["Time", "Action", "Principal", "Resource", "Event"], &rows)
                );
            }
            if let Some(next) = &page.next {
                println!("More events: --before {next}");
            }
            Ok(())
        }
    }
}

/// The event as JSON, with `time` in RFC 3339 beside `timestamp_ms`.
fn event_json(e: &AuditEvent) -> serde_json::Value {
    let mut v = json!(e);
    v["time"] = json!(rfc3339(e.timestamp_ms));
    v
}

fn row(e: &AuditEvent) -> Vec<String> {
    vec![
        rfc3339(e.timestamp_ms),
        e.action.as_str().to_string(),
        e.principal.clone().unwrap_or_else(|| "-".into()),
        e.resource.clone().unwrap_or_else(|| "-".into()),
        e.event_id.clone(),
    ]
}
