//! The scenarios a to h: what each runs on which entities, and what its post-check expects.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zae_limiter::store::BucketState;
use zae_limiter::{
    ConfigScope, DynamoStore, Error, Limit, NewEntity, RateLimiter, Store, StoredConfig,
};

use super::check::{check_bucket, read_bucket, times, Check};
use super::measure::Window;
use super::ops::{b_limits, Op, MILLI, RESOURCE};

/// Untimed operations per entity before a timed window (caches, connections).
pub(super) const WARMUP: u64 = 20;
/// Tasks in f and g.
const CONCURRENCY: usize = 16;
/// Attempts in g, whatever --ops says.
const CONTENTION_ATTEMPTS: u64 = 2000;
/// Tokens in g's bucket: admitting more is over-admission.
pub(super) const CONTENTION_CAPACITY: u64 = 500;

/// The store under test: the trait object the limiter uses, plus the DynamoDB handle for
/// call counts.
pub(super) struct Bench {
    pub(super) limiter: RateLimiter,
    pub(super) store: Arc<dyn Store>,
    pub(super) dynamo: Option<DynamoStore>,
    /// Entity ids start with this (one run never meets another's buckets).
    pub(super) prefix: String,
    /// Timed operations per scenario.
    pub(super) ops: u64,
    /// Upper bound on a scenario's timed part.
    pub(super) max: Duration,
    /// The server process whose CPU time each window reads (DynamoDB Local on this machine).
    pub(super) server: Option<super::server::ServerCpu>,
}

