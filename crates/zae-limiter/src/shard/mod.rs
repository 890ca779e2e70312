//! Write sharding: a hot bucket split into `2^level` shards, each its own item (its own
//! DynamoDB partition, `{ns}/BUCKET#{entity}#{resource}#{index}`), so one entity is not
//! capped by one partition's write rate. Pure functions over plain data; the limiter
//! decides when to use them.
//!
//! - **Capacity and refill split exactly.** Shard `i` of `n` holds `C/n` (plus one
//!   millitoken for the first `C mod n` shards) and refills `A/n` likewise, so the shards
//!   together hold and refill exactly what the bucket would.
//! - **The level is part of the parameters' version.** A shard's limits carry the version
//!   `level << 56 | config version`, so the store's versioned-parameter rules do the rest: a
//!   client that knows fewer shards than the bucket has *adopts* the stored (smaller)
//!   parameters and learns the level from them; one that knows more *rebases*.
//! - **Raising is one atomic write.** From `n` to `2n` shards: every old shard is rebased to
//!   its new share (keeping its tokens, capped at the new capacity) and every new shard is
//!   created *empty* (created full, then its whole capacity taken, checked), all in one
//!   transaction. The shards never hold more tokens than the bucket did, so raising never
//!   over-admits; two clients raising at once cannot both succeed (the second finds the new
//!   shards not full and is refused whole).
//! - **When to raise** is the limiter's call: after throttling, or ahead of it when the
//!   write rate of all clients to a shard, estimated by [`rate::WriteRate`], nears the
//!   partition limit.

pub mod rate;

use crate::bucket::{BucketParams, MILLI};
use crate::store::{BucketChange, BucketKey, LimitChange};

/// Highest level: `2^4` = 16 shards. Raising 8 → 16 writes 16 buckets in one transaction.
pub const MAX_SHARD_LEVEL: u8 = 4;

/// The version bits left to the config version.
const LEVEL_SHIFT: u32 = 56;

/// One shard of a bucket: its index among `2^level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Shard {
    /// Which shard, `0..count()`.
    pub index: u16,
    /// `log2` of the shard count.
    pub level: u8,
}

impl Shard {
    /// Shard 0 of a bucket at `level`.
    pub fn at_level(level: u8) -> Self {
        Shard { index: 0, level }
    }

    /// How many shards the bucket has.
    pub fn count(self) -> u16 {
        1 << self.level
    }

    /// This shard's share of `total`.
    fn part(self, total: i128) -> i128 {
        let n = i128::from(self.count());
        total.div_euclid(n) + i128::from(i128::from(self.index) < total.rem_euclid(n))
    }

    /// The shard's parameters for a bucket of parameters `p`.
    pub fn params(self, p: &BucketParams) -> BucketParams {
        if self.level == 0 {
            return *p;
        }
        BucketParams {
            capacity: self.part(p.capacity),
            refill: self.part(p.refill),
            period: p.period,
        }
    }

    /// The version the shard's limits are written with, for limits of `config_version`
    /// (unchanged when unsharded; config versions are times in ms, far below `2^56`).
    pub fn version(self, config_version: i64) -> i64 {
        if self.level == 0 {
            return config_version;
        }
        (i64::from(self.level) << LEVEL_SHIFT) | config_version.clamp(0, (1 << LEVEL_SHIFT) - 1)
    }
}

/// The shard level a stored version was written at.
pub fn level_of(version: i64) -> u8 {
    (version.max(0) >> LEVEL_SHIFT).min(i64::from(MAX_SHARD_LEVEL)) as u8
}

/// Whether the bucket `key` in state `state` holds the shard level of a split bucket: shard
/// 0 once split. It is never dropped (no TTL, no eviction), so the level is never lost;
/// the other shards expire when full again, and a missing one reads as full at its share.
pub fn holds_level(key: &BucketKey, state: &crate::store::BucketState) -> bool {
    key.shard == 0 && level_of(state.version()) > 0
}

/// Whether a bucket of `limits` (parameters) can go to `level` with every shard still able
/// to admit `amounts` (millitokens, one per limit) and at least one token.
pub fn fits(limits: &[BucketParams], amounts: &[i128], level: u8) -> bool {
    if level > MAX_SHARD_LEVEL {
        return false;
    }
    // the last shard gets the smallest share
    let last = Shard {
        index: (1u16 << level) - 1,
        level,
    };
    limits.iter().zip(amounts).all(|(p, n)| {
        let s = last.params(p);
        s.capacity >= (*n).max(MILLI) && s.refill > 0
    })
}

/// The one atomic change that raises the bucket `key` (any shard of it) from `level` to
/// `level + 1`: `limits` are (name, bucket parameters), `config_version` their version.
pub fn raise(
    key: &BucketKey,
    limits: &[(String, BucketParams)],
    config_version: i64,
    level: u8,
) -> Vec<BucketChange> {
    let next = level + 1;
    let old = 1u16 << level;
    (0..1u16 << next)
        .map(|index| {
            let shard = Shard { index, level: next };
            BucketChange {
                key: key.with_shard(index),
                limits: limits
                    .iter()
                    .map(|(name, p)| {
                        let params = shard.params(p);
                        let new = index >= old;
                        LimitChange {
                            name: name.clone(),
                            params,
                            version: shard.version(config_version),
                            // old shards: rebased, nothing taken; new ones: emptied
                            amount: if new { params.capacity } else { 0 },
                            checked: new,
                            counted: !new,
                        }
                    })
                    .collect(),
            }
        })
        .collect()
}

