//! Token-bucket math: integers only, one stored level per limit.
//!
//! Amounts are **millitokens** (tokens × 1000) and time is **milliseconds** since the
//! Unix epoch. A bucket with capacity `C`, refilled by `A` per period `P`, is stored as a
//! single integer level `z` such that at time `t`
//!
//! ```text
//! tokens(t) = min(P*C, z + t*A) / P          // millitokens
//! full(t)   = P*C - t*A                       // the bucket is full at t  <=>  z >= full(t)
//! ```
//!
//! Consuming `n` at `t`: if full, allowed iff `n <= C` and `z' = full(t) - P*n`; otherwise
//! allowed iff `z >= P*n - t*A` and `z' = z - P*n`. Every decision is therefore a comparison
//! of the stored `z` with a number the client computes, which is what lets DynamoDB decide it
//! inside one conditional write. A missing level (`None`) means a bucket never written: full.

use serde::{Deserialize, Serialize};

/// Millitokens per token.
pub const MILLI: i128 = 1000;

/// A limit's parameters in the units of the math: millitokens and milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BucketParams {
    /// Capacity `C` in millitokens.
    pub capacity: i128,
    /// Refill amount `A` in millitokens per period.
    pub refill: i128,
    /// Refill period `P` in milliseconds.
    pub period: i128,
}

/// Which write form a decision needs. The DynamoDB store turns each into a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// The bucket is full (or missing): the new level is *set* to `full(t) - P*n`.
    Full,
    /// The bucket is below capacity: `P*n` is *added* (subtracted) to the level.
    Partial,
}

impl BucketParams {
    /// Parameters from whole tokens and a period in ms.
    pub fn new(capacity: u64, refill_amount: u64, period_ms: u64) -> Self {
        BucketParams {
            capacity: capacity as i128 * MILLI,
            refill: refill_amount as i128 * MILLI,
            period: period_ms as i128,
        }
    }

    /// The level at and above which the bucket is full at `t`.
    pub fn full_level(&self, t: i64) -> i128 {
        self.period * self.capacity - t as i128 * self.refill
    }

    /// Which case applies to level `z` at `t`.
    pub fn case(&self, z: Option<i128>, t: i64) -> Case {
        match z {
            Some(z) if z < self.full_level(t) => Case::Partial,
            _ => Case::Full,
        }
    }

    /// The level after clamping it to the capacity ceiling at `t`.
    fn effective(&self, z: Option<i128>, t: i64) -> i128 {
        let full = self.full_level(t);
        z.map_or(full, |z| z.min(full))
    }

    /// Millitokens available at `t` (floor; negative when the bucket is in debt).
    pub fn tokens(&self, z: Option<i128>, t: i64) -> i128 {
        (self.effective(z, t) + t as i128 * self.refill).div_euclid(self.period)
    }

    /// The smallest level that admits `n` millitokens at `t` when not full (`P*n - t*A`).
    pub fn need_level(&self, n: i128, t: i64) -> i128 {
        self.period * n - t as i128 * self.refill
    }

    /// Whether consuming `n` millitokens at `t` is allowed.
    pub fn allows(&self, z: Option<i128>, n: i128, t: i64) -> bool {
        match self.case(z, t) {
            Case::Full => n <= self.capacity,
            Case::Partial => z.unwrap_or_default() >= self.need_level(n, t),
        }
    }

    /// Consume `n` millitokens at `t`: the new level, or `None` when not allowed.
    pub fn consume(&self, z: Option<i128>, n: i128, t: i64) -> Option<i128> {
        self.allows(z, n, t).then(|| self.adjust(z, n, t))
    }

    /// Take `d` millitokens (negative gives back) without any check; may drive the bucket
    /// into debt. Giving back to a full bucket is capped at capacity.
    pub fn adjust(&self, z: Option<i128>, d: i128, t: i64) -> i128 {
        self.effective(z, t) - self.period * d
    }

    /// Milliseconds from `t` until `n` millitokens are available: `Some(0)` if they are now,
    /// `None` if never (`n` above capacity).
    pub fn retry_after_ms(&self, z: Option<i128>, n: i128, t: i64) -> Option<i64> {
        if n > self.capacity {
            return None;
        }
        if self.allows(z, n, t) {
            return Some(0);
        }
        let z = self.effective(z, t);
        // first T with z + T*A >= P*n
        let at = (self.period * n - z + self.refill - 1).div_euclid(self.refill);
        Some((at - t as i128).max(0).min(i64::MAX as i128) as i64)
    }

