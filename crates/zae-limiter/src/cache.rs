//! The config cache: per (entity, resource), the entity and its four config levels, with a
//! TTL. Absent entities and configs are cached too, so a warm acquire reads nothing.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;
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

/// An entry's key: entity id and resource. Looked up by `(&str, &str)` through [`Pair`],
/// so a lookup allocates nothing.
#[derive(Debug, PartialEq, Eq)]
struct Key {
    entity: String,
    resource: String,
}

/// An (entity, resource) pair, owned or borrowed: hashed and compared by its two parts.
trait Pair {
    fn parts(&self) -> (&str, &str);
}

impl Pair for Key {
    fn parts(&self) -> (&str, &str) {
        (&self.entity, &self.resource)
    }
}

impl Pair for (&str, &str) {
    fn parts(&self) -> (&str, &str) {
        *self
    }
}

impl Hash for dyn Pair + '_ {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.parts().hash(h)
    }
}

impl PartialEq for dyn Pair + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn Pair + '_ {}

// the owned key hashes as its parts do, so that `Borrow` is consistent
impl Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.parts().hash(h)
    }
}

impl<'a> Borrow<dyn Pair + 'a> for Key {
    fn borrow(&self) -> &(dyn Pair + 'a) {
        self
    }
}

/// How many independently locked parts the cache has: threads looking up different
/// entities rarely wait for one another.
const SHARDS: usize = 16;

/// One part of the cache, with its own counters (kept under its lock, so that threads do
/// not share a counter's cache line).
#[derive(Debug)]
struct Shard {
    entries: LruCache<Key, (Arc<ResolutionData>, i64)>,
    hits: u64,
    misses: u64,
}

/// The shard of an (entity, resource) pair: FNV-1a over both, cheap and stable.
fn shard_of(entity_id: &str, resource: &str) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in entity_id.bytes().chain([0xff]).chain(resource.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (h % SHARDS as u64) as usize
}

/// Per (entity, resource), the resolution and when it expires. An LRU of bounded size in
/// [`SHARDS`] parts (each holds its share of the capacity, and evicts its own least recently
/// used entry).
#[derive(Debug)]
pub(crate) struct ConfigCache {
    ttl_ms: i64,
    shards: Box<[Mutex<Shard>]>,
    /// The system policy last seen, used when the store cannot be read.
    last_policy: Mutex<Option<OnUnavailable>>,
}

impl ConfigCache {
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        ConfigCache {
            ttl_ms: ttl.as_millis().min(i64::MAX as u128) as i64,
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        entries: LruCache::new(NonZeroUsize::new(per_shard).expect("non-zero")),
                        hits: 0,
                        misses: 0,
                    })
                })
                .collect(),
            last_policy: Mutex::new(None),
        }
    }

    pub(crate) fn get(
        &self,
        entity_id: &str,
        resource: &str,
        now: i64,
    ) -> Option<Arc<ResolutionData>> {
        let mut shard = self.shards[shard_of(entity_id, resource)].lock();
        if self.ttl_ms > 0 {
            let key: &dyn Pair = &(entity_id, resource);
            if let Some((data, exp)) = shard.entries.get(key) {
                if *exp > now {
                    let data = data.clone();
                    shard.hits += 1;
                    return Some(data);
                }
                shard.entries.pop(key);
            }
        }
        shard.misses += 1;
        None
    }

    pub(crate) fn put(&self, entity_id: &str, resource: &str, data: Arc<ResolutionData>, now: i64) {
        *self.last_policy.lock() = data.on_unavailable();
        if self.ttl_ms > 0 {
            let key = Key {
                entity: entity_id.to_string(),
                resource: resource.to_string(),
            };
            self.shards[shard_of(entity_id, resource)]
                .lock()
                .entries
                .put(key, (data, now.saturating_add(self.ttl_ms)));
        }
    }

    pub(crate) fn last_policy(&self) -> Option<OnUnavailable> {
        *self.last_policy.lock()
    }

    /// Drop the entries for which `stale(entity, resource)` holds.
    pub(crate) fn invalidate_where(&self, stale: impl Fn(&str, &str) -> bool) {
        for shard in self.shards.iter() {
            let entries = &mut shard.lock().entries;
            let keys: Vec<(String, String)> = entries
                .iter()
                .filter(|(k, _)| stale(&k.entity, &k.resource))
                .map(|(k, _)| (k.entity.clone(), k.resource.clone()))
                .collect();
            for (e, r) in keys {
                let key: &dyn Pair = &(e.as_str(), r.as_str());
                entries.pop(key);
            }
        }
    }

    pub(crate) fn invalidate(&self) {
        for shard in self.shards.iter() {
            shard.lock().entries.clear();
        }
        *self.last_policy.lock() = None;
    }

    pub(crate) fn stats(&self) -> CacheStats {
        let (mut hits, mut misses, mut size) = (0, 0, 0);
        for shard in self.shards.iter() {
            let s = shard.lock();
            hits += s.hits;
            misses += s.misses;
            size += s.entries.len();
        }
        CacheStats {
            hits,
            misses,
            size,
            ttl: Duration::from_millis(self.ttl_ms as u64),
        }
    }
}
