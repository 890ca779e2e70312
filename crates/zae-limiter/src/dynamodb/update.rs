//! Builds the single conditional write for one bucket (DESIGN §5): per limit either a `SET`
//! of the level guarded by "full (or missing)", an `ADD` guarded by "not full and enough",
//! or a parameter-change rewrite guarded by the exact old state.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::keys::{bucket_pk, resource_gsi, LimitAttrs};
use crate::bucket::{BucketParams, Case};
use crate::store::{BucketChange, BucketState, LimitChange, LimitState};

/// How one limit is written in an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Bucket full or limit missing: `SET z = full(t) - P*n`.
    Set,
    /// Bucket below capacity: `ADD z -P*n`.
    Add,
    /// Stored parameters differ: rewrite `z` for the new ones, conditioned on the old state.
    Rebase(LimitState),
}

/// What the store knows about a bucket before writing.
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
    pub(crate) fn is_exact(&self) -> bool {
        matches!(self, Knowledge::Exact(_))
    }
}

/// The plan for each limit of `change`; `None` when exact knowledge shows a checked amount is
/// not available (the request is refused without writing).
pub(crate) fn plan(change: &BucketChange, know: &Knowledge, now: i64) -> Option<Vec<Plan>> {
    let state = know.state();
    change
        .limits
        .iter()
        .map(|lc| {
            let stored = state.and_then(|s| s.limits.get(&lc.name));
            let plan = match stored {
                Some(s) if s.params != lc.params && know.is_exact() => Plan::Rebase(*s),
                Some(s) if s.params == lc.params => match lc.params.case(Some(s.level), now) {
                    Case::Full => Plan::Set,
                    Case::Partial => Plan::Add,
                },
                _ => Plan::Set,
            };
            if know.is_exact() && lc.checked {
                let level = stored.and_then(|s| s.level_for(&lc.params, now));
                if !lc.params.allows(level, lc.amount, now) {
                    return None;
                }
            }
            Some(plan)
        })
        .collect()
}

/// The pieces of an `UpdateItem` / transactional `Update`.
#[derive(Debug, Default)]
pub(crate) struct Expr {
    pub update: String,
    pub condition: String,
    pub names: HashMap<String, String>,
    pub values: HashMap<String, AttributeValue>,
}

