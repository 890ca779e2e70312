//! `/metrics`: Prometheus text from `metrics-exporter-prometheus`, with the library's own
//! metrics (decisions by outcome, store latency; see `zae_limiter::telemetry`) and the
//! sidecar's: request latency per API, store errors, open leases.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use zae_limiter::Error;

/// Histogram of the time to answer a decision (acquire / ShouldRateLimit), seconds, by `api`
/// (`http`, `grpc`) and `outcome` (`ok`, `over_limit`, `error`).
pub const DECISION_SECONDS: &str = "zae_limiter_serve_decision_seconds";
/// Counter of store errors seen by the sidecar, by `kind` (the library's error kind).
pub const STORE_ERRORS: &str = "zae_limiter_serve_store_errors_total";
/// Gauge of leases handed out and neither committed, rolled back nor expired.
pub const OPEN_LEASES: &str = "zae_limiter_serve_open_leases";
/// Counter of leases rolled back because they expired.
pub const EXPIRED_LEASES: &str = "zae_limiter_serve_expired_leases_total";

const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Install the process-wide recorder (once); later calls reuse it.
pub fn install() -> Result<(), String> {
    if HANDLE.get().is_some() {
        return Ok(());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
        .and_then(|b| b.install_recorder())
        .map_err(|e| format!("metrics recorder: {e}"))?;
    let _ = HANDLE.set(handle.clone());
    // histograms are drained into their buckets by the upkeep
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
    metrics::gauge!(OPEN_LEASES).set(0.0);
    Ok(())
}

/// The Prometheus text of everything recorded so far.
pub fn render() -> String {
    HANDLE.get().map(|h| h.render()).unwrap_or_default()
}

/// Record one decision's latency.
pub fn decision(api: &'static str, outcome: &'static str, took: Duration) {
    metrics::histogram!(DECISION_SECONDS, "api" => api, "outcome" => outcome)
        .record(took.as_secs_f64());
}

/// Count a store error (anything but a refusal or bad input).
pub fn store_error(e: &Error) {
    metrics::counter!(STORE_ERRORS, "kind" => e.kind()).increment(1);
}

/// Set the open-lease gauge.
pub fn open_leases(n: usize) {
    metrics::gauge!(OPEN_LEASES).set(n as f64);
}

/// Count a lease rolled back at its expiry.
pub fn expired_lease() {
    metrics::counter!(EXPIRED_LEASES).increment(1);
}
