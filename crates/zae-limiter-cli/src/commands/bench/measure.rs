//! Measuring a timed window: wall clock, process CPU, call counts, latencies, and the
//! statistics derived from them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use zae_limiter::{ConsumedCapacity, DynamoStore};

use super::scenarios::Bench;

/// Measurements of one scenario's timed window.
#[derive(Default)]
pub(super) struct Window {
    /// Timed operations (attempts in g).
    pub(super) ops: u64,
    /// Tasks running them.
    pub(super) concurrency: usize,
    pub(super) wall: Duration,
    /// Process CPU time (user + sys) of the client.
    pub(super) cpu: Duration,
    /// CPU time of the server process (DynamoDB Local's JVM), when it runs on this machine.
    pub(super) server_cpu: Option<Duration>,
    /// One per operation, unsorted.
    pub(super) latencies: Vec<Duration>,
    /// DynamoDB calls by operation name (empty on the embedded store).
    pub(super) calls: BTreeMap<String, u64>,
    /// Stopped by --max-seconds before `ops`.
    pub(super) capped: bool,
    /// g: (admitted, rejected).
    pub(super) contention: Option<(u64, u64)>,
    /// Capacity units reported by DynamoDB (capacity pass only).
    pub(super) capacity: Option<ConsumedCapacity>,
}

impl Window {
    /// Add the measurements of `other` (a later block of the same scenario) to these.
    pub(super) fn absorb(&mut self, other: Window) {
        let first = self.ops == 0 && self.latencies.is_empty();
        self.ops += other.ops;
        self.concurrency = self.concurrency.max(other.concurrency);
        self.wall += other.wall;
        self.cpu += other.cpu;
        self.server_cpu = match (self.server_cpu, other.server_cpu) {
            (Some(a), Some(b)) => Some(a + b),
            // server CPU is known for the whole only if it is known for every block
            (None, b) if first => b,
            _ => None,
        };
        self.latencies.extend(other.latencies);
        for (k, v) in other.calls {
            *self.calls.entry(k).or_default() += v;
        }
        self.capped |= other.capped;
    }
}

/// The clocks read when a timed window starts.
pub(super) struct Clocks {
    wall: Instant,
    cpu: cpu_time::ProcessTime,
    server: Option<Duration>,
}

impl Bench {
    /// Start a timed window: reset call counts, read the clocks.
    pub(super) fn start(&self) -> Clocks {
        if let Some(d) = &self.dynamo {
            d.reset_call_counts();
            d.reset_consumed_capacity();
        }
        Clocks {
            server: self.server.and_then(|s| s.now()),
            wall: Instant::now(),
            cpu: cpu_time::ProcessTime::now(),
        }
    }

    /// End a timed window (before any post-check read).
    pub(super) fn finish(&self, w: &mut Window, clocks: Clocks) {
        w.wall = clocks.wall.elapsed();
        w.cpu = clocks.cpu.elapsed();
        w.server_cpu = match (clocks.server, self.server.and_then(|s| s.now())) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        w.calls = self
            .dynamo
            .as_ref()
            .map(DynamoStore::call_counts)
            .unwrap_or_default();
        w.capacity = self.dynamo.as_ref().map(DynamoStore::consumed_capacity);
    }
}

/// Round to `d` decimals (for readable JSON).
pub(super) fn round(x: f64, d: i32) -> f64 {
    let f = 10f64.powi(d);
    (x * f).round() / f
}

/// A duration in milliseconds.
pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile of sorted latencies, in ms.
pub(super) fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    ms(sorted[rank - 1])
}

/// What a window comes to: throughput, latency in ms, CPU ms and calls per operation.
pub(super) struct Stats {
    pub(super) ops_per_s: f64,
    pub(super) p50: f64,
    pub(super) p95: f64,
    pub(super) p99: f64,
    pub(super) mean: f64,
    pub(super) min: f64,
    pub(super) max: f64,
    pub(super) cpu_per_op: f64,
    pub(super) calls_per_op: BTreeMap<String, f64>,
}

/// The [`Stats`] of a window (zeros, not NaN, for an empty one).
pub(super) fn stats(w: &Window) -> Stats {
    let mut lat = w.latencies.clone();
    lat.sort();
    let n = w.ops.max(1) as f64;
    Stats {
        ops_per_s: w.ops as f64 / w.wall.as_secs_f64().max(1e-9),
        p50: pct(&lat, 0.50),
        p95: pct(&lat, 0.95),
        p99: pct(&lat, 0.99),
        mean: lat.iter().map(|d| ms(*d)).sum::<f64>() / lat.len().max(1) as f64,
        min: lat.first().map_or(0.0, |d| ms(*d)),
        max: lat.last().map_or(0.0, |d| ms(*d)),
        cpu_per_op: ms(w.cpu) / n,
        calls_per_op: w
            .calls
            .iter()
            .map(|(k, v)| (k.clone(), *v as f64 / n))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let lat: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(pct(&lat, 0.50), 50.0);
        assert_eq!(pct(&lat, 0.99), 99.0);
        assert_eq!(pct(&lat[..1], 0.95), 1.0);
        assert_eq!(pct(&[], 0.5), 0.0);
        // nearest rank: the smallest value with at least p of the samples at or below it
        let four: Vec<Duration> = [10, 20, 30, 40].map(Duration::from_millis).to_vec();
        assert_eq!(pct(&four, 0.25), 10.0);
        assert_eq!(pct(&four, 0.26), 20.0);
        assert_eq!(pct(&four, 1.0), 40.0);
        assert_eq!(pct(&four, 0.0), 10.0);
    }

    #[test]
    fn rounding_and_milliseconds() {
        assert_eq!(round(1.23456, 2), 1.23);
        assert_eq!(round(1.235001, 2), 1.24);
        assert_eq!(round(1234.5, 0), 1235.0);
        assert_eq!(ms(Duration::from_micros(1500)), 1.5);
    }

    #[test]
    fn stats_are_per_operation() {
        let w = Window {
            ops: 4,
            concurrency: 1,
            wall: Duration::from_secs(2),
            cpu: Duration::from_millis(8),
            latencies: [40, 10, 30, 20].map(Duration::from_millis).to_vec(),
            calls: BTreeMap::from([("UpdateItem".to_string(), 4), ("GetItem".to_string(), 2)]),
            ..Window::default()
        };
        let s = stats(&w);
        assert_eq!(s.ops_per_s, 2.0);
        assert_eq!((s.min, s.max, s.mean), (10.0, 40.0, 25.0));
        assert_eq!((s.p50, s.p95, s.p99), (20.0, 40.0, 40.0));
        assert_eq!(s.cpu_per_op, 2.0);
        assert_eq!(
            s.calls_per_op,
            BTreeMap::from([
                ("GetItem".to_string(), 0.5),
                ("UpdateItem".to_string(), 1.0)
            ])
        );
    }

    #[test]
    fn stats_of_an_empty_window_are_zero_not_nan() {
        let s = stats(&Window::default());
        assert_eq!(s.ops_per_s, 0.0);
        assert_eq!((s.min, s.max, s.mean, s.p50), (0.0, 0.0, 0.0, 0.0));
        assert_eq!(s.cpu_per_op, 0.0);
        assert!(s.calls_per_op.is_empty());
    }
}