/// A shard of `2^level` not in `tried` (any when all were tried), chosen at random.
pub fn pick(level: u8, tried: &[u16]) -> u16 {
    let n = 1u16 << level.min(MAX_SHARD_LEVEL);
    if n == 1 {
        return 0;
    }
    let free = n - (tried.iter().filter(|i| **i < n).count() as u16).min(n);
    if free == 0 {
        return rand::random::<u16>() % n;
    }
    let mut k = rand::random::<u16>() % free;
    for i in 0..n {
        if !tried.contains(&i) {
            if k == 0 {
                return i;
            }
            k -= 1;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{apply_exact, BucketState};
    use proptest::prelude::*;

    const T0: i64 = 1_767_225_600_000;

    proptest! {
        #[test]
        fn shares_add_up_exactly(c in 1i128..1_000_000_000, a in 1i128..1_000_000_000, level in 0u8..=MAX_SHARD_LEVEL) {
            let p = BucketParams { capacity: c, refill: a, period: 60_000 };
            let shards: Vec<_> = (0..1u16 << level).map(|index| Shard { index, level }.params(&p)).collect();
            prop_assert_eq!(shards.iter().map(|s| s.capacity).sum::<i128>(), c);
            prop_assert_eq!(shards.iter().map(|s| s.refill).sum::<i128>(), a);
            let (min, max) = (shards.iter().map(|s| s.capacity).min().unwrap(), shards.iter().map(|s| s.capacity).max().unwrap());
            prop_assert!(max - min <= 1);
        }

        #[test]
        fn versions_order_by_level_then_config(v1 in 0i64..1 << 50, v2 in 0i64..1 << 50, l1 in 0u8..=4, l2 in 0u8..=4) {
            let a = Shard { index: 0, level: l1 }.version(v1);
            let b = Shard { index: 0, level: l2 }.version(v2);
            prop_assert_eq!(level_of(a), l1);
            prop_assert_eq!(a.cmp(&b), (l1, v1).cmp(&(l2, v2)));
        }
    }

    #[test]
    fn pick_prefers_untried_shards() {
        assert_eq!(pick(0, &[]), 0);
        for _ in 0..50 {
            assert_eq!(pick(2, &[0, 1, 3]), 2);
            assert!(pick(3, &[]) < 8);
        }
        assert!(pick(1, &[0, 1]) < 2);
    }

    #[test]
    fn fits_keeps_every_shard_able_to_admit_the_request() {
        let p = [BucketParams::new(100, 100, 60_000)];
        assert!(fits(&p, &[12_000], 3)); // 100 / 8 = 12.5 tokens, the last shard 12.5
        assert!(!fits(&p, &[13_000], 3));
        assert!(!fits(&p, &[1_000], MAX_SHARD_LEVEL + 1));
        let tiny = [BucketParams::new(3, 3, 60_000)];
        assert!(fits(&tiny, &[0], 1));
        assert!(!fits(&tiny, &[0], 2)); // 0.75 of a token per shard
    }

    /// Raising on the reference semantics: tokens are never created, the new shards start
    /// empty and refill at their share, and a second raise at the same level is refused.
    #[test]
    fn raising_keeps_or_loses_tokens_but_never_adds() {
        let p = BucketParams::new(1000, 600, 60_000); // 10 tokens/s
        let key = BucketKey::new("hot", "r");
        let limits = vec![("rpm".to_string(), p)];
        // take 300 tokens from the unsharded bucket
        let mut take = LimitChange {
            name: "rpm".into(),
            params: p,
            version: 7,
            amount: 300_000,
            checked: true,
            counted: true,
        };
        type Table = std::collections::BTreeMap<BucketKey, BucketState>;
        // what the embedded store does: decide on copies, keep what was written
        fn run(state: &mut Table, changes: Vec<BucketChange>, t: i64) -> bool {
            let mut buckets: Vec<BucketState> = changes
                .iter()
                .map(|c| state.get(&c.key).cloned().unwrap_or_default())
                .collect();
            let ok = apply_exact(&mut buckets, &changes, t);
            for (c, s) in changes.iter().zip(buckets) {
                if !s.limits.is_empty() {
                    state.insert(c.key.clone(), s);
                }
            }
            ok
        }
        let total = |state: &Table, t| -> i128 {
            (0..2u16)
                .map(|i| {
                    let sp = Shard { index: i, level: 1 }.params(&p);
                    let level = state
                        .get(&key.with_shard(i))
                        .and_then(|b| b.level_for("rpm", &sp, t));
                    sp.tokens(level, t)
                })
                .sum()
        };
        let mut state = Table::new();
        let one = |take: &LimitChange| {
            vec![BucketChange {
                key: key.clone(),
                limits: vec![take.clone()],
            }]
        };
        assert!(run(&mut state, one(&take), T0));
        assert!(run(&mut state, raise(&key, &limits, 7, 0), T0));
        // 700 tokens were left; shard 0 keeps at most its new capacity 500, shard 1 is empty
        assert_eq!(total(&state, T0), 500_000);
        // a second raise to the same level is refused whole (shard 1 is not full)
        assert!(!run(&mut state, raise(&key, &limits, 7, 0), T0 + 1_000));
        // refill goes on at the shards' rates, 5 tokens/s each (shard 0 is full)
        assert_eq!(total(&state, T0 + 10_000), 500_000 + 50_000);
        // a client that still thinks the bucket is unsharded adopts shard 0's parameters
        take.amount = 1_000;
        assert!(run(&mut state, one(&take), T0 + 10_000));
        let s0 = state.get(&key).unwrap().limits["rpm"];
        assert_eq!(level_of(s0.version), 1);
        assert_eq!(s0.params, Shard { index: 0, level: 1 }.params(&p));
        assert_eq!(total(&state, T0 + 10_000), 549_000);
    }
}
