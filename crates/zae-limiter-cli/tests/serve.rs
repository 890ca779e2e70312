//! `zae-limiter serve` end to end: the real binary on 127.0.0.1, a real HTTP client, on the
//! embedded store (and on DynamoDB Local with `dynamodb-local-tests`).

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

mod serve_support;
#[cfg(feature = "dynamodb-local-tests")]
mod support;
use serve_support::{get_json, h, post, Server};

const LIMITS: [&str; 2] = ["rpm:2/min", "tpm:1000/day"];

fn acquire_body(entity: &str, tpm: u64) -> Value {
    json!({"entity": entity, "resource": "gpt-4o", "consume": {"rpm": 1, "tpm": tpm}, "limits": LIMITS})
}

async fn available(c: &reqwest::Client, s: &Server, entity: &str) -> Value {
    let url = s.url(&format!(
        "/v1/available?entity={entity}&resource=gpt-4o&limits=rpm:2/min,tpm:1000/day"
    ));
    get_json(c, url).await["available"].clone()
}

#[tokio::test]
async fn acquire_adjust_commit_rollback_and_a_429() {
    let s = Server::memory(&[]);
    let c = reqwest::Client::new();
    let start = std::time::Instant::now();
    let (st, hd, v) = post(&c, s.url("/v1/acquire"), acquire_body("key-1", 100)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        h(&hd, "ratelimit-policy"),
        Some("\"rpm\";q=2;w=60, \"tpm\";q=1000;w=86400")
    );
    assert_eq!(
        h(&hd, "ratelimit"),
        Some("\"rpm\";r=1;t=0, \"tpm\";r=900;t=0")
    );
    let id = v["lease_id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 32);
    assert_eq!(v["statuses"][1]["available"], 900);
    assert!(v["expires_at"].as_str().unwrap().ends_with('Z'));

    let adjust = s.url(&format!("/v1/leases/{id}/adjust"));
    let (st, _, v) = post(&c, adjust.clone(), json!({"consume": {"tpm": 320}})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["consumed"], json!({"rpm": 1, "tpm": 420}));
    let (st, _, v) = post(&c, adjust.clone(), json!({"consume": {"nope": 1}})).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("validation"))
    );
    let (st, _, v) = post(&c, s.url(&format!("/v1/leases/{id}/commit")), json!({})).await;
    assert_eq!(
        (st, v["status"].as_str()),
        (StatusCode::OK, Some("committed"))
    );
    assert_eq!(
        available(&c, &s, "key-1").await,
        json!({"rpm": 1, "tpm": 580})
    );
    // settled: the id is gone
    let (st, _, v) = post(&c, s.url(&format!("/v1/leases/{id}/commit")), json!({})).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("lease_not_found"))
    );

    // a rollback gives everything back
    let (_, _, v) = post(&c, s.url("/v1/acquire"), acquire_body("key-1", 50)).await;
    let id = v["lease_id"].as_str().unwrap();
    let (st, _, v) = post(&c, s.url(&format!("/v1/leases/{id}/rollback")), json!({})).await;
    assert_eq!(
        (st, v["status"].as_str()),
        (StatusCode::OK, Some("rolled_back"))
    );
    assert_eq!(
        available(&c, &s, "key-1").await,
        json!({"rpm": 1, "tpm": 580})
    );

    // the second request of the minute passes, the third is refused
    let (st, _, v) = post(&c, s.url("/v1/acquire"), acquire_body("key-1", 10)).await;
    assert_eq!(st, StatusCode::OK);
    let id = v["lease_id"].as_str().unwrap();
    post(&c, s.url(&format!("/v1/leases/{id}/commit")), json!({})).await;
    let (st, hd, v) = post(&c, s.url("/v1/acquire"), acquire_body("key-1", 10)).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");
    // the wait is 30 s from the first request of the minute, on the server's clock
    let waits = serve_support::waits_since(start, 30);
    let t = waits
        .iter()
        .copied()
        .find(|t| h(&hd, "retry-after") == Some(t.to_string().as_str()))
        .unwrap_or_else(|| {
            panic!(
                "retry-after {:?}, expected one of {waits:?}",
                h(&hd, "retry-after")
            )
        });
    assert_eq!(
        h(&hd, "ratelimit-policy"),
        Some("\"rpm\";q=2;w=60, \"tpm\";q=1000;w=86400")
    );
    let ratelimit = format!("\"rpm\";r=0;t={t}, \"tpm\";r=570;t=0");
    assert_eq!(h(&hd, "ratelimit"), Some(ratelimit.as_str()));
    assert_eq!(v["error"], "rate_limit_exceeded");
    assert_eq!(v["headers"]["retry-after"], t.to_string());
    assert_eq!(v["headers"]["ratelimit"], ratelimit);
    assert_eq!(v["limits"][0]["exceeded"], true);
    assert_eq!(v["limits"][1]["exceeded"], false);

    // bad input
    let (st, _, v) = post(&c, s.url("/v1/acquire"), json!({"entity": "k"})).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let bad = json!({"entity": "k", "resource": "r", "consume": {"rpm": 1}, "limits": ["rpm=1"]});
    let (st, _, v) = post(&c, s.url("/v1/acquire"), bad).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("validation"))
    );
    let r = c.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(
        (r.status(), r.text().await.unwrap()),
        (StatusCode::OK, "ok\n".to_string())
    );
}

