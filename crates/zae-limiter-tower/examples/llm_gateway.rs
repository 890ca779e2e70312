//! An LLM gateway in front of a (fake) streaming completion endpoint, rate-limited per API
//! key with rpm + tpm, cascading to the key's project, and reconciling the real token count
//! from the stream's final usage record before the lease commits.
//!
//! `cargo run -p zae-limiter-tower --example llm_gateway` starts the gateway and the fake
//! upstream on 127.0.0.1, sends a few requests from two keys of one project, prints what
//! came back, and exits.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use futures_util::stream;
use http::request::Parts;
use zae_limiter::{ConfigScope, Limit, MemoryStore, NewEntity, RateLimiter, StoredConfig};
use zae_limiter_tower::{extract, RateLimitLayer, RateLimitLease};

/// Tokens taken up front for every call; the stream's usage record settles the difference.
const ESTIMATE: u64 = 200;

/// The fake upstream: streams three JSON lines, the last with the usage record. The prompt's
/// `x-tokens` header says how many tokens the "model" will report.
async fn fake_llm(headers: HeaderMap) -> Body {
    let tokens: u64 = headers
        .get("x-tokens")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(100);
    let lines = [
        "{\"delta\":\"Hello\"}\n".to_string(),
        "{\"delta\":\", world\"}\n".to_string(),
        format!("{{\"usage\":{{\"total_tokens\":{tokens}}}}}\n"),
    ];
    Body::from_stream(stream::iter(lines.map(Ok::<_, std::io::Error>)))
}

/// The gateway's handler: forward to the upstream, stream its chunks back, and adjust the
/// lease by the real usage when the final record passes.
async fn completions(
    State(upstream): State<String>,
    Extension(lease): Extension<RateLimitLease>,
    headers: HeaderMap,
) -> Response {
    let mut req = reqwest::Client::new().post(&upstream);
    if let Some(t) = headers.get("x-tokens") {
        req = req.header("x-tokens", t.as_bytes());
    }
    let Ok(resp) = req.send().await else {
        // a 5xx: the layer rolls the lease back
        return (StatusCode::BAD_GATEWAY, "upstream unreachable").into_response();
    };
    let chunks = stream::unfold(Some(resp), move |resp| {
        let lease = lease.clone();
        async move {
            let mut resp = resp?;
            match resp.chunk().await {
                Ok(Some(bytes)) => {
                    if let Some(total) = usage(&bytes) {
                        let _ = lease.adjust("tpm", total as i64 - ESTIMATE as i64);
                    }
                    Some((Ok::<_, std::io::Error>(bytes), Some(resp)))
                }
                Ok(None) => None,
                Err(e) => Some((Err(std::io::Error::other(e)), None)),
            }
        }
    });
    Body::from_stream(chunks).into_response()
}

/// `total_tokens` of a usage record, if the chunk holds one.
fn usage(chunk: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(chunk).ok()?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v["usage"]["total_tokens"].as_u64())
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let limiter = RateLimiter::builder(MemoryStore::new()).build();
    // project acme: 1000 tokens a minute for all its keys together; each key 3 rpm, 800 tpm
    limiter.create_entity(NewEntity::new("acme")).await?;
    for key in ["key-1", "key-2"] {
        limiter
            .create_entity(NewEntity::new(key).parent("acme").cascade(true))
            .await?;
    }
    let project = ConfigScope::EntityDefault {
        entity_id: "acme".into(),
    };
    let project_limits = [
        Limit::per_minute("rpm", 100),
        Limit::per_minute("tpm", 1000),
    ];
    limiter
        .set_config(&project, StoredConfig::limits(project_limits))
        .await?;

    let upstream = serve(Router::new().route("/v1/chat/completions", post(fake_llm))).await;
    let layer = RateLimitLayer::new(limiter.clone())
        .entity(extract::header("x-api-key"))
        .resource(|p: &Parts| {
            let model = p.headers.get("x-model").and_then(|v| v.to_str().ok());
            Some(model.unwrap_or("gpt-4o").to_string())
        })
        .limits([Limit::per_minute("rpm", 3), Limit::per_minute("tpm", 800)])
        .consume(|_: &Parts| vec![("rpm".into(), 1), ("tpm".into(), ESTIMATE)])
        .openai_headers("rpm", "tpm");
    let gateway = Router::new()
        .route("/v1/chat/completions", post(completions))
        .with_state(format!("{upstream}/v1/chat/completions"))
        .layer(layer);
    let gateway = serve(gateway).await;
    println!("gateway on {gateway}, fake upstream on {upstream}");

    let client = reqwest::Client::new();
    let calls = [
        ("key-1", 300),
        ("key-1", 250),
        ("key-2", 400),
        ("key-2", 100),
        ("key-1", 50),
        ("key-1", 50),
    ];
    for (key, tokens) in calls {
        let r = client
            .post(format!("{gateway}/v1/chat/completions"))
            .header("x-api-key", key)
            .header("x-tokens", tokens.to_string())
            .send()
            .await?;
        let status = r.status();
        let h = |n: &str| {
            r.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string()
        };
        let (ratelimit, retry, remaining) = (
            h("ratelimit"),
            h("retry-after"),
            h("x-ratelimit-remaining-tokens"),
        );
        let body = r.text().await?;
        let last = body.lines().last().unwrap_or_default().to_string();
        println!("{key} asks {tokens:>3} tokens -> {status} | RateLimit: {ratelimit} | Retry-After: {retry} | x-ratelimit-remaining-tokens: {remaining}");
        println!("    last line: {last}");
        // the commit happens before the end of the body reaches us; give the dust a moment
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let tpm = [Limit::per_minute("tpm", 800)];
    for who in ["key-1", "key-2", "acme"] {
        let left = limiter.available(who, "gpt-4o", &tpm).await?;
        println!("tokens left this minute for {who}: {}", left["tpm"]);
    }
    Ok(())
}
