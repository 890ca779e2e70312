//! The pure parts of an acquire: which limits apply, the amounts per limit, and the status
//! of every limit for a rejection.

use std::time::Duration;

use crate::bucket::MILLI;
use crate::config::ResolutionData;
use crate::error::{Error, Result};
use crate::exceeded::LimitStatus;
use crate::limit::{Limit, MAX_AMOUNT};
use crate::shard::{level_of, Shard};
use crate::store::{bucket_time, BucketKey, BucketState};

/// The limits to enforce and their version: the most specific stored level, else the ones
/// passed in code (version 0).
pub(crate) fn pick_limits(
    data: &ResolutionData,
    passed: &[Limit],
    entity_id: &str,
    resource: &str,
) -> Result<(Vec<Limit>, i64)> {
    match data.versioned_limits() {
        Some((stored, version)) => Ok((stored.to_vec(), version)),
        None if !passed.is_empty() => Ok((passed.to_vec(), 0)),
        None => Err(Error::invalid(
            "limits",
            format!("no limits given or stored for entity '{entity_id}' and resource '{resource}'"),
        )),
    }
}

/// Map named amounts onto `limits` (same order); unknown names are errors.
pub(crate) fn amounts<'a>(
    limits: &[Limit],
    named: impl IntoIterator<Item = (&'a str, u64)>,
) -> Result<Vec<u64>> {
    let mut out = vec![0u64; limits.len()];
    for (name, n) in named {
        let i = limits
            .iter()
            .position(|l| l.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = limits.iter().map(Limit::name).collect();
                Error::invalid(
                    "consume",
                    format!("'{name}' is not one of the limits [{}]", known.join(", ")),
                )
            })?;
        out[i] = out[i].saturating_add(n).min(MAX_AMOUNT + 1);
        if out[i] > MAX_AMOUNT {
            return Err(Error::invalid(
                "consume",
                format!("more than {MAX_AMOUNT} {name} in one request"),
            ));
        }
    }
    Ok(out)
}

/// The amounts a parent takes: those of the limits it shares with the child, by name.
pub(crate) fn shared_amounts(limits: &[Limit], named: &[(String, u64)]) -> Vec<u64> {
    limits
        .iter()
        .map(|l| {
            named
                .iter()
                .filter(|(k, _)| k == l.name())
                .map(|(_, v)| *v)
                .fold(0u64, u64::saturating_add)
                .min(MAX_AMOUNT)
        })
        .collect()
}

pub(crate) fn to_tokens(milli: i128) -> i64 {
    milli
        .div_euclid(MILLI)
        .clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// The status of every limit of one bucket (of the shard `shard` of it) for a request of
/// `amounts` at `now` (decided at the bucket's own time when it is ahead). A sharded bucket
/// reports the whole limit, and what this shard has and needs.
pub(crate) fn statuses_for(
    key: &BucketKey,
    shard: Shard,
    state: Option<&BucketState>,
    limits: &[Limit],
    amounts: &[u64],
    now: i64,
) -> Vec<LimitStatus> {
    let t = bucket_time(state, now);
    limits
        .iter()
        .zip(amounts)
        .map(|(l, &n)| {
            let ours = shard.params(&l.params());
            // a stale client is judged by the stored (newer) parameters
            let (limit, p, level) = match state.and_then(|s| s.limits.get(l.name())) {
                Some(s) if s.params == ours => (l.clone(), ours, Some(s.level)),
                Some(s) => {
                    let n = i128::from(Shard::at_level(level_of(s.version)).count());
                    (
                        Limit::custom(
                            l.name(),
                            (s.params.capacity * n / MILLI) as u64,
                            (s.params.refill * n / MILLI) as u64,
                            Duration::from_millis(s.params.period as u64),
                        ),
                        s.params,
                        Some(s.level),
                    )
                }
                None => (l.clone(), ours, None),
            };
            let n_m = n as i128 * MILLI;
            LimitStatus {
                entity_id: key.entity_id.clone(),
                resource: key.resource.clone(),
                limit,
                available: to_tokens(p.tokens(level, t)),
                requested: n as i64,
                exceeded: !p.allows(level, n_m, t),
                retry_after: p
                    .retry_after_ms(level, n_m, t)
                    .map(|ms| Duration::from_millis(ms as u64)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_refuse_unknown_names_and_overflow() {
        let l = [Limit::per_minute("rpm", 10), Limit::per_minute("tpm", 10)];
        assert_eq!(amounts(&l, [("tpm", 3), ("tpm", 4)]).unwrap(), vec![0, 7]);
        assert!(amounts(&l, [("images", 1)]).is_err());
        assert!(amounts(&l, [("rpm", MAX_AMOUNT), ("rpm", 1)]).is_err());
    }

    #[test]
    fn a_parent_takes_only_the_limits_it_has() {
        let parent = [Limit::per_minute("tpm", 100)];
        let named = vec![("rpm".to_string(), 1), ("tpm".to_string(), 50)];
        assert_eq!(shared_amounts(&parent, &named), vec![50]);
    }
}
