//! Eviction: the heaps of what is due (buckets full again, audit events expired), the
//! incremental sweeps each call makes (the buckets' in [`super::shards`]), the store's
//! time, and [`MemoryStore::evict_expired`].

use std::cmp::Reverse;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use super::{MemoryStore, Shared};
use crate::store::BucketState;

/// Most expired audit events a call that records one (or an apply) drops.
const AUDIT_SWEEP_PER_CALL: usize = 8;

/// A scheduled look at one entity's buckets.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Due {
    pub(super) at: i64,
    pub(super) ns: Arc<str>,
    pub(super) entity: Arc<str>,
}

/// When an audit event expires.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct AuditDue {
    pub(super) at: i64,
    pub(super) ns: Arc<str>,
    pub(super) entity: String,
    pub(super) event: String,
}

/// When a bucket may be dropped: full again, plus the grace.
///
/// `slot` is the bucket's name in its entity's record: shard 0 of a split bucket (a plain
/// resource name, its limits at a shard level above 0) holds the shard count and is never
/// dropped (see [`crate::shard`]); the other shards go when they are full again.
pub(super) fn due(slot: &str, state: &BucketState) -> i64 {
    if !slot.contains('#') && crate::shard::level_of(state.version()) > 0 {
        return i64::MAX;
    }
    state.full_at_ms().map_or(i64::MIN, |t| {
        t.saturating_add(MemoryStore::EVICTION_GRACE_MS)
    })
}

/// The store's time: the latest time callers passed in, which audit events expire by, and
/// when the first of them expires. Atomics, so that an apply moves it without the lock of
/// the namespace data (and takes that lock only when an event is due).
#[derive(Debug)]
pub(super) struct StoreTime {
    latest: AtomicI64,
    /// The expiry of the audit heap's first entry (`i64::MAX` when empty).
    next_audit: AtomicI64,
}

impl Default for StoreTime {
    fn default() -> Self {
        Self::new()
    }
}

impl StoreTime {
    pub(super) fn new() -> Self {
        StoreTime {
            latest: AtomicI64::new(i64::MIN),
            next_audit: AtomicI64::new(i64::MAX),
        }
    }

    /// Move the time to `now_ms` if later; true when an audit event has expired by then.
    pub(super) fn advance(&self, now_ms: i64) -> bool {
        // a load first: threads writing at the same millisecond do not bounce the line
        if now_ms > self.latest.load(Ordering::Relaxed) {
            self.latest.fetch_max(now_ms, Ordering::AcqRel);
        }
        self.next_audit.load(Ordering::Acquire) < self.latest()
    }

    pub(super) fn latest(&self) -> i64 {
        self.latest.load(Ordering::Acquire)
    }
}

impl Shared {
    /// A time passed in by a caller: advances the store's time and drops some expired
    /// audit events.
    pub(super) fn observe(&mut self, now_ms: i64) {
        self.time.advance(now_ms);
        self.sweep_audit(AUDIT_SWEEP_PER_CALL);
    }

    /// Record the expiry of the first audit event left (after the heap changed).
    pub(super) fn publish_audit_due(&self) {
        let next = self.audit_due.peek().map_or(i64::MAX, |Reverse(d)| d.at);
        self.time.next_audit.store(next, Ordering::Release);
    }

    /// Drop up to `budget` audit events expired at the store's time.
    fn sweep_audit(&mut self, budget: usize) -> usize {
        let mut dropped = 0;
        let latest = self.time.latest();
        for _ in 0..budget {
            match self.audit_due.peek() {
                Some(Reverse(d)) if d.at < latest => {}
                _ => break,
            }
            let Reverse(d) = self.audit_due.pop().expect("peeked");
            let Some(inner) = self.spaces.get_mut(&*d.ns) else {
                continue;
            };
            let Some(events) = inner.audit.get_mut(&d.entity) else {
                continue;
            };
            if events
                .get(&d.event)
                .is_some_and(|e| e.expires_at_ms == Some(d.at))
            {
                events.remove(&d.event);
                inner.audit_count -= 1;
                dropped += 1;
                if events.is_empty() {
                    inner.audit.remove(&d.entity);
                }
            }
        }
        self.publish_audit_due();
        dropped
    }
}

impl MemoryStore {
    /// Buckets held, in every namespace of the store (diagnostics: O(namespaces)). Buckets
    /// full again count until they are dropped (at most [`SWEEP_PER_APPLY`](Self::SWEEP_PER_APPLY) entities per
    /// apply, or all at once by [`evict_expired`](Self::evict_expired)).
    pub fn bucket_count(&self) -> usize {
        let mut n = 0;
        self.buckets.each(|shard| {
            n += shard.spaces().map(|s| s.bucket_count).sum::<usize>();
        });
        n
    }

    /// Audit events held, in every namespace of the store (diagnostics), expired ones
    /// included until they are dropped.
    pub fn audit_event_count(&self) -> usize {
        self.shared
            .lock()
            .spaces
            .values()
            .map(|s| s.audit_count)
            .sum()
    }

    /// Drop, in every namespace, each bucket that is full again at `now_ms` (plus
    /// [`EVICTION_GRACE_MS`](Self::EVICTION_GRACE_MS)) and each audit event expired at the
    /// store's time (`now_ms` counts as a time seen). Returns how many buckets were dropped.
    /// Costs O(k log n) for k due entries, then releases the spare capacity of each table
    /// now less than a quarter full (O(its size), paid for by the removals that emptied it).
    /// [`Store::apply`](crate::store::Store::apply) does the same incrementally.
    pub fn evict_expired(&self, now_ms: i64) -> usize {
        {
            let mut shared = self.shared.lock();
            shared.time.advance(now_ms);
            shared.sweep_audit(usize::MAX);
            if mostly_empty(shared.audit_due.len(), shared.audit_due.capacity()) {
                shared.audit_due.shrink_to_fit();
            }
        }
        let dropped = self.buckets.sweep(now_ms, usize::MAX);
        self.buckets.each(|shard| {
            for s in shard.spaces() {
                if mostly_empty(s.buckets.len(), s.buckets.capacity()) {
                    s.buckets.shrink_to_fit();
                }
            }
        });
        self.buckets.shrink_heap();
        dropped
    }
}

fn mostly_empty(len: usize, capacity: usize) -> bool {
    len.saturating_mul(4) < capacity
}
