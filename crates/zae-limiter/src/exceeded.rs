//! What a rejection tells the caller: the status of every limit checked, and helpers that
//! turn it into an HTTP 429 body and headers.

use std::time::Duration;

use serde_json::{json, Value};

use crate::limit::Limit;

/// The state of one limit at the moment of a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitStatus {
    /// The entity whose bucket was checked (the parent's id for a cascaded check).
    pub entity_id: String,
    /// The resource.
    pub resource: String,
    /// The limit checked.
    pub limit: Limit,
    /// Whole tokens available when the decision was made (negative when in debt).
    pub available: i64,
    /// Tokens the request asked for.
    pub requested: i64,
    /// Whether this limit refused the request.
    pub exceeded: bool,
    /// How long until the request would pass this limit; `None` if it never can
    /// (more than the capacity was asked for). Zero for limits that passed.
    pub retry_after: Option<Duration>,
}

impl LimitStatus {
    /// The limit's name.
    pub fn name(&self) -> &str {
        self.limit.name()
    }
}

/// A request was refused. Holds the status of every limit checked, passed or not.
///
/// ```
/// # use zae_limiter::{Limit, LimitStatus, RateLimitExceeded};
/// # use std::time::Duration;
/// let status = LimitStatus {
///     entity_id: "key-1".into(), resource: "gpt-4".into(),
///     limit: Limit::per_minute("rpm", 3), available: 0, requested: 1,
///     exceeded: true, retry_after: Some(Duration::from_millis(20_001)),
/// };
/// let e = RateLimitExceeded::new(vec![status]);
/// assert_eq!(e.retry_after_header().as_deref(), Some("21"));
/// assert_eq!(e.primary_violation().unwrap().name(), "rpm");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitExceeded {
    statuses: Vec<LimitStatus>,
}

impl RateLimitExceeded {
    /// Build from the statuses of a decision (at least one should be exceeded).
    pub fn new(statuses: Vec<LimitStatus>) -> Self {
        RateLimitExceeded { statuses }
    }
    /// Every limit checked, child first then parent.
    pub fn statuses(&self) -> &[LimitStatus] {
        &self.statuses
    }
    /// The limits that refused the request.
    pub fn violations(&self) -> impl Iterator<Item = &LimitStatus> {
        self.statuses.iter().filter(|s| s.exceeded)
    }
    /// The limits that would have allowed it.
    pub fn passed(&self) -> impl Iterator<Item = &LimitStatus> {
        self.statuses.iter().filter(|s| !s.exceeded)
    }
    /// The violation that takes longest to clear (one that never clears wins).
    pub fn primary_violation(&self) -> Option<&LimitStatus> {
        self.violations()
            .max_by_key(|s| s.retry_after.unwrap_or(Duration::MAX))
    }
    /// How long until every violated limit would pass; `None` if some never will.
    pub fn retry_after(&self) -> Option<Duration> {
        self.primary_violation().and_then(|s| s.retry_after)
    }
    /// `Retry-After` header value: whole seconds, rounded up (`None` if retrying cannot help).
    pub fn retry_after_header(&self) -> Option<String> {
        self.retry_after()
            .map(|d| (d.as_millis().div_ceil(1000)).to_string())
    }

    /// A JSON body for a 429 response.
    pub fn as_json(&self) -> Value {
        let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
        json!({
            "error": "rate_limit_exceeded",
            "message": self.to_string(),
            "retry_after_seconds": secs(self.retry_after()),
            "retry_after_ms": self.retry_after().map(|d| d.as_millis() as u64),
            "limits": self.statuses.iter().map(|s| json!({
                "entity_id": s.entity_id,
                "resource": s.resource,
                "limit_name": s.limit.name(),
                "capacity": s.limit.capacity(),
                "refill_amount": s.limit.refill_amount(),
                "refill_period_seconds": s.limit.refill_period().as_secs_f64(),
                "available": s.available,
                "requested": s.requested,
                "exceeded": s.exceeded,
                "retry_after_seconds": secs(s.retry_after),
            })).collect::<Vec<_>>(),
        })
    }

