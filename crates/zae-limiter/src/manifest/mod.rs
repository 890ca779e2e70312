//! Declarative limits: a YAML (or JSON) manifest of the stored limits of one namespace,
//! planned against the live values and applied through the config API.
//!
//! ```yaml
//! namespace: default
//! system:
//!   on_unavailable: block
//!   limits:
//!     rpm: {capacity: 1000}
//! resources:
//!   gpt-4:
//!     limits:
//!       rpm: {capacity: 500}
//!       tpm: "50000/min:75000"      # the CLI's one-line syntax, without the name
//! entities:
//!   user-premium:
//!     resources:
//!       gpt-4:                      # `_default_`: the entity's default for every resource
//!         limits:
//!           rpm: {capacity: 1000, refill_amount: 100, refill_period: 6}
//! ```
//!
//! A limit is `{capacity, refill_amount?, refill_period?}` (`refill_amount` defaults to the
//! capacity, `refill_period` to 60 seconds; `burst` is another name for `capacity`) or the
//! one-line syntax. The namespace defaults to `default`.
//!
//! [`Manifest::plan`] reads what is stored now for every item of the manifest and every
//! item the last apply managed (the namespace's `#PROVISIONER` record), and lists what
//! [`Plan::apply`] will write: creates, updates (old → new), deletes of items no longer in
//! the manifest, and items set imperatively that the manifest takes over. Items never named
//! by a manifest are never touched. Applying is done through
//! [`RateLimiter::set_config_if`](crate::RateLimiter::set_config_if) and
//! [`delete_config_if`](crate::RateLimiter::delete_config_if), so every change is audited,
//! indexed, evicted from this client's cache and picked up by buckets exactly like an
//! imperative change, and each write is conditioned on the value the plan saw.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use zae_limiter::manifest::Manifest;
//! use zae_limiter::{MemoryStore, RateLimiter};
//!
//! let limiter = RateLimiter::builder(MemoryStore::new()).build();
//! let manifest = Manifest::from_yaml("resources: {gpt-4: {limits: {rpm: {capacity: 500}}}}")?;
//! let plan = manifest.plan(&limiter).await?;
//! assert_eq!(plan.changes.len(), 1);
//! plan.apply(&limiter).await?;
//! // applied: nothing left to do, and nothing is written a second time
//! let again = manifest.plan(&limiter).await?;
//! assert!(again.is_empty());
//! assert_eq!(again.apply(&limiter).await?.writes, 0);
//! # Ok(()) }
//! ```

mod apply;
mod cfn;
mod parse;
mod plan;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::config::{scope_of_entity, ConfigScope, OnUnavailable, StoredConfig};
use crate::limit::Limit;
use crate::namespace::DEFAULT_NAMESPACE;

pub use apply::{ApplyError, ApplyReport};
pub use plan::{target, Action, Change, LimitDelta, Plan};

/// The limits of one namespace, as a manifest declares them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    /// The namespace the manifest targets (`None`: `default`, or whatever the caller sets).
    pub namespace: Option<String>,
    /// The system level.
    pub system: Option<SystemConfig>,
    /// Resource defaults, by resource.
    pub resources: BTreeMap<String, Vec<Limit>>,
    /// Entity configs: entity → resource (`_default_`: the entity's default) → limits.
    pub entities: BTreeMap<String, BTreeMap<String, Vec<Limit>>>,
}

/// The system level of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SystemConfig {
    /// The `on_unavailable` policy.
    pub on_unavailable: Option<OnUnavailable>,
    /// The system default limits (may be empty when the policy is given).
    pub limits: Vec<Limit>,
}

/// Why a manifest was rejected: where in the file, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}{}", .path, if .path.is_empty() { "" } else { ": " }, .message)]
pub struct ManifestError {
    /// The path in the file (`entities.user-premium.resources.gpt-4.limits.rpm.capacity`),
    /// empty for the document itself.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// Line and column (1-based) where the YAML parser stopped, when it knows.
    pub location: Option<(usize, usize)>,
}

impl Manifest {
    /// Parse and validate a YAML manifest (JSON is accepted too: YAML reads it). Every
    /// check runs before anything is written: unknown keys, bad names, zero or
    /// out-of-range values, keys given twice.
    ///
    /// ```
    /// use zae_limiter::manifest::Manifest;
    /// let err = Manifest::from_yaml("entities:\n  user-1:\n    resources:\n      gpt-4:\n        limits:\n          rpm: {capacity: 0}\n").unwrap_err();
    /// assert_eq!(err.to_string(), "entities.user-1.resources.gpt-4.limits.rpm.capacity: must be > 0");
    /// assert_eq!(err.location, Some((6, 27)));
    /// ```
    pub fn from_yaml(text: &str) -> Result<Manifest, ManifestError> {
        parse::parse(text)
    }

