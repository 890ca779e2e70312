//! The operations a scenario times, and the counters each leaves consumed.

use zae_limiter::{Error, Limit, RateLimiter};

/// The resource every scenario uses.
pub(super) const RESOURCE: &str = "api";
/// Capacity of the limits that must never refuse.
const HUGE: u64 = 1_000_000_000;
/// Millitokens per token (how buckets store counters).
pub(super) const MILLI: i128 = 1000;
/// Tokens one operation takes from tpm.
const TPM: u64 = 500;
/// What e adds to tpm before commit.
const TPM_ADJUST: i64 = 300;

/// a's limit: large enough never to refuse.
fn rpm() -> Limit {
    Limit::per_minute("rpm", HUGE)
}

/// b's limits (also stored as system defaults for d).
pub(super) fn b_limits() -> Vec<Limit> {
    vec![
        Limit::per_minute("rpm", HUGE),
        Limit::per_minute("tpm", HUGE),
    ]
}

/// What one timed operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    /// a: acquire rpm 1, commit.
    OneLimit,
    /// b, c, f: acquire rpm 1 + tpm 500, commit.
    TwoLimits,
    /// d: as `TwoLimits` with no limits in code: they are resolved from stored defaults.
    Stored,
    /// e: as `TwoLimits` with `adjust("tpm", 300)` before commit.
    Adjusted,
    /// h: `available()` with b's limits.
    Available,
}

impl Op {
    pub(super) async fn run(self, limiter: &RateLimiter, entity: &str) -> Result<(), Error> {
        let lease = match self {
            Op::OneLimit => {
                limiter
                    .acquire(entity, RESOURCE)
                    .limits([rpm()])
                    .consume([("rpm", 1)])
                    .await?
            }
            Op::TwoLimits | Op::Adjusted => {
                limiter
                    .acquire(entity, RESOURCE)
                    .limits(b_limits())
                    .consume([("rpm", 1), ("tpm", TPM)])
                    .await?
            }
            Op::Stored => {
                limiter
                    .acquire(entity, RESOURCE)
                    .consume([("rpm", 1), ("tpm", TPM)])
                    .await?
            }
            Op::Available => {
                limiter.available(entity, RESOURCE, &b_limits()).await?;
                return Ok(());
            }
        };
        if self == Op::Adjusted {
            lease.adjust("tpm", TPM_ADJUST)?;
        }
        lease.commit().await
    }

    /// Millitokens one operation leaves consumed, per limit.
    pub(super) fn consumed_per_op(self) -> Vec<(&'static str, i128)> {
        match self {
            Op::OneLimit => vec![("rpm", MILLI)],
            Op::TwoLimits | Op::Stored => vec![("rpm", MILLI), ("tpm", TPM as i128 * MILLI)],
            Op::Adjusted => vec![
                ("rpm", MILLI),
                ("tpm", (TPM as i128 + TPM_ADJUST as i128) * MILLI),
            ],
            Op::Available => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumed_per_op_in_millitokens() {
        assert_eq!(Op::OneLimit.consumed_per_op(), [("rpm", 1000)]);
        assert_eq!(
            Op::TwoLimits.consumed_per_op(),
            [("rpm", 1000), ("tpm", 500_000)]
        );
        assert_eq!(
            Op::Stored.consumed_per_op(),
            Op::TwoLimits.consumed_per_op()
        );
        assert_eq!(
            Op::Adjusted.consumed_per_op(),
            [("rpm", 1000), ("tpm", 800_000)]
        );
        assert!(Op::Available.consumed_per_op().is_empty());
    }
}
