//! The bucket item: its attributes, and reading it back with the same care as user input.
//!
//! | attribute | type | what |
//! |---|---|---|
//! | `z_{L}` | N | the level of limit `L` (see [`crate::bucket`]) |
//! | `tc_{L}` | N | net millitokens consumed by `L` (usage analytics) |
//! | `p_{L}` | S | `C:A:P:V`: capacity and refill (millitokens), period (ms), parameter version |
//! | `tw` | N | bucket time (ms): the largest client time at which levels were set |
//! | `lo` | S | id of the last single-item write applied (retry guard) |
//! | `ttl` | N | epoch seconds after which DynamoDB may delete the (full again) bucket |
//!
//! The parameters of a limit are one string so that the write condition compares them with
//! one operator instead of three.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::bucket::{BucketParams, MILLI};
use crate::error::StoreError;
use crate::limit::{validate_limit_name, MAX_AMOUNT, MAX_LIMITS, MAX_PERIOD};
use crate::store::{BucketState, LimitState};

/// Attribute of the bucket time.
pub(crate) const TIME: &str = "tw";
/// Attribute of the last applied single-item write.
pub(crate) const LAST_OP: &str = "lo";
/// Attribute DynamoDB's TTL reads (epoch seconds).
pub(crate) const TTL: &str = "ttl";

/// Attribute names of one limit.
pub(crate) struct LimitAttrs {
    pub level: String,
    pub consumed: String,
    pub params: String,
}

impl LimitAttrs {
    pub(crate) fn new(name: &str) -> Self {
        LimitAttrs {
            level: format!("z_{name}"),
            consumed: format!("tc_{name}"),
            params: format!("p_{name}"),
        }
    }
}

/// The `p_{L}` value for parameters `p` at `version`.
pub(crate) fn encode_params(p: &BucketParams, version: i64) -> String {
    format!("{}:{}:{}:{version}", p.capacity, p.refill, p.period)
}

/// Largest absolute level or counter accepted from the table: DynamoDB numbers hold 38
/// digits, and validated limits keep real values many orders below this.
const MAX_MAGNITUDE: i128 = 10i128.pow(37);

fn decode_params(s: &str) -> Option<(BucketParams, i64)> {
    let mut it = s.split(':');
    let mut num = || it.next()?.parse::<i128>().ok();
    let (c, a, p, v) = (num()?, num()?, num()?, num()?);
    let max_amount = MAX_AMOUNT as i128 * MILLI;
    let ok = (1..=max_amount).contains(&c)
        && (1..=max_amount).contains(&a)
        && (1..=MAX_PERIOD.as_millis() as i128).contains(&p)
        && (0..=i64::MAX as i128).contains(&v);
    (ok && it.next().is_none()).then_some((
        BucketParams {
            capacity: c,
            refill: a,
            period: p,
        },
        v as i64,
    ))
}

/// A bucket item as read: its state and the id of the last single-item write applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BucketItem {
    pub state: BucketState,
    pub last_op: Option<String>,
}

fn describe(item: &HashMap<String, AttributeValue>) -> String {
    let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).map(String::as_str);
    format!(
        "corrupt bucket item {} {}",
        s("PK").unwrap_or("(no PK)"),
        s("SK").unwrap_or("(no SK)")
    )
}

/// Read a bucket item, validating every attribute it relies on.
pub(crate) fn parse_bucket(
    item: &HashMap<String, AttributeValue>,
) -> Result<BucketItem, StoreError> {
    let bad = |what: String| StoreError::Malformed(format!("{}: {what}", describe(item)));
    let number = |attr: &str| -> Result<Option<i128>, StoreError> {
        match item.get(attr) {
            None => Ok(None),
            Some(AttributeValue::N(n)) => match n.parse::<i128>() {
                Ok(v) if v.abs() <= MAX_MAGNITUDE => Ok(Some(v)),
                _ => Err(bad(format!("{attr} is not an integer in range: {n:.40}"))),
            },
            Some(_) => Err(bad(format!("{attr} is not a number"))),
        }
    };
    let mut state = BucketState::default();
    for key in item.keys() {
        let Some(name) = key.strip_prefix("p_") else {
            continue;
        };
        validate_limit_name(name).map_err(|e| bad(e.to_string()))?;
        let a = LimitAttrs::new(name);
        let (params, version) = match item.get(&a.params) {
            Some(AttributeValue::S(s)) => decode_params(s)
                .ok_or_else(|| bad(format!("{} is not C:A:P:V in range", a.params)))?,
            _ => return Err(bad(format!("{} is not a string", a.params))),
        };
        let level = number(&a.level)?.ok_or_else(|| bad(format!("{} is missing", a.level)))?;
        let consumed = number(&a.consumed)?.unwrap_or(0);
        state.limits.insert(
            name.to_string(),
            LimitState {
                params,
                version,
                level,
                consumed,
            },
        );
    }
    if state.limits.len() > MAX_LIMITS {
        return Err(bad(format!(
            "{} limits, more than the {MAX_LIMITS} a bucket may hold",
            state.limits.len()
        )));
    }
    // a level without parameters cannot be interpreted
    if let Some(k) = item
        .keys()
        .filter_map(|k| k.strip_prefix("z_"))
        .find(|n| !state.limits.contains_key(*n))
    {
        return Err(bad(format!("z_{k} has no parameters p_{k}")));
    }
    state.time_ms = match number(TIME)? {
        Some(t) if (0..=i64::MAX as i128).contains(&t) => t as i64,
        Some(t) => return Err(bad(format!("{TIME} is out of range: {t}"))),
        None if state.limits.is_empty() => 0,
        None => return Err(bad(format!("{TIME} is missing"))),
    };
    let last_op = match item.get(LAST_OP) {
        None => None,
        Some(AttributeValue::S(s)) => Some(s.clone()),
        Some(_) => return Err(bad(format!("{LAST_OP} is not a string"))),
    };
    Ok(BucketItem { state, last_op })
}

