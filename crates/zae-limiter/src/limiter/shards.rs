//! What a limiter knows of sharded buckets (see [`crate::shard`]): the level learned per
//! bucket, from the versions its writes and reads return, and the raise on throttling.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;

use super::RateLimiter;
use crate::bucket::MILLI;
use crate::error::{Error, Result, StoreError};
use crate::lease::LeaseEntry;
use crate::limit::{validate_entity_id, validate_limits, validate_resource, Limit};
use crate::shard::rate::WriteRate;
use crate::shard::{self, level_of, MAX_SHARD_LEVEL};
use crate::store::{ApplyOutcome, BucketKey, BucketState, WriteOp};

/// Most sharded buckets remembered; past it the map is cleared and levels are learned again
/// (a client that knows too few shards adopts the stored level on its next write).
const MAX_KNOWN: usize = 4096;

/// The first pause before a throttled raise is tried again (doubling, jittered, within the
/// operation deadline).
const RAISE_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// A bucket is split when this many of its writes were throttled (after the SDK's retries)
/// within [`THROTTLE_WINDOW`]: a split is for a hot partition, not for one unlucky write.
const THROTTLES_TO_SPLIT: u32 = 3;
/// See [`THROTTLES_TO_SPLIT`].
const THROTTLE_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);

/// The shard level of every sharded bucket this client has seen, by entity then resource.
/// Unsharded buckets are not kept: an empty map costs the hot path one atomic load (no
/// lock, so no cache line written by every acquire of every thread).
#[derive(Debug, Default)]
pub(crate) struct ShardLevels {
    map: RwLock<HashMap<String, Vec<(String, u8)>>>,
    /// Whether `map` has any entry; written under its write lock, after the change.
    any: AtomicBool,
    /// Recent throttled writes per bucket: when the count started, and the count.
    throttled: parking_lot::Mutex<HashMap<BucketKey, (std::time::Instant, u32)>>,
    /// Write-rate meters per shard, by a hash of its key (a collision merges two meters:
    /// a higher estimate, never a lost split), when splitting ahead of throttling is on.
    rates: parking_lot::Mutex<HashMap<u64, WriteRate>>,
    /// Buckets (their shard-0 keys) this client is raising in the background.
    raising: parking_lot::Mutex<HashSet<BucketKey>>,
}

impl ShardLevels {
    /// Count a throttled write of `key`; true when the bucket is hot enough to split (the
    /// count starts again).
    fn throttled(&self, key: &BucketKey) -> bool {
        let mut map = self.throttled.lock();
        let now = std::time::Instant::now();
        if map.len() >= MAX_KNOWN {
            map.retain(|_, (at, _)| now.duration_since(*at) < THROTTLE_WINDOW);
        }
        let (at, n) = map.entry(key.with_shard(0)).or_insert((now, 0));
        if now.duration_since(*at) >= THROTTLE_WINDOW {
            *at = now;
            *n = 0;
        }
        *n += 1;
        if *n >= THROTTLES_TO_SPLIT {
            map.remove(&key.with_shard(0));
            return true;
        }
        false
    }

    /// Record an admitted write of shard `index` of the bucket `key` (see
    /// [`WriteRate::record`]); the estimated writes per second of all clients when a
    /// window closed.
    fn metered(
        &self,
        key: &BucketKey,
        index: u16,
        now_ms: i64,
        taken: &[(i128, i128)],
    ) -> Option<f64> {
        let mut h = std::hash::DefaultHasher::new();
        (key, index).hash(&mut h);
        let id = h.finish();
        let mut map = self.rates.lock();
        if map.len() >= MAX_KNOWN && !map.contains_key(&id) {
            map.clear();
        }
        map.entry(id).or_default().record(now_ms, taken)
    }

    fn get(&self, key: &BucketKey) -> u8 {
        // a reader that misses a level being set reads as if just before it was
        if !self.any.load(Ordering::Acquire) {
            return 0;
        }
        let map = self.map.read();
        if map.is_empty() {
            return 0;
        }
        map.get(key.entity_id.as_str())
            .and_then(|rs| rs.iter().find(|(r, _)| *r == key.resource))
            .map_or(0, |(_, l)| *l)
    }

    pub(super) fn set(&self, key: &BucketKey, level: u8) {
        let mut map = self.map.write();
        if level > 0 && map.len() >= MAX_KNOWN && !map.contains_key(key.entity_id.as_str()) {
            map.clear();
        }
        let rs = map.entry(key.entity_id.clone()).or_default();
        rs.retain(|(r, _)| *r != key.resource);
        if level > 0 {
            rs.push((key.resource.clone(), level));
        }
        if rs.is_empty() {
            map.remove(key.entity_id.as_str());
        }
        self.any.store(!map.is_empty(), Ordering::Release);
    }
}

