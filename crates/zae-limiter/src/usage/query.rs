//! Paging through snapshots, and summing them.

use super::{Summary, UsageQuery, UsageStore, MAX_USAGE_PAGE};
use crate::error::StoreError;

/// Where a page of snapshots ended: give it back as [`UsageQuery::after`]. Opaque (the
/// sort key of the last snapshot); printable, so a CLI can show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageCursor(pub(crate) String);

impl UsageCursor {
    /// The cursor as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A cursor printed before (checked by the store when used).
    pub fn from_text(s: impl Into<String>) -> Self {
        UsageCursor(s.into())
    }
}

/// Most snapshots [`summarize`] reads (100 pages of 1000).
pub const MAX_SUMMARY_SNAPSHOTS: usize = 100_000;

/// Total and average per limit over every snapshot `query` selects (its `limit` and
/// `after` are ignored: every page is read, up to [`MAX_SUMMARY_SNAPSHOTS`], beyond which
/// the answer is an error rather than a partial sum).
pub async fn summarize(
    store: &(impl UsageStore + ?Sized),
    query: &UsageQuery,
) -> Result<Summary, StoreError> {
    let mut q = query.clone();
    q.limit = MAX_USAGE_PAGE;
    q.after = None;
    let mut sum = Summary::default();
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    loop {
        let page = store.query_usage(&q).await?;
        for s in &page.snapshots {
            sum.snapshots += 1;
            sum.events += s.events;
            for (k, v) in &s.limits {
                let t = sum.total.entry(k.clone()).or_default();
                *t = t.saturating_add(*v);
                *counts.entry(k.clone()).or_default() += 1;
            }
            let w = s.window_start_ms;
            sum.first_window_ms = Some(sum.first_window_ms.map_or(w, |f| f.min(w)));
            sum.last_window_ms = Some(sum.last_window_ms.map_or(w, |l| l.max(w)));
        }
        if sum.snapshots > MAX_SUMMARY_SNAPSHOTS {
            return Err(StoreError::Refused(format!(
                "more than {MAX_SUMMARY_SNAPSHOTS} snapshots in the range; narrow it"
            )));
        }
        match page.next {
            Some(n) => q.after = Some(n),
            None => break,
        }
    }
    for (k, t) in &sum.total {
        let n = counts[k].max(1) as f64;
        sum.average.insert(k.clone(), *t as f64 / n);
    }
    Ok(sum)
}
