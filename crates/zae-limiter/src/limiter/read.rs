//! Reads that consume nothing: `available` and `time_until_available`. A sharded bucket
//! is read shard by shard (shard 0 tells how many there are).

use std::collections::BTreeMap;
use std::time::Duration;

use super::RateLimiter;
use crate::acquire::{amounts, pick_limits, shared_amounts, to_tokens};
use crate::bucket::MILLI;
use crate::error::{Error, Result};
use crate::limit::{validate_entity_id, validate_limits, validate_resource, Limit};
use crate::shard::{level_of, Shard};
use crate::store::{bucket_time, BucketKey, BucketState};

impl RateLimiter {
    /// Whole tokens available now per limit, consuming nothing. One read of the bucket (plus
    /// the config resolution when the cache is cold). With no `limits`, the stored ones are used.
    ///
    /// For an entity that cascades to an existing parent, the parent's bucket is read too
    /// and each limit reports the smaller of the two counts (for the limits the parent has
    /// under the same name), so the answer matches what an acquire would be allowed. The
    /// parent's limits are resolved as [`acquire`](Self::acquire) does without
    /// `parent_limits`: the parent's stored limits, else the `limits` passed here (none
    /// passed and none stored for the parent: the parent is not charged, nor read).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> zae_limiter::Result<()> {
    /// use zae_limiter::{ConfigScope, Limit, MemoryStore, NewEntity, RateLimiter, StoredConfig};
    ///
    /// let limiter = RateLimiter::builder(MemoryStore::new()).build();
    /// limiter.create_entity(NewEntity::new("org")).await?;
    /// limiter.create_entity(NewEntity::new("key").parent("org").cascade(true)).await?;
    /// let org = ConfigScope::Entity { entity_id: "org".into(), resource: "r".into() };
    /// limiter.set_config(&org, StoredConfig::limits([Limit::per_minute("rpm", 10)])).await?;
    /// let rpm = [Limit::per_minute("rpm", 100)];
    /// limiter.acquire("key", "r").limits(rpm.clone()).consume([("rpm", 3)]).await?
    ///     .commit().await?;
    /// // the parent (10 per minute, 3 taken) is what bounds the child
    /// assert_eq!(limiter.available("key", "r", &rpm).await?["rpm"], 7);
    /// assert!(!limiter.time_until_available("key", "r", &rpm, [("rpm", 8)]).await?.is_zero());
    /// # Ok(()) }
    /// ```
    pub async fn available(
        &self,
        entity_id: &str,
        resource: &str,
        limits: &[Limit],
    ) -> Result<BTreeMap<String, i64>> {
        let (reads, now) = self.read_for(entity_id, resource, limits).await?;
        let mut out: BTreeMap<String, i64> = BTreeMap::new();
        for (i, (limits, shards)) in reads.iter().enumerate() {
            for l in limits {
                // a sharded bucket holds the sum of its shards
                let milli: i128 = shards
                    .iter()
                    .map(|(shard, bucket)| {
                        let t = bucket_time(bucket.as_ref(), now);
                        let p = shard.params(&l.params());
                        let level = bucket.as_ref().and_then(|b| b.level_for(l.name(), &p, t));
                        p.tokens(level, t)
                    })
                    .sum();
                let n = to_tokens(milli);
                if i == 0 {
                    out.insert(l.name().to_string(), n);
                } else if let Some(v) = out.get_mut(l.name()) {
                    *v = (*v).min(n);
                }
            }
        }
        Ok(out)
    }

    /// How long until `needed` tokens are available for every named limit (zero if now).
    /// An amount above a limit's capacity can never be satisfied: a validation error.
    ///
    /// For an entity that cascades to an existing parent, the parent's bucket counts too
    /// (the longer wait wins), its limits resolved as in [`available`](Self::available);
    /// the parent is asked for the amounts of the limits it has under the same names.
    pub async fn time_until_available<'a>(
        &self,
        entity_id: &str,
        resource: &str,
        limits: &[Limit],
        needed: impl IntoIterator<Item = (&'a str, u64)>,
    ) -> Result<Duration> {
        let (reads, now) = self.read_for(entity_id, resource, limits).await?;
        let named: Vec<(String, u64)> = needed
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let own = amounts(&reads[0].0, named.iter().map(|(k, v)| (k.as_str(), *v)))?;
        let mut wait = 0i64;
        for (i, (limits, shards)) in reads.iter().enumerate() {
            let needed = if i == 0 {
                own.clone()
            } else {
                shared_amounts(limits, &named)
            };
            for (l, n) in limits.iter().zip(needed) {
                // a request goes to one shard: the soonest shard is the wait
                let soonest = shards
                    .iter()
                    .filter_map(|(shard, bucket)| {
                        let t = bucket_time(bucket.as_ref(), now);
                        let p = shard.params(&l.params());
                        let level = bucket.as_ref().and_then(|b| b.level_for(l.name(), &p, t));
                        p.retry_after_ms(level, n as i128 * MILLI, t)
                    })
                    .min();
                match soonest {
                    Some(ms) => wait = wait.max(ms),
                    None => {
                        return Err(Error::invalid(
                            "needed",
                            format!(
                                "{n} exceeds the capacity {} of limit '{}'{}{}",
                                l.capacity(),
                                l.name(),
                                if i == 0 { "" } else { " of the parent" },
                                if shards.len() > 1 {
                                    format!(" (shared by {} shards)", shards.len())
                                } else {
                                    String::new()
                                }
                            ),
                        ))
                    }
                }
            }
        }
        Ok(Duration::from_millis(wait as u64))
    }

    /// The limits and bucket of the entity, then those of its parent when it cascades to
    /// one that exists (and has limits), and our time.
    async fn read_for(
        &self,
        entity_id: &str,
        resource: &str,
        limits: &[Limit],
    ) -> Result<(Vec<(Vec<Limit>, Vec<(Shard, Option<BucketState>)>)>, i64)> {
        validate_entity_id(entity_id)?;
        validate_resource(resource)?;
        validate_limits(limits)?;
        let data = self.resolution(entity_id, resource).await?;
        let (own, _) = pick_limits(&data, limits, entity_id, resource)?;
        let mut targets = vec![(BucketKey::new(entity_id, resource), own)];
        if let Some(parent) = data
            .entity
            .as_ref()
            .filter(|e| e.cascade)
            .and_then(|e| e.parent_id.clone())
        {
            let pdata = self.resolution(&parent, resource).await?;
            let plimits = match pdata.versioned_limits() {
                Some((stored, _)) => stored.to_vec(),
                None => limits.to_vec(),
            };
            if pdata.entity.is_some() && !plimits.is_empty() {
                targets.push((BucketKey::new(parent, resource), plimits));
            }
        }
        let mut out = Vec::with_capacity(targets.len());
        for (key, limits) in targets {
            // shard 0 tells the level; the other shards are read when there are any
            let first = self.call(self.inner.store.get_bucket(&key)).await?;
            let level = first.as_ref().map_or(0, |b| level_of(b.version()));
            let mut shards = vec![(Shard::at_level(level), first)];
            for index in 1..Shard::at_level(level).count() {
                let bucket = self
                    .call(self.inner.store.get_bucket(&key.with_shard(index)))
                    .await?;
                shards.push((Shard { index, level }, bucket));
            }
            for (_, b) in &shards {
                if let Some(b) = b {
                    self.observe([b]);
                }
            }
            if level != self.shard_level(&key) {
                self.inner.shards.set(&key, level);
            }
            out.push((limits, shards));
        }
        Ok((out, self.now_ms()))
    }
}
