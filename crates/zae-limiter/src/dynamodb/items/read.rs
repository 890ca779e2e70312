//! Parsers of the management items. Every attribute is validated like user input: a
//! missing attribute, a wrong type, a number out of range or a key that does not fit the
//! item is an error naming the item's `PK`/`SK` and the attribute (`StoreError::Malformed`),
//! never a panic and never a silent default. Attributes the parser does not know are
//! ignored (room for later versions).

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::{entity_config_gsi, forward_sk, registry_pk, reverse_sk, Item};
use crate::config::{
    AuditAction, AuditEvent, ConfigScope, OnUnavailable, ProvisionerState, StoredConfig,
    DEFAULT_RESOURCE,
};
use crate::entity::Entity;
use crate::error::StoreError;
use crate::keys::{self, ENTITY_SK};
use crate::limit::{validate_entity_id, validate_resource, Limit, MAX_AMOUNT, MAX_PERIOD};
use crate::namespace::{
    validate_namespace_id, validate_namespace_name, NamespaceInfo, NamespaceStatus,
    NAMESPACE_AUDIT_ENTITY, SYSTEM_NAMESPACE,
};

/// At most 100 characters of `v`, escaped (keys and values may hold anything).
fn shown(v: &str) -> String {
    let mut out: String = v.chars().take(100).flat_map(char::escape_debug).collect();
    if v.chars().count() > 100 {
        out.push('…');
    }
    out
}

fn type_of(v: &AttributeValue) -> &'static str {
    match v {
        AttributeValue::S(_) => "a string",
        AttributeValue::N(_) => "a number",
        AttributeValue::B(_) => "binary",
        AttributeValue::Bool(_) => "a boolean",
        AttributeValue::Null(_) => "null",
        AttributeValue::M(_) => "a map",
        AttributeValue::L(_) => "a list",
        AttributeValue::Ss(_) => "a string set",
        AttributeValue::Ns(_) => "a number set",
        AttributeValue::Bs(_) => "a binary set",
        _ => "of an unknown type",
    }
}

/// Reads the attributes of one item (or of a map inside it) and names the item in errors.
struct Reader<'a> {
    kind: &'static str,
    item: &'a Item,
    /// The top-level item, for the error message.
    top: &'a Item,
    /// Prefix of attribute names in messages (`limits[0].`).
    path: String,
}

impl<'a> Reader<'a> {
    fn new(kind: &'static str, item: &'a Item) -> Self {
        Reader {
            kind,
            item,
            top: item,
            path: String::new(),
        }
    }

