//! Reading a manifest: YAML (or JSON, which YAML parses too) into [`Manifest`], validated
//! entirely before anything is written. Most checks run while deserializing, so an error
//! carries the path in the file and, where the YAML parser knows it, the line and column.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::{Manifest, ManifestError, SystemConfig};
use crate::config::{OnUnavailable, DEFAULT_RESOURCE};
use crate::limit::{
    validate_entity_id, validate_limit_name, validate_resource, Limit, MAX_AMOUNT, MAX_LIMITS,
    MAX_PERIOD,
};
use crate::namespace::validate_namespace_name;

/// The default refill period when a limit gives none: one minute.
pub(super) const DEFAULT_PERIOD: Duration = Duration::from_secs(60);

/// What keys of one map are, and how they are checked.
trait KeyKind {
    fn check(key: &str) -> Result<(), String>;
}

/// The reason of a validation error, without the library's `invalid {field}:` prefix (the
/// path in the file says where).
fn why(e: crate::Error) -> String {
    match e {
        crate::Error::Validation { reason, .. } => reason,
        other => other.to_string(),
    }
}

fn reason(r: crate::Result<()>) -> Result<(), String> {
    r.map_err(why)
}

struct LimitName;
impl KeyKind for LimitName {
    fn check(key: &str) -> Result<(), String> {
        reason(validate_limit_name(key))
    }
}
struct ResourceName;
impl KeyKind for ResourceName {
    fn check(key: &str) -> Result<(), String> {
        reason(validate_resource(key))
    }
}
/// A resource under an entity: a resource name or `_default_` (the entity's default).
struct EntityResource;
impl KeyKind for EntityResource {
    fn check(key: &str) -> Result<(), String> {
        if key == DEFAULT_RESOURCE {
            return Ok(());
        }
        reason(validate_resource(key))
    }
}
struct EntityId;
impl KeyKind for EntityId {
    fn check(key: &str) -> Result<(), String> {
        reason(validate_entity_id(key))
    }
}

/// A map whose keys are validated names, each given once (a YAML map may repeat a key; a
/// manifest may not).
struct Unique<K, T>(BTreeMap<String, T>, PhantomData<K>);

impl<K, T> Default for Unique<K, T> {
    fn default() -> Self {
        Unique(BTreeMap::new(), PhantomData)
    }
}

impl<'de, K: KeyKind, T: Deserialize<'de>> Deserialize<'de> for Unique<K, T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<K, T>(PhantomData<(K, T)>);
        impl<'de, K: KeyKind, T: Deserialize<'de>> Visitor<'de> for V<K, T> {
            type Value = Unique<K, T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Unique::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    K::check(&key).map_err(de::Error::custom)?;
                    if out.contains_key(&key) {
                        return Err(de::Error::custom(format!(
                            "'{}' is given twice",
                            key.escape_debug()
                        )));
                    }
                    let value = map.next_value::<T>()?;
                    out.insert(key, value);
                }
                Ok(Unique(out, PhantomData))
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

/// An amount: an integer in 1..=MAX_AMOUNT (a numeric string too: CloudFormation passes
/// every property as a string).
#[derive(Debug, Clone, Copy)]
struct Amount(u64);

