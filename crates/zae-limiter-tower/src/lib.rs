//! # zae-limiter-tower
//!
//! A [tower](https://docs.rs/tower) middleware that rate-limits HTTP requests with
//! [`zae_limiter`]: usable with axum, hyper and tonic (anything built on `http` 1.x and
//! `tower::Service`).
//!
//! - **Rejection**: HTTP 429 with the JSON body of [`RateLimitExceeded`](zae_limiter::RateLimitExceeded),
//!   `Retry-After`, the IETF `RateLimit-Policy` / `RateLimit` fields and, optionally, OpenAI-style
//!   `x-ratelimit-*` headers. The store unavailable under `Block` is a 503; a request without an
//!   entity is a 401 (configurable).
//! - **Admission**: the [`Lease`](zae_limiter::Lease) goes into the request's extensions as a
//!   [`RateLimitLease`], so the handler can [`adjust`](zae_limiter::Lease::adjust) it (the real
//!   token count of an LLM call). It commits when the response body ends — streamed bodies
//!   included — and rolls back on a 5xx or when the client goes away (both configurable).
//!   Success responses carry the `RateLimit-Policy` / `RateLimit` fields.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use axum::{routing::get, Router};
//! use zae_limiter::{Limit, MemoryStore, RateLimiter};
//! use zae_limiter_tower::{extract, RateLimitLayer};
//!
//! let limiter = RateLimiter::builder(MemoryStore::new()).build();
//! let app: Router = Router::new()
//!     .route("/v1/chat", get(|| async { "hello" }))
//!     .layer(
//!         RateLimitLayer::new(limiter)
//!             .entity(extract::header("x-api-key"))
//!             .resource(|_: &http::request::Parts| Some("chat".to_string()))
//!             .limits([Limit::per_minute("rpm", 100)])
//!             .consume(|_: &http::request::Parts| vec![("rpm".to_string(), 1)]),
//!     );
//! # let _ = app; }
//! ```
#![warn(missing_docs)]

pub mod extract;
mod rate_limit;

pub use rate_limit::{
    LeaseBody, MissingEntity, RateLimitLayer, RateLimitLease, RateLimitService, ResponseFuture,
};
