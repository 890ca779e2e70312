//! Envoy's Rate Limit Service v3 (`envoy.service.ratelimit.v3.RateLimitService`) over gRPC:
//! `ShouldRateLimit` maps each descriptor to (entity, resource, amount) through an
//! [`RlsMapping`], takes and commits at once (RLS has no leases), and answers `OK` /
//! `OVER_LIMIT` with a status per descriptor and the `RateLimit-Policy` / `RateLimit` (and
//! `Retry-After`) headers Envoy adds to the response.
//!
//! Descriptors are independent, as in Envoy's reference service: one over its limit does not
//! give back what the others took. A descriptor without the entity key is not limited (`OK`,
//! no limit). Store unavailable: gRPC `UNAVAILABLE` (Envoy's `failure_mode_deny` decides).

use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitService;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::Duration as PbDuration;
use serde::Deserialize;
use zae_limiter::{Error, Limit, LimitStatus, RateLimitExceeded, RateLimiter};

pub use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitServiceServer;

use super::metrics;

/// How descriptors become acquires (YAML, `--rls-config`):
///
/// ```yaml
/// entity_key: api_key      # the entry whose value is the entity (default: entity)
/// resource_key: path       # the entry whose value is the resource; missing: the domain
/// limit: rpm               # the limit that hits_addend counts against (default: rpm)
/// limits: ["rpm:100/min"]  # fallback limits when none are stored (the -l syntax)
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RlsMapping {
    /// The descriptor entry whose value is the entity.
    pub entity_key: String,
    /// The descriptor entry whose value is the resource (else the request's domain).
    pub resource_key: String,
    /// The limit that `hits_addend` is taken from.
    pub limit: String,
    /// Fallback limits (stored config wins).
    pub limits: Vec<String>,
}

impl Default for RlsMapping {
    fn default() -> Self {
        RlsMapping {
            entity_key: "entity".into(),
            resource_key: "resource".into(),
            limit: "rpm".into(),
            limits: Vec::new(),
        }
    }
}

impl RlsMapping {
    /// Read and check a mapping file.
    pub fn load(path: &std::path::Path) -> Result<(RlsMapping, Vec<Limit>), String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let m: RlsMapping =
            serde_norway::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let limits = m.parse_limits()?;
        Ok((m, limits))
    }

    /// The fallback limits, parsed.
    pub fn parse_limits(&self) -> Result<Vec<Limit>, String> {
        self.limits
            .iter()
            .map(|s| s.parse::<Limit>().map_err(|e| format!("limits: {e}")))
            .collect()
    }
}

/// The gRPC service.
pub struct Rls {
    limiter: RateLimiter,
    mapping: RlsMapping,
    limits: Vec<Limit>,
}

impl Rls {
    /// A service over `limiter`.
    pub fn new(limiter: RateLimiter, mapping: RlsMapping, limits: Vec<Limit>) -> Self {
        Rls {
            limiter,
            mapping,
            limits,
        }
    }

    fn value<'a>(d: &'a RateLimitDescriptor, key: &str) -> Option<&'a str> {
        d.entries
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.value.as_str())
    }

    /// One descriptor: its status and the limit statuses behind it (`None`: not limited).
    async fn decide(
        &self,
        domain: &str,
        d: &RateLimitDescriptor,
        hits: u64,
    ) -> Result<Option<(bool, Vec<LimitStatus>)>, Error> {
        let Some(entity) = Self::value(d, &self.mapping.entity_key) else {
            return Ok(None);
        };
        let resource = Self::value(d, &self.mapping.resource_key).unwrap_or(domain);
        let hits = d.hits_addend.as_ref().map_or(hits, |h| h.value).max(1);
        let mut acquire = self
            .limiter
            .acquire(entity, resource)
            .consume([(self.mapping.limit.clone(), hits)]);
        if !self.limits.is_empty() {
            acquire = acquire.limits(self.limits.clone());
        }
        match acquire.await {
            Ok(lease) => {
                let statuses = lease.statuses().to_vec();
                lease.commit().await?;
                Ok(Some((true, statuses)))
            }
            Err(Error::RateLimited(e)) => Ok(Some((false, e.statuses().to_vec()))),
            Err(e) => Err(e),
        }
    }
}

/// Envoy's unit of a refill period (`Unknown` for periods it has no name for).
fn unit(period: Duration) -> Unit {
    match period.as_millis() {
        1_000 => Unit::Second,
        60_000 => Unit::Minute,
        3_600_000 => Unit::Hour,
        86_400_000 => Unit::Day,
        _ => Unit::Unknown,
    }
}