    /// A reader of the map `m` found at `path` inside this item.
    fn nested(&self, m: &'a Item, path: String) -> Reader<'a> {
        Reader {
            kind: self.kind,
            item: m,
            top: self.top,
            path,
        }
    }

    fn corrupt(&self, why: impl std::fmt::Display) -> StoreError {
        let part = |k: &str| match self.top.get(k) {
            Some(AttributeValue::S(v)) => shown(v),
            Some(_) => format!("({k} is not a string)"),
            None => format!("(no {k})"),
        };
        StoreError::Malformed(format!(
            "corrupt {} item {} {}: {why}",
            self.kind,
            part("PK"),
            part("SK")
        ))
    }

    fn name(&self, attr: &str) -> String {
        format!("{}{}", self.path, shown(attr))
    }

    fn wrong_type(&self, attr: &str, v: &AttributeValue, want: &str) -> StoreError {
        self.corrupt(format!(
            "{} is {} instead of {want}",
            self.name(attr),
            type_of(v)
        ))
    }

    fn missing(&self, attr: &str) -> StoreError {
        self.corrupt(format!("{} is missing", self.name(attr)))
    }

    fn opt_s(&self, attr: &str) -> Result<Option<&'a str>, StoreError> {
        match self.item.get(attr) {
            None => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v)),
            Some(v) => Err(self.wrong_type(attr, v, "a string")),
        }
    }

    fn req_s(&self, attr: &str) -> Result<&'a str, StoreError> {
        self.opt_s(attr)?.ok_or_else(|| self.missing(attr))
    }

    /// The string attribute `attr` must be exactly `want`.
    fn expect_s(&self, attr: &str, want: &str) -> Result<(), StoreError> {
        let got = self.req_s(attr)?;
        if got != want {
            return Err(self.corrupt(format!(
                "{} is '{}', expected '{}'",
                self.name(attr),
                shown(got),
                shown(want)
            )));
        }
        Ok(())
    }

    fn expect_absent(&self, attr: &str) -> Result<(), StoreError> {
        if self.item.contains_key(attr) {
            return Err(self.corrupt(format!("{} is present but must not be", self.name(attr))));
        }
        Ok(())
    }

    /// An integer attribute within `min..=max`.
    fn opt_int(&self, attr: &str, min: i64, max: i64) -> Result<Option<i64>, StoreError> {
        let raw = match self.item.get(attr) {
            None => return Ok(None),
            Some(AttributeValue::N(v)) => v,
            Some(v) => return Err(self.wrong_type(attr, v, "a number")),
        };
        let v: i64 = raw.trim().parse().map_err(|_| {
            self.corrupt(format!(
                "{} is '{}', not an integer in {min}..={max}",
                self.name(attr),
                shown(raw)
            ))
        })?;
        if v < min || v > max {
            return Err(self.corrupt(format!("{} is {v}, outside {min}..={max}", self.name(attr))));
        }
        Ok(Some(v))
    }

    fn req_int(&self, attr: &str, min: i64, max: i64) -> Result<i64, StoreError> {
        self.opt_int(attr, min, max)?
            .ok_or_else(|| self.missing(attr))
    }

    fn req_bool(&self, attr: &str) -> Result<bool, StoreError> {
        match self.item.get(attr) {
            None => Err(self.missing(attr)),
            Some(AttributeValue::Bool(b)) => Ok(*b),
            Some(v) => Err(self.wrong_type(attr, v, "a boolean")),
        }
    }

    fn req_map(&self, attr: &str) -> Result<&'a Item, StoreError> {
        match self.item.get(attr) {
            None => Err(self.missing(attr)),
            Some(AttributeValue::M(m)) => Ok(m),
            Some(v) => Err(self.wrong_type(attr, v, "a map")),
        }
    }

    fn req_list(&self, attr: &str) -> Result<&'a [AttributeValue], StoreError> {
        match self.item.get(attr) {
            None => Err(self.missing(attr)),
            Some(AttributeValue::L(l)) => Ok(l),
            Some(v) => Err(self.wrong_type(attr, v, "a list")),
        }
    }

    /// Check `PK` = `{ns}{suffix}` and `SK` = `sk`; returns the namespace id `ns` (validated).
    fn key_ns(&self, suffix: &str, sk: &str) -> Result<&'a str, StoreError> {
        self.expect_s("SK", sk)?;
        let pk = self.req_s("PK")?;
        let ns = pk
            .strip_suffix(suffix)
            .ok_or_else(|| self.corrupt(format!("PK does not end with '{}'", shown(suffix))))?;
        if ns != SYSTEM_NAMESPACE {
            validate_namespace_id(ns).map_err(|e| self.corrupt(format!("PK: {e}")))?;
        }
        Ok(ns)
    }

    /// Every item carries `GSI4PK = {ns}` and `GSI4SK = PK` (how a purge finds it).
    fn check_gsi4(&self, ns: &str) -> Result<(), StoreError> {
        self.expect_s("GSI4PK", ns)?;
        self.expect_s("GSI4SK", self.req_s("PK")?)
    }

    /// Turn a validation failure into a corrupt-item error.
    fn valid(&self, r: crate::error::Result<()>) -> Result<(), StoreError> {
        r.map_err(|e| self.corrupt(e))
    }
}

/// Read an entity item (`{ns}/ENTITY#{id}` / `#META`).
pub(crate) fn parse_entity(item: &Item) -> Result<Entity, StoreError> {
    let r = Reader::new("entity", item);
    let id = r.req_s("entity_id")?;
    r.valid(crate::limit::validate_entity_id(id))?;
    let ns = r.key_ns(&format!("/ENTITY#{id}"), ENTITY_SK)?;
    if ns == SYSTEM_NAMESPACE {
        return Err(r.corrupt("entities never live in the '_' namespace"));
    }
    r.check_gsi4(ns)?;
    let parent_id = r.opt_s("parent_id")?.map(str::to_string);
    match &parent_id {
        Some(p) => {
            let (g1pk, g1sk) = keys::parent_gsi(ns, p, id);
            r.expect_s("GSI1PK", &g1pk)?;
            r.expect_s("GSI1SK", &g1sk)?;
        }
        None => {
            r.expect_absent("GSI1PK")?;
            r.expect_absent("GSI1SK")?;
        }
    }
    let meta = r.nested(r.req_map("metadata")?, "metadata.".into());
    let mut metadata = BTreeMap::new();
    for k in meta.item.keys() {
        metadata.insert(k.clone(), meta.req_s(k)?.to_string());
    }
    let e = Entity {
        id: id.to_string(),
        name: r.opt_s("name")?.map(str::to_string),
        parent_id,
        cascade: r.req_bool("cascade")?,
        metadata,
        created_at_ms: r.req_int("created_at_ms", 0, i64::MAX)?,
    };
    r.valid(e.validate())?;
    Ok(e)
}

