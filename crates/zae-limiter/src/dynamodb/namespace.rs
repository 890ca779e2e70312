//! The namespace registry on DynamoDB: records under `_/SYSTEM#`, forward by name
//! (`#NAMESPACE#{name}`, active namespaces only) and reverse by id (`#NSID#{id}`, every
//! state). Registration writes both in one transaction guarded by `attribute_not_exists`.

use std::sync::Arc;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};

use super::errors::{build_err, cancellation, throttle_pause, tx_err, Cancelled};
use super::items::{
    delete_request, forward_sk, key as table_key, namespace_item, parse_namespace, registry_pk,
    reverse_sk, s, status_item, Item,
};
use super::{sdk_err, DynamoStore};
use crate::error::StoreError;
use crate::namespace::{check_purgeable, check_recoverable, check_registrable};
use crate::namespace::{new_namespace_id, NamespaceInfo, NamespaceStatus, DEFAULT_NAMESPACE};
use crate::store::Store;

/// The key of a registry record.
fn key(sk: String) -> Item {
    table_key(registry_pk(), sk)
}

impl DynamoStore {
    /// This handle's namespace id, looked up (and for `default`, registered) on first use.
    pub(super) async fn ns(&self) -> Result<Arc<str>, StoreError> {
        self.ns_id
            .get_or_try_init(|| async {
                match self.forward(&self.ns_name).await? {
                    Some(n) => Ok(n.id.into()),
                    None if &*self.ns_name == DEFAULT_NAMESPACE => {
                        let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
                        Ok(self.register(&self.ns_name, now).await?.id.into())
                    }
                    None => Err(StoreError::NamespaceNotFound(self.ns_name.to_string())),
                }
            })
            .await
            .cloned()
    }

