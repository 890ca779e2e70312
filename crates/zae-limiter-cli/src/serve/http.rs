//! The HTTP/JSON API of `zae-limiter serve`.
//!
//! | route | body | answer |
//! | --- | --- | --- |
//! | `POST /v1/acquire` | `{entity, resource, consume: {name: n}, limits?: ["rpm:100/min"], ttl_ms?}` | 200 `{lease_id, expires_at, expires_at_ms, statuses}` + `RateLimit-Policy`/`RateLimit`; 429 the rejection's body + `Retry-After`/`RateLimit-*` |
//! | `POST /v1/leases/{id}/adjust` | `{consume: {name: delta}}` (deltas may be negative) | 200 `{lease_id, consumed}` |
//! | `POST /v1/leases/{id}/commit`, `.../rollback` | none | 200 `{lease_id, status}` |
//! | `GET /v1/available?entity=&resource=&limits=rpm:100/min,tpm:1000` | | 200 `{entity, resource, available}` |
//! | `GET /healthz`, `GET /metrics` | | `ok`, Prometheus text |
//!
//! Errors are JSON `{error, message}`: 400 bad input, 404 unknown (or expired) lease,
//! 409 lease no longer active, 503 store unavailable, 500 other.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use zae_limiter::{Error, Limit, RateLimitExceeded, RateLimiter};

use super::leases::Leases;
use super::metrics;

/// What the handlers share.
pub struct App {
    pub limiter: RateLimiter,
    pub leases: Arc<Leases>,
    /// Lease expiry when the request names none.
    pub lease_ttl: Duration,
    /// The longest expiry a request may ask for.
    pub max_lease_ttl: Duration,
}

/// The router of the API.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/acquire", post(acquire))
        .route("/v1/leases/{id}/adjust", post(adjust))
        .route("/v1/leases/{id}/commit", post(commit))
        .route("/v1/leases/{id}/rollback", post(rollback))
        .route("/v1/available", get(available))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(prometheus))
        .with_state(app)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AcquireBody {
    entity: String,
    resource: String,
    #[serde(default)]
    consume: BTreeMap<String, u64>,
    #[serde(default)]
    limits: Vec<String>,
    ttl_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdjustBody {
    consume: BTreeMap<String, i64>,
}

#[derive(Deserialize)]
struct AvailableQuery {
    entity: String,
    resource: String,
    #[serde(default)]
    limits: String,
}

fn fail(status: StatusCode, error: &str, message: &str) -> Response {
    (status, Json(json!({ "error": error, "message": message }))).into_response()
}

/// A library error as an HTTP answer (a refusal is handled by the caller).
fn error_response(e: &Error) -> Response {
    let status = match e {
        Error::Validation { .. } => StatusCode::BAD_REQUEST,
        Error::EntityNotFound(_) => StatusCode::NOT_FOUND,
        Error::LeaseInactive => StatusCode::CONFLICT,
        Error::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
        e if e.is_unavailable() || matches!(e, Error::Contended { .. }) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status.is_server_error() {
        metrics::store_error(e);
    }
    fail(status, e.kind(), &e.to_string())
}

/// A refusal of the request's input (boxed: a response is large).
type Refusal = Box<Response>;

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(fail(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &e.to_string(),
        ))
    })
}

fn parse_limits<'a>(specs: impl IntoIterator<Item = &'a str>) -> Result<Vec<Limit>, Refusal> {
    specs
        .into_iter()
        .map(|s| {
            s.trim()
                .parse::<Limit>()
                .map_err(|e| Box::new(fail(StatusCode::BAD_REQUEST, "validation", &e.to_string())))
        })
        .collect()
}

/// Header name/value pairs as a JSON object (for clients that read the body only).
fn headers_json(headers: &[(HeaderName, HeaderValue)]) -> Value {
    let map: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), json!(v.to_str().unwrap_or_default())))
        .collect();
    Value::Object(map)
}

fn with_headers(
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Value,
) -> Response {
    let mut map = HeaderMap::new();
    map.extend(headers);
    (status, map, Json(body)).into_response()
}

