//! The write plan: from what the client knows about a bucket, which conditional write to send
//! for each limit (DESIGN §5), and what to do with DynamoDB's answer. Pure functions over
//! plain data, tested without DynamoDB; `write.rs` does the I/O.

use crate::bucket::{BucketParams, Case};
use crate::store::{
    apply_exact, bucket_time, resolve, BucketChange, BucketState, LimitChange, LimitState, Resolve,
    TIME_REFRESH_MS,
};

/// A bucket refilled to full is kept this long (ms) before DynamoDB's TTL may delete it.
/// The margin covers what this writer cannot see (debt taken by other clients since).
pub(crate) const TTL_MARGIN_MS: i64 = 86_400_000;

/// The TTL of an item that must not expire (9999-12-31T23:59:59Z): shard 0 of a split
/// bucket, which holds the shard count.
pub(crate) const NEVER_S: i64 = 253_402_300_799;

/// What the client knows about a bucket before writing.
#[derive(Debug, Clone)]
pub(crate) enum Knowledge {
    /// A possibly stale copy from the client cache (or nothing: guess "full").
    Guess(Option<BucketState>),
    /// The item exactly as DynamoDB returned it (ALL_OLD or a consistent read).
    Exact(Option<BucketState>),
}

impl Knowledge {
    pub(crate) fn state(&self) -> Option<&BucketState> {
        match self {
            Knowledge::Guess(s) | Knowledge::Exact(s) => s.as_ref(),
        }
    }
    fn is_exact(&self) -> bool {
        matches!(self, Knowledge::Exact(_))
    }
}

/// How one limit is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    /// Bucket full or limit missing: `SET z = full(t) - P*n`, guarded by "missing or full".
    Set,
    /// Bucket below capacity: `ADD z -P*n`, guarded by "not full (and enough, if checked)".
    Add,
    /// Stored parameters are older: rewrite `z` for the new ones, guarded by the exact old
    /// level and parameters.
    Rebase(LimitState),
}

/// One limit's write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LimitWrite {
    pub name: String,
    pub params: BucketParams,
    pub version: i64,
    pub amount: i128,
    pub checked: bool,
    /// Whether `amount` goes into the consumed counter.
    pub counted: bool,
    pub form: Form,
}

/// The write to one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BucketPlan {
    /// The time the write computes at (never before the known bucket time).
    pub t: i64,
    pub limits: Vec<LimitWrite>,
    /// Set the bucket time to `t`, guarded by "stored time <= t".
    pub set_time: bool,
    /// The item may not exist yet: write its fixed attributes (`if_not_exists`).
    pub may_create: bool,
    /// DynamoDB TTL (epoch seconds).
    pub ttl_s: i64,
    /// The client's estimate of the bucket after the write.
    pub estimate: BucketState,
}

/// What to do with one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Send this write.
    Write(BucketPlan),
    /// The request is refused by what is known exactly; `rebase` writes newer parameters
    /// first (the first write that sees them moves the bucket, refused or not).
    Refuse { rebase: Option<BucketPlan> },
}

/// Plan `change` at client time `now` from `know`.
pub(crate) fn plan(change: &BucketChange, know: &Knowledge, now: i64) -> Decision {
    let state = know.state();
    let t = bucket_time(state, now);
    let version = state.map_or(0, BucketState::version);
    let mut limits = Vec::with_capacity(change.limits.len());
    let mut refused = false;
    for lc in &change.limits {
        let stored = state.and_then(|s| s.limits.get(&lc.name));
        let (params, version, level, form) = match resolve(stored, version, lc) {
            Resolve::Skip => continue,
            Resolve::New => (lc.params, lc.version, None, Form::Set),
            Resolve::Same(s) | Resolve::Adopt(s) => {
                let form = match s.params.case(Some(s.level), t) {
                    Case::Full => Form::Set,
                    Case::Partial => Form::Add,
                };
                (s.params, s.version, Some(s.level), form)
            }
            Resolve::Rebase(s) => (
                lc.params,
                lc.version,
                s.level_for(&lc.params, t),
                Form::Rebase(s),
            ),
        };
        // a rebase is conditioned on the exact old level, so its check is exact even on a
        // guess: if the guess was wrong the write fails and comes back with the real item
        let exact = know.is_exact() || matches!(form, Form::Rebase(_));
        if exact && lc.checked && !params.allows(level, lc.amount, t) {
            refused = true;
        }
        limits.push(LimitWrite {
            name: lc.name.clone(),
            params,
            version,
            amount: lc.amount,
            checked: lc.checked,
            counted: lc.counted,
            form,
        });
    }
    if refused {
        let rebases: Vec<LimitWrite> = limits
            .into_iter()
            .filter(|l| matches!(l.form, Form::Rebase(_)))
            .map(|l| LimitWrite {
                amount: 0,
                checked: false,
                ..l
            })
            .collect();
        let rebase = (!rebases.is_empty()).then(|| finish(change, state, t, rebases));
        return Decision::Refuse { rebase };
    }
    Decision::Write(finish(change, state, t, limits))
}

