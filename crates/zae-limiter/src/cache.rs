//! The config cache: per (entity, resource), the entity and its four config levels, with a
//! TTL. Absent entities and configs are cached too, so a warm acquire reads nothing.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lru::LruCache;
use parking_lot::Mutex;
use serde::Serialize;

use crate::config::OnUnavailable;
use crate::config::ResolutionData;

/// Counters of the config cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that went to the store.
    pub misses: u64,
    /// Entries held now (expired ones included until evicted).
    pub size: usize,
    /// Time to live of an entry (zero: caching disabled).
    pub ttl: Duration,
}

type Key = (String, String);

#[derive(Debug)]
pub(crate) struct ConfigCache {
    ttl_ms: i64,
    entries: Mutex<LruCache<Key, (Arc<ResolutionData>, i64)>>,
    hits: AtomicU64,
    misses: AtomicU64,
    /// The system policy last seen, used when the store cannot be read.
    last_policy: Mutex<Option<OnUnavailable>>,
}

impl ConfigCache {
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Self {
        ConfigCache {
            ttl_ms: ttl.as_millis().min(i64::MAX as u128) as i64,
            entries: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity.max(1)).expect("non-zero"),
            )),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            last_policy: Mutex::new(None),
        }
    }

    pub(crate) fn get(
        &self,
        entity_id: &str,
        resource: &str,
        now: i64,
    ) -> Option<Arc<ResolutionData>> {
        if self.ttl_ms > 0 {
            let mut entries = self.entries.lock();
            // the tuple key needs owned strings; lookups are by value
            let key = (entity_id.to_string(), resource.to_string());
            if let Some((data, exp)) = entries.get(&key) {
                if *exp > now {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Some(data.clone());
                }
                entries.pop(&key);
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        None
    }

    pub(crate) fn put(&self, entity_id: &str, resource: &str, data: Arc<ResolutionData>, now: i64) {
        *self.last_policy.lock() = data.on_unavailable();
        if self.ttl_ms > 0 {
            self.entries.lock().put(
                (entity_id.to_string(), resource.to_string()),
                (data, now.saturating_add(self.ttl_ms)),
            );
        }
    }

    pub(crate) fn last_policy(&self) -> Option<OnUnavailable> {
        *self.last_policy.lock()
    }

    /// Drop the entries for which `stale(entity, resource)` holds.
    pub(crate) fn invalidate_where(&self, stale: impl Fn(&str, &str) -> bool) {
        let mut entries = self.entries.lock();
        let keys: Vec<Key> = entries
            .iter()
            .filter(|((e, r), _)| stale(e, r))
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            entries.pop(&k);
        }
    }

    pub(crate) fn invalidate(&self) {
        self.entries.lock().clear();
        *self.last_policy.lock() = None;
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            size: self.entries.lock().len(),
            ttl: Duration::from_millis(self.ttl_ms as u64),
        }
    }
}
