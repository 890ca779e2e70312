//! Interleaving property test on the embedded store's reference semantics: random schedules
//! of clients, each with its own clock offset (up to ±60 s) and some holding stale limits in
//! their config cache. Whatever the schedule, total admissions stay within capacity + refill
//! over the real elapsed time + the refill of one skew interval (from the slowest clock to the
//! fastest), and no update is lost (the consumed counter equals what was admitted).

use std::time::Duration;

use proptest::prelude::*;
use zae_limiter::store::BucketKey;
use zae_limiter::{
    ConfigScope, Error, Limit, ManualClock, MemoryStore, RateLimiter, Store, StoredConfig,
};

const T0: i64 = 1_767_225_600_000;
const CAP: u64 = 20;
const PERIOD_MS: u64 = 60_000;

#[derive(Debug, Clone)]
enum Op {
    /// Client `i` asks for `n` tokens.
    Take(usize, u64),
    /// Real time passes (every client clock moves by the same amount).
    Wait(u64),
    /// Client `i` drops its config cache (picks up the stored limits).
    Refresh(usize),
}

fn op(clients: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..clients, 1u64..4).prop_map(|(i, n)| Op::Take(i, n)),
        2 => (0u64..20_000).prop_map(Op::Wait),
        1 => (0..clients).prop_map(Op::Refresh),
    ]
}

fn run(offsets: Vec<i64>, ops: Vec<Op>, change_at: Option<usize>) -> (u64, i128, i64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = MemoryStore::new();
        let clocks: Vec<ManualClock> = offsets.iter().map(|o| ManualClock::new(T0 + o)).collect();
        let clients: Vec<RateLimiter> = clocks
            .iter()
            .map(|c| {
                RateLimiter::builder(store.clone())
                    .clock(c.clone())
                    .config_cache_ttl(Duration::from_secs(86_400))
                    .build()
            })
            .collect();
        let scope = ConfigScope::Entity {
            entity_id: "k".into(),
            resource: "r".into(),
        };
        let limits = |cap: u64| {
            StoredConfig::limits([Limit::custom(
                "rpm",
                cap,
                cap,
                Duration::from_millis(PERIOD_MS),
            )])
        };
        clients[0].set_config(&scope, limits(CAP)).await.unwrap();
        let (mut admitted, mut elapsed) = (0u64, 0i64);
        for (step, o) in ops.into_iter().enumerate() {
            if Some(step) == change_at {
                // a smaller limit: clients with the old one cached are stale from now on
                clients[0]
                    .set_config(&scope, limits(CAP / 2))
                    .await
                    .unwrap();
            }
            match o {
                Op::Take(i, n) => match clients[i].acquire("k", "r").consume([("rpm", n)]).await {
                    Ok(lease) => {
                        lease.commit().await.unwrap();
                        admitted += n;
                    }
                    Err(Error::RateLimited(_)) => {}
                    Err(e) => panic!("{e}"),
                },
                Op::Wait(ms) => {
                    elapsed += ms as i64;
                    for c in &clocks {
                        c.advance(Duration::from_millis(ms));
                    }
                }
                Op::Refresh(i) => clients[i].invalidate_config_cache(),
            }
        }
        let consumed = store
            .get_bucket(&BucketKey::new("k", "r"))
            .await
            .unwrap()
            .map_or(0, |b| b.limits["rpm"].consumed);
        (admitted, consumed, elapsed)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn skewed_and_stale_clients_never_over_admit(
        more in proptest::collection::vec(-60_000i64..=60_000, 1..4),
        ops in proptest::collection::vec(op(4), 1..400),
        change in proptest::option::of(0usize..400),
    ) {
        // always one correct clock and one a full minute behind, the worst case of the rule
        let offsets: Vec<i64> = [0, -60_000].into_iter().chain(more).collect();
        let n = offsets.len();
        // the skew interval: from the slowest clock to the fastest (up to 120 s, two periods)
        let spread = (offsets.iter().max().unwrap() - offsets.iter().min().unwrap()) as u64;
        let ops: Vec<Op> = ops.into_iter().map(|o| match o {
            Op::Take(i, k) => Op::Take(i % n, k),
            Op::Refresh(i) => Op::Refresh(i % n),
            w => w,
        }).collect();
        let (admitted, consumed, elapsed) = run(offsets, ops, change);
        // nothing lost: every admitted token is in the counter, nothing else is
        prop_assert_eq!(consumed, admitted as i128 * 1000);
        // the bound of the skew rule (docs/architecture.md, "Clock skew"), for the larger of
        // the two limits: capacity + refill over the real elapsed time + the refill of one
        // skew interval (more than one capacity when the clocks are over a period apart:
        // a client 60 s behind drains, a correct one finds it refilled, one 52 s ahead again)
        let refill = (elapsed as u64 * CAP).div_ceil(PERIOD_MS);
        let skew = (spread * CAP).div_ceil(PERIOD_MS);
        let bound = CAP + refill + skew;
        prop_assert!(admitted <= bound, "admitted {} > {} (elapsed {} ms)", admitted, bound, elapsed);
    }
}
