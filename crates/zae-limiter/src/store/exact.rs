//! The reference semantics of [`Store::apply`](super::Store::apply), as pure functions over
//! plain data. The embedded store applies them under one lock; the DynamoDB store plans its
//! conditional writes with the same [`resolve`] and [`bucket_time`], and the conformance
//! suite checks that both agree.
//!
//! Three rules beyond the bucket math of [`crate::bucket`]:
//! - **Bucket time.** A bucket remembers the largest client time at which its levels were
//!   set; each decision is made at `max(client time, bucket time)` ([`bucket_time`]), so a
//!   client whose clock is behind cannot hand out the same refill twice.
//! - **Versioned parameters.** Each stored limit carries the version of its parameters. A
//!   client with a newer version (or, at equal versions, other parameters: limits passed in
//!   code are all version 0, the last writer wins) rebases the level, keeping the token
//!   count; a client with an older version adopts the stored parameters ([`resolve`]).
//! - **Rebase even when refused.** A rebase is written by the first request that sees the new
//!   parameters, admitted or not, so new parameters take effect without waiting for an
//!   admission.

use super::{BucketChange, BucketState, LimitChange, LimitState};
use crate::error::StoreError;
use crate::limit::MAX_LIMITS;

/// A write advances the bucket time when its client time is at least this far (ms) past the
/// stored one, even when no level is set; clients that learn the bucket time from it then
/// follow a client whose clock is ahead instead of waiting out the skew.
pub const TIME_REFRESH_MS: i64 = 1_000;

/// Most buckets one atomic change may touch (DynamoDB transactions take 100 items; a
/// cascade needs 2).
const MAX_BUCKETS: usize = 25;

/// How a client's limit relates to what the bucket stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolve {
    /// Not stored yet: created full.
    New,
    /// Stored with the same parameters and version.
    Same(LimitState),
    /// Stored with older parameters (or other parameters at the same version): rebase the
    /// level to the client's, keeping the token count.
    Rebase(LimitState),
    /// Stored with newer parameters: compute with the stored ones.
    Adopt(LimitState),
    /// Not stored, and the bucket holds a newer configuration that does not have this
    /// limit: leave it out.
    Skip,
}

/// Decide how `change` applies to `stored` in a bucket whose newest version is
/// `bucket_version`.
pub fn resolve(stored: Option<&LimitState>, bucket_version: i64, change: &LimitChange) -> Resolve {
    match stored {
        None if bucket_version > change.version => Resolve::Skip,
        None => Resolve::New,
        Some(s) if s.version > change.version => Resolve::Adopt(*s),
        Some(s) if s.version == change.version && s.params == change.params => Resolve::Same(*s),
        Some(s) => Resolve::Rebase(*s),
    }
}

/// The time a bucket decides at: never before its own time.
pub fn bucket_time(state: Option<&BucketState>, now_ms: i64) -> i64 {
    state.map_or(now_ms, |s| now_ms.max(s.time_ms))
}

/// Refuse what DynamoDB would refuse: no change, a bucket without limits, more than
/// [`MAX_LIMITS`] limits in one bucket, a limit named twice, too many buckets.
pub fn check_changes(changes: &[BucketChange]) -> Result<(), StoreError> {
    if changes.is_empty() {
        return Err(StoreError::Refused("an empty change".into()));
    }
    if changes.len() > MAX_BUCKETS {
        return Err(StoreError::Refused(format!(
            "{} buckets in one change; at most {MAX_BUCKETS}",
            changes.len()
        )));
    }
    for (i, c) in changes.iter().enumerate() {
        if c.limits.is_empty() {
            return Err(StoreError::Refused(format!(
                "the change of bucket {}/{} names no limit",
                c.key.entity_id, c.key.resource
            )));
        }
        if c.limits.len() > MAX_LIMITS {
            return Err(StoreError::Refused(format!(
                "{} limits on bucket {}/{}; one bucket holds at most {MAX_LIMITS}",
                c.limits.len(),
                c.key.entity_id,
                c.key.resource
            )));
        }
        for (j, l) in c.limits.iter().enumerate() {
            if c.limits[..j].iter().any(|o| o.name == l.name) {
                return Err(StoreError::Refused(format!(
                    "limit '{}' named twice",
                    l.name
                )));
            }
        }
        if changes[..i].iter().any(|o| o.key == c.key) {
            return Err(StoreError::Refused(format!(
                "bucket {}/{} named twice",
                c.key.entity_id, c.key.resource
            )));
        }
    }
    Ok(())
}

/// One limit after [`resolve`]: the parameters to compute with and the level in them.
struct Effective {
    state: Option<LimitState>,
    params: crate::bucket::BucketParams,
    version: i64,
    rebased: bool,
}

