//! The buckets, in [`SHARDS`] independently locked shards by entity id, so that applies on
//! different entities run in parallel; the eviction heap over all of them; the store's time.
//!
//! Lock order, everywhere: the namespace data ([`super::Shared`]), then the eviction heap,
//! then shards in ascending index. An apply locks only the shards of its buckets (one, or
//! two for a cascade, in ascending order), and takes the heap only after releasing them,
//! when it has an entry to push or one is due.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use super::evict::{due, Due, StoreTime};
use super::packed::Record;
use crate::store::{BucketKey, BucketState};

/// How many shards the buckets are spread over.
pub(super) const SHARDS: usize = 64;

/// The shard of an entity: FNV-1a of its id (cheap and stable; a cascade's child and
/// parent usually land in different shards, locked in ascending order).
pub(super) fn shard_of(entity_id: &str) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in entity_id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (h % SHARDS as u64) as usize
}

/// The name a bucket is packed under in its entity's record: its resource, followed by
/// `#{shard}` for shards other than 0 (`#` is not allowed in resource names).
fn slot(key: &BucketKey) -> std::borrow::Cow<'_, str> {
    if key.shard == 0 {
        std::borrow::Cow::Borrowed(&key.resource)
    } else {
        std::borrow::Cow::Owned(format!("{}#{}", key.resource, key.shard))
    }
}

/// The buckets of one namespace in one shard.
#[derive(Debug)]
pub(super) struct Space {
    id: Arc<str>,
    /// entity id -> its buckets
    pub(super) buckets: HashMap<Arc<str>, Record>,
    pub(super) bucket_count: usize,
}

impl Space {
    fn new(id: Arc<str>) -> Self {
        Space {
            id,
            buckets: HashMap::new(),
            bucket_count: 0,
        }
    }

    pub(super) fn bucket(&self, key: &BucketKey) -> Option<BucketState> {
        self.buckets
            .get(key.entity_id.as_str())
            .and_then(|r| r.get(&slot(key)))
    }

    /// Store a bucket (encoded in `scratch`); returns the eviction entry to schedule, if any.
    fn put_bucket(
        &mut self,
        key: &BucketKey,
        state: &BucketState,
        now_ms: i64,
        scratch: &mut Vec<u8>,
    ) -> Option<Due> {
        let at = due(&slot(key), state);
        let existing = self.buckets.get_key_value(key.entity_id.as_str());
        if let Some(entity) = existing.map(|(e, _)| e.clone()) {
            let rec = self.buckets.get_mut(&entity).expect("found above");
            if rec.put_with(&slot(key), state, scratch) {
                self.bucket_count += 1;
            }
            // An earlier time than the one scheduled (a refund, a new resource) is scheduled
            // only when it halves the wait: otherwise the bucket just stays a little longer,
            // and every entity keeps few heap entries however its buckets change.
            let scheduled = rec.scheduled();
            let halfway = now_ms as i128 + (scheduled as i128 - now_ms as i128) / 2;
            if (at as i128) < halfway {
                rec.set_scheduled(at);
                return Some(Due {
                    at,
                    ns: self.id.clone(),
                    entity,
                });
            }
            return None;
        }
        let mut rec = Record::new(at);
        rec.put_with(&slot(key), state, scratch);
        let entity: Arc<str> = key.entity_id.as_str().into();
        self.buckets.insert(entity.clone(), rec);
        self.bucket_count += 1;
        Some(Due {
            at,
            ns: self.id.clone(),
            entity,
        })
    }

    /// Drop the buckets of `entity_id`.
    pub(super) fn remove_entity(&mut self, entity_id: &str) {
        if let Some(rec) = self.buckets.remove(entity_id) {
            self.bucket_count -= rec.len();
        }
    }
}

/// One shard: per namespace id, its buckets there (a store has few namespaces: a short
/// list, no hashing), and a buffer to encode buckets in.
#[derive(Debug, Default)]
pub(super) struct Shard {
    spaces: Vec<Space>,
    scratch: Vec<u8>,
}

impl Shard {
    /// The buckets of namespace `ns` here, if any were ever written.
    pub(super) fn space(&self, ns: &str) -> Option<&Space> {
        self.spaces.iter().find(|s| &*s.id == ns)
    }

    /// The buckets of namespace `ns` here, if any were ever written.
    pub(super) fn space_mut(&mut self, ns: &str) -> Option<&mut Space> {
        self.spaces.iter_mut().find(|s| &*s.id == ns)
    }

    /// Every namespace's buckets here.
    pub(super) fn spaces(&mut self) -> impl Iterator<Item = &mut Space> {
        self.spaces.iter_mut()
    }

    /// Drop the buckets of namespace `ns` here.
    pub(super) fn remove_space(&mut self, ns: &str) -> Option<Space> {
        let i = self.spaces.iter().position(|s| &*s.id == ns)?;
        Some(self.spaces.swap_remove(i))
    }

    /// Store a bucket of namespace `ns`; returns the eviction entry to schedule, if any.
    pub(super) fn put_bucket(
        &mut self,
        ns: &str,
        key: &BucketKey,
        state: &BucketState,
        now_ms: i64,
    ) -> Option<Due> {
        let i = match self.spaces.iter().position(|s| &*s.id == ns) {
            Some(i) => i,
            None => {
                self.spaces.push(Space::new(ns.into()));
                self.spaces.len() - 1
            }
        };
        self.spaces[i].put_bucket(key, state, now_ms, &mut self.scratch)
    }
}

