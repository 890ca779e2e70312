//! `zae-limiter usage list|summary`: the usage snapshots the aggregator maintains, by
//! entity or by resource, hourly or daily, over a time range; `--plot LIMIT` charts one
//! limit over time in the terminal.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use zae_limiter::usage::{
    summarize, Snapshot, UsageQuery, UsageSelector, UsageStore, Window, MAX_USAGE_PAGE,
};

use super::store::{self, print_json, rfc3339};
use super::Cli;
use crate::output::{emit, table, Output};

/// The `usage` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Snapshots, oldest window first (a table, `--output json`, or `--plot LIMIT`).
    #[command(
        after_help = "Example: zae-limiter usage list --entity key-1 --since 2026-01-01T00:00:00Z\n\
                            Example: zae-limiter usage list --resource gpt-4o --window daily --plot tpm"
    )]
    List {
        #[command(flatten)]
        sel: Selectors,
        /// Chart this limit's consumption per window (tokens) instead of the table.
        #[arg(long, value_name = "LIMIT")]
        plot: Option<String>,
        /// Most snapshots to read.
        #[arg(long, default_value_t = 1000, value_name = "N")]
        max: usize,
    },
    /// Total and average per limit over the selected snapshots.
    #[command(after_help = "Example: zae-limiter usage summary --entity key-1 --window daily")]
    Summary {
        #[command(flatten)]
        sel: Selectors,
    },
}

/// Which snapshots.
#[derive(Debug, clap::Args)]
pub struct Selectors {
    /// Every resource of this entity.
    #[arg(
        long,
        value_name = "ID",
        conflicts_with = "resource",
        required_unless_present = "resource"
    )]
    entity: Option<String>,
    /// Every entity on this resource.
    #[arg(long, value_name = "R")]
    resource: Option<String>,
    /// Window length: hourly or daily.
    #[arg(long, default_value = "hourly", value_parser = ["hourly", "daily"])]
    window: String,
    /// Windows starting at or after this RFC 3339 time.
    #[arg(long, value_name = "TIME", value_parser = store::parse_rfc3339)]
    since: Option<i64>,
    /// Windows starting at or before this RFC 3339 time.
    #[arg(long, value_name = "TIME", value_parser = store::parse_rfc3339)]
    until: Option<i64>,
}

impl Selectors {
    fn query(&self) -> UsageQuery {
        let sel = match (&self.entity, &self.resource) {
            (Some(e), _) => UsageSelector::Entity(e.clone()),
            (None, Some(r)) => UsageSelector::Resource(r.clone()),
            (None, None) => UsageSelector::Entity(String::new()),
        };
        let mut q = UsageQuery::new(sel);
        q.window = Window::parse(&self.window).unwrap_or(Window::Hourly);
        q.since_ms = self.since;
        q.until_ms = self.until;
        q
    }
}

/// Millitokens as tokens (an integer when whole).
pub fn tokens(milli: i128) -> Value {
    if milli % 1000 == 0 {
        json!(milli / 1000)
    } else {
        json!(milli as f64 / 1000.0)
    }
}

/// A snapshot as the JSON of `usage list --output json`.
pub fn snapshot_json(s: &Snapshot) -> Value {
    let limits: serde_json::Map<String, Value> = s
        .limits
        .iter()
        .map(|(k, v)| (k.clone(), tokens(*v)))
        .collect();
    json!({
        "entity_id": s.entity_id,
        "resource": s.resource,
        "window": s.window.as_str(),
        "window_start": rfc3339(s.window_start_ms),
        "window_end": rfc3339(s.window_end_ms()),
        "limits": limits,
        "events": s.events,
    })
}

async fn read_all(
    store: &dyn UsageStore,
    mut q: UsageQuery,
    max: usize,
) -> Result<Vec<Snapshot>, String> {
    let mut out = Vec::new();
    q.limit = max.clamp(1, MAX_USAGE_PAGE);
    for _ in 0..max.div_ceil(q.limit).max(1) {
        let page = store.query_usage(&q).await.map_err(|e| e.to_string())?;
        out.extend(page.snapshots);
        match page.next {
            Some(n) if out.len() < max => q.after = Some(n),
            _ => break,
        }
    }
    out.truncate(max);
    Ok(out)
}

