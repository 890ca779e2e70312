//! The DynamoDB store.
//!
//! One table (`PK`/`SK`), one item per bucket holding every limit as flat attributes
//! (`z_{limit}`, `tc_`, `cp_`, `ra_`, `rp_`). A warm acquire on one entity is exactly one
//! conditional `UpdateItem` with no read; a cascade is one `TransactWriteItems`. The write form
//! for each limit is guessed from the last state seen for the bucket (a small LRU cache fed by
//! `ReturnValues=UPDATED_NEW`); a wrong guess comes back with the item (`ALL_OLD`) and costs one
//! retry, and a real rejection needs no further call.

mod admin;
mod batch;
mod bucket_item;
mod config;
mod counter;
mod errors;
mod expr;
mod items;
mod listing;
pub use crate::keys;
mod namespace;
mod plan;
mod schema_record;
mod table;
mod usage;
mod write;

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnConsumedCapacity};
use aws_sdk_dynamodb::Client;
use lru::LruCache;
use parking_lot::Mutex;

use crate::config::{
    AuditEvent, AuditPage, ConfigScope, IdPage, ProvisionerState, ResolutionData, StoredConfig,
};
use crate::entity::Entity;
use crate::error::{Result, StoreError};
use crate::namespace::NamespaceInfo;
use crate::store::{ApplyOutcome, BucketChange, BucketKey, BucketState, Store, WriteOp};
pub use config::StoreConfig;
use counter::CallCounter;
pub(crate) use errors::sdk_err;
use keys::ENTITY_SK;
pub use table::INDEXES;

/// Capacity units reported by DynamoDB for the calls made while tracking was on.
///
/// DynamoDB reports capacity only in successful responses: a write refused by its condition
/// is billed (1 WCU per KB) but not reported here.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ConsumedCapacity {
    /// Read capacity units (GetItem, BatchGetItem, Query).
    pub read: f64,
    /// Write capacity units (UpdateItem, PutItem, TransactWriteItems).
    pub write: f64,
}

/// The DynamoDB-backed [`Store`]. Cheap to clone; clones share the client and caches.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    sts: aws_sdk_sts::Client,
    table: Arc<str>,
    /// The namespace's name, and its id once looked up.
    ns_name: Arc<str>,
    ns_id: Arc<tokio::sync::OnceCell<Arc<str>>>,
    /// Read once, before the first write: why this client must not write to the table (its
    /// schema record is newer than this client), `None` when it may.
    schema_block: Arc<tokio::sync::OnceCell<Option<String>>>,
    states: Arc<Mutex<LruCache<String, BucketState>>>,
    calls: CallCounter,
    capacity: Option<Arc<Mutex<ConsumedCapacity>>>,
    local_refusals: bool,
    /// Attempts per write (the SDK's for single items; the store's own for transactions
    /// cancelled by throttling, which the SDK does not retry).
    max_attempts: u32,
}

#[derive(Clone, Copy)]
enum Io {
    Read,
    Write,
}

impl DynamoStore {
    /// Build the client from `config` (no call is made): from the standard AWS chain, or
    /// from the [`StoreConfig::sdk_config`] given.
    pub async fn connect(config: StoreConfig) -> Result<Self> {
        config.validate()?;
        let sdk = match &config.sdk_config {
            Some(sdk) => sdk.clone(),
            None => {
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
                if let Some(r) = config.region_over(None) {
                    loader = loader.region(r);
                }
                if let Some(url) = &config.endpoint_url {
                    loader = loader.endpoint_url(url);
                }
                if let Some(c) = config.credentials() {
                    loader = loader.credentials_provider(c);
                }
                loader.load().await
            }
        };
        let calls = CallCounter::default();
        let conf = config
            .dynamodb_overrides(aws_sdk_dynamodb::config::Builder::from(&sdk), sdk.region())
            .interceptor(calls.clone())
            .timeout_config(
                aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(config.attempt_timeout)
                    .connect_timeout(config.attempt_timeout)
                    .build(),
            )
            .retry_config(
                aws_sdk_dynamodb::config::retry::RetryConfig::standard()
                    .with_max_attempts(config.max_attempts)
                    .with_initial_backoff(Duration::from_millis(25))
                    .with_max_backoff(Duration::from_millis(400)),
            )
            // every answer is a small JSON body, and the attempt timeout above already bounds
            // a stalled one: the per-request stall monitor only costs time on the hot path
            .stalled_stream_protection(
                aws_sdk_dynamodb::config::StalledStreamProtectionConfig::disabled(),
            )
            .build();
        let sts = config.sts_client(&sdk);
        let attempts = config.max_attempts;
        Ok(Self::assemble(
            Client::from_conf(conf),
            sts,
            config,
            calls,
            attempts,
        ))
    }

