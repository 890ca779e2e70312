//! The storage contract. A store applies *semantic* bucket changes ("take these amounts from
//! these buckets atomically, or tell me why not"); it knows nothing about leases or caches.
//!
//! Two implementations pass the same conformance suite: [`MemoryStore`] (in-process) and
//! [`DynamoStore`](crate::dynamodb::DynamoStore).

mod exact;
pub(crate) mod memory;

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::bucket::BucketParams;
use crate::config::{
    AuditEvent, AuditPage, ConfigScope, IdPage, ProvisionerState, ResolutionData, StoredConfig,
};
use crate::entity::Entity;
use crate::error::StoreError;
use crate::namespace::NamespaceInfo;

pub use exact::{apply_exact, bucket_time, check_changes, resolve, Resolve, TIME_REFRESH_MS};
pub use memory::MemoryStore;

/// Identifies one bucket: all limits of one entity on one resource live in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BucketKey {
    /// The entity.
    pub entity_id: String,
    /// The resource.
    pub resource: String,
    /// Which shard of the bucket (0 when unsharded; see [`crate::shard`]).
    pub shard: u16,
}

impl BucketKey {
    /// A key for `entity_id` on `resource` (shard 0).
    pub fn new(entity_id: impl Into<String>, resource: impl Into<String>) -> Self {
        BucketKey {
            entity_id: entity_id.into(),
            resource: resource.into(),
            shard: 0,
        }
    }

    /// The key of shard `shard` of the same bucket.
    pub fn with_shard(&self, shard: u16) -> Self {
        BucketKey {
            shard,
            ..self.clone()
        }
    }
}

/// The stored state of one limit inside a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitState {
    /// The parameters the level is expressed in.
    pub params: BucketParams,
    /// The version of those parameters: the stored config's version, 0 for limits passed in
    /// code. A client holding older parameters adopts these; newer ones rebase the level.
    pub version: i64,
    /// The level `z` (see [`crate::bucket`]).
    pub level: i128,
    /// Net millitokens consumed over the bucket's life (usage analytics).
    pub consumed: i128,
}

impl LimitState {
    /// The level expressed in `params` at `now` (rebased when the stored parameters differ).
    pub fn level_for(&self, params: &BucketParams, now_ms: i64) -> Option<i128> {
        if self.params == *params {
            Some(self.level)
        } else {
            self.params.rebase(Some(self.level), now_ms, params)
        }
    }
}

/// A bucket as stored: every limit by name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BucketState {
    /// Limit states by limit name.
    pub limits: BTreeMap<String, LimitState>,
    /// The bucket's time: the largest client time (ms) at which its levels were set. Every
    /// decision is made at `max(client time, time_ms)`, so a client whose clock is behind
    /// cannot refill the bucket a second time (0: never written).
    pub time_ms: i64,
}

impl BucketState {
    /// The newest parameter version among the stored limits (0 when none).
    pub fn version(&self) -> i64 {
        self.limits.values().map(|l| l.version).max().unwrap_or(0)
    }

    /// When every limit is full again (ms), assuming nothing more is taken; `None` for a
    /// bucket without limits. Past that instant the bucket can be dropped: a missing bucket
    /// reads as full.
    pub fn full_at_ms(&self) -> Option<i64> {
        self.limits
            .values()
            .map(|l| {
                let p = &l.params;
                // first t with z >= P*C - t*A
                let need = p.period * p.capacity - l.level;
                let t = if need <= 0 {
                    i64::MIN as i128
                } else {
                    (need + p.refill - 1).div_euclid(p.refill)
                };
                t.clamp(i64::MIN as i128, i64::MAX as i128) as i64
            })
            .max()
            .map(|t| t.max(self.time_ms))
    }

    /// The level of limit `name` in `params` at `now`; `None` when the limit was never written.
    pub fn level_for(&self, name: &str, params: &BucketParams, now_ms: i64) -> Option<i128> {
        self.limits
            .get(name)
            .and_then(|s| s.level_for(params, now_ms))
    }
}

/// One limit's part of a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitChange {
    /// Limit name.
    pub name: String,
    /// The parameters the caller computes with. If the stored ones differ, the store first
    /// rebases the level to these, keeping the token count.
    pub params: BucketParams,
    /// The version of `params` (see [`LimitState::version`]).
    pub version: i64,
    /// Millitokens to take (negative gives back).
    pub amount: i128,
    /// When true the whole change is refused unless `amount` is available; when false the
    /// amount is applied regardless (may create debt).
    pub checked: bool,
    /// Whether `amount` counts in the consumed counter (usage analytics). False only for
    /// tokens that are discarded rather than used: the new shards a split empties.
    pub counted: bool,
}

