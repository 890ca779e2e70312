//! The DynamoDB store.
//!
//! One table (`PK`/`SK`), one item per bucket holding every limit as flat attributes
//! (`z_{limit}`, `tc_`, `cp_`, `ra_`, `rp_`). A warm acquire on one entity is exactly one
//! conditional `UpdateItem` with no read; a cascade is one `TransactWriteItems`. The write form
//! for each limit is guessed from the last state seen for the bucket (a small LRU cache fed by
//! `ReturnValues=ALL_NEW`); a wrong guess comes back with the item (`ALL_OLD`) and costs one
//! retry, and a real rejection needs no further call.

mod admin;
mod counter;
mod items;
pub mod keys;
mod namespace;
mod table;
mod update;

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ReturnConsumedCapacity, ReturnValue, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;
use lru::LruCache;
use parking_lot::Mutex;

use crate::bucket::BucketParams;
use crate::config::{AuditEvent, AuditPage, ConfigScope, IdPage, ResolutionData, StoredConfig};
use crate::entity::Entity;
use crate::error::{Result, StoreError};
use crate::namespace::NamespaceInfo;
use crate::store::{ApplyOutcome, BucketChange, BucketKey, BucketState, LimitState, Store};
use counter::CallCounter;
use keys::{LimitAttrs, BUCKET_SK, ENTITY_SK, LIMIT_PREFIXES};
use update::{Knowledge, Plan};

/// How many times a write is retried after a wrong guess or a transaction conflict before the
/// store reports itself unavailable.
const MAX_ATTEMPTS: usize = 12;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    table_name: String,
    region: Option<String>,
    endpoint_url: Option<String>,
    namespace: String,
    namespace_id: Option<String>,
    static_credentials: Option<(String, String)>,
    state_cache_size: usize,
    track_capacity: bool,
    sts_endpoint_url: Option<String>,
}

impl StoreConfig {
    /// Use table `table_name`; region and credentials come from the standard AWS chain.
    pub fn new(table_name: impl Into<String>) -> Self {
        StoreConfig {
            table_name: table_name.into(),
            region: None,
            endpoint_url: None,
            namespace: crate::namespace::DEFAULT_NAMESPACE.to_string(),
            namespace_id: None,
            static_credentials: None,
            state_cache_size: 10_000,
            track_capacity: false,
            sts_endpoint_url: None,
        }
    }
    /// AWS region (otherwise from the environment / profile).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }
    /// Talk to another endpoint, e.g. DynamoDB Local at `http://127.0.0.1:8000`.
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }
    /// Use fixed credentials instead of the chain (DynamoDB Local accepts any).
    pub fn static_credentials(mut self, key: impl Into<String>, secret: impl Into<String>) -> Self {
        self.static_credentials = Some((key.into(), secret.into()));
        self
    }
    /// Work in the namespace of this name (default `default`, registered on first use; any
    /// other must be registered). Its id is looked up on the first call that needs it.
    pub fn namespace(mut self, name: impl Into<String>) -> Self {
        self.namespace = name.into();
        self
    }
    /// Use a known namespace id directly, skipping the registry lookup (e.g. a tenant whose
    /// IAM policy only reaches its own `{id}/*` keys).
    pub fn namespace_id(mut self, id: impl Into<String>) -> Self {
        self.namespace_id = Some(id.into());
        self
    }
    /// How many buckets' last-seen states the client remembers to guess the write form.
    pub fn state_cache_size(mut self, n: usize) -> Self {
        self.state_cache_size = n;
        self
    }
    /// Ask DynamoDB for the capacity each call consumed (`ReturnConsumedCapacity=TOTAL`) and
    /// add it up; read it with [`DynamoStore::consumed_capacity`]. Off by default.
    pub fn track_consumed_capacity(mut self, on: bool) -> Self {
        self.track_capacity = on;
        self
    }
    /// Ask this STS endpoint for the caller identity (the audit principal when none is
    /// given); by default the standard one, or `endpoint_url` when that is set.
    pub fn sts_endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.sts_endpoint_url = Some(url.into());
        self
    }
    /// The table name.
    pub fn table_name(&self) -> &str {
        &self.table_name
    }
}

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
    states: Arc<Mutex<LruCache<String, BucketState>>>,
    calls: CallCounter,
    capacity: Option<Arc<Mutex<ConsumedCapacity>>>,
}

#[derive(Clone, Copy)]
enum Io {
    Read,
    Write,
}

