//! Output: one JSON line per scenario and a row of the summary table.

use std::collections::BTreeMap;

use super::check::Check;
use super::measure::{round, stats, Window};
use super::scenarios::CONTENTION_CAPACITY;

/// One scenario's JSON line. Field order is the output order.
#[derive(Debug, Default, serde::Serialize)]
pub(super) struct Report {
    pub(super) scenario: &'static str,
    pub(super) description: &'static str,
    pub(super) store: &'static str,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub(super) measured: Option<Measured>,
}

/// The measured part of a [`Report`].
#[derive(Debug, serde::Serialize)]
pub(super) struct Measured {
    ops: u64,
    concurrency: usize,
    wall_s: f64,
    ops_per_s: f64,
    latency_ms: Latency,
    client_cpu_ms_per_op: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_cpu_ms_per_op: Option<f64>,
    ddb_calls_per_op: BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    admitted: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rejected: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    over_admission: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    capped_by_max_seconds: bool,
    post_check_ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    post_check_error: Option<String>,
}

/// Latency of one operation in ms (nearest-rank percentiles).
#[derive(Debug, serde::Serialize)]
struct Latency {
    p50: f64,
    p95: f64,
    p99: f64,
    mean: f64,
    min: f64,
    max: f64,
}

/// The measured part of a window's JSON line, rounded for reading.
pub(super) fn measured(w: &Window, check: &Check) -> Measured {
    let s = stats(w);
    Measured {
        ops: w.ops,
        concurrency: w.concurrency,
        wall_s: round(w.wall.as_secs_f64(), 4),
        ops_per_s: round(s.ops_per_s, 1),
        latency_ms: Latency {
            p50: round(s.p50, 4),
            p95: round(s.p95, 4),
            p99: round(s.p99, 4),
            mean: round(s.mean, 4),
            min: round(s.min, 4),
            max: round(s.max, 4),
        },
        client_cpu_ms_per_op: round(s.cpu_per_op, 4),
        server_cpu_ms_per_op: w
            .server_cpu
            .map(|c| round(c.as_secs_f64() * 1000.0 / w.ops.max(1) as f64, 4)),
        ddb_calls_per_op: s
            .calls_per_op
            .into_iter()
            .map(|(k, v)| (k, round(v, 4)))
            .collect(),
        admitted: w.contention.map(|(a, _)| a),
        rejected: w.contention.map(|(_, r)| r),
        over_admission: w
            .contention
            .map(|(a, _)| a.saturating_sub(CONTENTION_CAPACITY)),
        capped_by_max_seconds: w.capped,
        post_check_ok: check.is_ok(),
        post_check_error: check.as_ref().err().cloned(),
    }
}

/// Print a report as one JSON line on stdout.
pub(super) fn json_line(r: &Report) -> Result<(), String> {
    println!("{}", serde_json::to_string(r).map_err(|e| e.to_string())?);
    Ok(())
}

/// A number with three significant digits (ms values span µs on the embedded store to tens of
/// ms on DynamoDB).
pub(super) fn sig3(x: f64) -> String {
    if x <= 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let decimals = (2 - x.log10().floor() as i32).clamp(0, 6) as usize;
    format!("{x:.decimals$}")
}

/// A window's row of the summary table (`*` after ops: capped by --max-seconds).
pub(super) fn row(id: &str, w: &Window, check: &Check) -> Vec<String> {
    let s = stats(w);
    let calls = if s.calls_per_op.is_empty() {
        "-".to_string()
    } else {
        s.calls_per_op
            .iter()
            .map(|(k, v)| format!("{k} {v:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut check_col = if check.is_ok() {
        "ok".to_string()
    } else {
        "FAILED".to_string()
    };
    if let Some((a, r)) = w.contention {
        check_col.push_str(&format!(
            " (admitted {a}, rejected {r}, over {})",
            a.saturating_sub(CONTENTION_CAPACITY)
        ));
    }
    vec![
        id.to_string(),
        format!("{}{}", w.ops, if w.capped { "*" } else { "" }),
        w.concurrency.to_string(),
        format!("{:.0}", s.ops_per_s),
        sig3(s.p50),
        sig3(s.p95),
        sig3(s.p99),
        sig3(s.cpu_per_op),
        w.server_cpu.map_or("-".to_string(), |c| {
            sig3(c.as_secs_f64() * 1000.0 / w.ops.max(1) as f64)
        }),
        calls,
        check_col,
    ]
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn three_significant_digits() {
        assert_eq!(sig3(0.0037215), "0.00372");
        assert_eq!(sig3(3.3315), "3.33");
        assert_eq!(sig3(22.97), "23.0");
        assert_eq!(sig3(1234.6), "1235");
        assert_eq!(sig3(0.0), "0");
    }

    fn contention(admitted: u64, rejected: u64) -> Window {
        Window {
            ops: admitted + rejected,
            concurrency: 16,
            wall: Duration::from_secs(1),
            latencies: vec![Duration::from_millis(1); (admitted + rejected) as usize],
            contention: Some((admitted, rejected)),
            ..Window::default()
        }
    }

    #[test]
    fn over_admission_is_what_exceeds_the_capacity() {
        let m = measured(&contention(500, 1500), &Ok(()));
        assert_eq!(
            (m.admitted, m.rejected, m.over_admission),
            (Some(500), Some(1500), Some(0))
        );
        let m = measured(&contention(503, 1497), &Ok(()));
        assert_eq!(m.over_admission, Some(3));
        let r = row("g", &contention(503, 1497), &Ok(()));
        assert_eq!(r[10], "ok (admitted 503, rejected 1497, over 3)");
    }

    #[test]
    fn a_failed_check_is_reported() {
        let w = Window {
            ops: 2,
            concurrency: 1,
            capped: true,
            ..Window::default()
        };
        let m = measured(&w, &Err("e rpm: consumed 1 millitokens, expected 2".into()));
        assert!(!m.post_check_ok);
        assert_eq!(
            m.post_check_error.as_deref(),
            Some("e rpm: consumed 1 millitokens, expected 2")
        );
        assert_eq!(m.over_admission, None);
        let r = row("a", &w, &Err(String::new()));
        assert_eq!(
            (r[1].as_str(), r[8].as_str(), r[9].as_str(), r[10].as_str()),
            ("2*", "-", "-", "FAILED")
        );
    }
}
