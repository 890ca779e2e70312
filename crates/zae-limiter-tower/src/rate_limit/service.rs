//! [`RateLimitService`]: acquire before the inner service, settle after it.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use serde_json::json;
use tower_service::Service;
use zae_limiter::{Error, Lease, RateLimitExceeded};

use super::body::LeaseBody;
use super::future::ResponseFuture;
use super::layer::Config;
use super::RateLimitLease;

/// The service made by [`RateLimitLayer`](super::RateLimitLayer): acquires for each
/// request, answers 429/503/401/400 itself, or calls the inner service with the lease in
/// the request extensions and wraps its body in a [`LeaseBody`].
#[derive(Clone)]
pub struct RateLimitService<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for RateLimitService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> RateLimitService<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        RateLimitService { inner, config }
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for RateLimitService<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqB: Send + 'static,
    ResB: http_body::Body + Send + 'static,
{
    type Response = Response<LeaseBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<ResB, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let config = self.config.clone();
        // the clone that was driven to readiness serves this call
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::new(async move {
            let (mut parts, body) = req.into_parts();
            let lease = match admit(&config, &parts).await {
                Ok(lease) => lease,
                Err(response) => return Ok(response),
            };
            let headers = success_headers(&config, &lease);
            let handle = RateLimitLease(lease.clone());
            parts.extensions.insert(handle);
            let response = match inner.call(Request::from_parts(parts, body)).await {
                Ok(r) => r,
                Err(e) => {
                    settle(&lease, false).await;
                    return Err(e);
                }
            };
            let (mut rparts, rbody) = response.into_parts();
            if rparts.status.is_server_error() && config.rollback_on_5xx {
                settle(&lease, false).await;
                return Ok(Response::from_parts(rparts, LeaseBody::plain(rbody)));
            }
            for (name, value) in headers {
                if !rparts.headers.contains_key(&name) {
                    rparts.headers.insert(name, value);
                }
            }
            if rbody.is_end_stream() {
                // nothing to stream (e.g. a 204): a server may never poll such a body
                settle(&lease, true).await;
                return Ok(Response::from_parts(rparts, LeaseBody::plain(rbody)));
            }
            let body = LeaseBody::with_lease(rbody, lease, config.rollback_on_disconnect);
            Ok(Response::from_parts(rparts, body))
        })
    }
}

/// Commit (`true`) or roll back a lease now, logging a failure (the response is already
/// decided).
pub(crate) async fn settle(lease: &Lease, commit: bool) {
    let r = if commit {
        lease.commit().await
    } else {
        lease.rollback().await
    };
    match r {
        Ok(()) | Err(Error::LeaseInactive) => {}
        Err(e) => tracing::warn!(error = %e, commit, "settling a request's lease failed"),
    }
}

/// Acquire for the request, or the response that refuses it.
async fn admit<B: http_body::Body>(
    config: &Config,
    parts: &http::request::Parts,
) -> Result<Arc<Lease>, Response<LeaseBody<B>>> {
    let Some(entity) = (config.entity)(parts) else {
        let m = &config.missing_entity;
        return Err(json_response(m.status, m.body.clone(), HeaderMap::new()));
    };
    let Some(resource) = (config.resource)(parts) else {
        return Err(error_response(
            StatusCode::BAD_REQUEST,
            "missing_resource",
            "the request does not name a rate-limited resource",
        ));
    };
    let mut acquire = config
        .limiter
        .acquire(entity, resource)
        .consume((config.consume)(parts));
    if !config.limits.is_empty() {
        acquire = acquire.limits(config.limits.clone());
    }
    match acquire.await {
        Ok(lease) => Ok(Arc::new(lease)),
        Err(Error::RateLimited(e)) => Err(rejection(config, &e)),
        Err(e) if e.is_unavailable() || matches!(e, Error::Contended { .. }) => {
            Err(error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "rate_limiter_unavailable",
                &e.to_string(),
            ))
        }
        Err(e @ Error::Validation { .. }) => Err(error_response(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &e.to_string(),
        )),
        Err(e) => {
            tracing::warn!(error = %e, "rate limiter failed");
            Err(error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "rate_limiter_error",
                &e.to_string(),
            ))
        }
    }
}

/// The 429: the JSON body of the rejection, `Retry-After`, `RateLimit-Policy`,
/// `RateLimit`, and the OpenAI headers when configured.
fn rejection<B: http_body::Body>(config: &Config, e: &RateLimitExceeded) -> Response<LeaseBody<B>> {
    let mut headers = HeaderMap::new();
    headers.extend(e.http_headers());
    if let Some((requests, tokens)) = &config.openai {
        headers.extend(e.openai_http_headers(requests, tokens));
    }
    let body = Bytes::from(e.as_json().to_string());
    json_response(StatusCode::TOO_MANY_REQUESTS, body, headers)
}

/// `RateLimit-Policy` / `RateLimit` (and the OpenAI headers) of an admitted request, from
/// the states the acquire saw (no extra call).
fn success_headers(config: &Config, lease: &Lease) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    if lease.statuses().is_empty() {
        return out; // the no-op lease of an outage under `allow`
    }
    let view = RateLimitExceeded::new(lease.statuses().to_vec());
    let [(_, policy), (_, current)] = view.ietf_headers();
    for (name, value) in [("ratelimit-policy", policy), ("ratelimit", current)] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            out.push((HeaderName::from_static(name), v));
        }
    }
    if let Some((requests, tokens)) = &config.openai {
        out.extend(view.openai_http_headers(requests, tokens));
    }
    out
}

fn error_response<B: http_body::Body>(
    status: StatusCode,
    error: &str,
    message: &str,
) -> Response<LeaseBody<B>> {
    let body = json!({ "error": error, "message": message }).to_string();
    json_response(status, Bytes::from(body), HeaderMap::new())
}

fn json_response<B: http_body::Body>(
    status: StatusCode,
    body: Bytes,
    headers: HeaderMap,
) -> Response<LeaseBody<B>> {
    let mut response = Response::new(LeaseBody::full(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
