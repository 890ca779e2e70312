//! The rate-limit middleware: [`RateLimitLayer`] (configuration), [`RateLimitService`] (the
//! decision), [`ResponseFuture`] and [`LeaseBody`] (the body that settles the lease when it
//! ends).

mod body;
mod future;
mod layer;
mod service;

use std::ops::Deref;
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use zae_limiter::Lease;

pub use body::LeaseBody;
pub use future::ResponseFuture;
pub use layer::RateLimitLayer;
pub use service::RateLimitService;

/// The lease of an admitted request, in the request's extensions: read it in the handler
/// (axum: `Extension<RateLimitLease>`) to [`adjust`](Lease::adjust) the amounts before the
/// response ends. The layer commits it when the response body ends; do not commit it
/// yourself unless you mean to (the layer's commit is then a no-op).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> zae_limiter::Result<()> {
/// # use zae_limiter::{Limit, MemoryStore, RateLimiter};
/// # let limiter = RateLimiter::builder(MemoryStore::new()).build();
/// # let lease = limiter.acquire("k", "r").limits([Limit::per_minute("tpm", 1000)]).consume([("tpm", 100)]).await?;
/// # let lease = zae_limiter_tower::RateLimitLease::new(lease);
/// // in a handler: the call used 420 tokens, 100 were taken up front
/// lease.adjust("tpm", 420 - 100)?;
/// # lease.commit().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RateLimitLease(Arc<Lease>);

impl RateLimitLease {
    /// Wrap a lease (the layer does this for every admitted request).
    pub fn new(lease: Lease) -> Self {
        RateLimitLease(Arc::new(lease))
    }
}

impl Deref for RateLimitLease {
    type Target = Lease;
    fn deref(&self) -> &Lease {
        &self.0
    }
}

/// The response to a request whose entity the extractor did not find: by default
/// `401 Unauthorized` with `{"error":"missing_entity",...}`.
#[derive(Debug, Clone)]
pub struct MissingEntity {
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
}

impl MissingEntity {
    /// Answer with `status` and the JSON text `body`.
    pub fn new(status: StatusCode, body: impl Into<Bytes>) -> Self {
        MissingEntity {
            status,
            body: body.into(),
        }
    }
}

impl Default for MissingEntity {
    fn default() -> Self {
        MissingEntity::new(
            StatusCode::UNAUTHORIZED,
            r#"{"error":"missing_entity","message":"the request does not identify who is calling (e.g. no API key)"}"#,
        )
    }
}
