//! Usage analytics: hourly and daily snapshots of the tokens each entity consumed on each
//! resource, built from the changes of bucket items.
//!
//! Every bucket write `ADD`s the net millitokens it took to the bucket's `tc_{limit}`
//! counter. The aggregator reads the changes of bucket items (DynamoDB Streams, a Lambda
//! event, or the embedded store's in-process feed), takes the counter deltas
//! ([`aggregate`]) and adds them into one snapshot per (entity, resource, window)
//! ([`UsageStore::write_usage`]). Each snapshot remembers the last change applied per
//! bucket item, so a replayed batch is never counted twice.

mod aggregate;
mod query;

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::error::StoreError;
pub use aggregate::{aggregate, parse_bucket_pk, BucketRecord, ChangeKind, SeqNo, SnapshotUpdate};
pub use query::{summarize, UsageCursor};

/// Default retention of snapshots: 90 days after the end of their window.
pub const DEFAULT_USAGE_RETENTION_MS: i64 = 90 * 86_400_000;

/// The length of a snapshot's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Window {
    /// One clock hour (UTC).
    Hourly,
    /// One UTC day.
    Daily,
}

impl Window {
    /// Both windows, as the aggregator maintains them.
    pub const ALL: [Window; 2] = [Window::Hourly, Window::Daily];

    /// The window's length in ms.
    pub fn len_ms(self) -> i64 {
        match self {
            Window::Hourly => 3_600_000,
            Window::Daily => 86_400_000,
        }
    }

    /// The start (ms) of the window holding `t_ms`.
    pub fn start_of(self, t_ms: i64) -> i64 {
        t_ms.div_euclid(self.len_ms()) * self.len_ms()
    }

    /// `hourly` or `daily`.
    pub fn as_str(self) -> &'static str {
        match self {
            Window::Hourly => "hourly",
            Window::Daily => "daily",
        }
    }

    /// The one-letter code used in keys (`H`, `D`).
    pub fn code(self) -> char {
        match self {
            Window::Hourly => 'H',
            Window::Daily => 'D',
        }
    }

    /// The window named `s` (`hourly` / `daily`).
    pub fn parse(s: &str) -> Option<Window> {
        match s {
            "hourly" => Some(Window::Hourly),
            "daily" => Some(Window::Daily),
            _ => None,
        }
    }

    /// The window of key code `c`.
    pub fn from_code(c: &str) -> Option<Window> {
        match c {
            "H" => Some(Window::Hourly),
            "D" => Some(Window::Daily),
            _ => None,
        }
    }
}

/// What one entity consumed on one resource during one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The entity.
    pub entity_id: String,
    /// The resource.
    pub resource: String,
    /// Hourly or daily.
    pub window: Window,
    /// Start of the window (ms since the epoch, UTC).
    pub window_start_ms: i64,
    /// Net millitokens consumed per limit (adjustments and rollbacks included; may be
    /// negative when a window only holds refunds).
    pub limits: BTreeMap<String, i128>,
    /// How many bucket writes changed the consumption in this window.
    pub events: u64,
}

impl Snapshot {
    /// The last millisecond of the window.
    pub fn window_end_ms(&self) -> i64 {
        self.window_start_ms + self.window.len_ms() - 1
    }
}

/// Whose snapshots to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageSelector {
    /// Every resource of one entity.
    Entity(String),
    /// Every entity on one resource.
    Resource(String),
}

/// A query of snapshots: the key condition selects the window and the time range, so
/// nothing is filtered after the fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    /// By entity or by resource.
    pub selector: UsageSelector,
    /// Hourly or daily snapshots.
    pub window: Window,
    /// Windows starting at or after this time (ms), when given.
    pub since_ms: Option<i64>,
    /// Windows starting at or before this time (ms), when given.
    pub until_ms: Option<i64>,
    /// At most this many snapshots per page (1 to [`MAX_USAGE_PAGE`]).
    pub limit: usize,
    /// Continue after the page that returned this cursor.
    pub after: Option<UsageCursor>,
}

/// Largest page of [`UsageQuery::limit`].
pub const MAX_USAGE_PAGE: usize = 1000;

impl UsageQuery {
    /// Hourly snapshots of `selector`, all times, pages of 100.
    pub fn new(selector: UsageSelector) -> Self {
        UsageQuery {
            selector,
            window: Window::Hourly,
            since_ms: None,
            until_ms: None,
            limit: 100,
            after: None,
        }
    }

    /// The inclusive range of window starts, clamped to what keys can hold.
    pub(crate) fn range(&self) -> (i64, i64) {
        let lo = self.since_ms.unwrap_or(0).clamp(0, MAX_KEY_TIME);
        let hi = self.until_ms.unwrap_or(MAX_KEY_TIME).clamp(0, MAX_KEY_TIME);
        (lo, hi)
    }

    pub(crate) fn check(&self) -> Result<(), StoreError> {
        if self.limit == 0 || self.limit > MAX_USAGE_PAGE {
            return Err(StoreError::Refused(format!(
                "a usage page holds 1 to {MAX_USAGE_PAGE} snapshots, not {}",
                self.limit
            )));
        }
        Ok(())
    }
}

/// Largest window start a key holds (13 decimal digits of ms: year 2286).
pub(crate) const MAX_KEY_TIME: i64 = 9_999_999_999_999;

/// One page of snapshots, oldest window first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UsagePage {
    /// The snapshots.
    pub snapshots: Vec<Snapshot>,
    /// Where the next page starts, when there may be one.
    pub next: Option<UsageCursor>,
}

/// Totals over a range of snapshots.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Summary {
    /// Snapshots summed.
    pub snapshots: usize,
    /// Bucket writes counted.
    pub events: u64,
    /// Net millitokens per limit.
    pub total: BTreeMap<String, i128>,
    /// Millitokens per limit per snapshot that holds the limit.
    pub average: BTreeMap<String, f64>,
    /// First and last window start (ms) seen.
    pub first_window_ms: Option<i64>,
    /// Last window start seen.
    pub last_window_ms: Option<i64>,
}

/// What [`UsageStore::write_usage`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteUsage {
    /// Every change of the update was added.
    Applied,
    /// Part of it had been applied before (a replay); the rest was added.
    Partial,
    /// All of it had been applied before: nothing was written.
    Duplicate,
}

/// Where snapshots live: implemented by both stores.
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Add `update` to its snapshot, creating it if needed, unless the snapshot already
    /// holds changes of the same bucket item at or after the update's changes (then only
    /// the newer part is added, or nothing).
    async fn write_usage(
        &self,
        update: &SnapshotUpdate,
        retention_ms: i64,
    ) -> Result<WriteUsage, StoreError>;

    /// One page of snapshots of this handle's namespace.
    async fn query_usage(&self, query: &UsageQuery) -> Result<UsagePage, StoreError>;
}
