//! Observability: the names of the metrics the limiter records through the
//! [`metrics`](https://docs.rs/metrics) facade, and the `tracing` spans it opens.
//!
//! Install any `metrics` recorder (a Prometheus or OpenTelemetry exporter) and the limiter's
//! metrics appear in it; install a `tracing` subscriber and the spans appear. Without either,
//! recording costs a check and nothing else: metric names are static and labels are literal
//! (no allocation per call), and span fields are only formatted when the span is enabled.
//!
//! | metric | kind | labels |
//! | --- | --- | --- |
//! | [`DECISIONS`] | counter | `outcome`: `admitted`, `admitted_unavailable`, `rate_limited`, `unavailable`, `contended`, `invalid`, `error` |
//! | [`STORE_LATENCY`] | histogram (seconds) | `op`: `resolution`, `acquire`, `commit`, `rollback` |
//! | [`STORE_RETRIES`] | counter | `reason`: `conflict` (a transaction conflict), `condition` (the bucket changed: replanned) |
//! | [`CACHE_HITS`] | counter | |
//! | [`CACHE_MISSES`] | counter | |
//!
//! Spans (target `zae_limiter`): `zae_limiter.acquire` (fields `entity`, `resource`,
//! `outcome`, `store_latency_ms`), `zae_limiter.resolution` (debug level; `entity`,
//! `resource`, `cache`, `store_latency_ms`), `zae_limiter.commit` and
//! `zae_limiter.rollback` (`entity`, `resource`, `outcome`, `store_latency_ms`).

use std::future::Future;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::lease::Lease;

/// Counter of acquire decisions, labelled by `outcome`.
pub const DECISIONS: &str = "zae_limiter_decisions_total";
/// Histogram of the time the store took to answer, in seconds, labelled by `op`.
pub const STORE_LATENCY: &str = "zae_limiter_store_latency_seconds";
/// Counter of the store's internal retries of a write, labelled by `reason`.
pub const STORE_RETRIES: &str = "zae_limiter_store_retries_total";
/// Counter of config resolutions answered from the cache.
pub const CACHE_HITS: &str = "zae_limiter_cache_hits_total";
/// Counter of config resolutions that went to the store.
pub const CACHE_MISSES: &str = "zae_limiter_cache_misses_total";
/// Counter of requests the DynamoDB store refused from the last state it saw, without a
/// write ([`StoreConfig::local_refusals`](crate::StoreConfig::local_refusals)).
pub const LOCAL_REFUSALS: &str = "zae_limiter_local_refusals_total";
/// Counter of hot buckets split into twice as many shards after throttling
/// ([`crate::shard`]).
pub const SHARD_RAISES: &str = "zae_limiter_shard_raises_total";

/// How an acquire ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Admitted,
    /// The store was out and `on_unavailable = allow` admitted (a no-op lease).
    AdmittedUnavailable,
    RateLimited,
    Unavailable,
    Contended,
    Invalid,
    Error,
}

impl Outcome {
    pub(crate) fn of(r: &Result<Lease, Error>) -> Self {
        match r {
            Ok(l) if l.is_noop() => Outcome::AdmittedUnavailable,
            Ok(_) => Outcome::Admitted,
            Err(Error::RateLimited(_)) => Outcome::RateLimited,
            Err(e) if e.is_unavailable() => Outcome::Unavailable,
            Err(Error::Contended { .. }) => Outcome::Contended,
            Err(Error::Validation { .. }) => Outcome::Invalid,
            Err(_) => Outcome::Error,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Admitted => "admitted",
            Outcome::AdmittedUnavailable => "admitted_unavailable",
            Outcome::RateLimited => "rate_limited",
            Outcome::Unavailable => "unavailable",
            Outcome::Contended => "contended",
            Outcome::Invalid => "invalid",
            Outcome::Error => "error",
        }
    }
}

/// Count one acquire decision.
pub(crate) fn decision(o: Outcome) {
    // one literal label per arm: a static key, no allocation
    macro_rules! count {
        ($o:literal) => {
            metrics::counter!(DECISIONS, "outcome" => $o).increment(1)
        };
    }
    match o {
        Outcome::Admitted => count!("admitted"),
        Outcome::AdmittedUnavailable => count!("admitted_unavailable"),
        Outcome::RateLimited => count!("rate_limited"),
        Outcome::Unavailable => count!("unavailable"),
        Outcome::Contended => count!("contended"),
        Outcome::Invalid => count!("invalid"),
        Outcome::Error => count!("error"),
    }
}

/// Which store call is timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreOp {
    Resolution,
    Acquire,
    Commit,
    Rollback,
}

/// Record one store latency.
pub(crate) fn store_latency(op: StoreOp, d: Duration) {
    macro_rules! record {
        ($o:literal) => {
            metrics::histogram!(STORE_LATENCY, "op" => $o).record(d.as_secs_f64())
        };
    }
    match op {
        StoreOp::Resolution => record!("resolution"),
        StoreOp::Acquire => record!("acquire"),
        StoreOp::Commit => record!("commit"),
        StoreOp::Rollback => record!("rollback"),
    }
}

/// Await `fut`, record its latency under `op`, and return it with the time taken.
pub(crate) async fn timed<T>(op: StoreOp, fut: impl Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let r = fut.await;
    let d = started.elapsed();
    store_latency(op, d);
    (r, d)
}

/// Why a store retried a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "dynamodb"), allow(dead_code))]
pub(crate) enum Retry {
    /// A transaction conflict: retried with backoff.
    Conflict,
    /// A condition failed because the bucket changed: replanned and retried.
    Condition,
}

/// Count one retry of a store write.
#[cfg_attr(not(feature = "dynamodb"), allow(dead_code))]
pub(crate) fn retry(why: Retry) {
    match why {
        Retry::Conflict => metrics::counter!(STORE_RETRIES, "reason" => "conflict").increment(1),
        Retry::Condition => metrics::counter!(STORE_RETRIES, "reason" => "condition").increment(1),
    }
}

/// Count one refusal made without a write.
#[cfg(feature = "dynamodb")]
pub(crate) fn local_refusal() {
    metrics::counter!(LOCAL_REFUSALS).increment(1)
}

/// Count one bucket split into more shards, by what set it off (`throttled` or
/// `write_rate`).
pub(crate) fn shards_raised(trigger: &'static str) {
    metrics::counter!(SHARD_RAISES, "trigger" => trigger).increment(1)
}

/// Count one config-cache lookup.
pub(crate) fn cache(hit: bool) {
    if hit {
        metrics::counter!(CACHE_HITS).increment(1)
    } else {
        metrics::counter!(CACHE_MISSES).increment(1)
    }
}

/// Milliseconds as a span field value.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