#[tokio::test]
async fn a_lease_not_committed_before_its_expiry_rolls_back() {
    let s = Server::memory(&["--lease-ttl", "0.2"]);
    let c = reqwest::Client::new();
    let (_, _, v) = post(&c, s.url("/v1/acquire"), acquire_body("exp", 100)).await;
    let id = v["lease_id"].as_str().unwrap().to_string();
    assert_eq!(available(&c, &s, "exp").await["tpm"], 900);
    let start = Instant::now();
    while available(&c, &s, "exp").await["tpm"] != 1000 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // not before its expiry (200 ms, less the time the first calls took)
    assert!(
        start.elapsed() >= Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );
    let (st, _, _) = post(&c, s.url(&format!("/v1/leases/{id}/commit")), json!({})).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // a request may ask for its own expiry, bounded by --max-lease-ttl
    let mut body = acquire_body("exp2", 100);
    body["ttl_ms"] = json!(60_000);
    let (_, _, v) = post(&c, s.url("/v1/acquire"), body).await;
    let left = v["expires_at_ms"].as_i64().unwrap()
        - std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
    assert!((58_000..=60_000).contains(&left), "{left}");
    let metrics = c
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "zae_limiter_serve_expired_leases_total 1"),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l == "zae_limiter_serve_open_leases 1"),
        "{metrics}"
    );
}

/// Check the Prometheus text exposition format line by line; the samples by series.
fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix("# ") {
            let mut w = c.split(' ');
            let kind = w.next().unwrap();
            assert!(kind == "HELP" || kind == "TYPE", "bad comment: {line}");
            if kind == "TYPE" {
                let _name = w.next().expect(line);
                let t = w.next().expect(line);
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                    "{line}"
                );
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample: {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name: {line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "bad labels: {line}");
        }
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        samples.push((series.to_string(), v));
    }
    samples
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text() {
    let s = Server::memory(&[]);
    let c = reqwest::Client::new();
    for _ in 0..3 {
        post(&c, s.url("/v1/acquire"), acquire_body("m", 1)).await;
    }
    let r = c.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(
        h(r.headers(), "content-type"),
        Some("text/plain; version=0.0.4")
    );
    let samples = parse_prometheus(&r.text().await.unwrap());
    let value = |series: &str| {
        samples
            .iter()
            .find(|(s, _)| s == series)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no {series} in {samples:?}"))
    };
    assert_eq!(
        value("zae_limiter_decisions_total{outcome=\"admitted\"}"),
        2.0
    );
    assert_eq!(
        value("zae_limiter_decisions_total{outcome=\"rate_limited\"}"),
        1.0
    );
    assert_eq!(value("zae_limiter_serve_open_leases"), 2.0);
    assert_eq!(
        value("zae_limiter_serve_decision_seconds_count{api=\"http\",outcome=\"ok\"}"),
        2.0
    );
    assert_eq!(
        value("zae_limiter_serve_decision_seconds_count{api=\"http\",outcome=\"over_limit\"}"),
        1.0
    );
    assert_eq!(
        value("zae_limiter_serve_decision_seconds_bucket{api=\"http\",outcome=\"ok\",le=\"+Inf\"}"),
        2.0
    );
}

