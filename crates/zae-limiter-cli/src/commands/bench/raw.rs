//! Scenario `raw`: the bare conditional `UpdateItem` a warm acquire can at best cost, sent
//! with the store's own client on a bucket item the library created, and its side-by-side
//! run with scenario `a` (interleaved blocks in one process, same server, same warm-up), so
//! every run measures the library against the physical limit.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_sdk_dynamodb::Client;

use super::check::{check_bucket, times, Check};
use super::measure::{stats, Window};
use super::ops::{Op, MILLI, RESOURCE};
use super::scenarios::{Bench, WARMUP};

/// Blocks each side of a paired run is cut into; the order alternates block by block.
const BLOCKS: u64 = 10;

/// The bare write: `ADD z_rpm :d, tc_rpm :n SET ttl = :ttl` if `attribute_not_exists(z_rpm)
/// OR z_rpm >= :q`, returning the whole item (`ALL_NEW`): what an acquire of one token of
/// one limit needs DynamoDB to do, and nothing else.
pub(super) struct RawWrite {
    client: Client,
    table: String,
    pk: String,
}

impl RawWrite {
    /// The bare write on the bucket of `entity` (created by one library acquire first, so
    /// the item has exactly the attributes of a library bucket).
    pub(super) async fn prepare(bench: &Bench, entity: &str) -> Result<Self, String> {
        let d = bench
            .dynamo
            .as_ref()
            .ok_or("scenario raw needs --store dynamodb")?;
        Op::OneLimit
            .run(&bench.limiter, entity)
            .await
            .map_err(|e| format!("creating the bucket of {entity}: {e}"))?;
        let ns = d.namespace_id().await.map_err(|e| e.to_string())?;
        Ok(RawWrite {
            client: d.client().clone(),
            table: d.table_name().to_string(),
            pk: zae_limiter::keys::bucket_pk(&ns, entity, RESOURCE, 0),
        })
    }

    /// One bare write of one token.
    pub(super) async fn once(&self) -> Result<(), String> {
        let ttl = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs()
            + 86_400;
        self.client
            .update_item()
            .table_name(&self.table)
            .key("PK", AttributeValue::S(self.pk.clone()))
            .key(
                "SK",
                AttributeValue::S(zae_limiter::keys::BUCKET_SK.to_string()),
            )
            .update_expression("ADD #z :d, #t :n SET #ttl = :ttl")
            .condition_expression("attribute_not_exists(#z) OR #z >= :q")
            .expression_attribute_names("#z", "z_rpm")
            .expression_attribute_names("#t", "tc_rpm")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":d", AttributeValue::N("-60000000".into()))
            .expression_attribute_values(":n", AttributeValue::N(MILLI.to_string()))
            .expression_attribute_values(":ttl", AttributeValue::N(ttl.to_string()))
            .expression_attribute_values(":q", AttributeValue::N(format!("-1{}", "0".repeat(30))))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "bare UpdateItem: {}",
                    aws_sdk_dynamodb::error::DisplayErrorContext(&e)
                )
            })?;
        Ok(())
    }
}

/// What one side of a paired run times.
#[derive(Clone, Copy)]
enum Side {
    Library,
    Bare,
}

impl Bench {
    /// `n` operations of `side` one after the other; latencies, and whether the deadline
    /// stopped them.
    async fn run_side(
        &self,
        side: Side,
        raw: &RawWrite,
        entity: &str,
        n: u64,
        deadline: Instant,
    ) -> Result<(Vec<Duration>, bool), String> {
        let mut lat = Vec::with_capacity(n as usize);
        for _ in 0..n {
            if Instant::now() >= deadline {
                return Ok((lat, true));
            }
            let t = Instant::now();
            match side {
                Side::Library => Op::OneLimit
                    .run(&self.limiter, entity)
                    .await
                    .map_err(|e| format!("scenario a on {entity}: {e}"))?,
                Side::Bare => raw.once().await?,
            }
            lat.push(t.elapsed());
        }
        Ok((lat, false))
    }

    /// Scenario raw on its own (when a is not selected): warm-up, then `ops` bare writes.
    pub(super) async fn raw_alone(&self) -> Result<(Window, Check), String> {
        let entity = self.entity("raw");
        let raw = RawWrite::prepare(self, &entity).await?;
        let far = Instant::now() + Duration::from_secs(3_600);
        self.run_side(Side::Bare, &raw, &entity, WARMUP, far)
            .await?;
        let mut w = Window {
            concurrency: 1,
            ..Window::default()
        };
        let clocks = self.start();
        let (lat, capped) = self
            .run_side(
                Side::Bare,
                &raw,
                &entity,
                self.ops,
                Instant::now() + self.max,
            )
            .await?;
        self.finish(&mut w, clocks);
        (w.ops, w.latencies, w.capped) = (lat.len() as u64, lat, capped);
        let check = check_bucket(
            &*self.store,
            &entity,
            &times(Op::OneLimit.consumed_per_op(), 1 + WARMUP + w.ops),
        )
        .await;
        Ok((w, check))
    }