/// A background raise of one bucket: its entry in [`ShardLevels::raising`] is removed when
/// the raise ends, however it ends (done, failed, panicked, or dropped with its runtime).
struct Raising {
    limiter: RateLimiter,
    key: BucketKey,
}

impl Drop for Raising {
    fn drop(&mut self) {
        self.limiter.inner.shards.raising.lock().remove(&self.key);
    }
}

impl RateLimiter {
    /// The shard level this client knows for the bucket `key` (0: unsharded).
    pub(crate) fn shard_level(&self, key: &BucketKey) -> u8 {
        self.inner.shards.get(key)
    }

    /// Learn the levels of the buckets `keys` from the states a write or read returned (one
    /// per bucket, as the entries wrote them); true when a level changed.
    pub(crate) fn learn_shards<'a>(
        &self,
        keys: &[BucketKey],
        entries: &[LeaseEntry],
        states: impl Iterator<Item = Option<&'a BucketState>>,
    ) -> bool {
        let mut changed = false;
        for ((key, e), s) in keys.iter().zip(entries).zip(states) {
            let Some(s) = s.filter(|s| !s.limits.is_empty()) else {
                continue;
            };
            let level = level_of(s.version());
            if level != e.shard.level {
                self.inner.shards.set(key, level);
                changed = true;
            }
        }
        changed
    }

    /// Count a throttled write of the buckets `keys`, and raise each that is hot (throttled
    /// [`THROTTLES_TO_SPLIT`] times lately) and may be raised one level (see
    /// [`may_raise`](Self::may_raise)); true when a level went up (by this client or, as
    /// the refused raise shows, by another).
    pub(crate) async fn raise_shards(&self, keys: &[BucketKey], entries: &[LeaseEntry]) -> bool {
        let mut raised = false;
        for (key, e) in keys.iter().zip(entries) {
            if !self.may_raise(e) || !self.inner.shards.throttled(key) {
                continue;
            }
            raised |= self
                .raise_hot(key, &e.limits, e.version, e.shard.level, "throttled")
                .await;
        }
        raised
    }

    /// Whether the bucket an entry wrote may go one level up: below the limiter's maximum
    /// level, every shard still able to admit the entry's request.
    fn may_raise(&self, e: &LeaseEntry) -> bool {
        let next = e.shard.level + 1;
        if next > self.inner.max_shard_level {
            return false;
        }
        let params: Vec<_> = e.limits.iter().map(Limit::params).collect();
        let amounts: Vec<i128> = e.amounts.iter().map(|n| i128::from(*n) * MILLI).collect();
        shard::fits(&params, &amounts, next)
    }

    /// Raise the hot bucket `key` one level from `level`, logged and counted with `why`;
    /// true when its level went up.
    async fn raise_hot(
        &self,
        key: &BucketKey,
        limits: &[Limit],
        version: i64,
        level: u8,
        why: &'static str,
    ) -> bool {
        match self.raise_one(key, limits, version, level).await {
            Ok(reached) if reached > level => {
                tracing::info!(entity = %key.entity_id, resource = %key.resource,
                    shards = 1u32 << reached, trigger = why, "a hot bucket was split into more shards");
                crate::telemetry::shards_raised(why);
                true
            }
            Ok(_) => false,
            Err(err) => {
                tracing::warn!(error = %err, entity = %key.entity_id,
                    resource = %key.resource, "raising the shard count failed");
                false
            }
        }
    }

    /// Meter the admitted writes of an acquire (`states` as the store returned them, one
    /// per bucket) and raise, in the background, each bucket whose shard all clients
    /// together write faster than the limiter's split rate (see [`crate::shard::rate`]).
    pub(crate) fn meter_writes(
        &self,
        keys: &[BucketKey],
        entries: &[LeaseEntry],
        states: &[BucketState],
        now_ms: i64,
    ) {
        let Some(split) = self.inner.split_rate else {
            return;
        };
        for ((key, e), s) in keys.iter().zip(entries).zip(states) {
            // at the highest level allowed there is nothing to raise: no meter, no lock
            if e.shard.level >= self.inner.max_shard_level {
                continue;
            }
            let taken: Vec<(i128, i128)> = e
                .limits
                .iter()
                .zip(&e.amounts)
                .map(|(l, n)| {
                    let total = s.limits.get(l.name()).map_or(0, |x| x.consumed);
                    (i128::from(*n) * MILLI, total)
                })
                .collect();
            match self
                .inner
                .shards
                .metered(key, e.shard.index, now_ms, &taken)
            {
                Some(rate) if rate >= split && self.may_raise(e) => {
                    tracing::debug!(entity = %key.entity_id, resource = %key.resource,
                        shard = e.shard.index, writes_per_s = rate, "a shard nears its partition's write limit");
                    self.raise_later(key, e);
                }
                _ => {}
            }
        }
    }

    /// Raise the bucket `key` one level from the entry's, in the background (one raise per
    /// bucket at a time from this client); nothing without a runtime.
    fn raise_later(&self, key: &BucketKey, e: &LeaseEntry) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !self.inner.shards.raising.lock().insert(key.clone()) {
            return;
        }
        let raising = Raising {
            limiter: self.clone(),
            key: key.clone(),
        };
        let limits = e.limits.clone();
        let (version, level) = (e.version, e.shard.level);
        rt.spawn(async move {
            let Raising { limiter, key } = &raising;
            limiter
                .raise_hot(key, &limits, version, level, "write_rate")
                .await;
        });
    }

    /// Raise the bucket `key` from `level` to `level + 1`; the level it is at afterwards
    /// (learned).
    async fn raise_one(
        &self,
        key: &BucketKey,
        limits: &[Limit],
        version: i64,
        level: u8,
    ) -> Result<u8> {
        let named: Vec<_> = limits
            .iter()
            .map(|l| (l.name().to_string(), l.params()))
            .collect();
        let changes = shard::raise(key, &named, version, level);
        let deadline = self.deadline();
        // the raise writes the hot shard too: under throttling it may take a few tries
        let mut pause = RAISE_PAUSE;
        let outcome = loop {
            let op = WriteOp::unique("shards", false).with_deadline(deadline);
            match self
                .call(self.store().apply(&changes, self.now_ms(), &op))
                .await
            {
                Err(StoreError::Throttled { .. })
                    if tokio::time::Instant::now() + pause * 2 < deadline =>
                {
                    tokio::time::sleep(pause.mul_f64(0.5 + rand::random::<f64>())).await;
                    pause *= 2;
                }
                other => break other?,
            }
        };
        let reached = match outcome {
            ApplyOutcome::Applied(_) => level + 1,
            // another client raised it first (its new shards are not full): read its level
            ApplyOutcome::Rejected(seen) => seen
                .iter()
                .flatten()
                .map(|s| level_of(s.version()))
                .max()
                .unwrap_or(level),
        };
        self.inner.shards.set(key, reached);
        Ok(reached)
    }

    /// Split the bucket of `entity_id` on `resource` into at least `shards` shards (a power
    /// of two, at most 16) ahead of a known hot spot, instead of waiting for throttling to
    /// do it. The limits are resolved as [`acquire`](Self::acquire) resolves them (`limits`:
    /// those passed in code). Returns the shard count the bucket has afterwards. Splitting
    /// never adds tokens: each old shard keeps what it holds up to its new share, and new
    /// shards start empty and refill at their share.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> zae_limiter::Result<()> {
    /// use zae_limiter::{Limit, MemoryStore, RateLimiter};
    ///
    /// let limiter = RateLimiter::builder(MemoryStore::new()).build();
    /// let rpm = [Limit::per_minute("rpm", 8_000)];
    /// assert_eq!(limiter.shard_bucket("hot", "api", &rpm, 4).await?, 4);
    /// // 2,000 tokens per shard; shard 0 kept its share, the three new shards start empty
    /// // (a split never adds tokens) and are full again within the minute
    /// assert_eq!(limiter.available("hot", "api", &rpm).await?["rpm"], 2_000);
    /// # Ok(()) }
    /// ```
    pub async fn shard_bucket(
        &self,
        entity_id: &str,
        resource: &str,
        limits: &[Limit],
        shards: u16,
    ) -> Result<u16> {
        validate_entity_id(entity_id)?;
        validate_resource(resource)?;
        validate_limits(limits)?;
        let max = 1u16 << MAX_SHARD_LEVEL;
        if shards == 0 || shards > max || !shards.is_power_of_two() {
            return Err(Error::invalid(
                "shards",
                format!("{shards}: a power of two from 1 to {max}"),
            ));
        }
        let target = shards.trailing_zeros() as u8;
        let data = self.resolution(entity_id, resource).await?;
        let (limits, version) = crate::acquire::pick_limits(&data, limits, entity_id, resource)?;
        let params: Vec<_> = limits.iter().map(Limit::params).collect();
        if !shard::fits(&params, &vec![0; params.len()], target) {
            return Err(Error::invalid(
                "shards",
                format!("{shards}: a shard would hold less than one token of some limit"),
            ));
        }
        let key = BucketKey::new(entity_id, resource);
        let mut level = self
            .call(self.store().get_bucket(&key))
            .await?
            .map_or(0, |s| level_of(s.version()));
        while level < target {
            let reached = self.raise_one(&key, &limits, version, level).await?;
            if reached <= level {
                return Err(Error::Conflict(format!(
                    "the bucket {entity_id}/{resource} could not be split beyond {} shards",
                    1u16 << level
                )));
            }
            level = reached;
        }
        self.inner.shards.set(&key, level);
        Ok(1 << level)
    }
}