#[tokio::test]
async fn shutdown_rolls_back_the_open_leases() {
    let s = Server::memory(&[]);
    let c = reqwest::Client::new();
    for e in ["a", "b"] {
        let (st, _, _) = post(&c, s.url("/v1/acquire"), acquire_body(e, 1)).await;
        assert_eq!(st, StatusCode::OK);
    }
    let (ok, stderr) = s.terminate();
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("serve: stopped; rolled back 2 open lease(s)"),
        "{stderr}"
    );
}

#[test]
fn without_a_store_it_says_how_to_choose_one() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zae-limiter"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("ZAEL_ENDPOINT_URL")
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ACCESS_KEY_ID")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim_end(),
        "error: --store dynamodb needs --endpoint-url or an AWS environment (AWS_REGION, \
         AWS_PROFILE, ...); use --store memory for the embedded store"
    );
}

/// A table that does not exist stops the sidecar at start, with the hint to create it.
#[cfg(feature = "dynamodb-local-tests")]
#[test]
fn a_missing_table_stops_it_at_start() {
    let endpoint = std::env::var("ZAEL_TEST_DYNAMODB_ENDPOINT").expect("DynamoDB Local");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_zae-limiter"))
        .args([
            "--name",
            "zael-serve-no-such-table",
            "--endpoint-url",
            &endpoint,
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // bounded: a sidecar that started anyway would serve forever
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > std::time::Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("serve started on a missing table");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("'zael-serve-no-such-table' does not exist") && err.contains("table create"),
        "{err}"
    );
}

/// 16 concurrent clients, 8 attempts each, on one bucket of 50 per day: exactly 50 pass.
#[cfg(feature = "dynamodb-local-tests")]
#[tokio::test]
async fn sixteen_clients_admit_exactly_the_capacity_on_dynamodb_local() {
    let t = support::LocalTable::create("serve");
    let s = Server::start(&["--name", &t.name, "--endpoint-url", &t.endpoint], &[]);
    let c = reqwest::Client::new();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (c, url) = (c.clone(), s.url("/v1/acquire"));
        tasks.push(tokio::spawn(async move {
            let mut codes = Vec::new();
            for _ in 0..8 {
                let body = json!({"entity": "shared", "resource": "r", "consume": {"x": 1}, "limits": ["x:50/day"]});
                let (st, _, v) = post(&c, url.clone(), body).await;
                if st == StatusCode::OK {
                    let id = v["lease_id"].as_str().unwrap();
                    let commit = url.replace("/v1/acquire", &format!("/v1/leases/{id}/commit"));
                    let (cs, _, _) = post(&c, commit, json!({})).await;
                    assert_eq!(cs, StatusCode::OK);
                }
                codes.push(st.as_u16());
            }
            codes
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.extend(t.await.unwrap());
    }
    let ok = codes.iter().filter(|c| **c == 200).count();
    let limited = codes.iter().filter(|c| **c == 429).count();
    assert_eq!((ok, limited, codes.len()), (50, 78, 128), "{codes:?}");
    let v = get_json(
        &c,
        s.url("/v1/available?entity=shared&resource=r&limits=x:50/day"),
    )
    .await;
    assert_eq!(v["available"]["x"], 0);
}