    /// IETF `RateLimit-Policy` and `RateLimit` header values (draft-ietf-httpapi-ratelimit-headers),
    /// one list member per limit of the first entity checked. With a cascade, `RateLimit`
    /// tells what the caller can really use: per limit name the least available (`r`) and
    /// the longest wait (`t`) of the entity and its parent, so a refusal by the parent's
    /// bucket shows in the header the caller sees.
    pub fn ietf_headers(&self) -> [(&'static str, String); 2] {
        let own: Vec<&LimitStatus> = self
            .statuses
            .iter()
            .filter(|s| {
                self.statuses
                    .first()
                    .is_some_and(|f| f.entity_id == s.entity_id)
            })
            .collect();
        let policy = own
            .iter()
            .map(|s| {
                format!(
                    "\"{}\";q={};w={}",
                    s.limit.name(),
                    s.limit.capacity(),
                    s.limit.refill_period().as_millis().div_ceil(1000)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let current = own
            .iter()
            .map(|s| {
                let (available, reset) = self.effective(s);
                format!("\"{}\";r={};t={}", s.limit.name(), available, reset)
            })
            .collect::<Vec<_>>()
            .join(", ");
        [("RateLimit-Policy", policy), ("RateLimit", current)]
    }

    /// Whole tokens left (at least 0) and seconds until `own`'s request would pass, over every
    /// bucket checked under the same limit name (the entity's and its parent's).
    fn effective(&self, own: &LimitStatus) -> (i64, u128) {
        self.statuses
            .iter()
            .filter(|s| s.limit.name() == own.limit.name())
            .fold((own.available.max(0), reset_secs(own)), |(a, t), s| {
                (a.min(s.available.max(0)), t.max(reset_secs(s)))
            })
    }

    /// OpenAI-style `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` headers, taking the
    /// given limit names as the request and token limits (e.g. `"rpm"`, `"tpm"`).
    pub fn openai_headers(&self, requests: &str, tokens: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (kind, name) in [("requests", requests), ("tokens", tokens)] {
            if let Some(s) = self.statuses.iter().find(|s| s.limit.name() == name) {
                out.push((
                    format!("x-ratelimit-limit-{kind}"),
                    s.limit.capacity().to_string(),
                ));
                out.push((
                    format!("x-ratelimit-remaining-{kind}"),
                    self.effective(s).0.to_string(),
                ));
                out.push((
                    format!("x-ratelimit-reset-{kind}"),
                    format_go_duration(time_to_full(s)),
                ));
            }
        }
        out
    }
}

/// The header helpers as [`http`] types (feature `http`): ready for `HeaderMap::insert` in
/// axum, hyper, tower or any framework on `http` 1.x.
#[cfg(feature = "http")]
impl RateLimitExceeded {
    /// The headers of a 429 response: `Retry-After` (when retrying can help, whole seconds
    /// as [`retry_after_header`](Self::retry_after_header)), then `RateLimit-Policy` and
    /// `RateLimit` as [`ietf_headers`](Self::ietf_headers).
    ///
    /// ```
    /// # use zae_limiter::{Limit, LimitStatus, RateLimitExceeded};
    /// # use std::time::Duration;
    /// let e = RateLimitExceeded::new(vec![LimitStatus {
    ///     entity_id: "key-1".into(), resource: "gpt-4".into(),
    ///     limit: Limit::per_minute("rpm", 3), available: 0, requested: 1,
    ///     exceeded: true, retry_after: Some(Duration::from_millis(20_001)),
    /// }]);
    /// let mut headers = http::HeaderMap::new();
    /// headers.extend(e.http_headers());
    /// assert_eq!(headers[http::header::RETRY_AFTER], "21");
    /// assert_eq!(headers["ratelimit"], "\"rpm\";r=0;t=21");
    /// ```
    pub fn http_headers(&self) -> Vec<(http::HeaderName, http::HeaderValue)> {
        use http::HeaderName;
        let mut out = Vec::with_capacity(3);
        if let Some(v) = self.retry_after_header() {
            out.extend(header_value(&v).map(|v| (http::header::RETRY_AFTER, v)));
        }
        let [(_, policy), (_, current)] = self.ietf_headers();
        for (name, value) in [
            (HeaderName::from_static("ratelimit-policy"), policy),
            (HeaderName::from_static("ratelimit"), current),
        ] {
            out.extend(header_value(&value).map(|v| (name, v)));
        }
        out
    }

    /// [`openai_headers`](Self::openai_headers) as [`http`] types.
    pub fn openai_http_headers(
        &self,
        requests: &str,
        tokens: &str,
    ) -> Vec<(http::HeaderName, http::HeaderValue)> {
        self.openai_headers(requests, tokens)
            .into_iter()
            .filter_map(|(name, value)| {
                let name = http::HeaderName::from_bytes(name.as_bytes()).ok()?;
                Some((name, header_value(&value)?))
            })
            .collect()
    }
}

/// A header value; `None` for text a header cannot carry (never for the values built here
/// from validated limit names and numbers).
#[cfg(feature = "http")]
fn header_value(v: &str) -> Option<http::HeaderValue> {
    http::HeaderValue::from_str(v).ok()
}

fn reset_secs(s: &LimitStatus) -> u128 {
    s.retry_after
        .unwrap_or(s.limit.refill_period())
        .as_millis()
        .div_ceil(1000)
}

/// How long until the bucket is full again (OpenAI's "reset" semantics).
fn time_to_full(s: &LimitStatus) -> Duration {
    let deficit = (s.limit.capacity() as i128 - s.available as i128).max(0);
    let a = s.limit.refill_amount() as i128;
    let ms = (deficit * s.limit.refill_period_ms() as i128 + a - 1) / a;
    Duration::from_millis(ms.min(u64::MAX as i128) as u64)
}

/// `1h2m3.5s` style, as OpenAI's reset headers use.
fn format_go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, m, s) = (
        ms / 3_600_000,
        (ms / 60_000) % 60,
        (ms % 60_000) as f64 / 1000.0,
    );
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    let s = format!("{s:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    out.push_str(if s.is_empty() { "0" } else { s });
    out.push('s');
    out
}

impl std::fmt::Display for RateLimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.violations().map(|s| s.limit.name()).collect();
        let first = self.primary_violation().or(self.statuses.first());
        let (entity, resource) = first.map_or(("?", "?"), |s| (&*s.entity_id, &*s.resource));
        write!(
            f,
            "rate limit exceeded for {entity}/{resource}: [{}]",
            names.join(", ")
        )?;
        match self.retry_after() {
            Some(d) => write!(f, "; retry after {:.1}s", d.as_secs_f64()),
            None => write!(f, "; the request exceeds the capacity and can never pass"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(name: &str, cap: u64, avail: i64, req: i64, retry_ms: Option<u64>) -> LimitStatus {
        LimitStatus {
            entity_id: "k".into(),
            resource: "gpt-4".into(),
            limit: Limit::per_minute(name, cap),
            available: avail,
            requested: req,
            exceeded: retry_ms != Some(0),
            retry_after: retry_ms.map(Duration::from_millis),
        }
    }

    #[test]
    fn headers_and_body() {
        let e = RateLimitExceeded::new(vec![
            status("rpm", 100, 40, 1, Some(0)),
            status("tpm", 10_000, 200, 500, Some(1_800)),
        ]);
        assert_eq!(e.violations().count(), 1);
        assert_eq!(e.passed().count(), 1);
        assert_eq!(e.retry_after(), Some(Duration::from_millis(1_800)));
        assert_eq!(e.retry_after_header().as_deref(), Some("2"));
        let [policy, now] = e.ietf_headers();
        assert_eq!(policy.1, "\"rpm\";q=100;w=60, \"tpm\";q=10000;w=60");
        assert_eq!(now.1, "\"rpm\";r=40;t=0, \"tpm\";r=200;t=2");
        let oa = e.openai_headers("rpm", "tpm");
        assert!(oa.contains(&("x-ratelimit-remaining-tokens".into(), "200".into())));
        // time until full: 9800 tokens at 10000/min, 60 requests at 100/min
        assert!(oa.contains(&("x-ratelimit-reset-tokens".into(), "58.8s".into())));
        assert!(oa.contains(&("x-ratelimit-reset-requests".into(), "36s".into())));
        let body = e.as_json();
        assert_eq!(body["retry_after_ms"], 1800);
        assert_eq!(body["limits"][1]["exceeded"], true);
        assert_eq!(
            e.to_string(),
            "rate limit exceeded for k/gpt-4: [tpm]; retry after 1.8s"
        );
    }

    #[cfg(feature = "http")]
    #[test]
    fn http_types() {
        let e = RateLimitExceeded::new(vec![
            status("rpm", 100, 40, 1, Some(0)),
            status("tpm", 10_000, 200, 500, Some(1_800)),
        ]);
        let h = e.http_headers();
        let names: Vec<&str> = h.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["retry-after", "ratelimit-policy", "ratelimit"]);
        // the same text as the string helpers
        assert_eq!(h[0].1, e.retry_after_header().unwrap());
        let [policy, now] = e.ietf_headers();
        assert_eq!(h[1].1, policy.1);
        assert_eq!(h[2].1, now.1);
        let oa = e.openai_http_headers("rpm", "tpm");
        let strings = e.openai_headers("rpm", "tpm");
        assert_eq!(oa.len(), 6);
        for ((n, v), (sn, sv)) in oa.iter().zip(&strings) {
            assert_eq!(n.as_str(), sn);
            assert_eq!(v, sv.as_str());
        }
        // retrying cannot help: no Retry-After
        let never = RateLimitExceeded::new(vec![status("tpm", 10, 10, 50, None)]);
        let names: Vec<String> = never
            .http_headers()
            .iter()
            .map(|(n, _)| n.to_string())
            .collect();
        assert_eq!(names, ["ratelimit-policy", "ratelimit"]);
    }

    #[test]
    fn a_parent_refusal_shows_in_the_child_headers() {
        let mut parent = status("tpm", 1000, 52, 200, Some(8_835));
        parent.entity_id = "project".into();
        let e = RateLimitExceeded::new(vec![
            status("rpm", 3, 2, 1, Some(0)),
            status("tpm", 800, 400, 200, Some(0)),
            parent,
        ]);
        let [policy, now] = e.ietf_headers();
        assert_eq!(policy.1, "\"rpm\";q=3;w=60, \"tpm\";q=800;w=60");
        assert_eq!(now.1, "\"rpm\";r=2;t=0, \"tpm\";r=52;t=9");
        let oa = e.openai_headers("rpm", "tpm");
        assert!(oa.contains(&("x-ratelimit-remaining-tokens".into(), "52".into())));
    }

    #[test]
    fn never_passing_request() {
        let e = RateLimitExceeded::new(vec![status("tpm", 10, 10, 50, None)]);
        assert_eq!(e.retry_after(), None);
        assert_eq!(e.retry_after_header(), None);
        assert!(e.to_string().contains("can never pass"));
    }

    #[test]
    fn go_durations() {
        assert_eq!(format_go_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(
            format_go_duration(Duration::from_millis(3_723_500)),
            "1h2m3.5s"
        );
    }
}