/// `RateLimit-Policy` / `RateLimit` of an admission, from the acquire's own states.
fn success_headers(view: &RateLimitExceeded) -> Vec<(HeaderName, HeaderValue)> {
    if view.statuses().is_empty() {
        return Vec::new();
    }
    let [(_, policy), (_, current)] = view.ietf_headers();
    [("ratelimit-policy", policy), ("ratelimit", current)]
        .into_iter()
        .filter_map(|(n, v)| Some((HeaderName::from_static(n), HeaderValue::from_str(&v).ok()?)))
        .collect()
}

async fn acquire(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let start = Instant::now();
    let (outcome, response) = acquire_inner(&app, &body).await;
    metrics::decision("http", outcome, start.elapsed());
    response
}

async fn acquire_inner(app: &App, body: &Bytes) -> (&'static str, Response) {
    let req: AcquireBody = match parse(body) {
        Ok(r) => r,
        Err(r) => return ("error", *r),
    };
    let limits = match parse_limits(req.limits.iter().map(String::as_str)) {
        Ok(l) => l,
        Err(r) => return ("error", *r),
    };
    let ttl = req
        .ttl_ms
        .map_or(app.lease_ttl, Duration::from_millis)
        .min(app.max_lease_ttl);
    let mut acquire = app
        .limiter
        .acquire(req.entity, req.resource)
        .consume(req.consume);
    if !limits.is_empty() {
        acquire = acquire.limits(limits);
    }
    match acquire.await {
        Ok(lease) => {
            let view = RateLimitExceeded::new(lease.statuses().to_vec());
            let headers = success_headers(&view);
            let statuses = view.as_json()["limits"].take();
            let (id, expires_at_ms) = app.leases.insert(lease, ttl);
            let body = json!({
                "lease_id": id,
                "expires_at": rfc3339(expires_at_ms),
                "expires_at_ms": expires_at_ms,
                "statuses": statuses,
            });
            ("ok", with_headers(StatusCode::OK, headers, body))
        }
        Err(Error::RateLimited(e)) => {
            let headers = e.http_headers();
            let mut body = e.as_json();
            body["headers"] = headers_json(&headers);
            (
                "over_limit",
                with_headers(StatusCode::TOO_MANY_REQUESTS, headers, body),
            )
        }
        Err(e) => ("error", error_response(&e)),
    }
}

fn unknown_lease(id: &str) -> Response {
    fail(
        StatusCode::NOT_FOUND,
        "lease_not_found",
        &format!("no open lease '{id}' (never issued, already settled, or expired)"),
    )
}

async fn adjust(State(app): State<Arc<App>>, Path(id): Path<String>, body: Bytes) -> Response {
    let req: AdjustBody = match parse(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let Some(lease) = app.leases.get(&id) else {
        return unknown_lease(&id);
    };
    for (name, delta) in &req.consume {
        if let Err(e) = lease.adjust(name, *delta) {
            return error_response(&e);
        }
    }
    Json(json!({ "lease_id": id, "consumed": lease.consumed() })).into_response()
}

async fn settle(app: &App, id: String, commit: bool) -> Response {
    let Some(lease) = app.leases.take(&id) else {
        return unknown_lease(&id);
    };
    let r = if commit {
        lease.commit().await
    } else {
        lease.rollback().await
    };
    match r {
        Ok(()) => {
            let status = if commit { "committed" } else { "rolled_back" };
            Json(json!({ "lease_id": id, "status": status })).into_response()
        }
        Err(e) => error_response(&e),
    }
}

async fn commit(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    settle(&app, id, true).await
}

async fn rollback(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    settle(&app, id, false).await
}

async fn available(State(app): State<Arc<App>>, Query(q): Query<AvailableQuery>) -> Response {
    let specs = q.limits.split(',').filter(|s| !s.trim().is_empty());
    let limits = match parse_limits(specs) {
        Ok(l) => l,
        Err(r) => return *r,
    };
    match app.limiter.available(&q.entity, &q.resource, &limits).await {
        Ok(available) => Json(json!({
            "entity": q.entity,
            "resource": q.resource,
            "available": available,
        }))
        .into_response(),
        Err(e) => error_response(&e),
    }
}

async fn prometheus() -> Response {
    let headers = [(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    )];
    (headers, metrics::render()).into_response()
}

/// `ms` since the epoch as RFC 3339 in UTC with milliseconds.
fn rfc3339(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => jiff::fmt::temporal::DateTimePrinter::new()
            .precision(Some(3))
            .timestamp_to_string(&t),
        Err(_) => ms.to_string(),
    }
}