impl LimitChange {
    /// What the change adds to the consumed counter.
    pub fn counted_amount(&self) -> i128 {
        if self.counted {
            self.amount
        } else {
            0
        }
    }
}

/// The change to one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketChange {
    /// Which bucket.
    pub key: BucketKey,
    /// What to do to each limit; limits stored but not named here are left alone.
    pub limits: Vec<LimitChange>,
}

/// Identifies one logical write so that a store can apply it at most once, however often
/// the request is retried (lost responses, SDK retries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOp {
    /// Unique per logical write (e.g. `{lease}:acquire`, `{lease}:commit`).
    pub id: String,
    /// The write must be applied exactly once even when its response is lost and another
    /// client writes the same bucket meanwhile (refunds, adjustments). The DynamoDB store
    /// then uses an idempotent transaction; other writes use a cheaper last-writer guard.
    pub exactly_once: bool,
    /// When the caller gives up. A store retrying under contention stops before it and
    /// reports [`StoreError::Contended`], so contention is never mistaken for an outage.
    pub deadline: Option<tokio::time::Instant>,
}

impl WriteOp {
    /// A write guarded by `id`.
    pub fn new(id: impl Into<String>, exactly_once: bool) -> Self {
        WriteOp {
            id: id.into(),
            exactly_once,
            deadline: None,
        }
    }

    /// The same write, to be given up at `deadline`.
    pub fn with_deadline(mut self, deadline: tokio::time::Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// A fresh random id with `kind` as a readable suffix.
    pub fn unique(kind: &str, exactly_once: bool) -> Self {
        Self::new(
            format!("{:032x}:{kind}", rand::random::<u128>()),
            exactly_once,
        )
    }
}

/// What [`Store::apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Everything was applied atomically. One state per change, after the change (for
    /// stores that cannot read back every bucket this may be an estimate).
    Applied(Vec<BucketState>),
    /// A checked amount was not available; nothing was written. One state per change as seen
    /// when the decision was made (`None` for a bucket whose state the store did not see).
    Rejected(Vec<Option<BucketState>>),
}

