//! Test bed: the stores every test runs on, and an axum server on 127.0.0.1.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use zae_limiter::{Limit, ManualClock, MemoryStore, RateLimiter};

/// A clock frozen at the real time of the call: no token refills during a test, so header
/// values (`Retry-After`, `RateLimit`) are exact however slow the machine is.
fn frozen() -> ManualClock {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    ManualClock::new(now)
}

/// The embedded store always; DynamoDB Local too with the `dynamodb-local-tests` feature
/// (a table of its own per test process). Every limiter runs on a [`frozen`] clock.
pub async fn limiters(test: &str) -> Vec<(&'static str, RateLimiter)> {
    let clock = frozen();
    #[allow(unused_mut)]
    let mut out = vec![(
        "memory",
        RateLimiter::builder(MemoryStore::new())
            .clock(clock.clone())
            .build(),
    )];
    #[cfg(feature = "dynamodb-local-tests")]
    {
        use zae_limiter::{DynamoStore, StoreConfig};
        let endpoint = std::env::var("ZAEL_TEST_DYNAMODB_ENDPOINT").expect(
            "ZAEL_TEST_DYNAMODB_ENDPOINT is not set: run through scripts/dynamodb-local.sh",
        );
        let table = format!("zael-tower-{test}-{}", std::process::id()).replace('_', "-");
        let store = DynamoStore::connect(
            StoreConfig::new(&table)
                .endpoint_url(&endpoint)
                .static_credentials("local", "local")
                // CI runs the suite on two loaded cores: give DynamoDB Local time
                .attempt_timeout(std::time::Duration::from_secs(20)),
        )
        .await
        .expect("connect to DynamoDB Local");
        store.create_table().await.expect("create the test table");
        out.push((
            "dynamodb",
            RateLimiter::builder(store).clock(clock.clone()).build(),
        ));
    }
    let _ = test;
    out
}

/// Serve `app` on 127.0.0.1 (a free port); the server lives as long as the runtime.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Whole tokens available now for `limit` of `entity` on `resource`.
pub async fn available(limiter: &RateLimiter, entity: &str, resource: &str, limit: &Limit) -> i64 {
    limiter
        .available(entity, resource, std::slice::from_ref(limit))
        .await
        .unwrap()[limit.name()]
}

/// Wait (at most 5 s, every 10 ms) until `limit` has `want` tokens available; the last
/// value seen.
pub async fn await_available(
    limiter: &RateLimiter,
    entity: &str,
    resource: &str,
    limit: &Limit,
    want: i64,
) -> i64 {
    let start = Instant::now();
    loop {
        let n = available(limiter, entity, resource, limit).await;
        if n == want || start.elapsed() > Duration::from_secs(5) {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