    async fn get_record(&self, sk: String) -> Result<Option<NamespaceInfo>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&*self.table)
            .set_key(Some(key(sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_err)?;
        out.item().map(parse_namespace).transpose()
    }

    pub(super) async fn forward(&self, name: &str) -> Result<Option<NamespaceInfo>, StoreError> {
        self.get_record(forward_sk(name)).await
    }

    async fn register(&self, name: &str, now_ms: i64) -> Result<NamespaceInfo, StoreError> {
        if let Some(n) = self.forward(name).await? {
            return Ok(n);
        }
        if name == DEFAULT_NAMESPACE {
            check_registrable(name, &self.namespace_records().await?)?;
        }
        let info = NamespaceInfo {
            name: name.to_string(),
            id: new_namespace_id(),
            status: NamespaceStatus::Active,
            created_at_ms: now_ms,
            deleted_at_ms: None,
        };
        let put = |sk: String| -> Result<TransactWriteItem, StoreError> {
            Ok(TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&*self.table)
                        .set_item(Some(namespace_item(sk, &info)))
                        .condition_expression("attribute_not_exists(PK)")
                        .build()
                        .map_err(build_err)?,
                )
                .build())
        };
        let marker = TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&*self.table)
                    .set_item(Some(status_item(&info.id, NamespaceStatus::Active)))
                    .build()
                    .map_err(build_err)?,
            )
            .build();
        let items = vec![put(forward_sk(name))?, put(reverse_sk(&info.id))?, marker];
        // a cancellation by throttling wrote nothing: retried like a throttled single write
        let mut attempts = 0;
        let res = loop {
            attempts += 1;
            let res = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let pause = match &res {
                Err(e) if cancellation(e) == Some(Cancelled::Throttled) => {
                    throttle_pause(attempts, self.max_attempts, rand::random(), None)
                }
                _ => None,
            };
            match pause {
                Some(p) => tokio::time::sleep(p).await,
                None => break res,
            }
        };
        match res {
            Ok(_) => Ok(info),
            // throttled on every attempt: nothing was written, the name is still free
            Err(e) if cancellation(&e) == Some(Cancelled::Throttled) => Err(tx_err(e)),
            // someone registered the name first: theirs stands
            Err(SdkError::ServiceError(se)) if se.err().is_transaction_canceled_exception() => {
                self.forward(name).await?.ok_or_else(|| {
                    StoreError::Conflict(format!("registering namespace '{name}' raced; try again"))
                })
            }
            Err(e) => Err(sdk_err(e)),
        }
    }

    pub(super) async fn scoped_handle(
        &self,
        name: &str,
    ) -> Result<Option<Arc<dyn Store>>, StoreError> {
        let id = match self.forward(name).await? {
            Some(n) => n.id,
            None if name == DEFAULT_NAMESPACE => {
                let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
                self.register(name, now).await?.id
            }
            None => return Ok(None),
        };
        let mut handle = self.clone();
        handle.ns_name = name.into();
        handle.ns_id = Arc::new(tokio::sync::OnceCell::new_with(Some(id.into())));
        Ok(Some(Arc::new(handle)))
    }

    pub(super) async fn register_namespace_records(
        &self,
        name: &str,
        now_ms: i64,
    ) -> Result<NamespaceInfo, StoreError> {
        self.writable().await?;
        self.register(name, now_ms).await
    }

    pub(super) async fn namespace_records(&self) -> Result<Vec<NamespaceInfo>, StoreError> {
        let items = self
            .query_all(
                None,
                "PK = :pk AND begins_with(SK, :p)",
                &[(":pk", registry_pk()), (":p", "#NSID#".to_string())],
            )
            .await?;
        let mut out = items
            .iter()
            .map(parse_namespace)
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        Ok(out)
    }

    async fn set_status(
        &self,
        id: &str,
        status: NamespaceStatus,
        deleted_at_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        let mut req = self
            .client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(key(reverse_sk(id))))
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":s", s(status.as_str()))
            .condition_expression("attribute_exists(PK)");
        req = match deleted_at_ms {
            Some(t) => req
                .update_expression("SET #s = :s, deleted_at_ms = :d")
                .expression_attribute_values(":d", AttributeValue::N(t.to_string())),
            None => req.update_expression("SET #s = :s REMOVE deleted_at_ms"),
        };
        req.send().await.map_err(sdk_err)?;
        // the copy inside the namespace's key space, read on every config resolution
        self.client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(status_item(id, status)))
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }

    pub(super) async fn delete_namespace_records(
        &self,
        name: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.writable().await?;
        let Some(info) = self.forward(name).await? else {
            return Ok(false);
        };
        self.client
            .delete_item()
            .table_name(&*self.table)
            .set_key(Some(key(forward_sk(name))))
            .send()
            .await
            .map_err(sdk_err)?;
        self.set_status(&info.id, NamespaceStatus::Deleted, Some(now_ms))
            .await?;
        Ok(true)
    }

    pub(super) async fn recover_namespace_records(
        &self,
        id: &str,
    ) -> Result<NamespaceInfo, StoreError> {
        self.writable().await?;
        let info = self
            .get_record(reverse_sk(id))
            .await?
            .ok_or_else(|| StoreError::NamespaceNotFound(id.to_string()))?;
        let taken = self.forward(&info.name).await?;
        check_recoverable(&info, taken.as_ref())?;
        let mut back = info.clone();
        back.status = NamespaceStatus::Active;
        back.deleted_at_ms = None;
        let res = self
            .client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(namespace_item(forward_sk(&info.name), &back)))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .await;
        match res {
            Ok(_) => {}
            Err(SdkError::ServiceError(se)) if se.err().is_conditional_check_failed_exception() => {
                return Err(StoreError::Conflict(format!(
                    "the name '{}' was registered again meanwhile",
                    info.name
                )))
            }
            Err(e) => return Err(sdk_err(e)),
        }
        self.set_status(id, NamespaceStatus::Active, None).await?;
        Ok(back)
    }

    pub(super) async fn purge_namespace_items(
        &self,
        id: &str,
        progress: &(dyn Fn(usize) + Send + Sync),
    ) -> Result<usize, StoreError> {
        self.writable().await?;
        let Some(info) = self.get_record(reverse_sk(id)).await? else {
            return Ok(0);
        };
        check_purgeable(&info)?;
        // terminal: from here on the namespace cannot be recovered
        self.set_status(id, NamespaceStatus::Purging, info.deleted_at_ms)
            .await?;
        let mut deleted = 0;
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&*self.table)
                .index_name("GSI4")
                .key_condition_expression("GSI4PK = :ns")
                .expression_attribute_values(":ns", s(id))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_err)?;
            let requests = page
                .items()
                .iter()
                .map(delete_request)
                .collect::<Result<Vec<_>, _>>()?;
            for chunk in requests.chunks(25) {
                self.batch_write(chunk.to_vec()).await?;
                deleted += chunk.len();
                progress(deleted);
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        self.client
            .delete_item()
            .table_name(&*self.table)
            .set_key(Some(key(reverse_sk(id))))
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(deleted)
    }
}
