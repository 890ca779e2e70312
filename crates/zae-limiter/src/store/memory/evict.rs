//! Eviction: the heaps of what is due (buckets full again, audit events expired), the
//! incremental sweeps each call makes, and [`MemoryStore::evict_expired`].

use std::cmp::Reverse;
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
pub(super) fn due(state: &BucketState) -> i64 {
    state.full_at_ms().map_or(i64::MIN, |t| {
        t.saturating_add(MemoryStore::EVICTION_GRACE_MS)
    })
}

impl Shared {
    /// A time passed in by a caller: advances the store's time and drops some expired
    /// audit events.
    pub(super) fn observe(&mut self, now_ms: i64) {
        self.latest_ms = self.latest_ms.max(now_ms);
        self.sweep_audit(AUDIT_SWEEP_PER_CALL);
    }

    /// Look at up to `budget` due entities at `now_ms`, dropping their buckets that are full
    /// again and rescheduling the others. Returns how many buckets were dropped.
    pub(super) fn sweep_buckets(&mut self, now_ms: i64, budget: usize) -> usize {
        let mut dropped = 0;
        for _ in 0..budget {
            match self.bucket_due.peek() {
                Some(Reverse(d)) if d.at <= now_ms => {}
                _ => break,
            }
            let Reverse(d) = self.bucket_due.pop().expect("peeked");
            let Some(inner) = self.spaces.get_mut(&*d.ns) else {
                continue; // purged
            };
            let Some(rec) = inner.buckets.get_mut(&*d.entity) else {
                continue; // entity deleted
            };
            if rec.scheduled() != d.at {
                continue; // stale: rescheduled since
            }
            let mut next = i64::MAX;
            let n = rec.retain(|_, state| {
                let at = due(state);
                if at <= now_ms {
                    return false;
                }
                next = next.min(at);
                true
            });
            inner.bucket_count -= n;
            dropped += n;
            if rec.is_empty() {
                inner.buckets.remove(&*d.entity);
            } else {
                rec.set_scheduled(next);
                self.bucket_due.push(Reverse(Due { at: next, ..d }));
            }
        }
        dropped
    }

    /// Drop up to `budget` audit events expired at the store's time.
    fn sweep_audit(&mut self, budget: usize) -> usize {
        let mut dropped = 0;
        for _ in 0..budget {
            match self.audit_due.peek() {
                Some(Reverse(d)) if d.at < self.latest_ms => {}
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
        dropped
    }
}

impl MemoryStore {
    /// Buckets held, in every namespace of the store (diagnostics: O(namespaces)). Buckets
    /// full again count until they are dropped (at most [`SWEEP_PER_APPLY`](Self::SWEEP_PER_APPLY) entities per
    /// apply, or all at once by [`evict_expired`](Self::evict_expired)).
    pub fn bucket_count(&self) -> usize {
        self.shared
            .lock()
            .spaces
            .values()
            .map(|s| s.bucket_count)
            .sum()
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
        let mut shared = self.shared.lock();
        shared.latest_ms = shared.latest_ms.max(now_ms);
        shared.sweep_audit(usize::MAX);
        let dropped = shared.sweep_buckets(now_ms, usize::MAX);
        fn mostly_empty(len: usize, capacity: usize) -> bool {
            len.saturating_mul(4) < capacity
        }
        for s in shared.spaces.values_mut() {
            if mostly_empty(s.buckets.len(), s.buckets.capacity()) {
                s.buckets.shrink_to_fit();
            }
        }
        if mostly_empty(shared.bucket_due.len(), shared.bucket_due.capacity()) {
            shared.bucket_due.shrink_to_fit();
        }
        if mostly_empty(shared.audit_due.len(), shared.audit_due.capacity()) {
            shared.audit_due.shrink_to_fit();
        }
        dropped
    }
}