    /// The manifest of the properties of a CloudFormation `Custom::ZaeLimiterLimits`
    /// resource (PascalCase keys, every value a string, as CloudFormation passes them).
    pub fn from_cfn_properties(properties: &Value) -> Result<Manifest, ManifestError> {
        let doc = cfn::to_manifest_value(properties)?;
        parse::parse(&doc.to_string())
    }

    /// The namespace the manifest targets: its own, or `default`.
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
    }

    /// The configs the manifest declares, system first, then resources, then entities,
    /// each sorted; limits sorted by name.
    pub fn desired(&self) -> Vec<(ConfigScope, StoredConfig)> {
        let sorted = |limits: &[Limit]| {
            let mut v = limits.to_vec();
            v.sort_by(|a, b| a.name().cmp(b.name()));
            v
        };
        let mut out = Vec::new();
        if let Some(s) = &self.system {
            out.push((
                ConfigScope::System,
                StoredConfig {
                    limits: sorted(&s.limits),
                    on_unavailable: s.on_unavailable,
                    version: 0,
                },
            ));
        }
        for (r, limits) in &self.resources {
            let scope = ConfigScope::Resource {
                resource: r.clone(),
            };
            out.push((scope, StoredConfig::limits(sorted(limits))));
        }
        for (e, per) in &self.entities {
            for (r, limits) in per {
                out.push((scope_of_entity(e, r), StoredConfig::limits(sorted(limits))));
            }
        }
        out
    }

    /// The manifest as canonical data (keys sorted, every default written out), the form
    /// [`to_yaml`](Self::to_yaml) prints and [`hash`](Self::hash) digests.
    pub fn to_value(&self) -> Value {
        let mut doc = serde_json::Map::new();
        doc.insert("namespace".into(), json!(self.namespace()));
        if let Some(s) = &self.system {
            let mut sys = serde_json::Map::new();
            if let Some(p) = s.on_unavailable {
                sys.insert("on_unavailable".into(), json!(p));
            }
            if !s.limits.is_empty() {
                sys.insert("limits".into(), limits_value(&s.limits));
            }
            doc.insert("system".into(), Value::Object(sys));
        }
        if !self.resources.is_empty() {
            let rs = self
                .resources
                .iter()
                .map(|(r, l)| (r.clone(), json!({ "limits": limits_value(l) })))
                .collect();
            doc.insert("resources".into(), Value::Object(rs));
        }
        if !self.entities.is_empty() {
            let es = self
                .entities
                .iter()
                .map(|(e, per)| {
                    let rs: serde_json::Map<String, Value> = per
                        .iter()
                        .map(|(r, l)| (r.clone(), json!({ "limits": limits_value(l) })))
                        .collect();
                    (e.clone(), json!({ "resources": rs }))
                })
                .collect();
            doc.insert("entities".into(), Value::Object(es));
        }
        Value::Object(doc)
    }

    /// The manifest as YAML, in canonical form: [`from_yaml`](Self::from_yaml) reads it
    /// back to the same manifest.
    pub fn to_yaml(&self) -> String {
        serde_norway::to_string(&self.to_value()).unwrap_or_default()
    }

    /// `sha256:` and the hex SHA-256 of the canonical form (comments, key order and
    /// spelled-out defaults do not change it).
    pub fn hash(&self) -> String {
        let digest = Sha256::digest(self.to_value().to_string().as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }

    /// A CloudFormation template with one `Custom::ZaeLimiterLimits` resource applying
    /// this manifest through the provisioner function of stack `stack` (its
    /// `{stack}-ProvisionerArn` export).
    pub fn to_cfn_template(&self, stack: &str) -> String {
        cfn::template(self, stack)
    }
}

/// `{name: {capacity, refill_amount, refill_period}}`, the period in whole seconds when it
/// is one, else as `"{ms}ms"`.
fn limits_value(limits: &[Limit]) -> Value {
    let mut sorted: Vec<&Limit> = limits.iter().collect();
    sorted.sort_by(|a, b| a.name().cmp(b.name()));
    let map = sorted
        .into_iter()
        .map(|l| {
            let ms = l.refill_period_ms();
            let period = if ms % 1_000 == 0 {
                json!(ms / 1_000)
            } else {
                json!(format!("{ms}ms"))
            };
            (
                l.name().to_string(),
                json!({
                    "capacity": l.capacity(),
                    "refill_amount": l.refill_amount(),
                    "refill_period": period,
                }),
            )
        })
        .collect();
    Value::Object(map)
}