fn amount<E: de::Error>(v: u64) -> Result<Amount, E> {
    if v == 0 {
        return Err(E::custom("must be > 0"));
    }
    if v > MAX_AMOUNT {
        return Err(E::custom(format!("must be at most {MAX_AMOUNT}, got {v}")));
    }
    Ok(Amount(v))
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Amount;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a positive integer")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Amount, E> {
                amount(v)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Amount, E> {
                if v <= 0 {
                    return Err(E::custom(format!("must be > 0, got {v}")));
                }
                amount(v as u64)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Amount, E> {
                Err(E::custom(format!("must be a whole number, got {v}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Amount, E> {
                match v.trim().parse::<u64>() {
                    Ok(n) => amount(n),
                    Err(_) => Err(E::custom(format!(
                        "must be a positive integer, got '{}'",
                        v.escape_debug()
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A refill period: whole seconds (`6`), or a duration in the limit syntax's units
/// (`"1500ms"`, `"5min"`, `"hour"`).
#[derive(Debug, Clone, Copy)]
struct Period(u64);

fn period_ms<E: de::Error>(ms: u64) -> Result<Period, E> {
    let max = MAX_PERIOD.as_millis() as u64;
    if ms == 0 || ms > max {
        return Err(E::custom(format!(
            "must be between 1 ms and 366 days, got {ms} ms"
        )));
    }
    Ok(Period(ms))
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Period;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("whole seconds or a duration such as \"1500ms\" or \"5min\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Period, E> {
                period_ms(v.saturating_mul(1_000))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Period, E> {
                if v <= 0 {
                    return Err(E::custom(format!("must be > 0, got {v}")));
                }
                self.visit_u64(v as u64)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Period, E> {
                Err(E::custom(format!(
                    "must be whole seconds or a string such as \"1500ms\", got {v}"
                )))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Period, E> {
                let v = v.trim();
                if let Ok(secs) = v.parse::<u64>() {
                    return self.visit_u64(secs);
                }
                // the limit syntax's period grammar, borrowed through a one-token limit
                match format!("x:1/{v}").parse::<Limit>() {
                    Ok(l) => period_ms(l.refill_period_ms()),
                    Err(_) => Err(E::custom(format!(
                        "'{}' is not a period: whole seconds or [N]ms|sec|min|hour|day",
                        v.escape_debug()
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A limit in long form.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitFields {
    capacity: Option<Amount>,
    /// Accepted as another name of `capacity`.
    burst: Option<Amount>,
    refill_amount: Option<Amount>,
    refill_period: Option<Period>,
}

/// A limit: the long form, or the CLI's one-line syntax without the name (`"100/min:150"`).
#[derive(Debug)]
enum RawLimit {
    Spec(String),
    Fields(LimitFields),
}

impl<'de> Deserialize<'de> for RawLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawLimit;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a map {capacity, refill_amount, refill_period} or a spec like \"100/min:150\"",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawLimit, E> {
                Ok(RawLimit::Spec(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawLimit, E> {
                Ok(RawLimit::Spec(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawLimit, A::Error> {
                let fields = LimitFields::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawLimit::Fields(fields))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSystem {
    on_unavailable: Option<OnUnavailable>,
    #[serde(default)]
    limits: Unique<LimitName, RawLimit>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    #[serde(default)]
    limits: Unique<LimitName, RawLimit>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntity {
    #[serde(default)]
    resources: Unique<EntityResource, RawLimits>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    namespace: Option<String>,
    system: Option<RawSystem>,
    #[serde(default)]
    resources: Unique<ResourceName, RawLimits>,
    #[serde(default)]
    entities: Unique<EntityId, RawEntity>,
}

/// Parse and validate a manifest.
pub(super) fn parse(text: &str) -> Result<Manifest, ManifestError> {
    let raw: RawManifest = if text.trim().is_empty() {
        RawManifest {
            namespace: None,
            system: None,
            resources: Unique::default(),
            entities: Unique::default(),
        }
    } else {
        let de = serde_norway::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let location = inner.location().map(|l| (l.line(), l.column()));
            // `?`: a segment the parser could not name (a syntax error inside it)
            let path = path.trim_end_matches(".?").trim_end_matches('?');
            let path = if path == "." {
                String::new()
            } else {
                path.to_string()
            };
            let message = clean(&inner.to_string());
            // serde_norway names the path itself when it knows it
            let message = match message.split_once(": ") {
                Some((head, rest)) if !head.contains(' ') && path.starts_with(head) => {
                    rest.to_string()
                }
                _ => message,
            };
            ManifestError {
                path,
                message,
                location,
            }
        })?
    };
    convert(raw)
}

/// serde_norway's message without the ` at line L column C` it appends (the location is
/// kept apart).
fn clean(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

fn error(path: impl Into<String>, message: impl Into<String>) -> ManifestError {
    ManifestError {
        path: path.into(),
        message: message.into(),
        location: None,
    }
}

fn limit(path: &str, name: &str, raw: RawLimit) -> Result<Limit, ManifestError> {
    let limit = match raw {
        RawLimit::Spec(spec) => format!("{name}:{spec}")
            .parse::<Limit>()
            .map_err(|e| error(path, why(e)))?,
        RawLimit::Fields(f) => {
            let capacity = match (f.capacity, f.burst) {
                (Some(c), None) | (None, Some(c)) => c.0,
                (Some(_), Some(_)) => {
                    return Err(error(
                        path,
                        "give capacity or burst (another name for it), not both",
                    ))
                }
                (None, None) => return Err(error(format!("{path}.capacity"), "is required")),
            };
            let refill = f.refill_amount.map_or(capacity, |a| a.0);
            let period = f
                .refill_period
                .map_or(DEFAULT_PERIOD, |p| Duration::from_millis(p.0));
            Limit::custom(name, capacity, refill, period)
        }
    };
    limit.validate().map_err(|e| error(path, why(e)))?;
    Ok(limit)
}

fn limits(
    path: &str,
    raw: Unique<LimitName, RawLimit>,
    required: bool,
) -> Result<Vec<Limit>, ManifestError> {
    if raw.0.len() > MAX_LIMITS {
        return Err(error(
            path,
            format!("at most {MAX_LIMITS} limits, got {}", raw.0.len()),
        ));
    }
    if required && raw.0.is_empty() {
        return Err(error(path, "give at least one limit"));
    }
    raw.0
        .into_iter()
        .map(|(name, l)| limit(&format!("{path}.{name}"), &name, l))
        .collect()
}

fn convert(raw: RawManifest) -> Result<Manifest, ManifestError> {
    if let Some(ns) = &raw.namespace {
        validate_namespace_name(ns).map_err(|e| error("namespace", why(e)))?;
    }
    let system = match raw.system {
        None => None,
        Some(s) => {
            let limits = limits("system.limits", s.limits, false)?;
            if limits.is_empty() && s.on_unavailable.is_none() {
                return Err(error(
                    "system",
                    "give limits or on_unavailable (or leave system out)",
                ));
            }
            Some(SystemConfig {
                on_unavailable: s.on_unavailable,
                limits,
            })
        }
    };
    let mut resources = BTreeMap::new();
    for (name, r) in raw.resources.0 {
        let path = format!("resources.{name}.limits");
        resources.insert(name, limits(&path, r.limits, true)?);
    }
    let mut entities = BTreeMap::new();
    for (id, e) in raw.entities.0 {
        if e.resources.0.is_empty() {
            return Err(error(
                format!("entities.{id}.resources"),
                "give at least one resource (or leave the entity out)",
            ));
        }
        let mut per = BTreeMap::new();
        for (name, r) in e.resources.0 {
            let path = format!("entities.{id}.resources.{name}.limits");
            per.insert(name, limits(&path, r.limits, true)?);
        }
        entities.insert(id, per);
    }
    Ok(Manifest {
        namespace: raw.namespace,
        system,
        resources,
        entities,
    })
}