impl Bench {
    /// The id of one of this run's entities.
    pub(super) fn entity(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix)
    }

    /// Run scenario `id`.
    pub(super) async fn scenario(&self, id: &str) -> Result<(Window, Check), String> {
        match id {
            "a" => self.sequential("a", Op::OneLimit).await,
            "b" => self.sequential("b", Op::TwoLimits).await,
            "c" => self.cascade().await,
            "d" => self.stored_defaults().await,
            "e" => self.sequential("e", Op::Adjusted).await,
            "f" => self.concurrent().await,
            "g" => self.contention().await,
            "h" => self.available().await,
            "raw" => self.raw_alone().await,
            other => Err(format!("unknown scenario '{other}'")),
        }
    }

    /// d: b's operation with no limits in code; they come from stored system defaults
    /// (= b's limits) through the warm config cache. The defaults are removed afterwards; a
    /// table that already has system defaults is left alone.
    async fn stored_defaults(&self) -> Result<(Window, Check), String> {
        let system = ConfigScope::System;
        let e = |e: Error| format!("system defaults: {e}");
        if self.limiter.get_config(&system).await.map_err(e)?.is_some() {
            return Err("this table already has system defaults; scenario d would replace them (run it on another table, or leave d out with --scenarios)".into());
        }
        self.limiter
            .set_config(&system, StoredConfig::limits(b_limits()))
            .await
            .map_err(e)?;
        let result = self.sequential("d", Op::Stored).await;
        self.limiter.delete_config(&system).await.map_err(e)?;
        result
    }

    /// `n` operations on `entity` one after the other, stopping at the deadline if given.
    async fn serial(
        &self,
        op: Op,
        entity: &str,
        n: u64,
        deadline: Option<Instant>,
    ) -> Result<(Vec<Duration>, bool), String> {
        let mut lat = Vec::with_capacity(n as usize);
        for i in 0..n {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok((lat, true));
            }
            let t = Instant::now();
            op.run(&self.limiter, entity)
                .await
                .map_err(|e| format!("operation {i} on {entity}: {e}"))?;
            lat.push(t.elapsed());
        }
        Ok((lat, false))
    }

    /// Warm-up, then `ops` timed operations on `entity` one after the other.
    async fn timed_serial(&self, op: Op, entity: &str) -> Result<Window, String> {
        self.serial(op, entity, WARMUP, None).await?;
        let mut w = Window {
            concurrency: 1,
            ..Window::default()
        };
        let clocks = self.start();
        let (lat, capped) = self
            .serial(op, entity, self.ops, Some(Instant::now() + self.max))
            .await?;
        self.finish(&mut w, clocks);
        (w.ops, w.latencies, w.capped) = (lat.len() as u64, lat, capped);
        Ok(w)
    }

    /// a, b, e: warm-up then `ops` timed operations on one entity.
    async fn sequential(&self, tag: &str, op: Op) -> Result<(Window, Check), String> {
        let entity = self.entity(tag);
        let w = self.timed_serial(op, &entity).await?;
        let check = check_bucket(
            &*self.store,
            &entity,
            &times(op.consumed_per_op(), WARMUP + w.ops),
        )
        .await;
        Ok((w, check))
    }

    /// c: a cascading child; every operation also takes from the parent.
    async fn cascade(&self) -> Result<(Window, Check), String> {
        let (parent, child) = (self.entity("c-parent"), self.entity("c-child"));
        let e = |e: Error| e.to_string();
        self.limiter
            .create_entity(NewEntity::new(&parent))
            .await
            .map_err(e)?;
        self.limiter
            .create_entity(NewEntity::new(&child).parent(&parent).cascade(true))
            .await
            .map_err(e)?;
        let op = Op::TwoLimits;
        let w = self.timed_serial(op, &child).await?;
        let want = times(op.consumed_per_op(), WARMUP + w.ops);
        let check = match check_bucket(&*self.store, &child, &want).await {
            Ok(()) => check_bucket(&*self.store, &parent, &want).await,
            Err(e) => Err(e),
        };
        Ok((w, check))
    }

    /// f: 16 tasks, each on its own entity, `ops` operations in total.
    async fn concurrent(&self) -> Result<(Window, Check), String> {
        let op = Op::TwoLimits;
        let entities: Vec<String> = (0..CONCURRENCY)
            .map(|i| self.entity(&format!("f-{i}")))
            .collect();
        let share = |i: usize| {
            self.ops / CONCURRENCY as u64 + u64::from((i as u64) < self.ops % CONCURRENCY as u64)
        };
        // warm-up: each task's entity once through the caches
        let mut warm = Vec::new();
        for e in &entities {
            let (l, e) = (self.limiter.clone(), e.clone());
            warm.push(tokio::spawn(async move {
                for _ in 0..WARMUP {
                    op.run(&l, &e)
                        .await
                        .map_err(|x| format!("warm-up on {e}: {x}"))?;
                }
                Ok::<_, String>(())
            }));
        }
        for h in warm {
            h.await.map_err(|e| e.to_string())??;
        }
        let mut w = Window {
            concurrency: CONCURRENCY,
            ..Window::default()
        };
        let deadline = Instant::now() + self.max;
        let clocks = self.start();
        let mut tasks = Vec::new();
        for (i, e) in entities.iter().enumerate() {
            let (l, e, n) = (self.limiter.clone(), e.clone(), share(i));
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(n as usize);
                for k in 0..n {
                    if Instant::now() >= deadline {
                        return Ok((lat, true));
                    }
                    let t = Instant::now();
                    op.run(&l, &e)
                        .await
                        .map_err(|x| format!("operation {k} on {e}: {x}"))?;
                    lat.push(t.elapsed());
                }
                Ok::<_, String>((lat, false))
            }));
        }
        let mut per_entity = Vec::new();
        for h in tasks {
            let (lat, capped) = h.await.map_err(|e| e.to_string())??;
            per_entity.push(lat.len() as u64);
            w.capped |= capped;
            w.latencies.extend(lat);
        }
        self.finish(&mut w, clocks);
        w.ops = w.latencies.len() as u64;
        let mut check = Ok(());
        for (e, n) in entities.iter().zip(per_entity) {
            check = check_bucket(&*self.store, e, &times(op.consumed_per_op(), WARMUP + n)).await;
            if check.is_err() {
                break;
            }
        }
        Ok((w, check))
    }

    /// g: 16 tasks race for 500 tokens on one entity with 2000 attempts; no warm-up.
    async fn contention(&self) -> Result<(Window, Check), String> {
        let entity = self.entity("g");
        let limits = vec![Limit::per_day("x", CONTENTION_CAPACITY)];
        let next = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + self.max;
        let mut w = Window {
            concurrency: CONCURRENCY,
            ..Window::default()
        };
        let clocks = self.start();
        let mut tasks = Vec::new();
        for _ in 0..CONCURRENCY {
            let (l, e, lim, next) = (
                self.limiter.clone(),
                entity.clone(),
                limits.clone(),
                next.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let (mut lat, mut admitted, mut rejected, mut capped) =
                    (Vec::new(), 0u64, 0u64, false);
                while next.fetch_add(1, Ordering::Relaxed) < CONTENTION_ATTEMPTS {
                    if Instant::now() >= deadline {
                        capped = true;
                        break;
                    }
                    let t = Instant::now();
                    match l
                        .acquire(e.as_str(), RESOURCE)
                        .limits(lim.clone())
                        .consume([("x", 1)])
                        .await
                    {
                        Ok(lease) => {
                            lease.commit().await.map_err(|x| x.to_string())?;
                            admitted += 1;
                        }
                        Err(Error::RateLimited(_)) => rejected += 1,
                        Err(x) => return Err(format!("attempt on {e}: {x}")),
                    }
                    lat.push(t.elapsed());
                }
                Ok::<_, String>((lat, admitted, rejected, capped))
            }));
        }
        let (mut admitted, mut rejected) = (0, 0);
        for h in tasks {
            let (lat, a, r, capped) = h.await.map_err(|e| e.to_string())??;
            w.latencies.extend(lat);
            (admitted, rejected) = (admitted + a, rejected + r);
            w.capped |= capped;
        }
        self.finish(&mut w, clocks);
        w.ops = w.latencies.len() as u64;
        w.contention = Some((admitted, rejected));
        let check = check_bucket(&*self.store, &entity, &[("x", admitted as i128 * MILLI)]).await;
        Ok((w, check))
    }

    /// h: `available()`; the bucket is created by one untimed acquire and must not change.
    async fn available(&self) -> Result<(Window, Check), String> {
        let entity = self.entity("h");
        Op::TwoLimits
            .run(&self.limiter, &entity)
            .await
            .map_err(|e| format!("seeding {entity}: {e}"))?;
        let before = read_bucket(&*self.store, &entity).await?;
        let op = Op::Available;
        let w = self.timed_serial(op, &entity).await?;
        let after = read_bucket(&*self.store, &entity).await?;
        let counters = |s: &Option<BucketState>| -> BTreeMap<String, i128> {
            s.iter()
                .flat_map(|s| s.limits.iter().map(|(k, v)| (k.clone(), v.consumed)))
                .collect()
        };
        let check = if before.is_some() && counters(&before) == counters(&after) {
            Ok(())
        } else {
            Err(format!(
                "counters changed: {:?} -> {:?}",
                counters(&before),
                counters(&after)
            ))
        };
        Ok((w, check))
    }
}