    /// Scenarios a and raw side by side: both warmed up, then [`BLOCKS`] blocks of each,
    /// alternating which goes first, each block timed on its own and added up.
    pub(super) async fn paired(&self) -> Result<[(Window, Check); 2], String> {
        let (lib_entity, raw_entity) = (self.entity("a"), self.entity("raw"));
        let raw = RawWrite::prepare(self, &raw_entity).await?;
        let deadline = Instant::now() + self.max;
        let far = Instant::now() + Duration::from_secs(3_600);
        self.run_side(Side::Library, &raw, &lib_entity, WARMUP, far)
            .await?;
        self.run_side(Side::Bare, &raw, &raw_entity, WARMUP, far)
            .await?;
        let mut windows = [Window::default(), Window::default()];
        for b in 0..BLOCKS {
            let n = self.ops / BLOCKS + u64::from(b < self.ops % BLOCKS);
            let order = if b % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                let (side, entity) = match i {
                    0 => (Side::Library, &lib_entity),
                    _ => (Side::Bare, &raw_entity),
                };
                let mut block = Window {
                    concurrency: 1,
                    ..Window::default()
                };
                let clocks = self.start();
                let (lat, capped) = self.run_side(side, &raw, entity, n, deadline).await?;
                self.finish(&mut block, clocks);
                (block.ops, block.latencies, block.capped) = (lat.len() as u64, lat, capped);
                windows[i].absorb(block);
            }
        }
        let [lib, bare] = windows;
        let lib_check = check_bucket(
            &*self.store,
            &lib_entity,
            &times(Op::OneLimit.consumed_per_op(), WARMUP + lib.ops),
        )
        .await;
        // the bucket's first token was taken by the library acquire that created it
        let bare_check = check_bucket(
            &*self.store,
            &raw_entity,
            &times(Op::OneLimit.consumed_per_op(), 1 + WARMUP + bare.ops),
        )
        .await;
        Ok([(lib, lib_check), (bare, bare_check)])
    }
}

/// Library / bare ratios of a paired run: (name, ratio) in print order; a ratio whose
/// denominator is zero (or whose server CPU was not measured) is left out.
pub(super) fn ratios(lib: &Window, bare: &Window) -> Vec<(&'static str, f64)> {
    let (l, b) = (stats(lib), stats(bare));
    let per_op = |w: &Window| {
        w.server_cpu
            .map(|c| c.as_secs_f64() * 1000.0 / w.ops.max(1) as f64)
    };
    let mut out = vec![
        ("ops_per_s", l.ops_per_s, b.ops_per_s),
        ("p50", l.p50, b.p50),
        ("p99", l.p99, b.p99),
        ("client_cpu", l.cpu_per_op, b.cpu_per_op),
    ];
    if let (Some(ls), Some(bs)) = (per_op(lib), per_op(bare)) {
        out.push(("server_cpu", ls, bs));
    }
    out.into_iter()
        .filter(|(_, _, d)| *d > 0.0)
        .map(|(k, n, d)| (k, super::measure::round(n / d, 3)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(ops: u64, wall_ms: u64, cpu_ms: u64, server_ms: Option<u64>, lat_ms: u64) -> Window {
        Window {
            ops,
            concurrency: 1,
            wall: Duration::from_millis(wall_ms),
            cpu: Duration::from_millis(cpu_ms),
            server_cpu: server_ms.map(Duration::from_millis),
            latencies: vec![Duration::from_millis(lat_ms); ops as usize],
            ..Window::default()
        }
    }

    #[test]
    fn ratios_are_library_over_bare() {
        let lib = window(100, 2000, 30, Some(300), 2);
        let bare = window(100, 1000, 20, Some(200), 1);
        assert_eq!(
            ratios(&lib, &bare),
            vec![
                ("ops_per_s", 0.5),
                ("p50", 2.0),
                ("p99", 2.0),
                ("client_cpu", 1.5),
                ("server_cpu", 1.5)
            ]
        );
        // no server measurement, or nothing to divide by: left out
        let lib = window(100, 2000, 30, None, 2);
        let bare = window(100, 1000, 0, None, 1);
        assert_eq!(
            ratios(&lib, &bare),
            vec![("ops_per_s", 0.5), ("p50", 2.0), ("p99", 2.0)]
        );
    }
}
