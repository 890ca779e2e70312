//! Turns a [`BucketPlan`] into the expressions of one conditional `UpdateItem` (or one
//! transactional `Update`). Every user-derived name goes through `ExpressionAttributeNames`.
//!
//! Per limit `i` (DESIGN §5), always `ADD tc_i :n` and one of:
//! - set: `SET z = :s, p = :p` if `attribute_not_exists(z) OR (z >= :f AND p = :p)`
//! - add: `ADD z :d` if `z BETWEEN :q AND :g AND p = :p` (checked; `:g = full - 1`) or
//!   `z < :f AND p = :p` (unchecked)
//! - rebase: `SET z = :s, p = :p` if `z = :o AND p = :po`
//!
//! and per bucket `SET ttl = :ttl`, plus `SET tw = :t` if `attribute_not_exists(tw) OR
//! tw <= :t` when the plan sets the time, plus `SET lo = :op` if `attribute_not_exists(lo) OR
//! lo <> :op` for single-item writes (the retry guard).

use std::collections::HashMap;
use std::fmt::Write as _;

use aws_sdk_dynamodb::types::AttributeValue;

use super::bucket_item::{encode_params, LimitAttrs, LAST_OP, TIME, TTL};
use super::keys::{bucket_pk, resource_gsi};
use super::plan::{BucketPlan, Form};
use crate::store::BucketKey;

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

/// Clauses collected while building, joined at the end.
#[derive(Default)]
struct Parts {
    sets: Vec<String>,
    adds: Vec<String>,
    conds: Vec<String>,
}

