//! How hot one shard is, as one client sees it: the write rate of *all* clients to the
//! shard, estimated from this client's own writes and the consumed counters they return.
//! Pure: the caller passes the time.
//!
//! Every admitted write returns the shard's consumed totals (net millitokens per limit,
//! every client's). Over a window of at least [`WINDOW_MS`], what all clients took divided
//! by what this client took, times this client's writes, estimates every client's writes.
//! The smallest such ratio over the limits is used: it is exact when every request takes
//! the same amount of some limit (a request count such as `rpm`), and errs low, never high,
//! when other clients also give tokens back (rollbacks, negative adjustments). It errs high
//! only when every limit is taken in larger amounts by the other clients than by this one;
//! the cost of that error is a split (never an over-admission), bounded by the limiter's
//! maximum shard count.

/// The shortest window over which a rate is estimated (ms).
pub const WINDOW_MS: i64 = 1_000;

/// The write-rate meter of one shard.
#[derive(Debug, Clone, Default)]
pub struct WriteRate {
    /// When the window started: the time of the write that opened it (ms).
    start_ms: i64,
    /// This client's writes since then (the opening write excluded).
    writes: u32,
    /// Per limit: the shard's consumed total after the opening write, after the latest
    /// write, and what this client's writes took since the opening one.
    base: Vec<i128>,
    last: Vec<i128>,
    own: Vec<i128>,
}

impl WriteRate {
    /// Record one admitted write of this client at `now_ms`: per limit of the write, what
    /// it took (millitokens) and the shard's consumed total after it. When the window is
    /// at least [`WINDOW_MS`] long, closes it and returns the estimated writes per second
    /// of all clients over it (a new window starts at this write).
    pub fn record(&mut self, now_ms: i64, taken: &[(i128, i128)]) -> Option<f64> {
        let elapsed = now_ms - self.start_ms;
        // a new meter, another set of limits, or a clock that went back: start again
        if self.base.is_empty() || self.base.len() != taken.len() || elapsed < 0 {
            self.restart(now_ms, taken);
            return None;
        }
        self.writes += 1;
        for ((own, last), (amount, total)) in self.own.iter_mut().zip(&mut self.last).zip(taken) {
            *own += amount;
            *last = *total;
        }
        if elapsed < WINDOW_MS {
            return None;
        }
        let rate = self.estimate(elapsed);
        self.restart(now_ms, taken);
        Some(rate)
    }

    /// Writes per second of all clients over the `elapsed_ms` of the window.
    fn estimate(&self, elapsed_ms: i64) -> f64 {
        let ratio = self
            .own
            .iter()
            .zip(&self.base)
            .zip(&self.last)
            .filter(|((own, _), _)| **own > 0)
            // a total below our own share: tokens given back, or the item expired and
            // began again; count our writes alone
            .map(|((own, base), last)| (last - base).max(*own) as f64 / *own as f64)
            .fold(None, |min: Option<f64>, r| {
                Some(min.map_or(r, |m| m.min(r)))
            })
            .unwrap_or(1.0);
        f64::from(self.writes) * ratio * 1_000.0 / elapsed_ms as f64
    }

