//! Entities, stored configs and audit events on DynamoDB (the management path; none of this
//! is on the acquire hot path except the cold-cache `BatchGetItem`).

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};

use super::errors::{build_err, cancellation, throttle_pause, tx_err, Cancelled};
use super::items::{
    self, audit_item, config_item, entity_item, key, parse_audit, parse_config, s, Item,
};
use super::keys::{self, ENTITY_SK};
use super::{sdk_err, DynamoStore, Io};
use crate::config::{
    AuditEvent, AuditPage, ConfigScope, IdPage, ProvisionerState, ResolutionData, StoredConfig,
};
use crate::entity::Entity;
use crate::error::StoreError;
use crate::namespace::{DEFAULT_NAMESPACE, NAMESPACE_AUDIT_ENTITY, SYSTEM_NAMESPACE};

/// A transaction of [`DynamoStore::write_with_audit`] cancelled because the condition of its
/// first (main) item failed.
fn first_condition_failed(
    e: &SdkError<TransactWriteItemsError, aws_smithy_runtime_api::http::Response>,
) -> bool {
    match e {
        SdkError::ServiceError(se) => match se.err() {
            TransactWriteItemsError::TransactionCanceledException(tc) => {
                tc.cancellation_reasons().first().and_then(|r| r.code())
                    == Some("ConditionalCheckFailed")
            }
            _ => false,
        },
        _ => false,
    }
}

