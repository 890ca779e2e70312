//! Observability on the embedded store: the metrics recorded through the `metrics` facade
//! (captured by `metrics-util`'s debugging recorder) and the `tracing` spans (captured by a
//! `tracing-subscriber` fmt layer writing to a buffer).

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;
use zae_limiter::telemetry::{CACHE_HITS, CACHE_MISSES, DECISIONS, STORE_LATENCY};
use zae_limiter::{Error, Limit, MemoryStore, RateLimiter};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// (kind, name, labels as `k=v,...`) -> value, from one snapshot.
type Seen = HashMap<(MetricKind, String, String), DebugValue>;

fn seen(recorder: &DebuggingRecorder) -> Seen {
    recorder
        .snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(ck, _, _, value)| {
            let (kind, key) = ck.into_parts();
            let labels = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect::<Vec<_>>()
                .join(",");
            ((kind, key.name().to_string(), labels), value)
        })
        .collect()
}

fn counter(s: &Seen, name: &str, labels: &str) -> u64 {
    match s.get(&(MetricKind::Counter, name.to_string(), labels.to_string())) {
        Some(DebugValue::Counter(n)) => *n,
        None => 0,
        other => panic!("{name}{{{labels}}} is not a counter: {other:?}"),
    }
}

fn histogram(s: &Seen, name: &str, labels: &str) -> usize {
    match s.get(&(MetricKind::Histogram, name.to_string(), labels.to_string())) {
        Some(DebugValue::Histogram(v)) => {
            assert!(v.iter().all(|x| x.0 >= 0.0 && x.0 < 60.0), "{v:?}");
            v.len()
        }
        None => 0,
        other => panic!("{name}{{{labels}}} is not a histogram: {other:?}"),
    }
}

#[test]
fn decisions_latency_and_cache_are_counted() {
    let recorder = DebuggingRecorder::new();
    let rpm = [Limit::per_minute("rpm", 2)];
    metrics::with_local_recorder(&recorder, || {
        runtime().block_on(async {
            let limiter = RateLimiter::builder(MemoryStore::new()).build();
            let a = limiter
                .acquire("k", "r")
                .limits(rpm.clone())
                .consume([("rpm", 1)]);
            a.await.unwrap().commit().await.unwrap();
            let lease = limiter
                .acquire("k", "r")
                .limits(rpm.clone())
                .consume([("rpm", 1)])
                .await
                .unwrap();
            let refused = limiter
                .acquire("k", "r")
                .limits(rpm.clone())
                .consume([("rpm", 1)])
                .await;
            assert!(matches!(refused, Err(Error::RateLimited(_))), "{refused:?}");
            lease.rollback().await.unwrap();
            let bad = limiter.acquire("", "r").limits(rpm.clone()).await;
            assert!(matches!(bad, Err(Error::Validation { .. })), "{bad:?}");
        })
    });
    let s = seen(&recorder);
    assert_eq!(counter(&s, DECISIONS, "outcome=admitted"), 2, "{s:?}");
    assert_eq!(counter(&s, DECISIONS, "outcome=rate_limited"), 1, "{s:?}");
    assert_eq!(counter(&s, DECISIONS, "outcome=invalid"), 1, "{s:?}");
    assert_eq!(counter(&s, DECISIONS, "outcome=unavailable"), 0, "{s:?}");
    // one resolution from the store, then the cache
    assert_eq!(counter(&s, CACHE_MISSES, ""), 1, "{s:?}");
    assert_eq!(counter(&s, CACHE_HITS, ""), 2, "{s:?}");
    assert_eq!(histogram(&s, STORE_LATENCY, "op=resolution"), 1, "{s:?}");
    // three writes decided by the store (two admitted, one refused), one rollback; the
    // commit of a lease with nothing adjusted writes nothing
    assert_eq!(histogram(&s, STORE_LATENCY, "op=acquire"), 3, "{s:?}");
    assert_eq!(histogram(&s, STORE_LATENCY, "op=rollback"), 1, "{s:?}");
    assert_eq!(histogram(&s, STORE_LATENCY, "op=commit"), 0, "{s:?}");
}

/// A `MakeWriter` into a shared buffer.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[test]
fn spans_carry_entity_resource_outcome_and_latency() {
    use tracing_subscriber::fmt::format::FmtSpan;
    let buffer = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(buffer.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_span_events(FmtSpan::CLOSE)
        .without_time()
        .finish();
    let rpm = [Limit::per_minute("rpm", 1)];
    tracing::subscriber::with_default(subscriber, || {
        runtime().block_on(async {
            let limiter = RateLimiter::builder(MemoryStore::new()).build();
            let lease = limiter
                .acquire("key-1", "gpt-4")
                .limits(rpm.clone())
                .consume([("rpm", 1)])
                .await
                .unwrap();
            let refused = limiter
                .acquire("key-1", "gpt-4")
                .limits(rpm.clone())
                .consume([("rpm", 1)])
                .await;
            assert!(refused.is_err());
            lease.rollback().await.unwrap();
        })
    });
    let out = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    // the innermost span of each `close` line (its parents come first, `a{..}:b{..}`)
    let closed = |name: &str| -> Vec<String> {
        out.lines()
            .filter_map(|l| {
                let (spans, rest) = l.rsplit_once("}: ")?;
                let last = spans.rsplit_once("}:").map_or(spans, |(_, last)| last);
                let last = &last[last.find("zae_limiter.")?..];
                (rest.ends_with("close") && last.starts_with(&format!("{name}{{")))
                    .then(|| last.to_string())
            })
            .collect()
    };
    let acquires = closed("zae_limiter.acquire");
    assert_eq!(acquires.len(), 2, "{out}");
    for (line, outcome) in acquires.iter().zip(["admitted", "rate_limited"]) {
        assert!(line.contains("entity=key-1 resource=gpt-4"), "{line}");
        assert!(line.contains(&format!("outcome=\"{outcome}\"")), "{line}");
        assert!(line.contains("store_latency_ms="), "{line}");
    }
    let resolutions = closed("zae_limiter.resolution");
    assert_eq!(resolutions.len(), 2, "{out}");
    assert!(
        resolutions[0].contains("cache=\"miss\""),
        "{}",
        resolutions[0]
    );
    assert!(
        resolutions[0].contains("store_latency_ms="),
        "{}",
        resolutions[0]
    );
    assert!(
        resolutions[1].contains("cache=\"hit\""),
        "{}",
        resolutions[1]
    );
    let rollbacks = closed("zae_limiter.rollback");
    assert_eq!(rollbacks.len(), 1, "{out}");
    for field in [
        "entity=key-1 resource=gpt-4",
        "outcome=\"ok\"",
        "store_latency_ms=",
    ] {
        assert!(rollbacks[0].contains(field), "{field}: {}", rollbacks[0]);
    }
}