/// Envoy's view of one descriptor: the status of the limit `hits_addend` counts against.
fn descriptor_status(name: &str, ok: bool, statuses: &[LimitStatus]) -> DescriptorStatus {
    let code = if ok { Code::Ok } else { Code::OverLimit };
    let Some(s) = statuses
        .iter()
        .find(|s| s.name() == name)
        .or(statuses.first())
    else {
        return DescriptorStatus {
            code: code as i32,
            ..Default::default()
        };
    };
    let u = unit(s.limit.refill_period());
    let wait = s.retry_after.unwrap_or(s.limit.refill_period());
    DescriptorStatus {
        code: code as i32,
        current_limit: Some(RateLimit {
            name: s.name().to_string(),
            requests_per_unit: s.limit.refill_amount().min(u32::MAX as u64) as u32,
            unit: u as i32,
        }),
        limit_remaining: s.available.clamp(0, u32::MAX as i64) as u32,
        duration_until_reset: Some(PbDuration {
            seconds: wait.as_secs() as i64,
            nanos: wait.subsec_nanos() as i32,
        }),
        ..Default::default()
    }
}

fn header(key: &str, value: String) -> HeaderValue {
    HeaderValue {
        key: key.to_string(),
        value,
        ..Default::default()
    }
}

#[tonic::async_trait]
impl RateLimitService for Rls {
    async fn should_rate_limit(
        &self,
        request: tonic::Request<RateLimitRequest>,
    ) -> Result<tonic::Response<RateLimitResponse>, tonic::Status> {
        let start = Instant::now();
        let req = request.into_inner();
        let hits = u64::from(req.hits_addend);
        let mut out = RateLimitResponse {
            overall_code: Code::Ok as i32,
            ..Default::default()
        };
        let mut all = Vec::new();
        for d in &req.descriptors {
            match self.decide(&req.domain, d, hits).await {
                Ok(None) => out.statuses.push(DescriptorStatus {
                    code: Code::Ok as i32,
                    ..Default::default()
                }),
                Ok(Some((ok, statuses))) => {
                    if !ok {
                        out.overall_code = Code::OverLimit as i32;
                    }
                    out.statuses
                        .push(descriptor_status(&self.mapping.limit, ok, &statuses));
                    all.extend(statuses);
                }
                Err(e) => {
                    metrics::decision("grpc", "error", start.elapsed());
                    return Err(match e {
                        Error::Validation { .. } => tonic::Status::invalid_argument(e.to_string()),
                        e => {
                            metrics::store_error(&e);
                            tonic::Status::unavailable(e.to_string())
                        }
                    });
                }
            }
        }
        if !all.is_empty() {
            let view = RateLimitExceeded::new(all);
            if out.overall_code == Code::OverLimit as i32 {
                if let Some(v) = view.retry_after_header() {
                    out.response_headers_to_add.push(header("retry-after", v));
                }
            }
            let [(_, policy), (_, current)] = view.ietf_headers();
            out.response_headers_to_add
                .push(header("ratelimit-policy", policy));
            out.response_headers_to_add
                .push(header("ratelimit", current));
        }
        let outcome = if out.overall_code == Code::Ok as i32 {
            "ok"
        } else {
            "over_limit"
        };
        metrics::decision("grpc", outcome, start.elapsed());
        Ok(tonic::Response::new(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<(RlsMapping, Vec<Limit>), String> {
        let dir = std::env::temp_dir().join(format!("zael-rls-unit-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rls.yaml");
        std::fs::write(&path, text).unwrap();
        let r = RlsMapping::load(&path);
        let _ = std::fs::remove_dir_all(&dir);
        r
    }

    #[test]
    fn mapping_file() {
        let (m, limits) = load("entity_key: api_key\nlimits: [\"rpm:100/min\"]\n").unwrap();
        assert_eq!(
            (m.entity_key.as_str(), m.resource_key.as_str()),
            ("api_key", "resource")
        );
        assert_eq!(m.limit, "rpm");
        assert_eq!(limits[0].capacity(), 100);
        let e = load("entity: x\n").unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
        let e = load("limits: [\"rpm=1\"]\n").unwrap_err();
        assert!(e.starts_with("limits:"), "{e}");
    }

    #[test]
    fn units() {
        assert_eq!(unit(Duration::from_secs(60)), Unit::Minute);
        assert_eq!(unit(Duration::from_secs(86_400)), Unit::Day);
        assert_eq!(unit(Duration::from_millis(1_500)), Unit::Unknown);
    }
}