impl DynamoStore {
    /// Build the client from `config` (no call is made).
    pub async fn connect(config: StoreConfig) -> Result<Self> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(r) = &config.region {
            loader = loader.region(aws_config::Region::new(r.clone()));
        } else if config.endpoint_url.is_some() {
            loader = loader.region(aws_config::Region::new("us-east-1"));
        }
        if let Some(url) = &config.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some((k, s)) = &config.static_credentials {
            loader = loader.credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                k,
                s,
                None,
                None,
                "zae-limiter-static",
            ));
        }
        let sdk = loader.load().await;
        let calls = CallCounter::default();
        let conf = aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(calls.clone())
            .build();
        // the caller identity is best effort: one attempt, no retries
        let mut sts = aws_sdk_sts::config::Builder::from(&sdk)
            .retry_config(aws_sdk_sts::config::retry::RetryConfig::standard().with_max_attempts(1));
        if let Some(url) = &config.sts_endpoint_url {
            sts = sts.endpoint_url(url);
        }
        Ok(DynamoStore {
            client: Client::from_conf(conf),
            sts: aws_sdk_sts::Client::from_conf(sts.build()),
            table: config.table_name.into(),
            ns_name: config.namespace.into(),
            ns_id: Arc::new(match config.namespace_id {
                Some(id) => tokio::sync::OnceCell::new_with(Some(id.into())),
                None => tokio::sync::OnceCell::new(),
            }),
            states: Arc::new(Mutex::new(LruCache::new(
                NonZeroUsize::new(config.state_cache_size.max(1)).expect("non-zero"),
            ))),
            calls,
            capacity: config
                .track_capacity
                .then(|| Arc::new(Mutex::new(ConsumedCapacity::default()))),
        })
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

    fn bucket_key(ns: &str, key: &BucketKey) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (
                "PK".to_string(),
                AttributeValue::S(keys::bucket_pk(ns, &key.entity_id, &key.resource)),
            ),
            ("SK".to_string(), AttributeValue::S(BUCKET_SK.to_string())),
        ])
    }

    fn remember(&self, ns: &str, key: &BucketKey, state: &BucketState) {
        self.states.lock().put(
            keys::bucket_pk(ns, &key.entity_id, &key.resource),
            state.clone(),
        );
    }

    async fn read_bucket(&self, key: &BucketKey) -> Result<Option<BucketState>, StoreError> {
        let ns = self.ns().await?;
        let out = self
            .client
            .get_item()
            .table_name(&*self.table)
            .set_key(Some(Self::bucket_key(&ns, key)))
            .consistent_read(true)
            .set_return_consumed_capacity(self.rcc())
            .send()
            .await
            .map_err(sdk_err)?;
        self.track(Io::Read, out.consumed_capacity());
        let state = out.item().map(parse_bucket).transpose()?;
        if let Some(s) = &state {
            self.remember(&ns, key, s);
        }
        Ok(state)
    }

    /// One attempt: `Ok(Ok(states))` applied, `Ok(Err(failed))` condition failures with the
    /// items DynamoDB returned (index, ALL_OLD), `Err` anything else.
    async fn attempt(
        &self,
        ns: &str,
        changes: &[BucketChange],
        plans: &[Vec<Plan>],
        now: i64,
    ) -> Result<Attempt, StoreError> {
        if let [change] = changes {
            let e = update::build(ns, change, &plans[0], now);
            let res = self
                .client
                .update_item()
                .table_name(&*self.table)
                .set_key(Some(Self::bucket_key(ns, &change.key)))
                .update_expression(e.update)
                .condition_expression(e.condition)
                .set_expression_attribute_names(Some(e.names))
                .set_expression_attribute_values(Some(e.values))
                .return_values(ReturnValue::AllNew)
                .set_return_consumed_capacity(self.rcc())
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            return match res {
                Ok(out) => {
                    self.track(Io::Write, out.consumed_capacity());
                    let state = out
                        .attributes()
                        .map(parse_bucket)
                        .transpose()?
                        .unwrap_or_default();
                    Ok(Attempt::Applied(vec![Some(state)]))
                }
                Err(SdkError::ServiceError(se)) => match se.err() {
                    UpdateItemError::ConditionalCheckFailedException(c) => {
                        let old = c.item().map(parse_bucket).transpose()?;
                        Ok(Attempt::Failed(vec![(0, old)]))
                    }
                    other => Err(classify(other.code(), other.message())),
                },
                Err(e) => Err(sdk_err(e)),
            };
        }
        let mut items = Vec::with_capacity(changes.len());
        for (change, plan) in changes.iter().zip(plans) {
            let e = update::build(ns, change, plan, now);
            let upd = Update::builder()
                .table_name(&*self.table)
                .set_key(Some(Self::bucket_key(ns, &change.key)))
                .update_expression(e.update)
                .condition_expression(e.condition)
                .set_expression_attribute_names(Some(e.names))
                .set_expression_attribute_values(Some(e.values))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build()
                .map_err(|e| StoreError::Other(e.to_string()))?;
            items.push(TransactWriteItem::builder().update(upd).build());
        }
        let res = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .set_return_consumed_capacity(self.rcc())
            .send()
            .await;
        match res {
            Ok(out) => {
                self.track(Io::Write, out.consumed_capacity());
                Ok(Attempt::Applied(vec![None; changes.len()]))
            }
            Err(SdkError::ServiceError(se)) => match se.err() {
                TransactWriteItemsError::TransactionCanceledException(tc) => {
                    let reasons = tc.cancellation_reasons();
                    let mut failed = Vec::new();
                    let mut conflict = false;
                    for (i, r) in reasons.iter().enumerate() {
                        match r.code() {
                            Some("ConditionalCheckFailed") => {
                                failed.push((i, r.item().map(parse_bucket).transpose()?))
                            }
                            Some("TransactionConflict") => conflict = true,
                            Some("None") | None => {}
                            Some(other) => {
                                return Err(classify(Some(other), r.message()));
                            }
                        }
                    }
                    if failed.is_empty() {
                        if conflict {
                            return Ok(Attempt::Conflict);
                        }
                        return Err(StoreError::Other(format!("transaction cancelled: {tc}")));
                    }
                    Ok(Attempt::Failed(failed))
                }
                other => Err(classify(other.code(), other.message())),
            },
            Err(e) => Err(sdk_err(e)),
        }
    }
}