    /// Use a DynamoDB client you built yourself; `config` gives the table, namespace and
    /// caches. The client keeps its own settings: its timeouts and retries are used as they
    /// are (`attempt_timeout` and `max_attempts` of `config` do not apply, so give the
    /// client an attempt timeout yourself if the limiter's deadline is to allow a retry);
    /// `region`, `endpoint_url` and `static_credentials` apply on top when set. The call
    /// counter is added to a copy of the client's config, so
    /// [`call_counts`](Self::call_counts) works. A client does not give out its credentials,
    /// so the caller identity (the audit principal when none is given) is asked of STS
    /// with the [`StoreConfig::sdk_config`] when one is given, else with the client's region
    /// and HTTP client and `static_credentials` (without them no identity is found: give
    /// the limiter a `principal`); `sts_endpoint_url`, else `endpoint_url`, applies. No call
    /// is made.
    ///
    /// ```no_run
    /// # async fn f() -> zae_limiter::Result<()> {
    /// use zae_limiter::{DynamoStore, StoreConfig};
    ///
    /// let sdk = aws_config::load_from_env().await;
    /// let client = aws_sdk_dynamodb::Client::new(&sdk);
    /// let store = DynamoStore::from_client(client, StoreConfig::new("limits"))?;
    /// # Ok(()) }
    /// ```
    pub fn from_client(client: Client, config: StoreConfig) -> Result<Self> {
        config.validate()?;
        let own = client.config();
        // the client's retries apply to transactions cancelled by throttling too
        let attempts = own.retry_config().map_or(1, |r| r.max_attempts()).max(1);
        let calls = CallCounter::default();
        let conf = config
            .dynamodb_overrides(own.to_builder(), own.region())
            .interceptor(calls.clone())
            .build();
        // a client does not give out its credentials: STS needs them from elsewhere
        let sdk = config.sdk_config.clone().unwrap_or_else(|| {
            let mut sdk = aws_config::SdkConfig::builder()
                .behavior_version(aws_config::BehaviorVersion::latest());
            sdk.set_region(own.region().cloned());
            sdk.set_http_client(own.http_client());
            sdk.set_sleep_impl(own.sleep_impl());
            sdk.set_time_source(own.time_source());
            sdk.build()
        });
        let sts = config.sts_client(&sdk);
        Ok(Self::assemble(
            Client::from_conf(conf),
            sts,
            config,
            calls,
            attempts,
        ))
    }

    fn assemble(
        client: Client,
        sts: aws_sdk_sts::Client,
        config: StoreConfig,
        calls: CallCounter,
        max_attempts: u32,
    ) -> Self {
        DynamoStore {
            client,
            sts,
            table: config.table_name.into(),
            ns_name: config.namespace.into(),
            ns_id: Arc::new(match config.namespace_id {
                Some(id) => tokio::sync::OnceCell::new_with(Some(id.into())),
                None => tokio::sync::OnceCell::new(),
            }),
            schema_block: Arc::new(tokio::sync::OnceCell::new()),
            states: Arc::new(Mutex::new(LruCache::new(
                NonZeroUsize::new(config.state_cache_size.max(1)).expect("non-zero"),
            ))),
            calls,
            local_refusals: config.local_refusals,
            max_attempts,
            capacity: config
                .track_capacity
                .then(|| Arc::new(Mutex::new(ConsumedCapacity::default()))),
        }
    }