fn num(v: i128) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// Build the write for `change` following `plans`.
pub(crate) fn build(ns: &str, change: &BucketChange, plans: &[Plan], now: i64) -> Expr {
    let mut e = Expr::default();
    let mut sets = Vec::new();
    let mut adds = Vec::new();
    let mut conds = Vec::new();
    let mut creates = false;
    for (i, (lc, plan)) in change.limits.iter().zip(plans).enumerate() {
        let a = LimitAttrs::new(&lc.name);
        let (z, t, c, r, p) = (
            format!("#z{i}"),
            format!("#t{i}"),
            format!("#c{i}"),
            format!("#r{i}"),
            format!("#p{i}"),
        );
        e.names.insert(z.clone(), a.level);
        e.names.insert(t.clone(), a.consumed);
        let LimitChange { params, amount, .. } = lc;
        let full = params.full_level(now);
        adds.push(format!("{t} :n{i}"));
        e.values.insert(format!(":n{i}"), num(*amount));
        let params_eq = |e: &mut Expr, prefix: &str, bp: &BucketParams| {
            e.names
                .insert(c.clone(), LimitAttrs::new(&lc.name).capacity);
            e.names.insert(r.clone(), LimitAttrs::new(&lc.name).refill);
            e.names.insert(p.clone(), LimitAttrs::new(&lc.name).period);
            e.values.insert(format!(":{prefix}c{i}"), num(bp.capacity));
            e.values.insert(format!(":{prefix}r{i}"), num(bp.refill));
            e.values.insert(format!(":{prefix}p{i}"), num(bp.period));
            format!("{c} = :{prefix}c{i} AND {r} = :{prefix}r{i} AND {p} = :{prefix}p{i}")
        };
        match plan {
            Plan::Set => {
                creates = true;
                let eq = params_eq(&mut e, "", params);
                sets.push(format!(
                    "{z} = :s{i}, {c} = :c{i}, {r} = :r{i}, {p} = :p{i}"
                ));
                e.values
                    .insert(format!(":s{i}"), num(full - params.period * amount));
                e.values.insert(format!(":f{i}"), num(full));
                conds.push(format!(
                    "(attribute_not_exists({z}) OR ({z} >= :f{i} AND {eq}))"
                ));
            }
            Plan::Add => {
                let eq = params_eq(&mut e, "", params);
                adds.push(format!("{z} :d{i}"));
                e.values
                    .insert(format!(":d{i}"), num(-params.period * amount));
                e.values.insert(format!(":f{i}"), num(full));
                let mut cond = format!("{z} < :f{i} AND {eq}");
                if lc.checked {
                    cond.push_str(&format!(" AND {z} >= :q{i}"));
                    e.values
                        .insert(format!(":q{i}"), num(params.need_level(*amount, now)));
                }
                conds.push(cond);
            }
            Plan::Rebase(old) => {
                creates = true;
                let eq_old = params_eq(&mut e, "o", &old.params);
                // the new parameter values
                e.values.insert(format!(":c{i}"), num(params.capacity));
                e.values.insert(format!(":r{i}"), num(params.refill));
                e.values.insert(format!(":p{i}"), num(params.period));
                let rebased = old.params.rebase(Some(old.level), now, params);
                let level = params.adjust(rebased, *amount, now);
                sets.push(format!(
                    "{z} = :s{i}, {c} = :c{i}, {r} = :r{i}, {p} = :p{i}"
                ));
                e.values.insert(format!(":s{i}"), num(level));
                e.values.insert(format!(":o{i}"), num(old.level));
                conds.push(format!("{z} = :o{i} AND {eq_old}"));
            }
        }
    }
    if creates {
        let (g2pk, g2sk) = resource_gsi(ns, &change.key.entity_id, &change.key.resource);
        for (k, attr, v) in [
            ("#eid", "entity_id", change.key.entity_id.clone()),
            ("#res", "resource", change.key.resource.clone()),
            ("#g2pk", "GSI2PK", g2pk),
            ("#g2sk", "GSI2SK", g2sk),
            ("#g4pk", "GSI4PK", ns.to_string()),
            (
                "#g4sk",
                "GSI4SK",
                bucket_pk(ns, &change.key.entity_id, &change.key.resource),
            ),
        ] {
            e.names.insert(k.to_string(), attr.to_string());
            let vk = format!(":v{}", &k[1..]);
            sets.push(format!("{k} = if_not_exists({k}, {vk})"));
            e.values.insert(vk, AttributeValue::S(v));
        }
    }
    e.update = String::new();
    if !sets.is_empty() {
        e.update.push_str(&format!("SET {}", sets.join(", ")));
    }
    if !adds.is_empty() {
        if !e.update.is_empty() {
            e.update.push(' ');
        }
        e.update.push_str(&format!("ADD {}", adds.join(", ")));
    }
    e.condition = conds.join(" AND ");
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::BucketKey;

    #[test]
    fn add_and_set_forms() {
        let params = BucketParams::new(100, 100, 60_000);
        let change = BucketChange {
            key: BucketKey::new("k", "api"),
            limits: vec![
                LimitChange {
                    name: "rpm".into(),
                    params,
                    version: 0,
                    amount: 1000,
                    checked: true,
                },
                LimitChange {
                    name: "tpm".into(),
                    params,
                    version: 0,
                    amount: 0,
                    checked: true,
                },
            ],
        };
        let e = build("ns1", &change, &[Plan::Add, Plan::Set], 1_000);
        assert!(e.update.starts_with("SET #z1 = :s1"), "{}", e.update);
        assert!(
            e.update.contains("ADD #t0 :n0, #z0 :d0, #t1 :n1"),
            "{}",
            e.update
        );
        assert!(e.condition.contains("#z0 >= :q0"));
        assert!(e.condition.contains("attribute_not_exists(#z1)"));
        assert_eq!(e.names["#z0"], "z_rpm");
        assert_eq!(e.values[":d0"], AttributeValue::N("-60000000".into()));
    }
}
