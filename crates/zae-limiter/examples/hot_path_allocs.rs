//! Heap allocations per acquire + commit on the embedded store (a warm bucket, two limits,
//! as in `benches/hot_path.rs`), counted by a global allocator that wraps the system one.
//! The request itself (entity and resource strings, the limits and amounts) is built
//! outside the counted section, so the count is what the limiter and the store add.
//!
//! `cargo run --release -p zae-limiter --no-default-features --example hot_path_allocs [ROUNDS]`
//!
//! With two round counts under `perf stat -e instructions`, the difference gives the
//! instructions per round, which unlike the time does not depend on what else the machine
//! runs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use zae_limiter::{Limit, MemoryStore, RateLimiter};

/// The system allocator, counting allocations (reallocations count as one).
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to `System`, which upholds the contract.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same layout the caller gave us
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded as given
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() {
    let rounds: u64 = std::env::args()
        .nth(1)
        .map_or(10_000, |a| a.parse().expect("a number of rounds"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let limiter = RateLimiter::builder(MemoryStore::new()).build();
    let limits = [
        Limit::per_minute("rpm", zae_limiter::MAX_AMOUNT),
        Limit::per_minute("tpm", zae_limiter::MAX_AMOUNT),
    ];
    rt.block_on(async {
        let mut counted = 0;
        for round in 0..rounds + 100 {
            // the request as a caller builds it, not counted
            let req = limiter
                .acquire("key-1", "api")
                .limits(limits.iter().cloned())
                .consume([("rpm", 1), ("tpm", 500)]);
            let before = ALLOCS.load(Ordering::Relaxed);
            let lease = req.await.expect("admitted");
            lease.commit().await.expect("committed");
            drop(lease);
            // the first rounds warm the caches and create the bucket
            if round >= 100 {
                counted += ALLOCS.load(Ordering::Relaxed) - before;
            }
        }
        println!(
            "allocations per acquire + commit (warm bucket, 2 limits): {:.2}",
            counted as f64 / rounds as f64
        );
    });
}