impl DynamoStore {
    /// One transaction: the main write plus the audit record. A cancellation by throttling
    /// (nothing written) is retried with jittered backoff up to the attempts per write, as
    /// the SDK retries a throttled single-item write; the last error is returned.
    async fn write_with_audit(
        &self,
        ns: &str,
        main: TransactWriteItem,
        audit: &AuditEvent,
    ) -> Result<(), SdkError<TransactWriteItemsError, aws_smithy_runtime_api::http::Response>> {
        let audit_put = Put::builder()
            .table_name(&*self.table)
            .set_item(Some(audit_item(ns, audit)))
            .build()
            .expect("table and item are set");
        let audit_put = TransactWriteItem::builder().put(audit_put).build();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let res = self
                .client
                .transact_write_items()
                .transact_items(main.clone())
                .transact_items(audit_put.clone())
                .set_return_consumed_capacity(self.rcc())
                .send()
                .await;
            match res {
                Ok(out) => {
                    self.track(Io::Write, out.consumed_capacity());
                    return Ok(());
                }
                Err(e) => {
                    let pause = (cancellation(&e) == Some(Cancelled::Throttled))
                        .then(|| throttle_pause(attempts, self.max_attempts, rand::random(), None))
                        .flatten();
                    match pause {
                        Some(p) => tokio::time::sleep(p).await,
                        None => return Err(e),
                    }
                }
            }
        }
    }

    pub(super) async fn record_audit_item(&self, audit: &AuditEvent) -> Result<(), StoreError> {
        self.writable().await?;
        // namespace changes are table-level (under `_`): they need no namespace of this
        // handle, and resolving it must not (re-)register `default` as it is being deleted
        let ns: std::sync::Arc<str> = if audit.entity_id == NAMESPACE_AUDIT_ENTITY {
            SYSTEM_NAMESPACE.into()
        } else {
            self.ns().await?
        };
        self.client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(audit_item(&ns, audit)))
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }

    /// Put the entity item under `condition`, with the audit record, in one transaction;
    /// `false` when the condition failed (nothing written).
    async fn put_entity(
        &self,
        entity: &Entity,
        audit: &AuditEvent,
        condition: &str,
    ) -> Result<bool, StoreError> {
        self.writable().await?;
        let ns = self.ns().await?;
        let mut put = Put::builder()
            .table_name(&*self.table)
            .set_item(Some(entity_item(&ns, entity)))
            .condition_expression(condition);
        if condition.contains(":created") {
            put = put.expression_attribute_values(":created", items::n(entity.created_at_ms));
        }
        let put = put.build().map_err(build_err)?;
        let main = TransactWriteItem::builder().put(put).build();
        match self.write_with_audit(&ns, main, audit).await {
            Ok(()) => Ok(true),
            Err(e) if first_condition_failed(&e) => Ok(false),
            Err(e) => Err(tx_err(e)),
        }
    }

    pub(super) async fn create_entity_item(
        &self,
        entity: &Entity,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        match self
            .put_entity(entity, audit, "attribute_not_exists(PK)")
            .await?
        {
            true => Ok(()),
            false => Err(StoreError::EntityExists(entity.id.clone())),
        }
    }

    /// Replace the entity item (the whole item: GSI1 keys go with a removed parent) if it
    /// exists; `false` if it does not (then nothing is written, not even the audit). The
    /// creation time must match too, so an update read before a delete and re-create does
    /// not overwrite the new entity.
    pub(super) async fn update_entity_item(
        &self,
        entity: &Entity,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        self.put_entity(
            entity,
            audit,
            "attribute_exists(PK) AND created_at_ms = :created",
        )
        .await
    }

    pub(super) async fn put_config_item(
        &self,
        scope: &ConfigScope,
        expected_version: Option<i64>,
        config: Option<&StoredConfig>,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        self.writable().await?;
        let ns = self.ns().await?;
        let ns = &*ns;
        // what the caller read must still be there: that version, or nothing
        let (condition, values) = match expected_version {
            Some(v) => (
                "#v = :expected",
                Some(HashMap::from([(":expected".to_string(), items::n(v))])),
            ),
            None => ("attribute_not_exists(PK)", None),
        };
        let names = expected_version.map(|_| HashMap::from([("#v".into(), "version".into())]));
        let main = match config {
            Some(c) => TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&*self.table)
                        .set_item(Some(config_item(ns, scope, c)))
                        .condition_expression(condition)
                        .set_expression_attribute_names(names)
                        .set_expression_attribute_values(values)
                        .build()
                        .map_err(build_err)?,
                )
                .build(),
            None => {
                let (pk, sk) = keys::config_key(ns, scope);
                TransactWriteItem::builder()
                    .delete(
                        Delete::builder()
                            .table_name(&*self.table)
                            .set_key(Some(key(pk, sk)))
                            .condition_expression(condition)
                            .set_expression_attribute_names(names)
                            .set_expression_attribute_values(values)
                            .build()
                            .map_err(build_err)?,
                    )
                    .build()
            }
        };
        match self.write_with_audit(ns, main, audit).await {
            Ok(()) => Ok(()),
            Err(e) if first_condition_failed(&e) => {
                Err(crate::store::config_changed(scope, expected_version))
            }
            Err(e) => Err(tx_err(e)),
        }
    }

    /// The namespace's `#PROVISIONER` record (a strongly consistent read).
    pub(super) async fn get_provisioner_item(
        &self,
    ) -> Result<Option<ProvisionerState>, StoreError> {
        let ns = self.ns().await?;
        let (pk, sk) = keys::provisioner_key(&ns);
        let item = self.get_consistent(pk, sk).await?;
        item.as_ref().map(items::parse_provisioner).transpose()
    }

    /// One item by key, strongly consistent (`None` when absent).
    async fn get_consistent(&self, pk: String, sk: String) -> Result<Option<Item>, StoreError> {
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
        Ok(out.item)
    }

    /// Replace the `#PROVISIONER` record if it is still at `expected_revision`.
    pub(super) async fn put_provisioner_item(
        &self,
        state: &ProvisionerState,
        expected_revision: u64,
    ) -> Result<(), StoreError> {
        self.writable().await?;
        let ns = self.ns().await?;
        let mut put = self
            .client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(items::provisioner_item(&ns, state)))
            .set_return_consumed_capacity(self.rcc());
        put = if expected_revision == 0 {
            put.condition_expression("attribute_not_exists(PK)")
        } else {
            put.condition_expression("revision = :expected")
                .expression_attribute_values(":expected", items::n(expected_revision))
        };
        match put.send().await {
            Ok(out) => {
                self.track(Io::Write, out.consumed_capacity());
                Ok(())
            }
            Err(SdkError::ServiceError(se))
                if matches!(se.err(), PutItemError::ConditionalCheckFailedException(_)) =>
            {
                Err(crate::store::provisioner_changed(expected_revision))
            }
            Err(e) => Err(sdk_err(e)),
        }
    }

    pub(super) async fn get_config_item(
        &self,
        scope: &ConfigScope,
    ) -> Result<Option<StoredConfig>, StoreError> {
        let ns = self.ns().await?;
        let ns = &*ns;
        let (pk, sk) = keys::config_key(ns, scope);
        let item = self.get_consistent(pk, sk).await?;
        item.as_ref().map(|i| parse_config(i, scope)).transpose()
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
        // the namespace's status marker: a deleted or purged namespace stops writing
        let registry_key = items::status_key(ns);
        let wanted = [&entity_key, &registry_key]
            .into_iter()
            .chain(&config_keys)
            .map(|(pk, sk)| key(pk.clone(), sk.clone()))
            .collect();
        let mut found: HashMap<(String, String), Item> = HashMap::new();
        for item in self.batch_get(wanted).await? {
            let get = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
            if let (Some(pk), Some(sk)) = (get("PK"), get("SK")) {
                found.insert((pk, sk), item);
            }
        }
        let entity = found
            .get(&entity_key)
            .map(items::parse_entity)
            .transpose()?;
        let mut levels: [Option<StoredConfig>; 4] = Default::default();
        for ((slot, k), scope) in levels.iter_mut().zip(&config_keys).zip(&chain) {
            *slot = found.get(k).map(|i| parse_config(i, scope)).transpose()?;
        }
        let active = found
            .get(&registry_key)
            .map(items::marker_active)
            .transpose()?;
        Ok(ResolutionData {
            entity,
            levels,
            namespace_gone: active != Some(true),
        })
    }

    pub(super) async fn list_audit_items(
        &self,
        entity_id: &str,
        limit: usize,
        before: Option<&str>,
    ) -> Result<AuditPage, StoreError> {
        let ns = self.ns().await?;
        if entity_id == NAMESPACE_AUDIT_ENTITY {
            // table-level: only a handle on `default` reads it (by name and by id: a handle
            // given a tenant's id directly keeps the default name)
            let default_id = match &*self.ns_name {
                DEFAULT_NAMESPACE => self.forward(DEFAULT_NAMESPACE).await?.map(|n| n.id),
                _ => None,
            };
            if default_id.as_deref() != Some(&*ns) {
                return Err(StoreError::Refused(format!(
                    "the namespace audit ({NAMESPACE_AUDIT_ENTITY}) is table-level: only a \
                     handle on the '{DEFAULT_NAMESPACE}' namespace reads it (this one works in \
                     '{}', id {ns})",
                    self.ns_name
                )));
            }
        }
        let ns = items::audit_ns(&ns, entity_id);
        let (pk, _) = keys::audit_key(ns, entity_id, "");
        let mut q = self
            .client
            .query()
            .table_name(&*self.table)
            .consistent_read(true)
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

    pub(super) async fn delete_entity_items(
        &self,
        entity_id: &str,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        self.writable().await?;
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
                    .set_item(Some(audit_item(ns, audit)))
                    .build()
                    .map_err(build_err)?,
            )
            .build()];
        for item in &items {
            requests.push(items::delete_request(item)?);
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
        let wanted = keys_found.iter().map(items::key_of).collect();
        let mut out = self
            .batch_get(wanted)
            .await?
            .iter()
            .map(items::parse_entity)
            .collect::<Result<Vec<_>, _>>()?;
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
