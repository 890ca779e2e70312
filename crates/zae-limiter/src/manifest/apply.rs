//! The I/O of declarative limits: reading the live values for a plan, and applying a plan
//! through the config API.

use std::collections::HashMap;

use serde::Serialize;

use super::plan::{self, target, Action, Change, Plan};
use super::Manifest;
use crate::config::{ConfigScope, ProvisionerState};
use crate::error::{Error, Result};
use crate::RateLimiter;

/// What an apply wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    /// Items created.
    pub created: usize,
    /// Items replaced.
    pub updated: usize,
    /// Items deleted.
    pub deleted: usize,
    /// Items taken over as they were.
    pub adopted: usize,
    /// Managed items already gone, dropped from the managed set.
    pub forgotten: usize,
    /// The namespace was registered.
    pub registered_namespace: bool,
    /// The `#PROVISIONER` record was written (once or twice: see [`Plan::apply`]).
    pub record_written: bool,
    /// Every write request made (items, record, registration).
    pub writes: usize,
}

/// An apply that stopped: what was done before, what failed, what was not attempted.
#[derive(Debug, thiserror::Error)]
#[error(
    "apply stopped at {}: {source} ({applied} of {total} item changes applied, {not_attempted} \
     not attempted; the #PROVISIONER record {}); plan again",
    .failed.as_deref().map_or_else(|| "the #PROVISIONER record".to_string(), describe),
    if *.record_written { "lists every item that may still be managed" } else { "was not updated" }
)]
pub struct ApplyError {
    /// Item changes applied before the failure.
    pub applied: usize,
    /// Item changes in the plan.
    pub total: usize,
    /// Item changes not attempted.
    pub not_attempted: usize,
    /// The change that failed (`None`: the record write failed).
    pub failed: Option<Box<Change>>,
    /// Whether the record reflects what was applied.
    pub record_written: bool,
    /// Why it failed ([`Error::Conflict`]: a concurrent change since the plan was read).
    #[source]
    pub source: Error,
}

fn describe(c: &Change) -> String {
    format!(
        "{} {} '{}'",
        c.action.sign(),
        c.scope.level(),
        target(&c.scope)
    )
}