/// The state after a write answered with `ReturnValues=UPDATED_NEW`: the attributes the
/// write set or added (the written limits' levels and counters, the time when it was set),
/// validated like a whole item, on top of `estimate`, the writer's own view of the rest
/// (parameters it conditioned on, limits it did not name). Smaller answers than `ALL_NEW`
/// for the table to send and for the client to parse.
pub(crate) fn parse_updated(
    updated: &HashMap<String, AttributeValue>,
    estimate: &BucketState,
) -> Result<BucketState, StoreError> {
    let bad = |what: String| StoreError::Malformed(format!("bucket write answer: {what}"));
    let number = |attr: &str, v: &AttributeValue| -> Result<i128, StoreError> {
        match v {
            AttributeValue::N(n) => match n.parse::<i128>() {
                Ok(v) if v.abs() <= MAX_MAGNITUDE => Ok(v),
                _ => Err(bad(format!("{attr} is not an integer in range: {n:.40}"))),
            },
            _ => Err(bad(format!("{attr} is not a number"))),
        }
    };
    let mut state = estimate.clone();
    for (key, v) in updated {
        if let Some(name) = key.strip_prefix("z_") {
            let l = state
                .limits
                .get_mut(name)
                .ok_or_else(|| bad(format!("{key} was not written")))?;
            l.level = number(key, v)?;
        } else if let Some(name) = key.strip_prefix("tc_") {
            let l = state
                .limits
                .get_mut(name)
                .ok_or_else(|| bad(format!("{key} was not written")))?;
            l.consumed = number(key, v)?;
        } else if let Some(name) = key.strip_prefix("p_") {
            let l = state
                .limits
                .get_mut(name)
                .ok_or_else(|| bad(format!("{key} was not written")))?;
            (l.params, l.version) = match v {
                AttributeValue::S(s) => decode_params(s),
                _ => None,
            }
            .ok_or_else(|| bad(format!("{key} is not C:A:P:V in range")))?;
        } else if key == TIME {
            state.time_ms = match number(key, v)? {
                t if (0..=i64::MAX as i128).contains(&t) => t as i64,
                t => return Err(bad(format!("{TIME} is out of range: {t}"))),
            };
        }
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(v: i128) -> AttributeValue {
        AttributeValue::N(v.to_string())
    }

    fn good() -> HashMap<String, AttributeValue> {
        let p = BucketParams::new(100, 100, 60_000);
        HashMap::from([
            ("PK".into(), AttributeValue::S("ns/BUCKET#k#r#0".into())),
            ("SK".into(), AttributeValue::S("#STATE".into())),
            ("z_rpm".into(), n(-5)),
            ("tc_rpm".into(), n(7000)),
            ("p_rpm".into(), AttributeValue::S(encode_params(&p, 3))),
            ("tw".into(), n(1_700_000_000_000)),
            ("lo".into(), AttributeValue::S("op-1".into())),
        ])
    }

    #[test]
    fn reads_a_good_item() {
        let b = parse_bucket(&good()).unwrap();
        let l = b.state.limits["rpm"];
        assert_eq!(l.params, BucketParams::new(100, 100, 60_000));
        assert_eq!((l.version, l.level, l.consumed), (3, -5, 7000));
        assert_eq!(b.state.time_ms, 1_700_000_000_000);
        assert_eq!(b.last_op.as_deref(), Some("op-1"));
    }

    #[test]
    fn names_the_item_and_the_attribute() {
        for (attr, value, needle) in [
            (
                "p_rpm",
                AttributeValue::S("100000:100000:0:1".into()),
                "p_rpm",
            ),
            ("p_rpm", AttributeValue::S("1:1:1".into()), "p_rpm"),
            ("z_rpm", AttributeValue::S("x".into()), "z_rpm"),
            ("z_rpm", AttributeValue::N("1e400".into()), "z_rpm"),
            ("tw", AttributeValue::N("-1".into()), "tw"),
            ("z_tpm", n(1), "p_tpm"),
        ] {
            let mut item = good();
            item.insert(attr.into(), value);
            let e = parse_bucket(&item).unwrap_err().to_string();
            assert!(e.contains("ns/BUCKET#k#r#0") && e.contains(needle), "{e}");
        }
        let mut item = good();
        item.remove("z_rpm");
        assert!(parse_bucket(&item)
            .unwrap_err()
            .to_string()
            .contains("z_rpm is missing"));
    }

    fn value() -> impl Strategy<Value = AttributeValue> {
        prop_oneof![
            any::<i128>().prop_map(|v| AttributeValue::N(v.to_string())),
            "[-0-9e.]{0,45}".prop_map(AttributeValue::N),
            "[0-9:-]{0,40}".prop_map(AttributeValue::S),
            any::<bool>().prop_map(AttributeValue::Bool),
            Just(AttributeValue::Null(true)),
        ]
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("tw".to_string()),
            Just("lo".to_string()),
            "(z_|tc_|p_)(rpm|tpm|x|#bad|)",
            "[a-z_]{0,6}",
        ]
    }

    proptest! {
        /// Arbitrary attribute maps never panic, and whatever parses is in range.
        #[test]
        fn arbitrary_items_never_panic(item in proptest::collection::hash_map(key(), value(), 0..10)) {
            if let Ok(b) = parse_bucket(&item) {
                for l in b.state.limits.values() {
                    prop_assert!(l.params.capacity > 0 && l.params.refill > 0 && l.params.period > 0);
                    prop_assert!(l.level.abs() <= MAX_MAGNITUDE && l.version >= 0);
                }
                prop_assert!(b.state.time_ms >= 0);
            }
        }

        /// Encoding then decoding parameters gives them back.
        #[test]
        fn params_round_trip(c in 1u64..=MAX_AMOUNT, a in 1u64..=MAX_AMOUNT,
                             p in 1u64..=MAX_PERIOD.as_millis() as u64, v in 0i64..i64::MAX) {
            let bp = BucketParams::new(c, a, p);
            prop_assert_eq!(decode_params(&encode_params(&bp, v)), Some((bp, v)));
        }
    }

    #[test]
    fn an_updated_new_answer_lands_on_the_estimate() {
        let params = BucketParams::new(100, 100, 60_000);
        let limit = |level, consumed| LimitState {
            params,
            version: 2,
            level,
            consumed,
        };
        let estimate = BucketState {
            limits: [
                ("rpm".to_string(), limit(5, 1)),
                ("tpm".to_string(), limit(7, 2)),
            ]
            .into(),
            time_ms: 10,
        };
        let n = |v: i128| AttributeValue::N(v.to_string());
        let answer = HashMap::from([
            ("z_rpm".to_string(), n(4)),
            ("tc_rpm".to_string(), n(3000)),
            ("tw".to_string(), n(20)),
            ("ttl".to_string(), n(99)),
            ("lo".to_string(), AttributeValue::S("op".into())),
        ]);
        let s = parse_updated(&answer, &estimate).unwrap();
        assert_eq!(s.limits["rpm"], limit(4, 3000));
        assert_eq!(
            s.limits["tpm"],
            limit(7, 2),
            "not written: the estimate stays"
        );
        assert_eq!(s.time_ms, 20);
        // parameters written by the answer replace the estimate's
        let mut with_p = answer.clone();
        with_p.insert(
            "p_rpm".into(),
            AttributeValue::S("200000:200000:60000:3".into()),
        );
        let s = parse_updated(&with_p, &estimate).unwrap();
        assert_eq!(
            (s.limits["rpm"].params, s.limits["rpm"].version),
            (BucketParams::new(200, 200, 60_000), 3)
        );
        // validated like a stored item
        for (k, v) in [
            ("z_rpm", AttributeValue::S("x".into())),
            ("tc_rpm", AttributeValue::N("1e999".into())),
            ("z_other", n(1)),
            ("p_rpm", AttributeValue::S("1:2".into())),
            ("tw", n(-1)),
        ] {
            let mut bad = answer.clone();
            bad.insert(k.to_string(), v);
            let e = parse_updated(&bad, &estimate).unwrap_err();
            assert!(matches!(e, StoreError::Malformed(_)), "{k}: {e}");
        }
    }
}
