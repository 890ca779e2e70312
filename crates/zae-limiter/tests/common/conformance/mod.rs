//! The conformance suite: every function here runs against every store. Split by topic:
//! buckets and leases, stored limits and the cache, records (audit, entities, namespaces).

mod buckets;
mod manifest;
mod records;
mod shards;
mod stored;

#[allow(unused_imports)] // not every test binary runs the whole suite
pub use {buckets::*, manifest::*, records::*, shards::*, stored::*};

use std::collections::BTreeMap;
use std::sync::Arc;

use zae_limiter::{Error, Limit, ManualClock, RateLimiter, Store};

/// 2030-01-01T00:00:00Z: in the future, so that the TTL of the buckets the suite writes
/// (when they are full again + a day) never lets DynamoDB Local delete them mid-test.
pub const T0: i64 = 1_893_456_000_000;

pub fn limiter(store: Arc<dyn Store>) -> (RateLimiter, ManualClock) {
    let clock = ManualClock::new(T0);
    let l = RateLimiter::builder_shared(store)
        .clock(clock.clone())
        .build();
    (l, clock)
}

pub(super) fn rpm_tpm() -> Vec<Limit> {
    vec![
        Limit::per_minute("rpm", 10),
        Limit::per_minute("tpm", 1_000).burst(1_500),
    ]
}

pub(super) async fn avail(
    l: &RateLimiter,
    entity: &str,
    limits: &[Limit],
) -> BTreeMap<String, i64> {
    l.available(entity, "gpt-4", limits)
        .await
        .expect("available")
}

pub(super) fn map(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

pub(super) fn rate_limited(
    r: zae_limiter::Result<zae_limiter::Lease>,
) -> Box<zae_limiter::RateLimitExceeded> {
    match r {
        Err(Error::RateLimited(e)) => e,
        Err(other) => panic!("expected RateLimited, got {other}"),
        Ok(_) => panic!("expected RateLimited, got a lease"),
    }
}