/// `stored`: the limit as the bucket holds it; `bucket_version`: the bucket's newest version.
fn effective(
    stored: Option<&LimitState>,
    bucket_version: i64,
    lc: &LimitChange,
    t: i64,
) -> Option<Effective> {
    Some(match resolve(stored, bucket_version, lc) {
        Resolve::Skip => return None,
        Resolve::New => Effective {
            state: None,
            params: lc.params,
            version: lc.version,
            rebased: false,
        },
        Resolve::Same(s) | Resolve::Adopt(s) => Effective {
            state: Some(s),
            params: s.params,
            version: s.version,
            rebased: false,
        },
        Resolve::Rebase(s) => Effective {
            state: Some(LimitState {
                params: lc.params,
                version: lc.version,
                level: s.level_for(&lc.params, t).unwrap_or(s.level),
                consumed: s.consumed,
            }),
            params: lc.params,
            version: lc.version,
            rebased: true,
        },
    })
}

/// Apply `changes` to `buckets` (one state per change, `Default` for a bucket never
/// written) at client time `now_ms`, with the exact math: the reference semantics every
/// store must match. Returns whether the request was admitted. When it is refused, the only
/// change kept is the rebase of limits whose stored parameters were older.
///
/// Every limit is judged against its bucket as it was before the call. The work is done in
/// place, without copying the buckets: a first pass decides, a second writes (everything, or
/// the rebases alone).
pub fn apply_exact(buckets: &mut [BucketState], changes: &[BucketChange], now_ms: i64) -> bool {
    if changes.iter().any(names_a_limit_twice) {
        // in place, the second change of a name would see the first: judge on copies
        return apply_on_copies(buckets, changes, now_ms);
    }
    let ok = buckets.iter().zip(changes).all(|(state, change)| {
        let t = bucket_time(Some(state), now_ms);
        let version = state.version();
        change.limits.iter().filter(|lc| lc.checked).all(|lc| {
            effective(state.limits.get(&lc.name), version, lc, t)
                .is_none_or(|eff| eff.params.allows(eff.state.map(|s| s.level), lc.amount, t))
        })
    });
    for (state, change) in buckets.iter_mut().zip(changes) {
        let t = bucket_time(Some(state), now_ms);
        let (version, time_before) = (state.version(), state.time_ms);
        let mut sets_level = false;
        let mut rebased = false;
        for lc in &change.limits {
            // names are distinct: this limit is still as it was before the call
            let Some(eff) = effective(state.limits.get(&lc.name), version, lc, t) else {
                continue;
            };
            rebased |= eff.rebased;
            let new = if ok {
                let level = eff.state.map(|s| s.level);
                if eff.rebased || eff.params.case(level, t) == crate::bucket::Case::Full {
                    sets_level = true;
                }
                LimitState {
                    params: eff.params,
                    version: eff.version,
                    level: eff.params.adjust(level, lc.amount, t),
                    consumed: eff.state.map_or(0, |s| s.consumed) + lc.counted_amount(),
                }
            } else if eff.rebased {
                eff.state.expect("a rebase has a stored state")
            } else {
                continue;
            };
            match state.limits.get_mut(&lc.name) {
                Some(s) => *s = new,
                None => {
                    state.limits.insert(lc.name.clone(), new);
                }
            }
        }
        if ok {
            if sets_level || t - time_before >= TIME_REFRESH_MS {
                state.time_ms = t;
            }
        } else if rebased {
            state.time_ms = t;
        }
    }
    ok
}

fn names_a_limit_twice(change: &BucketChange) -> bool {
    let l = &change.limits;
    (1..l.len()).any(|j| l[..j].iter().any(|o| o.name == l[j].name))
}

