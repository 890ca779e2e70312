//! Entities, stored configs and audit events on DynamoDB (the management path; none of this
//! is on the acquire hot path except the cold-cache `BatchGetItem`).

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, KeysAndAttributes, Put, TransactWriteItem};

use super::keys::{self, ENTITY_SK};
use super::{n_attr, parse_entity, sdk_err, DynamoStore, Io};
use crate::config::OnUnavailable;
use crate::config::{
    AuditAction, AuditEvent, AuditPage, ConfigScope, IdPage, ResolutionData, StoredConfig,
};
use crate::entity::Entity;
use crate::error::StoreError;
use crate::limit::Limit;
use crate::namespace::{NAMESPACE_AUDIT_ENTITY, SYSTEM_NAMESPACE};

type Item = HashMap<String, AttributeValue>;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn key(pk: String, sk: String) -> Item {
    HashMap::from([("PK".to_string(), s(pk)), ("SK".to_string(), s(sk))])
}

fn other(e: impl std::fmt::Display) -> StoreError {
    StoreError::Other(e.to_string())
}

impl DynamoStore {
    fn entity_item(&self, ns: &str, entity: &Entity) -> Item {
        let pk = keys::entity_pk(ns, &entity.id);
        let mut item = key(pk.clone(), ENTITY_SK.to_string());
        item.extend([
            ("entity_id".to_string(), s(&entity.id)),
            ("cascade".to_string(), AttributeValue::Bool(entity.cascade)),
            ("created_at_ms".to_string(), n(entity.created_at_ms)),
            (
                "metadata".to_string(),
                AttributeValue::M(
                    entity
                        .metadata
                        .iter()
                        .map(|(k, v)| (k.clone(), s(v)))
                        .collect(),
                ),
            ),
            ("GSI4PK".to_string(), s(ns)),
            ("GSI4SK".to_string(), s(pk)),
        ]);
        if let Some(name) = &entity.name {
            item.insert("name".to_string(), s(name));
        }
        if let Some(p) = &entity.parent_id {
            item.insert("parent_id".to_string(), s(p));
            let (g1pk, g1sk) = keys::parent_gsi(ns, p, &entity.id);
            item.insert("GSI1PK".to_string(), s(g1pk));
            item.insert("GSI1SK".to_string(), s(g1sk));
        }
        item
    }

    pub(super) fn audit_item(&self, ns: &str, e: &AuditEvent) -> Item {
        // namespace changes are filed in the table-level namespace
        let ns = if e.entity_id == NAMESPACE_AUDIT_ENTITY {
            SYSTEM_NAMESPACE
        } else {
            ns
        };
        let (pk, sk) = keys::audit_key(ns, &e.entity_id, &e.event_id);
        let mut item = key(pk.clone(), sk);
        item.extend([
            ("event_id".to_string(), s(&e.event_id)),
            ("timestamp_ms".to_string(), n(e.timestamp_ms)),
            ("action".to_string(), s(e.action.as_str())),
            ("entity_id".to_string(), s(&e.entity_id)),
            ("details".to_string(), s(e.details.to_string())),
            ("GSI4PK".to_string(), s(ns)),
            ("GSI4SK".to_string(), s(pk)),
        ]);
        if let Some(r) = &e.resource {
            item.insert("resource".to_string(), s(r));
        }
        if let Some(p) = &e.principal {
            item.insert("principal".to_string(), s(p));
        }
        if let Some(x) = e.expires_at_ms {
            item.insert("ttl".to_string(), n(x / 1000));
        }
        item
    }

    fn config_item(&self, ns: &str, scope: &ConfigScope, c: &StoredConfig) -> Item {
        let (pk, sk) = keys::config_key(ns, scope);
        let mut item = key(pk.clone(), sk);
        let limits = c
            .limits
            .iter()
            .map(|l| {
                AttributeValue::M(HashMap::from([
                    ("name".to_string(), s(l.name())),
                    ("capacity".to_string(), n(l.capacity())),
                    ("refill_amount".to_string(), n(l.refill_amount())),
                    ("refill_period_ms".to_string(), n(l.refill_period_ms())),
                ]))
            })
            .collect();
        item.extend([
            ("level".to_string(), s(scope.level())),
            ("limits".to_string(), AttributeValue::L(limits)),
            (
                "version".to_string(),
                AttributeValue::N(c.version.to_string()),
            ),
            ("GSI4PK".to_string(), s(ns)),
            ("GSI4SK".to_string(), s(pk)),
        ]);
        if let Some(p) = c.on_unavailable {
            let v = match p {
                OnUnavailable::Block => "block",
                OnUnavailable::Allow => "allow",
            };
            item.insert("on_unavailable".to_string(), s(v));
        }
        if let Some(r) = scope.resource() {
            item.insert("resource".to_string(), s(r));
        }
        if let ConfigScope::Entity {
            entity_id,
            resource,
        } = scope
        {
            item.insert("entity_id".to_string(), s(entity_id));
            item.insert(
                "GSI3PK".to_string(),
                s(format!("{}/ENTITY_CONFIG#{resource}", ns)),
            );
            item.insert("GSI3SK".to_string(), s(entity_id));
        }
        if let ConfigScope::EntityDefault { entity_id } = scope {
            item.insert("entity_id".to_string(), s(entity_id));
        }
        item
    }