fn finish(
    change: &BucketChange,
    state: Option<&BucketState>,
    t: i64,
    limits: Vec<LimitWrite>,
) -> BucketPlan {
    let known_time = state.map_or(0, |s| s.time_ms);
    let set_time = limits.iter().any(|l| l.form != Form::Add) || t - known_time >= TIME_REFRESH_MS;
    let estimate = estimate(state, change, &limits, t);
    let full_at = estimate.full_at_ms().unwrap_or(t).max(t);
    BucketPlan {
        t,
        set_time,
        may_create: state.is_none(),
        ttl_s: if crate::shard::holds_level(&change.key, &estimate) {
            NEVER_S
        } else {
            full_at.saturating_add(TTL_MARGIN_MS) / 1000
        },
        estimate,
        limits,
    }
}

/// The bucket after `limits` are applied to `state` without checks.
fn estimate(
    state: Option<&BucketState>,
    change: &BucketChange,
    limits: &[LimitWrite],
    t: i64,
) -> BucketState {
    let mut s = [state.cloned().unwrap_or_default()];
    let unchecked = BucketChange {
        key: change.key.clone(),
        limits: limits
            .iter()
            .map(|l| LimitChange {
                name: l.name.clone(),
                params: l.params,
                version: l.version,
                amount: l.amount,
                checked: false,
                counted: l.counted,
            })
            .collect(),
    };
    apply_exact(&mut s, std::slice::from_ref(&unchecked), t);
    let [s] = s;
    s
}

/// Whether the last states seen for these buckets already prove the request refused, so it
/// can be refused without a write (DESIGN §5; [`StoreConfig::local_refusals`](super::StoreConfig::local_refusals)).
///
/// Since a state was seen, other clients can only have taken tokens (the bucket is no
/// fuller than refill alone makes it) or given some back (a rollback, a negative
/// adjustment): only a refund could let the request pass, and it is noticed once refill
/// alone would have allowed the request. A bucket whose stored parameters would be
/// rebased by this request is never refused locally: its first write must move it. Returns
/// the states to report (cached or `None`), or `None` when a write is needed.
pub(crate) fn refused_by_cache(
    changes: &[BucketChange],
    know: &[Knowledge],
    now: i64,
) -> Option<Vec<Option<BucketState>>> {
    let mut refused = false;
    for (c, k) in changes.iter().zip(know) {
        let Knowledge::Guess(Some(s)) = k else {
            continue;
        };
        match plan(c, &Knowledge::Exact(Some(s.clone())), now) {
            Decision::Refuse { rebase: None } => refused = true,
            Decision::Refuse { rebase: Some(_) } => return None,
            Decision::Write(p) if p.limits.iter().any(|l| matches!(l.form, Form::Rebase(_))) => {
                return None
            }
            Decision::Write(_) => {}
        }
    }
    refused.then(|| know.iter().map(|k| k.state().cloned()).collect())
}

/// After a single-item write's condition failed: did an earlier attempt of the same write
/// land (its response lost, the SDK retried)? Then the item carries our op id, and ALL_OLD
/// is the state right after our write.
pub(crate) fn landed_before(last_op: Option<&str>, op_id: &str) -> bool {
    last_op == Some(op_id)
}

