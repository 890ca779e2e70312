//! The layer in front of an axum server on 127.0.0.1, driven by a real HTTP client, on the
//! embedded store (and DynamoDB Local with `dynamodb-local-tests`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::routing::get;
use axum::{Extension, Router};
use futures_util::stream;
use http::request::Parts;
use http::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, Mutex};
use zae_limiter::{Limit, RateLimiter};
use zae_limiter_tower::{extract, MissingEntity, RateLimitLayer, RateLimitLease};

const RESOURCE: &str = "chat";

fn tpm() -> Limit {
    Limit::per_day("tpm", 1000)
}

/// tpm 1000/day (no whole token refills during a test), 100 taken up front.
fn tpm_layer(limiter: &RateLimiter) -> RateLimitLayer {
    RateLimitLayer::new(limiter.clone())
        .resource(|_: &Parts| Some(RESOURCE.to_string()))
        .limits([tpm()])
        .consume(|_: &Parts| vec![("tpm".to_string(), 100)])
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).map(|v| v.to_str().unwrap())
}

/// One GET of `/` on `addr` as API key `key`.
async fn get_as(addr: std::net::SocketAddr, key: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("http://{addr}/"))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn over_the_limit_is_a_429_with_exact_headers_and_body() {
    for (store, limiter) in common::limiters("reject").await {
        let layer = RateLimitLayer::new(limiter.clone())
            .entity(extract::header("x-api-key"))
            .resource(|_: &Parts| Some(RESOURCE.to_string()))
            .limits([Limit::per_minute("rpm", 2)])
            .consume(|_: &Parts| vec![("rpm".to_string(), 1)])
            .openai_headers("rpm", "tpm");
        let app = Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(layer);
        let addr = common::serve(app).await;
        let client = reqwest::Client::new();
        let get = || {
            client
                .get(format!("http://{addr}/"))
                .header("x-api-key", "key-1")
        };

        // t: seconds until one more request would pass (0 while one still does)
        for (left, t) in [(1, 0), (0, 30)] {
            let r = get().send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{store}");
            assert_eq!(
                header(&r, "ratelimit-policy"),
                Some("\"rpm\";q=2;w=60"),
                "{store}"
            );
            assert_eq!(
                header(&r, "ratelimit"),
                Some(&*format!("\"rpm\";r={left};t={t}"))
            );
            assert_eq!(
                header(&r, "x-ratelimit-remaining-requests"),
                Some(&*left.to_string())
            );
            assert_eq!(header(&r, "retry-after"), None);
            assert_eq!(r.text().await.unwrap(), "ok");
        }
        let r = get().send().await.unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{store}");
        // one token per 30 s (the clock is frozen: exactly 30 s)
        assert_eq!(header(&r, "retry-after"), Some("30"), "{store}");
        assert_eq!(header(&r, "ratelimit-policy"), Some("\"rpm\";q=2;w=60"));
        assert_eq!(header(&r, "ratelimit"), Some("\"rpm\";r=0;t=30"));
        assert_eq!(header(&r, "content-type"), Some("application/json"));
        assert_eq!(header(&r, "x-ratelimit-limit-requests"), Some("2"));
        assert_eq!(header(&r, "x-ratelimit-remaining-requests"), Some("0"));
        assert_eq!(header(&r, "x-ratelimit-reset-requests"), Some("1m0s"));
        assert_eq!(header(&r, "x-ratelimit-limit-tokens"), None);
        let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(body["error"], "rate_limit_exceeded");
        assert_eq!(
            body["message"].as_str().unwrap().split("; retry").next(),
            Some("rate limit exceeded for key-1/chat: [rpm]")
        );
        let l = &body["limits"][0];
        assert_eq!(body["limits"].as_array().unwrap().len(), 1);
        assert_eq!(
            (l["limit_name"].as_str(), l["capacity"].as_u64()),
            (Some("rpm"), Some(2))
        );
        assert_eq!(
            (l["available"].as_i64(), l["requested"].as_i64()),
            (Some(0), Some(1))
        );
        assert_eq!(l["exceeded"], true);
        assert_eq!(body["retry_after_ms"], 30_000);
        assert_eq!(body["retry_after_seconds"], 30.0);
        assert_eq!(
            body["message"],
            "rate limit exceeded for key-1/chat: [rpm]; retry after 30.0s"
        );

        // another key has its own bucket
        let r = client
            .get(format!("http://{addr}/"))
            .header("x-api-key", "key-2");
        assert_eq!(r.send().await.unwrap().status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn missing_entity_is_a_401_or_the_configured_response() {
    for (_, limiter) in common::limiters("missing").await {
        let app = Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(tpm_layer(&limiter).entity(extract::bearer_token()));
        let custom = Router::new().route("/", get(|| async { "ok" })).layer(
            tpm_layer(&limiter).missing_entity(MissingEntity::new(
                StatusCode::FORBIDDEN,
                r#"{"error":"no key"}"#,
            )),
        );
        let (a, b) = (common::serve(app).await, common::serve(custom).await);
        let r = reqwest::get(format!("http://{a}/")).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(body["error"], "missing_entity");
        let r = reqwest::get(format!("http://{b}/")).await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(r.text().await.unwrap(), r#"{"error":"no key"}"#);
        // a bearer token is the entity
        let ok = reqwest::Client::new()
            .get(format!("http://{a}/"))
            .bearer_auth("tok-1")
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(
            common::available(&limiter, "tok-1", RESOURCE, &tpm()).await,
            900
        );
    }
}

async fn adjusting(Extension(lease): Extension<RateLimitLease>) -> &'static str {
    // the real cost was 420 tokens, 100 were taken up front
    lease.adjust("tpm", 320).unwrap();
    "done"
}

#[tokio::test]
async fn the_handler_adjusts_the_lease_and_it_commits() {
    for (store, limiter) in common::limiters("adjust").await {
        let app = Router::new()
            .route("/", get(adjusting))
            .layer(tpm_layer(&limiter));
        let addr = common::serve(app).await;
        let r = get_as(addr, "k").await;
        assert_eq!(r.status(), StatusCode::OK);
        // the headers tell the state after the acquire (before the adjustment)
        assert_eq!(header(&r, "ratelimit"), Some("\"tpm\";r=900;t=0"));
        assert_eq!(r.text().await.unwrap(), "done");
        // committed before the client saw the end of the body
        assert_eq!(
            common::available(&limiter, "k", RESOURCE, &tpm()).await,
            580,
            "{store}"
        );
    }
}

#[tokio::test]
async fn an_empty_response_commits() {
    for (store, limiter) in common::limiters("empty").await {
        let app = Router::new()
            .route("/", get(|| async { StatusCode::NO_CONTENT }))
            .layer(tpm_layer(&limiter));
        let addr = common::serve(app).await;
        let r = get_as(addr, "e").await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(header(&r, "ratelimit"), Some("\"tpm\";r=900;t=0"));
        // committed, not rolled back as an unfinished body would be
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            common::available(&limiter, "e", RESOURCE, &tpm()).await,
            900,
            "{store}"
        );
    }
}

type Release = Arc<Mutex<mpsc::Receiver<()>>>;

/// A streamed completion: one chunk now, the final usage chunk when the test releases it;
/// the handler's stream adjusts the lease before yielding the final chunk.
async fn streaming(
    State(release): State<Release>,
    Extension(lease): Extension<RateLimitLease>,
) -> Body {
    let chunks = stream::unfold(0u8, move |step| {
        let (release, lease) = (release.clone(), lease.clone());
        async move {
            match step {
                0 => Some((
                    Ok::<_, std::io::Error>("{\"delta\":\"hi\"}\n".to_string()),
                    1,
                )),
                1 => {
                    release.lock().await.recv().await;
                    lease.adjust("tpm", 320).unwrap();
                    Some((Ok("{\"usage\":{\"total_tokens\":420}}\n".to_string()), 2))
                }
                _ => None,
            }
        }
    });
    Body::from_stream(chunks)
}

#[tokio::test]
async fn a_streamed_body_commits_when_it_ends() {
    for (store, limiter) in common::limiters("stream").await {
        let (tx, rx) = mpsc::channel(1);
        let app = Router::new()
            .route("/", get(streaming))
            .with_state(Arc::new(Mutex::new(rx)))
            .layer(tpm_layer(&limiter));
        let addr = common::serve(app).await;
        let mut r = get_as(addr, "s").await;
        assert_eq!(r.status(), StatusCode::OK);
        let first = r.chunk().await.unwrap().unwrap();
        assert_eq!(&first[..], b"{\"delta\":\"hi\"}\n");
        // taken at the acquire, not yet adjusted or committed
        assert_eq!(
            common::available(&limiter, "s", RESOURCE, &tpm()).await,
            900,
            "{store}"
        );
        tx.send(()).await.unwrap();
        let mut rest = Vec::new();
        while let Some(c) = r.chunk().await.unwrap() {
            rest.extend_from_slice(&c);
        }
        assert_eq!(rest, b"{\"usage\":{\"total_tokens\":420}}\n");
        assert_eq!(
            common::available(&limiter, "s", RESOURCE, &tpm()).await,
            580,
            "{store}"
        );
    }
}

#[tokio::test]
async fn a_5xx_rolls_back_unless_configured_not_to() {
    for (store, limiter) in common::limiters("5xx").await {
        let fail = || get(|| async { (StatusCode::BAD_GATEWAY, "upstream down") });
        let app = Router::new().route("/", fail()).layer(tpm_layer(&limiter));
        let keep = Router::new()
            .route("/", fail())
            .layer(tpm_layer(&limiter).rollback_on_server_error(false));
        let (a, b) = (common::serve(app).await, common::serve(keep).await);
        let client = reqwest::Client::new();
        for (addr, key, want) in [(a, "r1", 1000), (b, "r2", 900)] {
            let r = client
                .get(format!("http://{addr}/"))
                .header("x-api-key", key)
                .send()
                .await;
            let r = r.unwrap();
            assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
            assert_eq!(r.text().await.unwrap(), "upstream down");
            let n = common::await_available(&limiter, key, RESOURCE, &tpm(), want).await;
            assert_eq!(n, want, "{store} {key}");
        }
    }
}

/// A stream that never ends by itself: a chunk every 20 ms, at most 500.
async fn endless() -> Body {
    let chunks = stream::unfold(0u32, |i| async move {
        if i >= 500 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        Some((Ok::<_, std::io::Error>(format!("chunk {i}\n")), i + 1))
    });
    Body::from_stream(chunks)
}

/// Read the response head and the first chunk over a raw TCP connection, then hang up.
async fn hang_up_after_first_chunk(addr: std::net::SocketAddr, key: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET / HTTP/1.1\r\nhost: x\r\nx-api-key: {key}\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut seen = String::new();
    while !seen.contains("chunk 0") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    drop(s);
    seen
}

#[tokio::test]
async fn a_client_disconnect_rolls_back_unless_configured_not_to() {
    for (store, limiter) in common::limiters("disconnect").await {
        let app = Router::new()
            .route("/", get(endless))
            .layer(tpm_layer(&limiter));
        let keep = Router::new()
            .route("/", get(endless))
            .layer(tpm_layer(&limiter).rollback_on_disconnect(false));
        let (a, b) = (common::serve(app).await, common::serve(keep).await);
        for (addr, key, want) in [(a, "d1", 1000), (b, "d2", 900)] {
            let head = hang_up_after_first_chunk(addr, key).await;
            assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
            assert!(head.contains("ratelimit: \"tpm\";r=900;t=0"), "{head}");
            // the server notices at its next write (within 20 ms) and settles the lease
            let n = common::await_available(&limiter, key, RESOURCE, &tpm(), want).await;
            assert_eq!(n, want, "{store} {key}");
        }
        // a committed lease stays committed: the rolled-back one gave everything back
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            common::available(&limiter, "d1", RESOURCE, &tpm()).await,
            1000
        );
        assert_eq!(
            common::available(&limiter, "d2", RESOURCE, &tpm()).await,
            900
        );
    }
}

/// A response of known length ends with its last byte, and the server stops polling its
/// body there: the layer holds that last frame back until the commit is done, so a client
/// that has read the whole body finds the adjusted usage stored, however long the store
/// takes to answer the commit.
#[cfg(feature = "dynamodb-local-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_of_known_length_ends_only_after_a_slow_commit() {
    use zae_limiter::{DynamoStore, StoreConfig};
    use zae_limiter_proxy::{Fault, Proxy};
    let endpoint = std::env::var("ZAEL_TEST_DYNAMODB_ENDPOINT")
        .expect("ZAEL_TEST_DYNAMODB_ENDPOINT is not set: run through scripts/dynamodb-local.sh");
    let table = format!("zael-tower-slow-commit-{}", std::process::id());
    let connect = |url: String| {
        DynamoStore::connect(
            StoreConfig::new(&table)
                .endpoint_url(url)
                .static_credentials("local", "local")
                .attempt_timeout(Duration::from_secs(20)),
        )
    };
    let direct = connect(endpoint.clone()).await.unwrap();
    direct.create_table().await.unwrap();
    let proxy = Proxy::start(&endpoint).await;
    let slow = connect(proxy.url().to_string()).await.unwrap();
    let limiter = RateLimiter::builder(slow)
        .timeout(Duration::from_secs(30))
        .build();
    let reader = RateLimiter::builder(direct).build();
    let app = Router::new()
        .route("/", get(adjusting))
        .layer(tpm_layer(&limiter));
    let addr = common::serve(app).await;
    // every call of the layer's store waits 500 ms on the way: the commit too
    proxy
        .faults()
        .set(Fault::Latency(Duration::from_millis(500)));
    let r = get_as(addr, "k").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-length"), Some("4"));
    assert_eq!(r.text().await.unwrap(), "done");
    // read at once, past the proxy: 1000 - 100 taken - 320 adjusted
    assert_eq!(common::available(&reader, "k", RESOURCE, &tpm()).await, 580);
}

#[tokio::test]
async fn an_unreachable_store_is_a_503_under_block() {
    use zae_limiter::{DynamoStore, StoreConfig};
    // nothing listens on port 9 of 127.0.0.1: every store call fails fast
    let store = DynamoStore::connect(
        StoreConfig::new("zael-tower-unreachable")
            .endpoint_url("http://127.0.0.1:9")
            .static_credentials("local", "local"),
    )
    .await
    .unwrap();
    let limiter = RateLimiter::builder(store)
        .timeout(Duration::from_secs(2))
        .build();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(tpm_layer(&limiter));
    let addr = common::serve(app).await;
    let r = get_as(addr, "k").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&r, "content-type"), Some("application/json"));
    let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(body["error"], "rate_limiter_unavailable");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("rate limiter unavailable"),
        "{body}"
    );
}