/// Build the write for `plan` on bucket `key`; `op_id` adds the single-item retry guard.
pub(crate) fn build(ns: &str, key: &BucketKey, plan: &BucketPlan, op_id: Option<&str>) -> Expr {
    let mut e = Expr::default();
    let mut parts = Parts::default();
    let t = plan.t;
    for (i, l) in plan.limits.iter().enumerate() {
        let a = LimitAttrs::new(&l.name);
        let (z, tc, p) = (format!("#z{i}"), format!("#t{i}"), format!("#p{i}"));
        e.names.insert(z.clone(), a.level);
        e.names.insert(tc.clone(), a.consumed);
        e.names.insert(p.clone(), a.params);
        parts.adds.push(format!("{tc} :n{i}"));
        e.values
            .insert(format!(":n{i}"), num(if l.counted { l.amount } else { 0 }));
        let full = l.params.full_level(t);
        let encoded = AttributeValue::S(encode_params(&l.params, l.version));
        match l.form {
            Form::Set => {
                parts.sets.push(format!("{z} = :s{i}, {p} = :p{i}"));
                e.values
                    .insert(format!(":s{i}"), num(full - l.params.period * l.amount));
                e.values.insert(format!(":f{i}"), num(full));
                parts.conds.push(format!(
                    "(attribute_not_exists({z}) OR ({z} >= :f{i} AND {p} = :p{i}))"
                ));
            }
            Form::Add => {
                parts.adds.push(format!("{z} :d{i}"));
                e.values
                    .insert(format!(":d{i}"), num(-l.params.period * l.amount));
                if l.checked {
                    e.values
                        .insert(format!(":q{i}"), num(l.params.need_level(l.amount, t)));
                    e.values.insert(format!(":g{i}"), num(full - 1));
                    parts
                        .conds
                        .push(format!("({z} BETWEEN :q{i} AND :g{i} AND {p} = :p{i})"));
                } else {
                    e.values.insert(format!(":f{i}"), num(full));
                    parts.conds.push(format!("({z} < :f{i} AND {p} = :p{i})"));
                }
            }
            Form::Rebase(old) => {
                let rebased = old.params.rebase(Some(old.level), t, &l.params);
                let level = l.params.adjust(rebased, l.amount, t);
                parts.sets.push(format!("{z} = :s{i}, {p} = :p{i}"));
                e.values.insert(format!(":s{i}"), num(level));
                e.values.insert(format!(":o{i}"), num(old.level));
                e.values.insert(
                    format!(":po{i}"),
                    AttributeValue::S(encode_params(&old.params, old.version)),
                );
                parts.conds.push(format!("({z} = :o{i} AND {p} = :po{i})"));
            }
        }
        e.values.insert(format!(":p{i}"), encoded);
    }
    e.names.insert("#ttl".into(), TTL.into());
    parts.sets.push("#ttl = :ttl".into());
    e.values.insert(":ttl".into(), num(plan.ttl_s as i128));
    if plan.set_time {
        e.names.insert("#tw".into(), TIME.into());
        parts.sets.push("#tw = :tw".into());
        parts
            .conds
            .push("(attribute_not_exists(#tw) OR #tw <= :tw)".into());
        e.values.insert(":tw".into(), num(t as i128));
    }
    if let Some(op) = op_id {
        e.names.insert("#lo".into(), LAST_OP.into());
        parts.sets.push("#lo = :lo".into());
        parts
            .conds
            .push("(attribute_not_exists(#lo) OR #lo <> :lo)".into());
        e.values
            .insert(":lo".into(), AttributeValue::S(op.to_string()));
    }
    if plan.may_create {
        let (g2pk, g2sk) = resource_gsi(ns, &key.entity_id, &key.resource, key.shard);
        for (k, attr, v) in [
            ("#eid", "entity_id", key.entity_id.clone()),
            ("#res", "resource", key.resource.clone()),
            ("#g2pk", "GSI2PK", g2pk),
            ("#g2sk", "GSI2SK", g2sk),
            ("#g4pk", "GSI4PK", ns.to_string()),
            (
                "#g4sk",
                "GSI4SK",
                bucket_pk(ns, &key.entity_id, &key.resource, key.shard),
            ),
        ] {
            e.names.insert(k.to_string(), attr.to_string());
            let vk = format!(":v{}", &k[1..]);
            parts.sets.push(format!("{k} = if_not_exists({k}, {vk})"));
            e.values.insert(vk, AttributeValue::S(v));
        }
    }
    let _ = write!(e.update, "SET {}", parts.sets.join(", "));
    let _ = write!(e.update, " ADD {}", parts.adds.join(", "));
    e.condition = parts.conds.join(" AND ");
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket::BucketParams;
    use crate::dynamodb::plan::{plan, Decision, Knowledge};
    use crate::store::{BucketChange, BucketState, LimitChange, LimitState};

    const T0: i64 = 1_767_225_600_000;

    fn plan_for(state: Option<BucketState>, amounts: &[(&str, i128)]) -> BucketPlan {
        let params = BucketParams::new(100, 100, 60_000);
        let change = BucketChange {
            key: BucketKey::new("k", "api"),
            limits: amounts
                .iter()
                .map(|(n, a)| LimitChange {
                    name: n.to_string(),
                    params,
                    version: 0,
                    amount: *a,
                    checked: true,
                    counted: true,
                })
                .collect(),
        };
        match plan(&change, &Knowledge::Guess(state), T0) {
            Decision::Write(p) => p,
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn add_and_set_forms() {
        let params = BucketParams::new(100, 100, 60_000);
        let partial = BucketState {
            limits: [(
                "rpm".to_string(),
                LimitState {
                    params,
                    version: 0,
                    level: params.full_level(T0) - 1,
                    consumed: 0,
                },
            )]
            .into(),
            time_ms: T0,
        };
        let p = plan_for(Some(partial), &[("rpm", 1000), ("tpm", 0)]);
        let e = build("ns1", &BucketKey::new("k", "api"), &p, Some("op"));
        assert!(
            e.update.starts_with("SET #z1 = :s1, #p1 = :p1"),
            "{}",
            e.update
        );
        assert!(
            e.update.contains("ADD #t0 :n0, #z0 :d0, #t1 :n1"),
            "{}",
            e.update
        );
        assert!(e
            .condition
            .contains("#z0 BETWEEN :q0 AND :g0 AND #p0 = :p0"));
        assert!(e.condition.contains("attribute_not_exists(#z1)"));
        assert!(e.condition.contains("#lo <> :lo"));
        assert!(!e.update.contains("if_not_exists"), "a known bucket exists");
        assert_eq!(e.names["#z0"], "z_rpm");
        assert_eq!(e.values[":d0"], AttributeValue::N("-60000000".into()));
    }

    /// Count the operators DynamoDB counts (comparators, AND/OR/NOT, BETWEEN, functions).
    fn operators(expr: &str) -> usize {
        let words = expr
            .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',')
            .filter(|w| {
                matches!(
                    *w,
                    "AND"
                        | "OR"
                        | "NOT"
                        | "BETWEEN"
                        | "="
                        | "<>"
                        | "<"
                        | "<="
                        | ">"
                        | ">="
                        | "attribute_not_exists"
                        | "if_not_exists"
                )
            })
            .count();
        // `BETWEEN a AND b` is one operator, not two
        words - expr.matches(" BETWEEN ").count()
    }

    #[test]
    fn the_largest_bucket_fits_in_one_expression() {
        let names: Vec<String> = (0..crate::MAX_LIMITS)
            .map(|i| format!("limit-{i}"))
            .collect();
        let amounts: Vec<(&str, i128)> = names.iter().map(|n| (n.as_str(), 1000)).collect();
        let p = plan_for(None, &amounts);
        let e = build("ns1", &BucketKey::new("k", "api"), &p, Some("op"));
        assert!(operators(&e.condition) < 300, "{}", operators(&e.condition));
        assert!(operators(&e.update) < 300);
        assert!(e.condition.len() < 4096 && e.update.len() < 4096);
    }
}