/// The jittered pause before attempt `n` (0-based) under contention: full jitter on an
/// exponential base (5 ms doubling, capped at 200 ms), from `unit` in [0, 1).
pub(crate) fn backoff_ms(n: u32, unit: f64) -> u64 {
    let cap = (5u64 << n.min(6)).min(200);
    1 + (cap as f64 * unit.clamp(0.0, 1.0)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::BucketKey;

    const T0: i64 = 1_767_225_600_000;

    fn rpm() -> BucketParams {
        BucketParams::new(100, 100, 60_000)
    }

    fn change(params: BucketParams, version: i64, amount: i128) -> BucketChange {
        BucketChange {
            key: BucketKey::new("k", "r"),
            limits: vec![LimitChange {
                name: "rpm".into(),
                params,
                version,
                amount,
                checked: true,
                counted: true,
            }],
        }
    }

    fn state(params: BucketParams, version: i64, level: i128, time_ms: i64) -> BucketState {
        BucketState {
            limits: [(
                "rpm".to_string(),
                LimitState {
                    params,
                    version,
                    level,
                    consumed: 0,
                },
            )]
            .into(),
            time_ms,
        }
    }

    fn write(d: Decision) -> BucketPlan {
        match d {
            Decision::Write(p) => p,
            other => panic!("expected a write, got {other:?}"),
        }
    }

    /// An rpm bucket (100 per minute: a token every 600 ms) emptied at `T0`.
    fn empty_at_t0(version: i64) -> BucketState {
        state(rpm(), version, rpm().need_level(0, T0), T0)
    }

    #[test]
    fn a_cached_empty_bucket_refuses_until_refill_allows() {
        let s = empty_at_t0(0);
        let know = [Knowledge::Guess(Some(s.clone()))];
        let one = [change(rpm(), 0, 1000)];
        assert_eq!(
            refused_by_cache(&one, &know, T0 + 599),
            Some(vec![Some(s.clone())])
        );
        assert_eq!(refused_by_cache(&one, &know, T0 + 600), None);
        // two tokens need 1200 ms
        let two = [change(rpm(), 0, 2000)];
        assert!(refused_by_cache(&two, &know, T0 + 1199).is_some());
        assert_eq!(refused_by_cache(&two, &know, T0 + 1200), None);
        // an unchecked amount (debt) always goes to the table
        let mut debt = change(rpm(), 0, 1000);
        debt.limits[0].checked = false;
        assert_eq!(refused_by_cache(&[debt], &know, T0 + 1), None);
    }

    #[test]
    fn nothing_cached_or_nothing_refused_means_a_write() {
        let one = [change(rpm(), 0, 1000)];
        assert_eq!(refused_by_cache(&one, &[Knowledge::Guess(None)], T0), None);
        let half = state(rpm(), 0, rpm().full_level(T0) - 50_000 * 60_000, T0);
        assert_eq!(
            refused_by_cache(&one, &[Knowledge::Guess(Some(half))], T0),
            None
        );
    }

    #[test]
    fn newer_parameters_are_never_refused_locally_older_ones_are() {
        let s = empty_at_t0(3);
        let know = [Knowledge::Guess(Some(s.clone()))];
        // the request carries version 4: its first write must rebase the bucket
        let bigger = BucketParams::new(200, 200, 60_000);
        assert_eq!(
            refused_by_cache(&[change(bigger, 4, 1000)], &know, T0 + 1),
            None
        );
        // a client with version 2 adopts the stored version 3, which refuses
        assert!(refused_by_cache(&[change(bigger, 2, 1000)], &know, T0 + 1).is_some());
    }

    #[test]
    fn the_bucket_time_wins_over_a_slow_clock() {
        // emptied at T0 but written by a client 10 s ahead: 16 tokens have refilled by then
        let mut s = empty_at_t0(0);
        s.time_ms = T0 + 10_000;
        let know = [Knowledge::Guess(Some(s))];
        assert_eq!(refused_by_cache(&[change(rpm(), 0, 1000)], &know, T0), None);
        assert!(refused_by_cache(&[change(rpm(), 0, 17_000)], &know, T0).is_some());
    }

    #[test]
    fn one_refused_bucket_refuses_the_cascade() {
        let s = empty_at_t0(0);
        let mut parent = change(rpm(), 0, 1000);
        parent.key = BucketKey::new("p", "r");
        let know = [Knowledge::Guess(None), Knowledge::Guess(Some(s.clone()))];
        assert_eq!(
            refused_by_cache(&[change(rpm(), 0, 1000), parent], &know, T0 + 1),
            Some(vec![None, Some(s)])
        );
    }

    #[test]
    fn unknown_bucket_is_guessed_full() {
        let p = write(plan(&change(rpm(), 0, 1000), &Knowledge::Guess(None), T0));
        assert_eq!(p.limits[0].form, Form::Set);
        assert!(p.set_time && p.may_create);
        assert_eq!(p.t, T0);
    }

    #[test]
    fn partial_bucket_adds_without_touching_the_time() {
        let s = state(rpm(), 0, rpm().full_level(T0) - 1, T0 - 10);
        let p = write(plan(
            &change(rpm(), 0, 1000),
            &Knowledge::Guess(Some(s)),
            T0,
        ));
        assert_eq!(p.limits[0].form, Form::Add);
        assert!(!p.set_time && !p.may_create);
    }

    #[test]
    fn a_client_behind_computes_at_the_bucket_time() {
        let s = state(rpm(), 0, rpm().full_level(T0 + 30_000) - 1, T0 + 30_000);
        let p = write(plan(
            &change(rpm(), 0, 1000),
            &Knowledge::Exact(Some(s)),
            T0,
        ));
        assert_eq!(p.t, T0 + 30_000);
    }

    #[test]
    fn exact_refusal_still_rebases_newer_parameters() {
        let old = state(rpm(), 1, rpm().full_level(T0) - 1_000 * 60_000 * 100, T0);
        let fast = BucketParams::new(1000, 1000, 60_000);
        match plan(&change(fast, 2, 1000), &Knowledge::Exact(Some(old)), T0) {
            Decision::Refuse { rebase: Some(r) } => {
                assert_eq!(r.limits[0].amount, 0);
                assert!(matches!(r.limits[0].form, Form::Rebase(_)));
                assert_eq!(r.estimate.limits["rpm"].params, fast);
            }
            other => panic!("{other:?}"),
        }
        // a guess never refuses: DynamoDB's condition decides
        let s = state(rpm(), 0, rpm().full_level(T0) - 100_000 * 60_000, T0);
        assert!(matches!(
            plan(&change(rpm(), 0, 1000), &Knowledge::Guess(Some(s)), T0),
            Decision::Write(_)
        ));
    }

    #[test]
    fn stale_client_adopts_the_stored_parameters() {
        let newer = BucketParams::new(500, 500, 60_000);
        let s = state(newer, 7, newer.full_level(T0) - 1, T0);
        let p = write(plan(
            &change(rpm(), 6, 1000),
            &Knowledge::Guess(Some(s)),
            T0,
        ));
        assert_eq!((p.limits[0].params, p.limits[0].version), (newer, 7));
        assert_eq!(p.limits[0].form, Form::Add);
    }

    #[test]
    fn ttl_is_after_the_bucket_is_full_again() {
        let p = write(plan(&change(rpm(), 0, 50_000), &Knowledge::Guess(None), T0));
        assert_eq!(p.ttl_s, (T0 + 30_000 + TTL_MARGIN_MS) / 1000);
    }

    #[test]
    fn shard_0_of_a_split_bucket_never_expires() {
        let level1 = crate::shard::Shard { index: 0, level: 1 };
        let mut c = change(level1.params(&rpm()), level1.version(0), 50_000);
        // shard 0 holds the level: no expiring TTL
        assert_eq!(write(plan(&c, &Knowledge::Guess(None), T0)).ttl_s, NEVER_S);
        // any other shard expires when full again, as an unsplit bucket does
        c.key = c.key.with_shard(1);
        let p = write(plan(&c, &Knowledge::Guess(None), T0));
        assert!(p.ttl_s < NEVER_S && p.ttl_s > T0 / 1000, "{}", p.ttl_s);
    }

    #[test]
    fn backoff_is_bounded_and_jittered() {
        assert_eq!(backoff_ms(0, 0.0), 1);
        assert!(backoff_ms(3, 0.99) <= 41);
        assert!(backoff_ms(30, 0.999) <= 201);
        assert!(landed_before(Some("a"), "a") && !landed_before(None, "a"));
    }
}