    /// Capacity consumed so far (all zero unless
    /// [`StoreConfig::track_consumed_capacity`] is on).
    pub fn consumed_capacity(&self) -> ConsumedCapacity {
        self.capacity
            .as_ref()
            .map(|c| *c.lock())
            .unwrap_or_default()
    }

    /// Reset [`consumed_capacity`](Self::consumed_capacity).
    pub fn reset_consumed_capacity(&self) {
        if let Some(c) = &self.capacity {
            *c.lock() = ConsumedCapacity::default();
        }
    }

    fn rcc(&self) -> Option<ReturnConsumedCapacity> {
        self.capacity
            .as_ref()
            .map(|_| ReturnConsumedCapacity::Total)
    }

    fn track<'a>(
        &self,
        io: Io,
        reported: impl IntoIterator<Item = &'a aws_sdk_dynamodb::types::ConsumedCapacity>,
    ) {
        if let Some(c) = &self.capacity {
            let units: f64 = reported
                .into_iter()
                .filter_map(|r| r.capacity_units())
                .sum();
            let mut c = c.lock();
            match io {
                Io::Read => c.read += units,
                Io::Write => c.write += units,
            }
        }
    }

    /// DynamoDB API calls made so far, by operation name (`UpdateItem`, `GetItem`, ...).
    pub fn call_counts(&self) -> BTreeMap<String, u64> {
        self.calls.snapshot()
    }

    /// Reset [`call_counts`](Self::call_counts).
    pub fn reset_call_counts(&self) {
        self.calls.reset()
    }

    /// Forget the cached bucket states (the next write guesses "full").
    pub fn clear_state_cache(&self) {
        self.states.lock().clear()
    }

    /// The table name.
    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// The id of this handle's namespace, the prefix of every key it writes (the value of
    /// the `zael_namespace_id` principal tag of the namespace-scoped IAM policies). Looked
    /// up on first use and cached; `default` is registered if it is missing.
    pub async fn namespace_id(&self) -> Result<String> {
        Ok(self.ns().await?.to_string())
    }

    /// The DynamoDB client this store sends its requests with (its settings and call
    /// counter included): for your own calls on the same connections, or to measure a bare
    /// write side by side with the limiter's (`zae-limiter bench`, scenario `raw`).
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn remember(&self, ns: &str, key: &BucketKey, state: &BucketState) {
        self.states.lock().put(
            keys::bucket_pk(ns, &key.entity_id, &key.resource, key.shard),
            state.clone(),
        );
    }

    fn forget(&self, ns: &str, key: &BucketKey) {
        self.states.lock().pop(&keys::bucket_pk(
            ns,
            &key.entity_id,
            &key.resource,
            key.shard,
        ));
    }

    fn cached(&self, ns: &str, key: &BucketKey) -> Option<BucketState> {
        self.states
            .lock()
            .get(&keys::bucket_pk(
                ns,
                &key.entity_id,
                &key.resource,
                key.shard,
            ))
            .cloned()
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn apply(
        &self,
        changes: &[BucketChange],
        now: i64,
        op: &WriteOp,
    ) -> Result<ApplyOutcome, StoreError> {
        self.apply_changes(changes, now, op).await
    }

    async fn write_landed(
        &self,
        changes: &[BucketChange],
        op: &WriteOp,
    ) -> Result<bool, StoreError> {
        self.landed(changes, op).await
    }

    fn partition_write_limit(&self) -> Option<u32> {
        // a partition's write units per second (a transaction item counts two)
        Some(1_000)
    }

    async fn get_bucket(&self, key: &BucketKey) -> Result<Option<BucketState>, StoreError> {
        self.read_bucket(key).await
    }

    async fn create_entity(&self, entity: &Entity, audit: &AuditEvent) -> Result<(), StoreError> {
        self.create_entity_item(entity, audit).await
    }

    async fn update_entity(&self, entity: &Entity, audit: &AuditEvent) -> Result<bool, StoreError> {
        self.update_entity_item(entity, audit).await
    }

    async fn get_entity(&self, entity_id: &str) -> Result<Option<Entity>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&*self.table)
            .key(
                "PK",
                AttributeValue::S(keys::entity_pk(&self.ns().await?, entity_id)),
            )
            .key("SK", AttributeValue::S(ENTITY_SK.to_string()))
            .consistent_read(true)
            .set_return_consumed_capacity(self.rcc())
            .send()
            .await
            .map_err(sdk_err)?;
        self.track(Io::Read, out.consumed_capacity());
        out.item().map(items::parse_entity).transpose()
    }

    async fn delete_entity(&self, entity_id: &str, audit: &AuditEvent) -> Result<bool, StoreError> {
        self.delete_entity_items(entity_id, audit).await
    }

    async fn children(&self, parent_id: &str) -> Result<Vec<Entity>, StoreError> {
        self.children_items(parent_id).await
    }

    async fn list_entities(
        &self,
        limit: usize,
        after: Option<&str>,
    ) -> Result<crate::entity::EntityPage, StoreError> {
        self.list_entity_items(limit, after).await
    }

    async fn resources_with_defaults(&self) -> Result<Vec<String>, StoreError> {
        self.resources_with_defaults_items().await
    }

    async fn entities_with_limits(
        &self,
        resource: &str,
        limit: usize,
        after: Option<&str>,
    ) -> Result<IdPage, StoreError> {
        self.entities_with_limits_items(resource, limit, after)
            .await
    }

    async fn scoped(&self, name: &str) -> Result<Option<Arc<dyn Store>>, StoreError> {
        self.scoped_handle(name).await
    }

    async fn register_namespace(
        &self,
        name: &str,
        now_ms: i64,
    ) -> Result<NamespaceInfo, StoreError> {
        self.register_namespace_records(name, now_ms).await
    }

    async fn namespaces(&self) -> Result<Vec<NamespaceInfo>, StoreError> {
        self.namespace_records().await
    }

    async fn delete_namespace(&self, name: &str, now_ms: i64) -> Result<bool, StoreError> {
        self.delete_namespace_records(name, now_ms).await
    }

    async fn recover_namespace(&self, id: &str) -> Result<NamespaceInfo, StoreError> {
        self.recover_namespace_records(id).await
    }

    async fn purge_namespace(
        &self,
        id: &str,
        progress: &(dyn Fn(usize) + Send + Sync),
    ) -> Result<usize, StoreError> {
        self.purge_namespace_items(id, progress).await
    }

    async fn record_audit(&self, audit: &AuditEvent) -> Result<(), StoreError> {
        self.record_audit_item(audit).await
    }

    async fn caller_identity(&self) -> Option<String> {
        match self.sts.get_caller_identity().send().await {
            Ok(out) => out.arn().map(str::to_string),
            Err(e) => {
                tracing::debug!(error = %aws_sdk_sts::error::DisplayErrorContext(&e),
                    "caller identity unavailable; audit events will carry no principal");
                None
            }
        }
    }

    async fn load_resolution(
        &self,
        entity_id: &str,
        resource: &str,
    ) -> Result<ResolutionData, StoreError> {
        self.load_resolution_items(entity_id, resource).await
    }

    async fn get_config(&self, scope: &ConfigScope) -> Result<Option<StoredConfig>, StoreError> {
        self.get_config_item(scope).await
    }

    async fn put_config(
        &self,
        scope: &ConfigScope,
        expected_version: Option<i64>,
        config: Option<&StoredConfig>,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        self.put_config_item(scope, expected_version, config, audit)
            .await
    }

    async fn get_provisioner(&self) -> Result<Option<ProvisionerState>, StoreError> {
        self.get_provisioner_item().await
    }

    async fn put_provisioner(
        &self,
        state: &ProvisionerState,
        expected_revision: u64,
    ) -> Result<(), StoreError> {
        self.put_provisioner_item(state, expected_revision).await
    }

    async fn list_audit(
        &self,
        entity_id: &str,
        limit: usize,
        before: Option<&str>,
    ) -> Result<AuditPage, StoreError> {
        self.list_audit_items(entity_id, limit, before).await
    }
}