/// The storage contract every backend implements.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Apply `changes` at `now_ms`, all or nothing, with the semantics of [`apply_exact`]
    /// (each bucket decides at [`bucket_time`]; limits whose stored parameters are older are
    /// rebased even when the request is refused). `op` identifies the write: retries of the
    /// same `op` are applied at most once. Changes that DynamoDB would refuse (see
    /// [`check_changes`]) are refused with [`StoreError::Refused`] by every store.
    async fn apply(
        &self,
        changes: &[BucketChange],
        now_ms: i64,
        op: &WriteOp,
    ) -> Result<ApplyOutcome, StoreError>;

    /// Whether the write `op` of `changes`, whose outcome the caller never heard (its
    /// deadline passed with the request in flight), is known to have been applied. A store
    /// that cannot tell answers `false`; one that never loses an answer (the embedded
    /// store) always does. The limiter then gives back what such a write took.
    async fn write_landed(
        &self,
        _changes: &[BucketChange],
        _op: &WriteOp,
    ) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// The writes per second one bucket item takes before the store throttles it (`None`:
    /// no such limit, as in the embedded store). DynamoDB's partitions take about 1,000
    /// write units per second; the limiter splits a bucket whose shards near it.
    fn partition_write_limit(&self) -> Option<u32> {
        None
    }

    /// Read one bucket (`None` if it was never written).
    async fn get_bucket(&self, key: &BucketKey) -> Result<Option<BucketState>, StoreError>;

    /// Create an entity and record `audit`, atomically; [`StoreError::EntityExists`] if the
    /// id is taken.
    async fn create_entity(&self, entity: &Entity, audit: &AuditEvent) -> Result<(), StoreError>;

    /// Replace a stored entity (same id) and record `audit`, atomically; `false` if it does
    /// not exist (then nothing is written).
    async fn update_entity(&self, entity: &Entity, audit: &AuditEvent) -> Result<bool, StoreError>;

    /// Read an entity.
    async fn get_entity(&self, entity_id: &str) -> Result<Option<Entity>, StoreError>;

    /// Delete an entity with its configs and buckets, recording `audit`. `false` if it did
    /// not exist (then nothing is written).
    async fn delete_entity(&self, entity_id: &str, audit: &AuditEvent) -> Result<bool, StoreError>;

    /// The children of `parent_id`, sorted by id.
    async fn children(&self, parent_id: &str) -> Result<Vec<Entity>, StoreError>;

    /// The entities of this namespace sorted by id: at most `limit`, those after `after`
    /// when given.
    async fn list_entities(
        &self,
        limit: usize,
        after: Option<&str>,
    ) -> Result<crate::entity::EntityPage, StoreError>;

    /// Resources that have a resource-level config, sorted.
    async fn resources_with_defaults(&self) -> Result<Vec<String>, StoreError>;

    /// Entities that have an entity+resource config for `resource`, sorted by id: at most
    /// `limit`, those after `after` when given.
    async fn entities_with_limits(
        &self,
        resource: &str,
        limit: usize,
        after: Option<&str>,
    ) -> Result<IdPage, StoreError>;

    /// A handle on the same data scoped to the active namespace `name` (`None` if there is
    /// no such namespace; `default` is registered on first use).
    async fn scoped(&self, name: &str) -> Result<Option<std::sync::Arc<dyn Store>>, StoreError>;

    /// Register `name` (idempotent: an active namespace of that name is returned as is).
    async fn register_namespace(
        &self,
        name: &str,
        now_ms: i64,
    ) -> Result<NamespaceInfo, StoreError>;

    /// Every namespace record, whatever its status, sorted by name.
    async fn namespaces(&self) -> Result<Vec<NamespaceInfo>, StoreError>;

    /// Soft-delete: the name is freed, the data stays under the id. `false` if no active
    /// namespace has that name.
    async fn delete_namespace(&self, name: &str, now_ms: i64) -> Result<bool, StoreError>;

    /// Bring a soft-deleted namespace back under its old name.
    async fn recover_namespace(&self, id: &str) -> Result<NamespaceInfo, StoreError>;

    /// Delete every item of a soft-deleted namespace, then its record; `progress` gets the
    /// running count of deleted items. Returns the count.
    async fn purge_namespace(
        &self,
        id: &str,
        progress: &(dyn Fn(usize) + Send + Sync),
    ) -> Result<usize, StoreError>;

    /// Who the store's credentials belong to (e.g. an IAM ARN from STS), when it can tell.
    /// Used as the audit principal when none is given.
    async fn caller_identity(&self) -> Option<String> {
        None
    }

    /// Record an audit event on its own (namespace changes).
    async fn record_audit(&self, audit: &AuditEvent) -> Result<(), StoreError>;

    /// The entity and the four config levels for `entity_id` on `resource`, in one read.
    async fn load_resolution(
        &self,
        entity_id: &str,
        resource: &str,
    ) -> Result<ResolutionData, StoreError>;

    /// The config stored at `scope`.
    async fn get_config(&self, scope: &ConfigScope) -> Result<Option<StoredConfig>, StoreError>;

    /// Store (`Some`) or delete (`None`) the config at `scope` and record `audit`, atomically,
    /// if what is stored there now is what the caller saw: the config of version
    /// `expected_version`, or nothing when `None`. Otherwise nothing is written and the
    /// answer is [`StoreError::Conflict`] (a concurrent change).
    async fn put_config(
        &self,
        scope: &ConfigScope,
        expected_version: Option<i64>,
        config: Option<&StoredConfig>,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;

    /// The record of the last declarative apply in this namespace (`#PROVISIONER`): what the
    /// manifest manages, its hash, when and by whom it was applied.
    async fn get_provisioner(&self) -> Result<Option<ProvisionerState>, StoreError>;

    /// Replace the `#PROVISIONER` record if its revision is still `expected_revision` (0: no
    /// record); otherwise nothing is written and the answer is [`StoreError::Conflict`].
    async fn put_provisioner(
        &self,
        state: &ProvisionerState,
        expected_revision: u64,
    ) -> Result<(), StoreError>;

    /// Audit events of `entity_id` (or `$SYSTEM`, `$RESOURCE:{r}`), newest first, at most
    /// `limit`, older than event id `before` when given.
    async fn list_audit(
        &self,
        entity_id: &str,
        limit: usize,
        before: Option<&str>,
    ) -> Result<AuditPage, StoreError>;
}

/// The refusal of a conditional config write: what is stored at `scope` is no longer what
/// the caller read (`expected`: its version, `None` for nothing stored).
pub(crate) fn config_changed(scope: &ConfigScope, expected: Option<i64>) -> StoreError {
    let saw = match expected {
        Some(v) => format!("version {v}"),
        None => "no config".to_string(),
    };
    StoreError::Conflict(format!(
        "the {} config of {} changed concurrently (it was read as {saw}); read it again",
        scope.level(),
        scope.audit_entity()
    ))
}

/// The refusal of a `#PROVISIONER` write whose revision moved since it was read.
pub(crate) fn provisioner_changed(expected: u64) -> StoreError {
    StoreError::Conflict(format!(
        "another apply changed the #PROVISIONER record concurrently (it was read at revision \
         {expected}); plan again"
    ))
}
