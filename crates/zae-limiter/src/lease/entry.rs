//! What a lease is made of: its id and the op ids of its writes, the acquire's write, and
//! one entry per bucket.

use crate::limit::Limit;
use crate::shard::Shard;
use crate::store::{BucketChange, BucketKey, LimitChange, WriteOp};

/// A fresh lease id (128 random bits; written as 32 hex digits in op ids).
pub(crate) fn new_lease_id() -> u128 {
    rand::random::<u128>()
}

/// The write `kind` of lease `id`: op id `{id as 32 hex digits}:{kind}`.
pub(crate) fn op(
    id: u128,
    kind: &str,
    exactly_once: bool,
    deadline: tokio::time::Instant,
) -> WriteOp {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = [0u8; 32];
    for (half, v) in [(id >> 64) as u64, id as u64].into_iter().enumerate() {
        for i in 0..16 {
            hex[16 * half + i] = HEX[(v >> (60 - 4 * i)) as usize & 0xf];
        }
    }
    let mut s = String::with_capacity(33 + kind.len());
    s.push_str(std::str::from_utf8(&hex).expect("hex digits"));
    s.push(':');
    s.push_str(kind);
    WriteOp::new(s, exactly_once).with_deadline(deadline)
}

/// The write of an acquire: its changes (one per bucket of the lease, in the lease's order)
/// and its op. Shared: the lease reads its buckets' keys from it, and an acquire whose
/// answer never came gives it back later.
#[derive(Debug)]
pub(crate) struct AcquireWrite {
    pub(crate) changes: Vec<BucketChange>,
    pub(crate) op: WriteOp,
}

/// What a lease holds for one bucket (the entity's own, or its parent's when cascading),
/// fixed at acquire; the bucket's key is that of the acquire's change at the same place.
#[derive(Debug, Clone)]
pub(crate) struct LeaseEntry {
    pub(crate) limits: Vec<Limit>,
    pub(crate) version: i64,
    /// Tokens the acquire took, per limit.
    pub(crate) amounts: Vec<u64>,
    /// The shard of the bucket the acquire wrote: its parameters are that shard's share.
    pub(crate) shard: Shard,
}

impl LeaseEntry {
    pub(super) fn position(&self, name: &str) -> Option<usize> {
        self.limits.iter().position(|l| l.name() == name)
    }

    /// What a write of `amount` millitokens to limit `l` of this entry's shard is.
    pub(crate) fn limit_change(&self, l: &Limit, amount: i128, checked: bool) -> LimitChange {
        LimitChange {
            name: l.name().to_string(),
            params: self.shard.params(&l.params()),
            version: self.shard.version(self.version),
            amount,
            checked,
            counted: true,
        }
    }

    /// The acquire's change: take the amounts from `key` (this entry's shard), checked.
    pub(crate) fn acquire_change(&self, key: BucketKey) -> BucketChange {
        BucketChange {
            key,
            limits: self
                .limits
                .iter()
                .zip(&self.amounts)
                .map(|(l, n)| self.limit_change(l, i128::from(*n) * crate::bucket::MILLI, true))
                .collect(),
        }
    }

    /// The change writing `sign * amounts` (one per limit) to `key`, checked or not; `None`
    /// when all are 0.
    pub(super) fn change(
        &self,
        key: &BucketKey,
        amounts: &[i128],
        sign: i128,
        checked: bool,
    ) -> Option<BucketChange> {
        if amounts.iter().all(|a| *a == 0) {
            return None;
        }
        let limits: Vec<LimitChange> = self
            .limits
            .iter()
            .zip(amounts)
            .filter(|(_, a)| **a != 0)
            .map(|(l, amount)| self.limit_change(l, sign * *amount, checked))
            .collect();
        Some(BucketChange {
            key: key.clone(),
            limits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_ids_are_the_lease_id_in_hex_then_the_kind() {
        let deadline = tokio::time::Instant::now();
        for id in [
            0u128,
            1,
            u128::MAX,
            0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
        ] {
            assert_eq!(
                op(id, "commit", true, deadline).id,
                format!("{id:032x}:commit")
            );
        }
    }
}