/// Read the config item stored at `scope`.
pub(in crate::dynamodb) fn parse_config(
    item: &Item,
    scope: &ConfigScope,
) -> Result<StoredConfig, StoreError> {
    let r = Reader::new("config", item);
    let (pk_suffix, sk) = keys::config_key("", scope);
    let ns = r.key_ns(&pk_suffix, &sk)?;
    if ns == SYSTEM_NAMESPACE {
        return Err(r.corrupt("configs never live in the '_' namespace"));
    }
    r.check_gsi4(ns)?;
    r.expect_s("level", scope.level())?;
    match scope.resource() {
        Some(res) => r.expect_s("resource", res)?,
        None => r.expect_absent("resource")?,
    }
    match scope {
        ConfigScope::Entity {
            entity_id,
            resource,
        } => {
            r.expect_s("entity_id", entity_id)?;
            r.expect_s("GSI3PK", &entity_config_gsi(ns, resource))?;
            r.expect_s("GSI3SK", entity_id)?;
        }
        ConfigScope::EntityDefault { entity_id } => r.expect_s("entity_id", entity_id)?,
        ConfigScope::Resource { .. } | ConfigScope::System => r.expect_absent("entity_id")?,
    }
    let mut limits = Vec::new();
    let amount = MAX_AMOUNT as i64;
    let period = MAX_PERIOD.as_millis() as i64;
    for (i, v) in r.req_list("limits")?.iter().enumerate() {
        let m = match v {
            AttributeValue::M(m) => m,
            other => return Err(r.wrong_type(&format!("limits[{i}]"), other, "a map")),
        };
        let l = r.nested(m, format!("limits[{i}]."));
        let name = l.req_s("name")?;
        let capacity = l.req_int("capacity", 1, amount)?;
        let refill = l.req_int("refill_amount", 1, amount)?;
        let period_ms = l.req_int("refill_period_ms", 1, period)?;
        limits.push(Limit::custom(
            name,
            capacity as u64,
            refill as u64,
            std::time::Duration::from_millis(period_ms as u64),
        ));
    }
    let on_unavailable = match r.opt_s("on_unavailable")? {
        None => None,
        Some("block") => Some(OnUnavailable::Block),
        Some("allow") => Some(OnUnavailable::Allow),
        Some(v) => {
            return Err(r.corrupt(format!(
                "on_unavailable is '{}', not block or allow",
                shown(v)
            )))
        }
    };
    let c = StoredConfig {
        limits,
        on_unavailable,
        version: r.req_int("version", 0, i64::MAX)?,
    };
    r.valid(c.validate(scope))?;
    Ok(c)
}

/// Read an audit item (`{ns}/AUDIT#{entity}` / `#AUDIT#{event_id}`).
pub(in crate::dynamodb) fn parse_audit(item: &Item) -> Result<AuditEvent, StoreError> {
    let r = Reader::new("audit", item);
    let event_id = r.req_s("event_id")?;
    r.valid(crate::admin::validate_event_id(event_id))?;
    let entity_id = r.req_s("entity_id")?;
    r.valid(crate::admin::validate_audit_entity(entity_id))?;
    let (suffix, sk) = keys::audit_key("", entity_id, event_id);
    let ns = r.key_ns(&suffix, &sk)?;
    if (ns == SYSTEM_NAMESPACE) != (entity_id == NAMESPACE_AUDIT_ENTITY) {
        return Err(r.corrupt("namespace events, and only they, are filed in the '_' namespace"));
    }
    r.check_gsi4(ns)?;
    let action = r.req_s("action")?;
    let action = AuditAction::parse(action)
        .ok_or_else(|| r.corrupt(format!("action '{}' is unknown", shown(action))))?;
    let resource = r.opt_s("resource")?;
    if let Some(res) = resource {
        if res != crate::config::DEFAULT_RESOURCE {
            r.valid(crate::limit::validate_resource(res))?;
        }
    }
    let details = r.req_s("details")?;
    let details = serde_json::from_str(details)
        .map_err(|e| r.corrupt(format!("details is not JSON ({e}): '{}'", shown(details))))?;
    let ttl = r.opt_int("ttl", 0, i64::MAX / 1000)?;
    Ok(AuditEvent {
        event_id: event_id.to_string(),
        timestamp_ms: r.req_int("timestamp_ms", 0, i64::MAX)?,
        action,
        entity_id: entity_id.to_string(),
        resource: resource.map(str::to_string),
        principal: r.opt_s("principal")?.map(str::to_string),
        details,
        expires_at_ms: ttl.map(|t| t * 1000),
    })
}