    /// One transaction: the main write plus the audit record.
    async fn write_with_audit(
        &self,
        ns: &str,
        main: TransactWriteItem,
        audit: &AuditEvent,
    ) -> Result<(), SdkError<TransactWriteItemsError, aws_smithy_runtime_api::http::Response>> {
        let audit_put = Put::builder()
            .table_name(&*self.table)
            .set_item(Some(self.audit_item(ns, audit)))
            .build()
            .expect("table and item are set");
        let out = self
            .client
            .transact_write_items()
            .transact_items(main)
            .transact_items(TransactWriteItem::builder().put(audit_put).build())
            .set_return_consumed_capacity(self.rcc())
            .send()
            .await?;
        self.track(Io::Write, out.consumed_capacity());
        Ok(())
    }

    pub(super) async fn record_audit_item(&self, audit: &AuditEvent) -> Result<(), StoreError> {
        let ns = self.ns().await?;
        self.client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(self.audit_item(&ns, audit)))
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }

    pub(super) async fn create_entity_item(
        &self,
        entity: &Entity,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let ns = self.ns().await?;
        let ns = &*ns;
        let put = Put::builder()
            .table_name(&*self.table)
            .set_item(Some(self.entity_item(ns, entity)))
            .condition_expression("attribute_not_exists(PK)")
            .build()
            .map_err(other)?;
        match self
            .write_with_audit(ns, TransactWriteItem::builder().put(put).build(), audit)
            .await
        {
            Ok(()) => Ok(()),
            Err(SdkError::ServiceError(se)) => match se.err() {
                TransactWriteItemsError::TransactionCanceledException(tc)
                    if tc.cancellation_reasons().first().and_then(|r| r.code())
                        == Some("ConditionalCheckFailed") =>
                {
                    Err(StoreError::EntityExists(entity.id.clone()))
                }
                _ => Err(sdk_err(SdkError::ServiceError(se))),
            },
            Err(e) => Err(sdk_err(e)),
        }
    }

    pub(super) async fn update_entity_item(
        &self,
        entity: &Entity,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let ns = self.ns().await?;
        let ns = &*ns;
        let put = Put::builder()
            .table_name(&*self.table)
            .set_item(Some(self.entity_item(ns, entity)))
            .condition_expression("attribute_exists(PK)")
            .build()
            .map_err(other)?;
        match self
            .write_with_audit(ns, TransactWriteItem::builder().put(put).build(), audit)
            .await
        {
            Ok(()) => Ok(true),
            Err(SdkError::ServiceError(se)) => match se.err() {
                TransactWriteItemsError::TransactionCanceledException(tc)
                    if tc.cancellation_reasons().first().and_then(|r| r.code())
                        == Some("ConditionalCheckFailed") =>
                {
                    Ok(false)
                }
                _ => Err(sdk_err(SdkError::ServiceError(se))),
            },
            Err(e) => Err(sdk_err(e)),
        }
    }

    pub(super) async fn put_config_item(
        &self,
        scope: &ConfigScope,
        config: Option<&StoredConfig>,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let ns = self.ns().await?;
        let ns = &*ns;
        let main = match config {
            Some(c) => TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&*self.table)
                        .set_item(Some(self.config_item(ns, scope, c)))
                        .build()
                        .map_err(other)?,
                )
                .build(),
            None => {
                let (pk, sk) = keys::config_key(ns, scope);
                TransactWriteItem::builder()
                    .delete(
                        Delete::builder()
                            .table_name(&*self.table)
                            .set_key(Some(key(pk, sk)))
                            .build()
                            .map_err(other)?,
                    )
                    .build()
            }
        };
        self.write_with_audit(ns, main, audit)
            .await
            .map_err(sdk_err)
    }

    pub(super) async fn get_config_item(
        &self,
        scope: &ConfigScope,
    ) -> Result<Option<StoredConfig>, StoreError> {
        let ns = self.ns().await?;
        let ns = &*ns;
        let (pk, sk) = keys::config_key(ns, scope);
        let out = self
            .client
            .get_item()
            .table_name(&*self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .set_return_consumed_capacity(self.rcc())
            .send()
            .await
            .map_err(sdk_err)?;
        self.track(Io::Read, out.consumed_capacity());
        out.item().map(parse_config).transpose()
    }

    pub(super) async fn load_resolution_items(
        &self,
        entity_id: &str,
        resource: &str,
    ) -> Result<ResolutionData, StoreError> {
        let ns = self.ns().await?;
        let ns = &*ns;
        let chain = ConfigScope::chain(entity_id, resource);
        let entity_key = (keys::entity_pk(ns, entity_id), ENTITY_SK.to_string());
        let config_keys: Vec<(String, String)> =
            chain.iter().map(|c| keys::config_key(ns, c)).collect();
        let mut wanted = KeysAndAttributes::builder().consistent_read(true);
        for (pk, sk) in std::iter::once(&entity_key).chain(&config_keys) {
            wanted = wanted.keys(key(pk.clone(), sk.clone()));
        }
        let mut pending = Some(wanted.build().map_err(other)?);
        let mut found: HashMap<(String, String), Item> = HashMap::new();
        let mut rounds = 0;
        while let Some(req) = pending.take() {
            rounds += 1;
            if rounds > 10 {
                return Err(StoreError::Unavailable(
                    "BatchGetItem kept returning unprocessed keys".into(),
                ));
            }
            let out = self
                .client
                .batch_get_item()
                .request_items(&*self.table, req)
                .set_return_consumed_capacity(self.rcc())
                .send()
                .await
                .map_err(sdk_err)?;
            self.track(Io::Read, out.consumed_capacity());
            for item in out
                .responses()
                .and_then(|r| r.get(&*self.table))
                .into_iter()
                .flatten()
            {
                let get = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
                if let (Some(pk), Some(sk)) = (get("PK"), get("SK")) {
                    found.insert((pk, sk), item.clone());
                }
            }
            pending = out
                .unprocessed_keys()
                .and_then(|u| u.get(&*self.table))
                .filter(|k| !k.keys().is_empty())
                .cloned();
        }
        let entity = found.get(&entity_key).map(parse_entity).transpose()?;
        let mut levels: [Option<StoredConfig>; 4] = Default::default();
        for (slot, k) in levels.iter_mut().zip(&config_keys) {
            *slot = found.get(k).map(parse_config).transpose()?;
        }
        Ok(ResolutionData {
            entity,
            levels,
            namespace_gone: false,
        })
    }

    pub(super) async fn list_audit_items(
        &self,
        entity_id: &str,
        limit: usize,
        before: Option<&str>,
    ) -> Result<AuditPage, StoreError> {
        let ns = self.ns().await?;
        let ns = &*ns;
        let ns = if entity_id == NAMESPACE_AUDIT_ENTITY {
            SYSTEM_NAMESPACE
        } else {
            ns
        };
        let (pk, _) = keys::audit_key(ns, entity_id, "");
        let mut q = self
            .client
            .query()
            .table_name(&*self.table)
            .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
            .expression_attribute_values(":pk", s(&pk))
            .expression_attribute_values(":prefix", s("#AUDIT#"))
            .scan_index_forward(false)
            .limit((limit + 1).min(i32::MAX as usize) as i32);
        if let Some(b) = before {
            let (_, sk) = keys::audit_key(ns, entity_id, b);
            q = q
                .exclusive_start_key("PK", s(&pk))
                .exclusive_start_key("SK", s(sk));
        }
        let out = q.send().await.map_err(sdk_err)?;
        let mut events = out
            .items()
            .iter()
            .map(parse_audit)
            .collect::<Result<Vec<_>, _>>()?;
        let more = events.len() > limit;
        events.truncate(limit);
        let next = if more {
            events.last().map(|e| e.event_id.clone())
        } else {
            None
        };
        Ok(AuditPage { events, next })
    }
}