    /// Rewrite level `z` (under `self`) for `new` parameters at `t`, keeping the token count
    /// (capped at the new capacity). Rounds down by less than one `1/P` millitoken.
    pub fn rebase(&self, z: Option<i128>, t: i64, new: &BucketParams) -> Option<i128> {
        let z = z?;
        let scaled_p = (self.effective(Some(z), t) + t as i128 * self.refill)
            .saturating_mul(new.period)
            .div_euclid(self.period);
        let level = scaled_p - t as i128 * new.refill;
        Some(level.min(new.full_level(t)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: i64 = 1_767_225_600_000; // 2026-01-01

    fn rpm(c: u64) -> BucketParams {
        BucketParams::new(c, c, 60_000)
    }

    #[test]
    fn new_bucket_is_full_and_consumes() {
        let p = rpm(100);
        assert_eq!(p.tokens(None, T0), 100_000);
        let z = p.consume(None, 30_000, T0).unwrap();
        assert_eq!(p.tokens(Some(z), T0), 70_000);
        // refills 100 tokens/min: after 6 s, 10 tokens more
        assert_eq!(p.tokens(Some(z), T0 + 6_000), 80_000);
        // never above capacity
        assert_eq!(p.tokens(Some(z), T0 + 3_600_000), 100_000);
    }

    #[test]
    fn rejects_and_reports_retry_after() {
        let p = rpm(3);
        let mut z = None;
        for _ in 0..3 {
            z = Some(p.consume(z, 1000, T0).unwrap());
        }
        assert_eq!(p.consume(z, 1000, T0), None);
        // one token per 20 s
        assert_eq!(p.retry_after_ms(z, 1000, T0), Some(20_000));
        assert!(p.allows(z, 1000, T0 + 20_000));
        assert!(!p.allows(z, 1000, T0 + 19_999));
        assert_eq!(p.retry_after_ms(z, 4000, T0), None);
    }

    #[test]
    fn debt_and_recovery() {
        let p = rpm(10);
        let z = p.adjust(None, 25_000, T0); // 10 - 25 = -15 tokens
        assert_eq!(p.tokens(Some(z), T0), -15_000);
        assert!(!p.allows(Some(z), 0, T0));
        // -15 -> +1 needs 16 tokens = 96 s at 10/min
        assert_eq!(p.retry_after_ms(Some(z), 1000, T0), Some(96_000));
    }

    #[test]
    fn refund_to_full_bucket_is_capped() {
        let p = rpm(10);
        let z = p.adjust(None, -5_000, T0);
        assert_eq!(p.tokens(Some(z), T0), 10_000);
    }

    #[test]
    fn rebase_keeps_tokens() {
        let old = rpm(100);
        let z = old.consume(None, 40_000, T0).unwrap();
        let new = BucketParams::new(200, 50, 3_600_000);
        let z2 = old.rebase(Some(z), T0, &new).unwrap();
        assert_eq!(new.tokens(Some(z2), T0), 60_000);
        // shrinking caps at the new capacity
        let small = BucketParams::new(10, 10, 60_000);
        let z3 = old.rebase(Some(z), T0, &small).unwrap();
        assert_eq!(small.tokens(Some(z3), T0), 10_000);
        assert_eq!(small.case(Some(z3), T0), Case::Full);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Consume(i64),
        Adjust(i64),
        Wait(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0i64..5_000).prop_map(Op::Consume),
            (-3_000i64..3_000).prop_map(Op::Adjust),
            (0i64..30_000).prop_map(Op::Wait),
        ]
    }

    proptest! {
        /// Over any schedule, admitted consumption never exceeds capacity + refill + what
        /// adjustments gave back minus what they took.
        #[test]
        fn never_admits_more_than_capacity_plus_refill(
            cap in 1u64..50, amount in 1u64..50, period in 1u64..120_000,
            ops in proptest::collection::vec(op(), 1..80),
        ) {
            let p = BucketParams::new(cap, amount, period);
            let mut z = None;
            let mut t = T0;
            let (mut admitted, mut given_back) = (0i128, 0i128);
            for o in ops {
                match o {
                    Op::Consume(n) => {
                        if let Some(nz) = p.consume(z, n as i128, t) {
                            z = Some(nz);
                            admitted += n as i128;
                        }
                    }
                    Op::Adjust(d) => {
                        z = Some(p.adjust(z, d as i128, t));
                        given_back += (-(d as i128)).max(0);
                    }
                    Op::Wait(ms) => t += ms,
                }
                prop_assert!(p.tokens(z, t) <= p.capacity);
            }
            // debt only comes from adjustments, so admissions are bounded by capacity, refill
            // and whatever adjustments gave back
            let refilled = ((t - T0) as i128 * p.refill).div_euclid(p.period);
            prop_assert!(admitted <= p.capacity + refilled + given_back,
                "admitted {} > {} + {} + {}", admitted, p.capacity, refilled, given_back);
        }

        /// Taking then giving back the same amount restores the token count (unless capped).
        #[test]
        fn adjust_round_trips(cap in 1u64..1_000_000, used in 0i64..1_000_000, d in 0i64..1_000_000) {
            let p = rpm(cap);
            let z0 = p.adjust(None, used as i128, T0);
            let before = p.tokens(Some(z0), T0);
            let z1 = p.adjust(Some(z0), d as i128, T0);
            let z2 = p.adjust(Some(z1), -(d as i128), T0);
            prop_assert_eq!(p.tokens(Some(z2), T0), before);
        }

        /// retry_after is the first instant at which the request passes.
        #[test]
        fn retry_after_is_first_passing_instant(
            cap in 1u64..100, amount in 1u64..100, period in 1u64..600_000,
            taken in 0i64..300_000, n in 0i64..100_000,
        ) {
            let p = BucketParams::new(cap, amount, period);
            let z = Some(p.adjust(None, taken as i128, T0));
            match p.retry_after_ms(z, n as i128, T0) {
                None => prop_assert!((n as i128) > p.capacity),
                Some(0) => prop_assert!(p.allows(z, n as i128, T0)),
                Some(w) => {
                    prop_assert!(p.allows(z, n as i128, T0 + w));
                    prop_assert!(!p.allows(z, n as i128, T0 + w - 1));
                }
            }
        }

        /// Changing parameters keeps the token count, capped at the new capacity.
        #[test]
        fn rebase_preserves_tokens(
            c1 in 1u64..1000, a1 in 1u64..1000, p1 in 1u64..600_000,
            c2 in 1u64..1000, a2 in 1u64..1000, p2 in 1u64..600_000,
            taken in 0i64..2_000_000,
        ) {
            let old = BucketParams::new(c1, a1, p1);
            let new = BucketParams::new(c2, a2, p2);
            let z = Some(old.adjust(None, taken as i128, T0));
            let want = old.tokens(z, T0).min(new.capacity);
            let got = new.tokens(old.rebase(z, T0, &new), T0);
            prop_assert!(got == want || got == want - 1, "want {} got {}", want, got);
        }
    }
}
