//! [`RateLimitLayer`]: what to limit and how to answer.

use std::sync::Arc;

use http::request::Parts;
use tower_layer::Layer;
use zae_limiter::{Limit, RateLimiter};

use super::service::RateLimitService;
use super::MissingEntity;

pub(crate) type Extractor = Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;
pub(crate) type Amounts = Arc<dyn Fn(&Parts) -> Vec<(String, u64)> + Send + Sync>;

/// Everything the service needs, shared by every clone.
pub(crate) struct Config {
    pub(crate) limiter: RateLimiter,
    pub(crate) entity: Extractor,
    pub(crate) resource: Extractor,
    pub(crate) limits: Vec<Limit>,
    pub(crate) consume: Amounts,
    pub(crate) openai: Option<(String, String)>,
    pub(crate) rollback_on_5xx: bool,
    pub(crate) rollback_on_disconnect: bool,
    pub(crate) missing_entity: MissingEntity,
}

/// A [`tower_layer::Layer`] that rate-limits every request with a [`RateLimiter`].
///
/// Defaults: the entity is the `x-api-key` header, the resource is `http`, no limits in
/// code (the stored config decides), nothing consumed (a check only: set
/// [`consume`](Self::consume)), no OpenAI headers, roll back on 5xx and on disconnect,
/// 401 for a missing entity.
///
/// ```
/// use zae_limiter::{Limit, MemoryStore, RateLimiter};
/// use zae_limiter_tower::{extract, RateLimitLayer};
///
/// let layer = RateLimitLayer::new(RateLimiter::builder(MemoryStore::new()).build())
///     .entity(extract::bearer_token())
///     .resource(|p: &http::request::Parts| {
///         p.headers.get("x-model").and_then(|v| v.to_str().ok()).map(String::from)
///     })
///     .limits([Limit::per_minute("rpm", 60), Limit::per_minute("tpm", 10_000)])
///     .consume(|_: &http::request::Parts| vec![("rpm".into(), 1), ("tpm".into(), 500)])
///     .openai_headers("rpm", "tpm");
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct RateLimitLayer {
    pub(crate) config: Arc<Config>,
}

impl std::fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limits", &self.config.limits)
            .field("openai", &self.config.openai)
            .field("rollback_on_5xx", &self.config.rollback_on_5xx)
            .field(
                "rollback_on_disconnect",
                &self.config.rollback_on_disconnect,
            )
            .finish_non_exhaustive()
    }
}

impl RateLimitLayer {
    /// A layer over `limiter`, with the defaults above.
    pub fn new(limiter: RateLimiter) -> Self {
        RateLimitLayer {
            config: Arc::new(Config {
                limiter,
                entity: Arc::new(crate::extract::header("x-api-key")),
                resource: Arc::new(|_: &Parts| Some("http".to_string())),
                limits: Vec::new(),
                consume: Arc::new(|_: &Parts| Vec::new()),
                openai: None,
                rollback_on_5xx: true,
                rollback_on_disconnect: true,
                missing_entity: MissingEntity::default(),
            }),
        }
    }

    fn with(mut self, f: impl FnOnce(&mut Config)) -> Self {
        match Arc::get_mut(&mut self.config) {
            Some(c) => f(c),
            None => {
                let c = &*self.config;
                let mut copy = Config {
                    limiter: c.limiter.clone(),
                    entity: c.entity.clone(),
                    resource: c.resource.clone(),
                    limits: c.limits.clone(),
                    consume: c.consume.clone(),
                    openai: c.openai.clone(),
                    rollback_on_5xx: c.rollback_on_5xx,
                    rollback_on_disconnect: c.rollback_on_disconnect,
                    missing_entity: c.missing_entity.clone(),
                };
                f(&mut copy);
                self.config = Arc::new(copy);
            }
        }
        self
    }

    /// Who is calling (see [`extract`](crate::extract)); `None` answers with the
    /// [`missing_entity`](Self::missing_entity) response.
    pub fn entity(self, f: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static) -> Self {
        self.with(|c| c.entity = Arc::new(f))
    }

    /// What is called (a route, a model from a header or the path); `None` is a 400.
    pub fn resource(self, f: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static) -> Self {
        self.with(|c| c.resource = Arc::new(f))
    }

    /// Limits used when none are stored for the entity and resource.
    pub fn limits(self, limits: impl IntoIterator<Item = Limit>) -> Self {
        let limits: Vec<Limit> = limits.into_iter().collect();
        self.with(|c| c.limits = limits)
    }

    /// The amounts to take per limit name, from the request head (e.g. 1 request and an
    /// estimate of the tokens, reconciled later with [`Lease::adjust`](zae_limiter::Lease::adjust)).
    pub fn consume(self, f: impl Fn(&Parts) -> Vec<(String, u64)> + Send + Sync + 'static) -> Self {
        self.with(|c| c.consume = Arc::new(f))
    }

    /// Also send OpenAI-style `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`
    /// headers, taking these limit names as the request and token limits.
    pub fn openai_headers(self, requests: &str, tokens: &str) -> Self {
        let pair = (requests.to_string(), tokens.to_string());
        self.with(|c| c.openai = Some(pair))
    }

    /// Roll the lease back when the inner service answers 5xx (default `true`); otherwise it
    /// commits like any other response.
    pub fn rollback_on_server_error(self, yes: bool) -> Self {
        self.with(|c| c.rollback_on_5xx = yes)
    }

    /// Roll the lease back when the response body is dropped before its end, i.e. the client
    /// went away (default `true`); otherwise it commits.
    pub fn rollback_on_disconnect(self, yes: bool) -> Self {
        self.with(|c| c.rollback_on_disconnect = yes)
    }

    /// The response to a request without an entity (default: 401 with a JSON body).
    pub fn missing_entity(self, response: MissingEntity) -> Self {
        self.with(|c| c.missing_entity = response)
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService::new(inner, self.config.clone())
    }
}