enum Attempt {
    /// Applied; the new state per change when DynamoDB returned it.
    Applied(Vec<Option<BucketState>>),
    /// Conditions failed: (change index, item as it was).
    Failed(Vec<(usize, Option<BucketState>)>),
    /// A concurrent transaction touched the same items.
    Conflict,
}

/// Apply `change` to `state` without checks (the client's estimate of the result).
fn estimate(state: Option<&BucketState>, change: &BucketChange, now: i64) -> BucketState {
    let mut s = [state.cloned().unwrap_or_default()];
    let unchecked: Vec<_> = change
        .limits
        .iter()
        .cloned()
        .map(|mut l| {
            l.checked = false;
            l
        })
        .collect();
    let c = BucketChange {
        key: change.key.clone(),
        limits: unchecked,
    };
    crate::store::apply_exact(&mut s, std::slice::from_ref(&c), now);
    let [s] = s;
    s
}

#[async_trait]
impl Store for DynamoStore {
    async fn apply(
        &self,
        changes: &[BucketChange],
        now: i64,
        _op: &crate::store::WriteOp,
    ) -> Result<ApplyOutcome, StoreError> {
        if changes.is_empty() {
            return Ok(ApplyOutcome::Applied(Vec::new()));
        }
        let ns = self.ns().await?;
        let mut know: Vec<Knowledge> = {
            let mut cache = self.states.lock();
            changes
                .iter()
                .map(|c| {
                    let pk = keys::bucket_pk(&ns, &c.key.entity_id, &c.key.resource);
                    Knowledge::Guess(cache.get(&pk).cloned())
                })
                .collect()
        };
        // A checked amount above capacity can never pass: read the bucket for exact statuses.
        for (i, c) in changes.iter().enumerate() {
            if c.limits
                .iter()
                .any(|l| l.checked && l.amount > l.params.capacity)
            {
                know[i] = Knowledge::Exact(self.read_bucket(&c.key).await?);
            }
        }
        let mut backoff = Duration::from_millis(5);
        for _ in 0..MAX_ATTEMPTS {
            let mut plans = Vec::with_capacity(changes.len());
            let mut rejected = false;
            for (c, k) in changes.iter().zip(&know) {
                match update::plan(c, k, now) {
                    Some(p) => plans.push(p),
                    None => rejected = true,
                }
            }
            if rejected {
                return Ok(ApplyOutcome::Rejected(
                    know.iter().map(|k| k.state().cloned()).collect(),
                ));
            }
            match self.attempt(&ns, changes, &plans, now).await? {
                Attempt::Applied(states) => {
                    let states: Vec<BucketState> = states
                        .into_iter()
                        .zip(changes.iter().zip(&know))
                        .map(|(s, (c, k))| s.unwrap_or_else(|| estimate(k.state(), c, now)))
                        .collect();
                    for (c, s) in changes.iter().zip(&states) {
                        self.remember(&ns, &c.key, s);
                    }
                    return Ok(ApplyOutcome::Applied(states));
                }
                Attempt::Failed(failed) => {
                    for (i, old) in failed {
                        match &old {
                            Some(s) => self.remember(&ns, &changes[i].key, s),
                            None => {
                                let k = &changes[i].key;
                                self.states.lock().pop(&keys::bucket_pk(
                                    &ns,
                                    &k.entity_id,
                                    &k.resource,
                                ));
                            }
                        }
                        know[i] = Knowledge::Exact(old);
                    }
                }
                Attempt::Conflict => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(100));
                }
            }
        }
        Err(StoreError::Unavailable(format!(
            "gave up after {MAX_ATTEMPTS} attempts under contention"
        )))
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
        out.item().map(parse_entity).transpose()
    }

    async fn delete_entity(&self, entity_id: &str, audit: &AuditEvent) -> Result<bool, StoreError> {
        self.delete_entity_items(entity_id, audit).await
    }

    async fn children(&self, parent_id: &str) -> Result<Vec<Entity>, StoreError> {
        self.children_items(parent_id).await
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
        config: Option<&StoredConfig>,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        self.put_config_item(scope, config, audit).await
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

/// Map an SDK failure to a store error: service errors that mean "not usable now" are
/// `Unavailable`, as are transport failures and timeouts.
fn sdk_err<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    e: SdkError<E, R>,
) -> StoreError {
    match &e {
        SdkError::ServiceError(se) => classify(se.err().code(), se.err().message()),
        _ => StoreError::Unavailable(aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string()),
    }
}

