//! Ready-made extractors of the entity (or the resource) from a request head, for
//! [`RateLimitLayer::entity`](crate::RateLimitLayer::entity) and
//! [`RateLimitLayer::resource`](crate::RateLimitLayer::resource).
//!
//! Each returns `None` when the request does not carry what it looks for: for the entity,
//! that is the "missing entity" response (401 by default).

use http::request::Parts;

/// The value of header `name` (e.g. `x-api-key`), if present, non-empty and valid text.
///
/// ```
/// let f = zae_limiter_tower::extract::header("x-api-key");
/// let (parts, _) = http::Request::builder().header("x-api-key", "k1").body(()).unwrap().into_parts();
/// assert_eq!(f(&parts).as_deref(), Some("k1"));
/// ```
pub fn header(name: &'static str) -> impl Fn(&Parts) -> Option<String> + Send + Sync + 'static {
    move |p: &Parts| {
        let v = p.headers.get(name)?.to_str().ok()?.trim();
        (!v.is_empty()).then(|| v.to_string())
    }
}

/// The token of an `Authorization: Bearer TOKEN` header. To limit by a JWT's subject, let
/// an authentication layer that *verifies* the token run first and read its result with
/// [`extension`].
pub fn bearer_token() -> impl Fn(&Parts) -> Option<String> + Send + Sync + 'static {
    |p: &Parts| {
        let v = p.headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = v.trim().split_once(' ')?;
        let token = token.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_string())
    }
}

/// The client IP: the `SocketAddr` in the request extensions (hyper servers and
/// `axum::serve(...).into_make_service_with_connect_info::<SocketAddr>()` put the peer
/// there as `ConnectInfo`; insert a plain `std::net::SocketAddr` to use this), else the
/// last (nearest proxy's) entry of `X-Forwarded-For` when `trust_forwarded` is set.
pub fn client_ip(trust_forwarded: bool) -> impl Fn(&Parts) -> Option<String> + Send + Sync {
    move |p: &Parts| {
        if let Some(addr) = p.extensions.get::<std::net::SocketAddr>() {
            return Some(addr.ip().to_string());
        }
        if !trust_forwarded {
            return None;
        }
        let v = p.headers.get("x-forwarded-for")?.to_str().ok()?;
        let last = v.rsplit(',').next()?.trim();
        last.parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| ip.to_string())
    }
}

/// The request path without the leading `/` (e.g. `v1/chat`), as a resource.
pub fn path() -> impl Fn(&Parts) -> Option<String> + Send + Sync + 'static {
    |p: &Parts| {
        let s = p.uri.path().trim_start_matches('/');
        (!s.is_empty()).then(|| s.to_string())
    }
}

/// A value an earlier layer put in the request extensions (e.g. the verified subject of a
/// token), turned into text by `f`.
pub fn extension<T, F>(f: F) -> impl Fn(&Parts) -> Option<String> + Send + Sync + 'static
where
    T: Send + Sync + 'static,
    F: Fn(&T) -> Option<String> + Send + Sync + 'static,
{
    move |p: &Parts| p.extensions.get::<T>().and_then(&f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().uri("/v1/chat");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn extractors() {
        assert_eq!(header("x-api-key")(&parts(&[("x-api-key", " ")])), None);
        let p = parts(&[("authorization", "Bearer abc")]);
        assert_eq!(bearer_token()(&p).as_deref(), Some("abc"));
        assert_eq!(
            bearer_token()(&parts(&[("authorization", "Basic abc")])),
            None
        );
        let p = parts(&[("x-forwarded-for", "1.2.3.4, 10.0.0.9")]);
        assert_eq!(client_ip(true)(&p).as_deref(), Some("10.0.0.9"));
        assert_eq!(client_ip(false)(&p), None);
        assert_eq!(path()(&p).as_deref(), Some("v1/chat"));
    }
}
