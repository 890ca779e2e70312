//! [`LeaseBody`]: a response body that commits the request's lease when it ends.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use zae_limiter::Lease;

use super::service::settle;

type Settling = Pin<Box<dyn Future<Output = ()> + Send>>;

pin_project! {
    /// The body of a response that went through the layer.
    ///
    /// For an admitted request it is the inner body plus the lease: when the inner body
    /// ends, the lease is committed *before* the end is reported (so a streamed response's
    /// final usage, adjusted by the handler while streaming, is in the commit, and a client
    /// that saw the end can rely on it). A body of known length ends with its last byte
    /// (the server stops polling there), so its last frame is held back until the commit
    /// is done. Dropped before its end (the client went away) it rolls the lease back, or
    /// commits it if so configured (a commit under way is finished either way). The
    /// layer's own responses (429, 503, ...) are a single JSON chunk.
    pub struct LeaseBody<B: Body> {
        #[pin]
        kind: Kind<B>,
        settle: Settle,
        // the inner body's last frame, held while the lease commits
        last: Option<Frame<B::Data>>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Full { data: Option<Bytes> },
    }
}

/// The lease and what to do with it; its `Drop` settles what the stream did not.
struct Settle {
    lease: Option<Arc<Lease>>,
    committing: Option<Settling>,
    /// The inner body reported its end.
    ended: bool,
    rollback_on_disconnect: bool,
}

impl Settle {
    fn none() -> Self {
        Settle {
            lease: None,
            committing: None,
            ended: false,
            rollback_on_disconnect: true,
        }
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        let work: Option<Settling> = match (self.committing.take(), self.lease.take()) {
            (Some(f), _) => Some(f),
            (None, Some(lease)) => {
                let commit = self.ended || !self.rollback_on_disconnect;
                Some(Box::pin(async move { settle(&lease, commit).await }))
            }
            (None, None) => None,
        };
        if let Some(work) = work {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(work);
                }
                Err(_) => tracing::warn!(
                    "response body dropped outside a tokio runtime: lease left to its own drop"
                ),
            }
        }
    }
}

impl<B: Body> LeaseBody<B> {
    /// The inner body with a lease to commit at its end.
    pub(crate) fn with_lease(body: B, lease: Arc<Lease>, rollback_on_disconnect: bool) -> Self {
        LeaseBody {
            kind: Kind::Inner { body },
            settle: Settle {
                lease: Some(lease),
                committing: None,
                ended: false,
                rollback_on_disconnect,
            },
            last: None,
        }
    }

    /// The inner body alone (the lease was settled already).
    pub(crate) fn plain(body: B) -> Self {
        LeaseBody {
            kind: Kind::Inner { body },
            settle: Settle::none(),
            last: None,
        }
    }

    /// A body of the layer's own (a refusal).
    pub(crate) fn full(data: Bytes) -> Self {
        LeaseBody {
            kind: Kind::Full { data: Some(data) },
            settle: Settle::none(),
            last: None,
        }
    }
}

impl<B: Body> std::fmt::Debug for LeaseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseBody")
            .field("has_lease", &self.settle.lease.is_some())
            .finish_non_exhaustive()
    }
}

impl<B> Body for LeaseBody<B>
where
    B: Body,
    B::Data: From<Bytes>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let st = this.settle;
        let last = this.last;
        let mut body = match this.kind.project() {
            KindProj::Full { data } => {
                return Poll::Ready(data.take().map(|d| Ok(Frame::data(d.into()))))
            }
            KindProj::Inner { body } => body,
        };
        loop {
            if let Some(f) = st.committing.as_mut() {
                ready!(f.as_mut().poll(cx));
                st.committing = None;
                // committed: the held last frame may go now; else this is the end
                return Poll::Ready(last.take().map(Ok));
            }
            if st.ended {
                match st.lease.take() {
                    Some(lease) => {
                        st.committing = Some(Box::pin(async move { settle_commit(lease).await }));
                        continue;
                    }
                    None => return Poll::Ready(None),
                }
            }
            match ready!(body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let end = body.is_end_stream();
                    st.ended = end;
                    // the last frame: a body that says so, or one of known length with no
                    // byte left (hyper writes the end after it without polling again; a
                    // trailers frame that may still follow is polled after the commit)
                    if end || body.size_hint().exact() == Some(0) {
                        if let Some(lease) = st.lease.take() {
                            *last = Some(frame);
                            st.committing =
                                Some(Box::pin(async move { settle_commit(lease).await }));
                            continue;
                        }
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Some(Err(e)) => {
                    // a failed stream is not a complete response: as a disconnect
                    if let Some(lease) = st.lease.take() {
                        let commit = !st.rollback_on_disconnect;
                        st.committing = Some(Box::pin(async move { settle(&lease, commit).await }));
                        // finished in the background by Settle's drop if not polled again
                    }
                    return Poll::Ready(Some(Err(e)));
                }
                None => st.ended = true,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let pending =
            self.settle.lease.is_some() || self.settle.committing.is_some() || self.last.is_some();
        match &self.kind {
            Kind::Full { data } => data.is_none(),
            Kind::Inner { body } => !pending && (self.settle.ended || body.is_end_stream()),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Inner { body } => body.size_hint(),
        }
    }
}

async fn settle_commit(lease: Arc<Lease>) {
    settle(&lease, true).await
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::convert::Infallible;

    use http::HeaderMap;
    use zae_limiter::{Limit, MemoryStore, RateLimiter};

    use super::*;

    /// Frames of a known total length: what hyper sends with `Content-Length`.
    struct Known(VecDeque<Frame<Bytes>>);

    impl Body for Known {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }

        fn is_end_stream(&self) -> bool {
            self.0.is_empty()
        }

        fn size_hint(&self) -> SizeHint {
            let left = self.0.iter().filter_map(Frame::data_ref).map(Bytes::len);
            SizeHint::with_exact(left.sum::<usize>() as u64)
        }
    }

    #[tokio::test]
    async fn the_last_byte_of_a_known_length_comes_after_the_commit_and_trailers_still_follow() {
        let tpm = Limit::per_day("tpm", 1000);
        let limiter = RateLimiter::builder(MemoryStore::new()).build();
        let available = || async {
            limiter
                .available("k", "chat", std::slice::from_ref(&tpm))
                .await
                .unwrap()["tpm"]
        };
        let lease = limiter
            .acquire("k", "chat")
            .limits(vec![tpm.clone()])
            .consume(vec![("tpm".to_string(), 100)])
            .await
            .unwrap();
        lease.adjust("tpm", 320).unwrap();
        let mut trailers = HeaderMap::new();
        trailers.insert("x-usage", "420".parse().unwrap());
        let inner = Known(VecDeque::from([
            Frame::data(Bytes::from_static(b"he")),
            Frame::data(Bytes::from_static(b"llo")),
            Frame::trailers(trailers),
        ]));
        let mut body = std::pin::pin!(LeaseBody::with_lease(inner, Arc::new(lease), true));
        let mut seen = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            let frame = frame.unwrap();
            // what is stored when each frame comes out: 1000 - 100 taken - 320 adjusted
            // once committed
            let now = available().await;
            match frame.data_ref() {
                Some(d) => seen.push((String::from_utf8(d.to_vec()).unwrap(), now)),
                None => seen.push((format!("trailers {:?}", frame.trailers_ref()), now)),
            }
        }
        assert!(body.is_end_stream());
        assert_eq!(
            seen,
            [
                ("he".to_string(), 900),
                ("llo".to_string(), 580),
                (r#"trailers Some({"x-usage": "420"})"#.to_string(), 580),
            ]
        );
    }
}
