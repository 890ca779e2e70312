//! Config resolution through the cache: a hit without any future, a miss loaded from the
//! store in its span.

use std::sync::Arc;

use super::RateLimiter;
use crate::config::ResolutionData;
use crate::error::StoreError;

/// A config-cache miss: the resolution's span and the time the cache was asked at.
pub(crate) struct CacheMiss {
    span: tracing::Span,
    now: i64,
}

impl RateLimiter {
    /// The entity and its config levels for `resource`, through the cache.
    pub(crate) async fn resolution(
        &self,
        entity_id: &str,
        resource: &str,
    ) -> Result<Arc<ResolutionData>, StoreError> {
        self.resolution_timed(entity_id, resource).await.0
    }

    /// [`resolution`](Self::resolution) in its span (`zae_limiter.resolution`), with the
    /// time spent waiting on the store (zero on a cache hit).
    pub(crate) async fn resolution_timed(
        &self,
        entity_id: &str,
        resource: &str,
    ) -> (Result<Arc<ResolutionData>, StoreError>, std::time::Duration) {
        match self.resolution_cached(entity_id, resource) {
            Ok(hit) => (Ok(hit), std::time::Duration::ZERO),
            // boxed: a miss is rare, and its future inline would enlarge every caller's
            Err(miss) => Box::pin(self.resolution_load(entity_id, resource, miss)).await,
        }
    }

    /// The cached resolution, counted and in its span; on a miss, what
    /// [`resolution_load`](Self::resolution_load) needs.
    pub(crate) fn resolution_cached(
        &self,
        entity_id: &str,
        resource: &str,
    ) -> Result<Arc<ResolutionData>, CacheMiss> {
        let span = tracing::debug_span!(
            target: "zae_limiter",
            "zae_limiter.resolution",
            entity = %entity_id,
            resource = %resource,
            cache = tracing::field::Empty,
            store_latency_ms = tracing::field::Empty,
        );
        let now = self.now_ms();
        if let Some(d) = self.inner.cache.get(entity_id, resource, now) {
            crate::telemetry::cache(true);
            span.record("cache", "hit");
            return Ok(d);
        }
        crate::telemetry::cache(false);
        span.record("cache", "miss");
        Err(CacheMiss { span, now })
    }

    /// Load a resolution the cache did not have, and cache it.
    pub(crate) async fn resolution_load(
        &self,
        entity_id: &str,
        resource: &str,
        miss: CacheMiss,
    ) -> (Result<Arc<ResolutionData>, StoreError>, std::time::Duration) {
        use tracing::Instrument;
        let CacheMiss { span, now } = miss;
        let (r, took) = crate::telemetry::timed(
            crate::telemetry::StoreOp::Resolution,
            self.call(self.inner.store.load_resolution(entity_id, resource)),
        )
        .instrument(span.clone())
        .await;
        span.record("store_latency_ms", crate::telemetry::ms(took));
        let r = r.map(|d| {
            let d = Arc::new(d);
            self.inner.cache.put(entity_id, resource, d.clone(), now);
            d
        });
        (r, took)
    }
}
