//! [`ResponseFuture`]: the future of [`RateLimitService`](super::RateLimitService).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use http_body::Body;

use super::body::LeaseBody;

type Boxed<B, E> = Pin<Box<dyn Future<Output = Result<Response<LeaseBody<B>>, E>> + Send>>;

/// The response of a rate-limited request: the layer's own refusal, or the inner service's
/// response with its body wrapped in a [`LeaseBody`].
pub struct ResponseFuture<B: Body, E> {
    inner: Boxed<B, E>,
}

impl<B: Body, E> ResponseFuture<B, E> {
    pub(crate) fn new(
        f: impl Future<Output = Result<Response<LeaseBody<B>>, E>> + Send + 'static,
    ) -> Self {
        ResponseFuture { inner: Box::pin(f) }
    }
}

impl<B: Body, E> std::fmt::Debug for ResponseFuture<B, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<B: Body, E> Future for ResponseFuture<B, E> {
    type Output = Result<Response<LeaseBody<B>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}