    fn restart(&mut self, now_ms: i64, taken: &[(i128, i128)]) {
        self.start_ms = now_ms;
        self.writes = 0;
        self.base.clear();
        self.base.extend(taken.iter().map(|(_, total)| *total));
        self.last.clone_from(&self.base);
        self.own.clear();
        self.own.resize(taken.len(), 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: i64 = 1_767_225_600_000;

    #[test]
    fn one_client_measures_its_own_rate() {
        let mut m = WriteRate::default();
        let mut total = 0;
        let mut out = Vec::new();
        // 50 writes/s of 1 token for 3 s
        for i in 0..=150 {
            total += 1_000;
            if let Some(r) = m.record(T0 + i * 20, &[(1_000, total)]) {
                out.push(r);
            }
        }
        assert_eq!(out.len(), 3);
        for r in out {
            assert!((r - 50.0).abs() < 1e-9, "{r}");
        }
    }

    #[test]
    fn a_slow_client_sees_the_others_writes() {
        // this client writes 5/s, three others 45/s each, every request 1 rpm + some tpm
        let mut m = WriteRate::default();
        let (mut rpm, mut tpm) = (0i128, 0i128);
        let mut seen = None;
        for ms in (0..=2_000).step_by(200) {
            // the others' 27 writes in these 200 ms, each 1 rpm and 700 tpm
            rpm += 27 * 1_000;
            tpm += 27 * 700_000;
            // ours: 1 rpm and 50 tpm
            rpm += 1_000;
            tpm += 50_000;
            if let Some(r) = m.record(T0 + ms, &[(1_000, rpm), (50_000, tpm)]) {
                seen = Some(r);
            }
        }
        // rpm gives the exact ratio (28 writes per ours), tpm would give 379 per ours
        let r = seen.expect("a window closed");
        assert!((r - 140.0).abs() < 1e-9, "{r}");
    }

    #[test]
    fn tokens_given_back_or_a_reset_counter_never_raise_the_estimate() {
        let mut m = WriteRate::default();
        assert_eq!(m.record(T0, &[(1_000, 90_000)]), None);
        assert_eq!(m.record(T0 + 500, &[(1_000, 91_000)]), None);
        // the item expired and started again from what this write took
        let r = m.record(T0 + 1_000, &[(1_000, 1_000)]).unwrap();
        assert!((r - 2.0).abs() < 1e-9, "{r}");
        // a write that took nothing of any limit counts once
        assert_eq!(m.record(T0 + 1_500, &[(0, 1_000)]), None);
        let r = m.record(T0 + 2_000, &[(0, 1_000)]).unwrap();
        assert!((r - 2.0).abs() < 1e-9, "{r}");
    }

    #[test]
    fn other_limits_or_a_clock_going_back_start_a_new_window() {
        let mut m = WriteRate::default();
        assert_eq!(m.record(T0, &[(1_000, 1_000)]), None);
        assert_eq!(m.record(T0 + 2_000, &[(1_000, 2_000), (5, 5)]), None);
        assert_eq!(m.record(T0 + 1_000, &[(1_000, 3_000), (5, 10)]), None);
        let r = m.record(T0 + 2_000, &[(1_000, 4_000), (5, 15)]).unwrap();
        assert!((r - 1.0).abs() < 1e-9, "{r}");
    }

    proptest! {
        /// Clients whose requests all take 1 rpm are counted exactly, however the writes
        /// interleave and whatever tpm each takes (the others at most 10,000 a request
        /// more than this client: the rpm ratio is the smallest).
        #[test]
        fn equal_request_counts_are_estimated_exactly(
            steps in proptest::collection::vec((0u32..20, 0i128..10_000, 1i64..400), 1..60),
        ) {
            let mut m = WriteRate::default();
            let (mut rpm, mut tpm) = (0i128, 0i128);
            let (mut ms, mut opened) = (T0, T0);
            let (mut writes, mut windows) = (0u32, 0);
            assert_eq!(m.record(ms, &[(1_000, 0), (0, 0)]), None);
            for (others, t, gap) in steps {
                ms += gap;
                rpm += i128::from(others + 1) * 1_000;
                tpm += i128::from(others) * 10_000_000 + t * 1_000;
                writes += others + 1;
                if let Some(r) = m.record(ms, &[(1_000, rpm), (t * 1_000, tpm)]) {
                    let expected = f64::from(writes) * 1_000.0 / (ms - opened) as f64;
                    prop_assert!((r - expected).abs() < 1e-6, "{} vs {}", r, expected);
                    (opened, writes, windows) = (ms, 0, windows + 1);
                }
            }
            prop_assert!(ms - opened < WINDOW_MS || windows > 0);
        }
    }
}