fn classify(code: Option<&str>, message: Option<&str>) -> StoreError {
    let text = format!("{}: {}", code.unwrap_or("error"), message.unwrap_or(""));
    match code {
        Some(
            "ProvisionedThroughputExceededException"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "ResourceNotFoundException"
            | "InternalServerError"
            | "ServiceUnavailable"
            | "UnrecognizedClientException"
            | "AccessDeniedException"
            | "ThrottlingError",
        ) => StoreError::Unavailable(text),
        _ => StoreError::Other(text),
    }
}

fn n_attr(item: &HashMap<String, AttributeValue>, name: &str) -> Result<Option<i128>, StoreError> {
    match item.get(name) {
        None => Ok(None),
        Some(AttributeValue::N(n)) => n
            .parse::<i128>()
            .map(Some)
            .map_err(|_| StoreError::Other(format!("attribute {name} is not an integer: {n}"))),
        Some(other) => Err(StoreError::Other(format!(
            "attribute {name} has the wrong type: {other:?}"
        ))),
    }
}

/// Read the per-limit attributes of a bucket item.
fn parse_bucket(item: &HashMap<String, AttributeValue>) -> Result<BucketState, StoreError> {
    let mut state = BucketState::default();
    for name in item
        .keys()
        .filter_map(|k| k.strip_prefix(LIMIT_PREFIXES[0]))
    {
        let a = LimitAttrs::new(name);
        let get = |attr: &str| -> Result<i128, StoreError> {
            n_attr(item, attr)?
                .ok_or_else(|| StoreError::Other(format!("bucket item lacks {attr}")))
        };
        state.limits.insert(
            name.to_string(),
            LimitState {
                params: BucketParams {
                    capacity: get(&a.capacity)?,
                    refill: get(&a.refill)?,
                    period: get(&a.period)?,
                },
                version: 0,
                level: get(&a.level)?,
                consumed: n_attr(item, &a.consumed)?.unwrap_or(0),
            },
        );
    }
    Ok(state)
}

fn parse_entity(item: &HashMap<String, AttributeValue>) -> Result<Entity, StoreError> {
    let s = |k: &str| match item.get(k) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    };
    Ok(Entity {
        id: s("entity_id")
            .ok_or_else(|| StoreError::Other("entity item lacks entity_id".into()))?,
        name: s("name"),
        parent_id: s("parent_id"),
        cascade: matches!(item.get("cascade"), Some(AttributeValue::Bool(true))),
        metadata: match item.get("metadata") {
            Some(AttributeValue::M(m)) => m
                .iter()
                .filter_map(|(k, v)| v.as_s().ok().map(|v| (k.clone(), v.clone())))
                .collect(),
            _ => BTreeMap::new(),
        },
        created_at_ms: n_attr(item, "created_at_ms")?.unwrap_or(0) as i64,
    })
}