/// Read a namespace registry record (by name or by id).
pub(in crate::dynamodb) fn parse_namespace(item: &Item) -> Result<NamespaceInfo, StoreError> {
    let r = Reader::new("namespace", item);
    r.expect_s("PK", &registry_pk())?;
    let name = r.req_s("namespace_name")?;
    r.valid(validate_namespace_name(name))?;
    let id = r.req_s("namespace_id")?;
    r.valid(validate_namespace_id(id))?;
    let sk = r.req_s("SK")?;
    let by_name = sk == forward_sk(name);
    if !by_name && sk != reverse_sk(id) {
        return Err(r.corrupt(format!(
            "SK fits neither its name '{name}' nor its id '{id}'"
        )));
    }
    r.expect_s("GSI4PK", SYSTEM_NAMESPACE)?;
    r.expect_s("GSI4SK", &registry_pk())?;
    let status = r.req_s("status")?;
    let status = NamespaceStatus::parse(status)
        .ok_or_else(|| r.corrupt(format!("status '{}' is unknown", shown(status))))?;
    let deleted_at_ms = r.opt_int("deleted_at_ms", 0, i64::MAX)?;
    if by_name && status != NamespaceStatus::Active {
        return Err(r.corrupt(format!(
            "a record by name must be active, not {}",
            status.as_str()
        )));
    }
    if status != NamespaceStatus::Active && deleted_at_ms.is_none() {
        return Err(r.missing("deleted_at_ms"));
    }
    Ok(NamespaceInfo {
        name: name.to_string(),
        id: id.to_string(),
        status,
        created_at_ms: r.req_int("created_at_ms", 0, i64::MAX)?,
        deleted_at_ms,
    })
}

/// The `#PROVISIONER` record: every managed name is validated as the config API validates it.
pub(in crate::dynamodb) fn parse_provisioner(item: &Item) -> Result<ProvisionerState, StoreError> {
    let r = Reader::new("provisioner record", item);
    let ns = r.key_ns("/SYSTEM#", keys::PROVISIONER_SK)?;
    if ns == SYSTEM_NAMESPACE {
        return Err(r.corrupt("the record never lives in the '_' namespace"));
    }
    r.check_gsi4(ns)?;
    let names = |r: &Reader, attr: &str, list: &[AttributeValue]| {
        list.iter()
            .enumerate()
            .map(|(i, v)| match v {
                AttributeValue::S(s) => Ok(s.clone()),
                other => Err(r.wrong_type(&format!("{attr}[{i}]"), other, "a string")),
            })
            .collect::<Result<std::collections::BTreeSet<String>, StoreError>>()
    };
    let resources = names(&r, "managed_resources", r.req_list("managed_resources")?)?;
    for res in &resources {
        r.valid(validate_resource(res))?;
    }
    let mut entities = BTreeMap::new();
    for (entity, v) in r.req_map("managed_entities")? {
        r.valid(validate_entity_id(entity))?;
        let attr = format!("managed_entities.{entity}");
        let AttributeValue::L(list) = v else {
            return Err(r.wrong_type(&attr, v, "a list"));
        };
        let rs = names(&r, &attr, list)?;
        for res in rs.iter().filter(|res| res.as_str() != DEFAULT_RESOURCE) {
            r.valid(validate_resource(res))?;
        }
        entities.insert(entity.clone(), rs);
    }
    let applied_hash = r.req_s("applied_hash")?;
    if !applied_hash.starts_with("sha256:") {
        return Err(r.corrupt(format!(
            "applied_hash '{}' is not a sha256: digest",
            shown(applied_hash)
        )));
    }
    Ok(ProvisionerState {
        system: r.req_bool("managed_system")?,
        resources,
        entities,
        applied_hash: applied_hash.to_string(),
        applied_at_ms: r.req_int("applied_at_ms", 0, i64::MAX)?,
        principal: r.opt_s("principal")?.map(str::to_string),
        revision: r.req_int("revision", 1, i64::MAX)? as u64,
    })
}