impl Manifest {
    /// Read what is stored now for every item of the manifest and every item the last
    /// apply managed, and compute what [`Plan::apply`] will write. `limiter` may be a
    /// handle on any namespace of the table: the manifest's own is used.
    pub async fn plan(&self, limiter: &RateLimiter) -> Result<Plan> {
        let ns = self.namespace();
        let scoped = match limiter.namespace(ns).await {
            Ok(l) => Some(l),
            Err(Error::NamespaceNotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let desired = self.desired();
        let mut live = HashMap::new();
        let mut before = None;
        if let Some(l) = &scoped {
            before = l.provisioner_state().await?;
            let mut scopes: Vec<ConfigScope> = desired.iter().map(|(s, _)| s.clone()).collect();
            if let Some(b) = &before {
                scopes.extend(b.scopes());
            }
            let mut read = std::collections::HashSet::new();
            for scope in scopes {
                // an item both declared and managed is read once
                if !read.insert(scope.clone()) {
                    continue;
                }
                if let Some(c) = l.get_config(&scope).await? {
                    live.insert(scope, c);
                }
            }
        }
        Ok(plan::diff(
            ns,
            scoped.is_none(),
            &desired,
            &self.hash(),
            &live,
            before.as_ref(),
        ))
    }

    /// [`plan`](Self::plan) then [`Plan::apply`].
    pub async fn apply(
        &self,
        limiter: &RateLimiter,
    ) -> std::result::Result<(Plan, ApplyReport), ApplyError> {
        let plan = self.plan(limiter).await.map_err(|source| ApplyError {
            applied: 0,
            total: 0,
            not_attempted: 0,
            failed: None,
            record_written: false,
            source,
        })?;
        let report = plan.apply(limiter).await?;
        Ok((plan, report))
    }
}

impl Plan {
    /// Write exactly what the plan lists, each item conditioned on the value the plan saw
    /// (a concurrent change stops the apply with [`Error::Conflict`]), then the
    /// `#PROVISIONER` record (the managed set, the manifest's hash, time, principal). An
    /// empty plan writes nothing.
    ///
    /// When the apply adds items to the managed set, the record is first written with the
    /// union of the old and new sets, so that an apply stopped halfway never leaves an item
    /// it created unmanaged (a later apply deletes what the manifest no longer has).
    pub async fn apply(
        &self,
        limiter: &RateLimiter,
    ) -> std::result::Result<ApplyReport, ApplyError> {
        let total = self
            .changes
            .iter()
            .filter(|c| c.action.writes_item())
            .count();
        let fail =
            |applied: usize, failed: Option<Box<Change>>, record_written, source| ApplyError {
                applied,
                total,
                not_attempted: total.saturating_sub(applied + usize::from(failed.is_some())),
                failed,
                record_written,
                source,
            };
        let mut report = ApplyReport::default();
        if self.is_empty() {
            return Ok(report);
        }
        if self.register_namespace {
            limiter
                .register_namespace(&self.namespace)
                .await
                .map_err(|e| fail(0, None, false, e))?;
            report.registered_namespace = true;
            report.writes += 1;
        }
        let scoped = limiter
            .namespace(&self.namespace)
            .await
            .map_err(|e| fail(0, None, false, e))?;
        let principal = scoped.principal().await;
        let mut revision = self.before.as_ref().map_or(0, |b| b.revision);
        let stamp = |mut state: ProvisionerState, revision: u64| {
            state.applied_at_ms = scoped.now_ms();
            state.principal = principal.clone();
            state.revision = revision + 1;
            state
        };
        let mut managed = self.before.clone().unwrap_or_default();
        let grows = self.after.scopes().iter().any(|s| !managed.contains(s));
        if grows && total > 0 {
            for s in self.after.scopes() {
                managed.insert(&s);
            }
            if self.before.is_none() {
                managed.applied_hash = self.after.applied_hash.clone();
            }
            let ahead = stamp(managed.clone(), revision);
            scoped
                .put_provisioner(&ahead, revision)
                .await
                .map_err(|e| fail(0, None, false, e))?;
            revision += 1;
            report.writes += 1;
        }
        let mut applied = 0;
        for change in &self.changes {
            let result = match (change.action, &change.old, &change.new) {
                (Action::Create, None, Some(new)) => {
                    scoped.set_config_if(&change.scope, None, new.clone()).await
                }
                (Action::Update, Some(old), Some(new)) => {
                    scoped
                        .set_config_if(&change.scope, Some(old), new.clone())
                        .await
                }
                (Action::Delete, Some(old), None) => {
                    scoped.delete_config_if(&change.scope, old).await
                }
                (Action::Adopt, ..) => {
                    report.adopted += 1;
                    continue;
                }
                (Action::Forget, ..) => {
                    report.forgotten += 1;
                    continue;
                }
                _ => Err(Error::invalid(
                    "plan",
                    format!("{} is not a consistent change", describe(change)),
                )),
            };
            if let Err(e) = result {
                // record what may still be managed: the new set and whatever of the old
                // set was not deleted yet (best effort: the store may be down)
                let mut keep = managed.clone();
                for s in self.after.scopes() {
                    keep.insert(&s);
                }
                let record_written = scoped
                    .put_provisioner(&stamp(keep, revision), revision)
                    .await
                    .is_ok();
                return Err(fail(
                    applied,
                    Some(Box::new(change.clone())),
                    record_written,
                    e,
                ));
            }
            applied += 1;
            report.writes += 1;
            match change.action {
                Action::Create => report.created += 1,
                Action::Update => report.updated += 1,
                _ => report.deleted += 1,
            }
        }
        let last = stamp(self.after.clone(), revision);
        scoped
            .put_provisioner(&last, revision)
            .await
            .map_err(|e| fail(applied, None, false, e))?;
        report.writes += 1;
        report.record_written = true;
        Ok(report)
    }
}

impl RateLimiter {
    /// Write the `#PROVISIONER` record if it is still at `expected_revision`.
    pub(crate) async fn put_provisioner(
        &self,
        state: &ProvisionerState,
        expected_revision: u64,
    ) -> Result<()> {
        Ok(self
            .call(self.store().put_provisioner(state, expected_revision))
            .await?)
    }
}
