//! # zae-limiter
//!
//! A distributed token-bucket rate limiter for API and LLM workloads, backed by Amazon
//! DynamoDB or by an embedded in-process store.
//!
//! Cargo features: `dynamodb` (default) builds the DynamoDB store (`DynamoStore`) and the
//! AWS SDK; without it (`default-features = false`) only the embedded store
//! ([`MemoryStore`]) is built. `http` adds `http` 1.x header types to
//! [`RateLimitExceeded`] (`http_headers`, `openai_http_headers`).
//!
//! - **Several limits per call** (requests/min *and* tokens/min), checked atomically.
//! - **Leases**: take an estimate up front, reconcile the real cost afterwards
//!   ([`Lease::adjust`]), roll back on failure.
//! - **Hierarchy**: an API key can cascade its consumption to its project, atomically.
//! - **One DynamoDB round trip per decision**: a warm acquire is a single conditional
//!   `UpdateItem` (see [`bucket`] for the math that makes this possible).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> zae_limiter::Result<()> {
//! use zae_limiter::{Error, Limit, MemoryStore, RateLimiter};
//!
//! let limiter = RateLimiter::builder(MemoryStore::new()).build();
//! let limits = [Limit::per_minute("rpm", 2)];
//! for _ in 0..2 {
//!     let lease = limiter.acquire("key-1", "gpt-4").limits(limits.clone()).consume([("rpm", 1)]).await?;
//!     lease.commit().await?;
//! }
//! match limiter.acquire("key-1", "gpt-4").limits(limits).consume([("rpm", 1)]).await {
//!     Err(Error::RateLimited(e)) => assert_eq!(e.retry_after_header().as_deref(), Some("30")),
//!     other => panic!("expected a rejection, got {other:?}"),
//! }
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod acquire;
mod admin;
pub mod blocking;
pub mod bucket;
mod cache;
mod clock;
pub mod config;
#[cfg(feature = "dynamodb")]
pub mod dynamodb;
mod entities;
mod entity;
mod error;
mod exceeded;
pub mod keys;
mod lease;
mod limit;
mod limiter;
pub mod manifest;
pub mod namespace;
pub mod schema;
pub mod shard;
pub mod store;
pub mod telemetry;
pub mod usage;

pub use acquire::{Acquire, RunError};
pub use admin::MAX_AUDIT_PAGE;
pub use cache::CacheStats;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    AuditAction, AuditEvent, AuditPage, ConfigScope, IdPage, OnUnavailable, ProvisionerState,
    StoredConfig,
};
#[cfg(feature = "dynamodb")]
pub use dynamodb::{ConsumedCapacity, DynamoStore, StoreConfig};
pub use entity::{
    validate_entity_name, validate_metadata, Entity, EntityPage, NewEntity, UpdateEntity,
    MAX_ENTITY_NAME, MAX_METADATA_ENTRIES, MAX_METADATA_KEY, MAX_METADATA_VALUE,
};
pub use error::{BoxError, Error, Result, StoreError};
pub use exceeded::{LimitStatus, RateLimitExceeded};
pub use lease::Lease;
pub use limit::{
    validate_entity_id, validate_limit_name, validate_resource, Limit, MAX_AMOUNT, MAX_LIMITS,
    MAX_PERIOD,
};
pub use limiter::{RateLimiter, RateLimiterBuilder, MAX_CLOCK_LEAD_MS};
pub use namespace::{NamespaceInfo, NamespaceStatus, DEFAULT_NAMESPACE};
pub use store::{MemoryStore, Store, WriteOp};

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