pub async fn run(cli: &Cli, cmd: &Cmd) -> Result<(), String> {
    let store = store::connect(cli, false).await.map_err(|e| e.message)?;
    match cmd {
        Cmd::List { sel, plot, max } => {
            let snaps = read_all(&store, sel.query(), *max).await?;
            if let Some(limit) = plot {
                emit(&plot_text(&snaps, limit, sel)?);
                return Ok(());
            }
            match cli.output {
                Output::Json => {
                    print_json(&Value::Array(snaps.iter().map(snapshot_json).collect()))
                }
                Output::Table => {
                    if snaps.is_empty() {
                        emit("No usage snapshots in that range");
                        return Ok(());
                    }
                    let names: BTreeSet<&String> =
                        snaps.iter().flat_map(|s| s.limits.keys()).collect();
                    let mut headers = vec!["Window start", "Entity", "Resource", "Events"];
                    headers.extend(names.iter().map(|n| n.as_str()));
                    let rows: Vec<Vec<String>> = snaps
                        .iter()
                        .map(|s| {
                            let mut r = vec![
                                rfc3339(s.window_start_ms),
                                s.entity_id.clone(),
                                s.resource.clone(),
                                s.events.to_string(),
                            ];
                            r.extend(names.iter().map(|n| {
                                s.limits
                                    .get(*n)
                                    .map(|v| tokens(*v).to_string())
                                    .unwrap_or_else(|| "-".into())
                            }));
                            r
                        })
                        .collect();
                    emit(&table(&headers, &rows));
                    Ok(())
                }
            }
        }
        Cmd::Summary { sel } => {
            let q = sel.query();
            let s = summarize(&store, &q).await.map_err(|e| e.to_string())?;
            let total: serde_json::Map<String, Value> = s
                .total
                .iter()
                .map(|(k, v)| (k.clone(), tokens(*v)))
                .collect();
            let avg: serde_json::Map<String, Value> = s
                .average
                .iter()
                .map(|(k, v)| (k.clone(), json!((v / 1000.0 * 1000.0).round() / 1000.0)))
                .collect();
            match cli.output {
                Output::Json => print_json(&json!({
                    "window": q.window.as_str(),
                    "snapshots": s.snapshots,
                    "events": s.events,
                    "total": total,
                    "average": avg,
                    "first_window_start": s.first_window_ms.map(rfc3339),
                    "last_window_start": s.last_window_ms.map(rfc3339),
                })),
                Output::Table => {
                    let rows: Vec<Vec<String>> = s
                        .total
                        .keys()
                        .map(|k| vec![k.clone(), total[k].to_string(), avg[k].to_string()])
                        .collect();
                    emit(&format!(
                        "{} {} snapshots, {} events, {} .. {}",
                        s.snapshots,
                        q.window.as_str(),
                        s.events,
                        s.first_window_ms.map(rfc3339).unwrap_or_else(|| "-".into()),
                        s.last_window_ms.map(rfc3339).unwrap_or_else(|| "-".into()),
                    ));
                    if !rows.is_empty() {
                        emit(&table(&["Limit", "Total", "Average per window"], &rows));
                    }
                    Ok(())
                }
            }
        }
    }
}

/// The chart of `limit` per window (summed over the snapshots of each window), with the
/// window times on the x axis.
pub fn plot_text(snaps: &[Snapshot], limit: &str, sel: &Selectors) -> Result<String, String> {
    use std::collections::BTreeMap;
    use textplots::{
        Chart, LabelBuilder, LabelFormat, Plot, Shape, TickDisplay, TickDisplayBuilder,
    };
    let mut per: BTreeMap<i64, i128> = BTreeMap::new();
    for s in snaps {
        if let Some(v) = s.limits.get(limit) {
            *per.entry(s.window_start_ms).or_default() += *v;
        }
    }
    let who = match (&sel.entity, &sel.resource) {
        (Some(e), _) => format!("entity {e}"),
        (_, Some(r)) => format!("resource {r}"),
        _ => String::new(),
    };
    if per.is_empty() {
        return Ok(format!("No '{limit}' consumption for {who} in that range"));
    }
    let window = Window::parse(&sel.window).unwrap_or(Window::Hourly);
    let t0 = *per.keys().next().expect("non-empty");
    let unit = window.len_ms() as f32;
    // a step per window: its value held across the window's width (one window shows too)
    let mut pts: Vec<(f32, f32)> = per
        .iter()
        .map(|(t, v)| (((*t - t0) as f32) / unit, *v as f32 / 1000.0))
        .collect();
    if let Some(&(x, y)) = pts.last() {
        pts.push((x + 1.0, y));
    }
    let xmax = pts.last().map(|p| p.0).unwrap_or(1.0);
    let ymax = pts.iter().map(|p| p.1).fold(0.0f32, f32::max).max(1.0);
    let ymin = pts.iter().map(|p| p.1).fold(0.0f32, f32::min);
    let step = window.len_ms();
    let label = move |x: f32| {
        let ms = t0 + (x.round() as i64) * step;
        let s = rfc3339(ms);
        if step < 86_400_000 {
            s[5..16].replace('T', " ")
        } else {
            s[..10].to_string()
        }
    };
    let shape = Shape::Steps(&pts);
    let mut chart = Chart::new_with_y_range(160, 48, 0.0, xmax, ymin, ymax * 1.05);
    let c = chart
        .lineplot(&shape)
        .x_label_format(LabelFormat::Custom(Box::new(label)))
        .y_label_format(LabelFormat::Value)
        .y_tick_display(TickDisplay::Sparse);
    c.borders();
    c.axis();
    c.figures();
    Ok(format!(
        "{limit} consumed per {} window (tokens), {who}: {} windows, total {}\n{c}",
        if step < 86_400_000 { "hourly" } else { "daily" },
        per.len(),
        tokens(per.values().sum()),
    ))
}