/// The shards an apply holds, locked in ascending order.
pub(super) enum Locked<'a> {
    One(usize, MutexGuard<'a, Shard>),
    Many(Vec<(usize, MutexGuard<'a, Shard>)>),
}

impl Locked<'_> {
    /// The shard of `entity_id` (one of those locked).
    pub(super) fn shard(&mut self, entity_id: &str) -> &mut Shard {
        let i = shard_of(entity_id);
        match self {
            Locked::One(j, g) if *j == i => g,
            Locked::Many(all) => {
                let k = all
                    .binary_search_by_key(&i, |(j, _)| *j)
                    .expect("the shard was locked");
                &mut all[k].1
            }
            Locked::One(..) => unreachable!("the shard of every bucket of the apply is locked"),
        }
    }
}

/// The buckets of every namespace, the eviction heap, and the store's time.
#[derive(Debug)]
pub(super) struct Buckets {
    shards: Box<[Mutex<Shard>]>,
    /// When each entity's buckets are looked at next: one live entry per entity (the one
    /// whose time its record holds), plus stale ones, dropped when they come up.
    due: Mutex<BinaryHeap<Reverse<Due>>>,
    /// The time of the heap's first entry (`i64::MAX` when empty), so that an apply with
    /// nothing due does not take the heap's lock.
    next_due: AtomicI64,
    /// The store's time (also held by the namespace data).
    pub(super) time: Arc<StoreTime>,
}

impl Buckets {
    pub(super) fn new(time: Arc<StoreTime>) -> Self {
        Buckets {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            due: Mutex::new(BinaryHeap::new()),
            next_due: AtomicI64::new(i64::MAX),
            time,
        }
    }

    /// The shard of `entity_id`, locked.
    pub(super) fn shard(&self, entity_id: &str) -> MutexGuard<'_, Shard> {
        self.shards[shard_of(entity_id)].lock()
    }

    /// Every shard in turn (each locked while `f` runs on it).
    pub(super) fn each(&self, mut f: impl FnMut(&mut Shard)) {
        for s in self.shards.iter() {
            f(&mut s.lock());
        }
    }

    /// Lock the shards of `entities`, in ascending order.
    pub(super) fn lock<'a, 'k>(&'a self, entities: impl Iterator<Item = &'k str>) -> Locked<'a> {
        let mut idx: Vec<usize> = Vec::new();
        let mut first = None;
        for e in entities {
            let i = shard_of(e);
            match first {
                None => first = Some(i),
                Some(f) if f == i && idx.is_empty() => {}
                Some(f) => {
                    if idx.is_empty() {
                        idx.push(f);
                    }
                    idx.push(i);
                }
            }
        }
        if idx.is_empty() {
            let i = first.unwrap_or(0);
            return Locked::One(i, self.shards[i].lock());
        }
        idx.sort_unstable();
        idx.dedup();
        Locked::Many(
            idx.into_iter()
                .map(|i| (i, self.shards[i].lock()))
                .collect(),
        )
    }

    /// Schedule eviction entries (with no shard locked).
    pub(super) fn schedule(&self, entries: Vec<Due>) {
        if entries.is_empty() {
            return;
        }
        let mut heap = self.due.lock();
        heap.extend(entries.into_iter().map(Reverse));
        self.publish(&heap);
    }

    fn publish(&self, heap: &BinaryHeap<Reverse<Due>>) {
        let next = heap.peek().map_or(i64::MAX, |Reverse(d)| d.at);
        self.next_due.store(next, Ordering::Release);
    }

    /// Look at up to `budget` due entities at `now_ms` (with no shard locked), dropping their
    /// buckets that are full again and rescheduling the others. Returns how many buckets
    /// were dropped.
    pub(super) fn sweep(&self, now_ms: i64, budget: usize) -> usize {
        if self.next_due.load(Ordering::Acquire) > now_ms {
            return 0;
        }
        let mut heap = self.due.lock();
        let mut dropped = 0;
        for _ in 0..budget {
            match heap.peek() {
                Some(Reverse(d)) if d.at <= now_ms => {}
                _ => break,
            }
            let Reverse(d) = heap.pop().expect("peeked");
            let mut shard = self.shard(&d.entity);
            let Some(space) = shard.space_mut(&d.ns) else {
                continue; // purged
            };
            let Some(rec) = space.buckets.get_mut(&*d.entity) else {
                continue; // entity deleted
            };
            if rec.scheduled() != d.at {
                continue; // stale: rescheduled since
            }
            let mut next = i64::MAX;
            let n = rec.retain(|slot, state| {
                let at = due(slot, state);
                if at <= now_ms {
                    return false;
                }
                next = next.min(at);
                true
            });
            space.bucket_count -= n;
            dropped += n;
            if rec.is_empty() {
                space.buckets.remove(&*d.entity);
            } else {
                rec.set_scheduled(next);
                heap.push(Reverse(Due { at: next, ..d }));
            }
        }
        self.publish(&heap);
        dropped
    }

    /// Release the heap's spare capacity when it is mostly empty.
    pub(super) fn shrink_heap(&self) {
        let mut heap = self.due.lock();
        if heap.len().saturating_mul(4) < heap.capacity() {
            heap.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests;