/// [`apply_exact`] for changes that name a limit twice (which [`check_changes`] refuses):
/// each limit judged against a copy of its bucket as it was, written in order.
fn apply_on_copies(buckets: &mut [BucketState], changes: &[BucketChange], now_ms: i64) -> bool {
    let mut admitted: Vec<BucketState> = buckets.to_vec();
    let mut rebased_only: Vec<BucketState> = buckets.to_vec();
    let mut ok = true;
    for ((state, change), rebase_target) in admitted
        .iter_mut()
        .zip(changes)
        .zip(rebased_only.iter_mut())
    {
        let t = bucket_time(Some(state), now_ms);
        let before = state.clone();
        let version = before.version();
        let mut sets_level = false;
        for lc in &change.limits {
            let Some(eff) = effective(before.limits.get(&lc.name), version, lc, t) else {
                continue;
            };
            let level = eff.state.map(|s| s.level);
            if eff.rebased {
                sets_level = true;
                let s = eff.state.expect("a rebase has a stored state");
                rebase_target.limits.insert(lc.name.clone(), s);
                rebase_target.time_ms = t;
            }
            if lc.checked && !eff.params.allows(level, lc.amount, t) {
                ok = false;
            }
            if eff.params.case(level, t) == crate::bucket::Case::Full {
                sets_level = true;
            }
            let consumed = eff.state.map_or(0, |s| s.consumed);
            state.limits.insert(
                lc.name.clone(),
                LimitState {
                    params: eff.params,
                    version: eff.version,
                    level: eff.params.adjust(level, lc.amount, t),
                    consumed: consumed + lc.counted_amount(),
                },
            );
        }
        if sets_level || t - before.time_ms >= TIME_REFRESH_MS {
            state.time_ms = t;
        }
    }
    if ok {
        buckets.clone_from_slice(&admitted);
    } else {
        buckets.clone_from_slice(&rebased_only);
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket::BucketParams;
    use crate::store::BucketKey;

    const T0: i64 = 1_767_225_600_000;

    fn change(name: &str, params: BucketParams, version: i64, amount: i128) -> BucketChange {
        BucketChange {
            key: BucketKey::new("e", "r"),
            limits: vec![LimitChange {
                name: name.into(),
                params,
                version,
                amount,
                checked: true,
                counted: true,
            }],
        }
    }

    fn tokens(b: &BucketState, name: &str, t: i64) -> i128 {
        let l = &b.limits[name];
        l.params.tokens(Some(l.level), t)
    }

    #[test]
    fn a_client_behind_cannot_refill_twice() {
        let p = BucketParams::new(100, 100, 60_000);
        let mut b = [BucketState::default()];
        // a correct client drains the bucket at T0
        assert!(apply_exact(&mut b, &[change("rpm", p, 0, 100_000)], T0));
        assert_eq!(b[0].time_ms, T0);
        // a client 60 s behind decides at the bucket's time: nothing left
        assert!(!apply_exact(
            &mut b,
            &[change("rpm", p, 0, 1_000)],
            T0 - 60_000
        ));
        assert_eq!(tokens(&b[0], "rpm", T0), 0);
    }

    #[test]
    fn newer_parameters_rebase_even_when_refused() {
        let slow = BucketParams::new(100, 100, 60_000);
        let fast = BucketParams::new(1000, 1000, 60_000);
        let mut b = [BucketState::default()];
        // 900 tokens of debt at the old rate
        let mut debt = change("rpm", slow, 1, 1_000_000);
        debt.limits[0].checked = false;
        assert!(apply_exact(&mut b, &[debt], T0));
        assert_eq!(tokens(&b[0], "rpm", T0), -900_000);
        // the new version is refused (still in debt) but rebases the bucket
        assert!(!apply_exact(&mut b, &[change("rpm", fast, 2, 1_000)], T0));
        assert_eq!(b[0].limits["rpm"].params, fast);
        assert_eq!(b[0].limits["rpm"].version, 2);
        assert_eq!(tokens(&b[0], "rpm", T0 + 60_000), 100_000);
    }

    #[test]
    fn stale_parameters_adopt_the_stored_ones() {
        let old = BucketParams::new(10, 10, 60_000);
        let new = BucketParams::new(100, 100, 60_000);
        let mut b = [BucketState::default()];
        assert!(apply_exact(&mut b, &[change("rpm", new, 5, 50_000)], T0));
        // a client with version 4 computes with version 5's parameters: 50 left, not 10
        assert!(apply_exact(&mut b, &[change("rpm", old, 4, 40_000)], T0));
        assert_eq!(b[0].limits["rpm"].params, new);
        assert_eq!(tokens(&b[0], "rpm", T0), 10_000);
        // and a limit the newer configuration does not have is left out
        assert!(apply_exact(&mut b, &[change("tpm", old, 4, 1_000)], T0));
        assert!(!b[0].limits.contains_key("tpm"));
    }

    #[test]
    fn empty_and_oversized_changes_are_refused() {
        assert!(check_changes(&[]).is_err());
        let mut c = change("rpm", BucketParams::new(1, 1, 1), 0, 0);
        c.limits.clear();
        assert!(check_changes(std::slice::from_ref(&c)).is_err());
        for i in 0..=MAX_LIMITS {
            c.limits.push(LimitChange {
                name: format!("l{i}"),
                params: BucketParams::new(1, 1, 1),
                version: 0,
                amount: 0,
                checked: false,
                counted: true,
            });
        }
        assert!(check_changes(std::slice::from_ref(&c)).is_err());
        c.limits.pop();
        assert!(check_changes(std::slice::from_ref(&c)).is_ok());
    }

    #[test]
    fn full_at_is_when_every_limit_refills() {
        let p = BucketParams::new(100, 100, 60_000);
        let mut b = [BucketState::default()];
        assert!(apply_exact(&mut b, &[change("rpm", p, 0, 50_000)], T0));
        assert_eq!(b[0].full_at_ms(), Some(T0 + 30_000));
    }
}