impl DynamoStore {
    /// Every item a query returns (all pages).
    /// `consistent` applies to table queries only (indexes are eventually consistent).
    pub(super) async fn query_all(
        &self,
        index: Option<&str>,
        condition: &str,
        values: &[(&str, String)],
    ) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&*self.table)
                .set_index_name(index.map(str::to_string))
                .consistent_read(index.is_none())
                .key_condition_expression(condition)
                .set_exclusive_start_key(start.take());
            for (k, v) in values {
                q = q.expression_attribute_values(*k, s(v.clone()));
            }
            let page = q.send().await.map_err(sdk_err)?;
            out.extend(page.items().iter().cloned());
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }

    /// Delete (and put) items in batches of 25, retrying what DynamoDB leaves unprocessed.
    pub(super) async fn batch_write(
        &self,
        requests: Vec<aws_sdk_dynamodb::types::WriteRequest>,
    ) -> Result<(), StoreError> {
        for chunk in requests.chunks(25) {
            let mut pending = chunk.to_vec();
            for attempt in 0.. {
                if pending.is_empty() {
                    break;
                }
                if attempt >= 10 {
                    return Err(StoreError::Unavailable(
                        "BatchWriteItem kept returning unprocessed items".into(),
                    ));
                }
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&*self.table, pending)
                    .send()
                    .await
                    .map_err(sdk_err)?;
                pending = out
                    .unprocessed_items()
                    .and_then(|u| u.get(&*self.table))
                    .cloned()
                    .unwrap_or_default();
                if !pending.is_empty() {
                    tokio::time::sleep(std::time::Duration::from_millis(20 << attempt.min(5)))
                        .await;
                }
            }
        }
        Ok(())
    }

    pub(super) async fn delete_entity_items(
        &self,
        entity_id: &str,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let ns = self.ns().await?;
        let ns = &*ns;
        use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
        let pk = keys::entity_pk(ns, entity_id);
        // the entity's own items: metadata and configs
        let mut items = self.query_all(None, "PK = :pk", &[(":pk", pk)]).await?;
        if !items
            .iter()
            .any(|i| i.get("SK").and_then(|v| v.as_s().ok()).map(String::as_str) == Some(ENTITY_SK))
        {
            return Ok(false);
        }
        // its buckets, through the namespace index (the `#` after the id stops prefix matches)
        items.extend(
            self.query_all(
                Some("GSI4"),
                "GSI4PK = :ns AND begins_with(GSI4SK, :prefix)",
                &[
                    (":ns", ns.to_string()),
                    (":prefix", format!("{}/BUCKET#{entity_id}#", ns)),
                ],
            )
            .await?,
        );
        let mut requests = vec![WriteRequest::builder()
            .put_request(
                PutRequest::builder()
                    .set_item(Some(self.audit_item(ns, audit)))
                    .build()
                    .map_err(other)?,
            )
            .build()];
        for item in &items {
            requests.push(delete_request(item)?);
        }
        self.batch_write(requests).await?;
        Ok(true)
    }

    pub(super) async fn children_items(&self, parent_id: &str) -> Result<Vec<Entity>, StoreError> {
        let ns = self.ns().await?;
        let ns = &*ns;
        let (g1pk, _) = keys::parent_gsi(ns, parent_id, "");
        let keys_found = self
            .query_all(Some("GSI1"), "GSI1PK = :p", &[(":p", g1pk)])
            .await?;
        let mut out = Vec::new();
        for chunk in keys_found.chunks(100) {
            let mut wanted = KeysAndAttributes::builder().consistent_read(true);
            for i in chunk {
                wanted = wanted.keys(key_of(i));
            }
            let mut pending = Some(wanted.build().map_err(other)?);
            while let Some(req) = pending.take() {
                let got = self
                    .client
                    .batch_get_item()
                    .request_items(&*self.table, req)
                    .send()
                    .await
                    .map_err(sdk_err)?;
                for item in got
                    .responses()
                    .and_then(|r| r.get(&*self.table))
                    .into_iter()
                    .flatten()
                {
                    out.push(parse_entity(item)?);
                }
                pending = got
                    .unprocessed_keys()
                    .and_then(|u| u.get(&*self.table))
                    .filter(|k| !k.keys().is_empty())
                    .cloned();
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    pub(super) async fn resources_with_defaults_items(&self) -> Result<Vec<String>, StoreError> {
        let ns = self.ns().await?;
        let ns = &*ns;
        let prefix = format!("{}/RESOURCE#", ns);
        let items = self
            .query_all(
                Some("GSI4"),
                "GSI4PK = :ns AND begins_with(GSI4SK, :prefix)",
                &[(":ns", ns.to_string()), (":prefix", prefix.clone())],
            )
            .await?;
        let mut out: Vec<String> = items
            .iter()
            .filter(|i| {
                i.get("SK").and_then(|v| v.as_s().ok()).map(String::as_str) == Some(keys::CONFIG_SK)
            })
            .filter_map(|i| i.get("PK").and_then(|v| v.as_s().ok()))
            .filter_map(|pk| pk.strip_prefix(&prefix).map(str::to_string))
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    pub(super) async fn entities_with_limits_items(
        &self,
        resource: &str,
        limit: usize,
        after: Option<&str>,
    ) -> Result<IdPage, StoreError> {
        let ns = self.ns().await?;
        let mut q = self
            .client
            .query()
            .table_name(&*self.table)
            .index_name("GSI3")
            .expression_attribute_values(":r", s(format!("{ns}/ENTITY_CONFIG#{resource}")))
            .limit((limit + 1).min(i32::MAX as usize) as i32);
        // the index sorts by entity id, so a page starts with a key condition on it
        q = match after {
            Some(a) => q
                .key_condition_expression("GSI3PK = :r AND GSI3SK > :after")
                .expression_attribute_values(":after", s(a)),
            None => q.key_condition_expression("GSI3PK = :r"),
        };
        let out = q.send().await.map_err(sdk_err)?;
        let ids = out
            .items()
            .iter()
            .filter_map(|i| i.get("GSI3SK").and_then(|v| v.as_s().ok()).cloned())
            .collect();
        Ok(IdPage::from_sorted(ids, limit))
    }
}

/// The table key (PK, SK) of an item, e.g. one returned by a KEYS_ONLY index.
fn key_of(item: &Item) -> Item {
    ["PK", "SK"]
        .iter()
        .filter_map(|a| item.get(*a).map(|v| (a.to_string(), v.clone())))
        .collect()
}

/// A batch request deleting `item` (by its table key).
pub(super) fn delete_request(
    item: &Item,
) -> Result<aws_sdk_dynamodb::types::WriteRequest, StoreError> {
    use aws_sdk_dynamodb::types::{DeleteRequest, WriteRequest};
    Ok(WriteRequest::builder()
        .delete_request(
            DeleteRequest::builder()
                .set_key(Some(key_of(item)))
                .build()
                .map_err(other)?,
        )
        .build())
}

fn parse_config(item: &Item) -> Result<StoredConfig, StoreError> {
    let mut limits = Vec::new();
    if let Some(AttributeValue::L(list)) = item.get("limits") {
        for v in list {
            let m = v.as_m().map_err(|_| other("config limit is not a map"))?;
            let name = m
                .get("name")
                .and_then(|v| v.as_s().ok())
                .ok_or_else(|| other("config limit lacks a name"))?;
            let num = |k: &str| -> Result<u64, StoreError> {
                n_attr(m, k)?
                    .and_then(|v| u64::try_from(v).ok())
                    .ok_or_else(|| other(format!("config limit '{name}' lacks {k}")))
            };
            limits.push(Limit::custom(
                name.clone(),
                num("capacity")?,
                num("refill_amount")?,
                std::time::Duration::from_millis(num("refill_period_ms")?),
            ));
        }
    }
    let on_unavailable = match item.get("on_unavailable").and_then(|v| v.as_s().ok()) {
        None => None,
        Some(v) => Some(
            v.parse()
                .map_err(|_| other(format!("bad on_unavailable '{v}'")))?,
        ),
    };
    Ok(StoredConfig {
        limits,
        on_unavailable,
        version: n_attr(item, "version")?.unwrap_or(0) as i64,
    })
}

fn parse_audit(item: &Item) -> Result<AuditEvent, StoreError> {
    let get = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let action = get("action").unwrap_or_default();
    Ok(AuditEvent {
        event_id: get("event_id").ok_or_else(|| other("audit item lacks event_id"))?,
        timestamp_ms: n_attr(item, "timestamp_ms")?.unwrap_or(0) as i64,
        action: AuditAction::parse(&action)
            .ok_or_else(|| other(format!("unknown audit action '{action}'")))?,
        entity_id: get("entity_id").unwrap_or_default(),
        resource: get("resource"),
        principal: get("principal"),
        details: get("details")
            .map(|d| serde_json::from_str(&d).unwrap_or(serde_json::Value::String(d)))
            .unwrap_or(serde_json::Value::Null),
        expires_at_ms: n_attr(item, "ttl")?.map(|t| t as i64 * 1000),
    })
}
