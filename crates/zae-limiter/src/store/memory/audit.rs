//! Audit events: recording them (and refusing what DynamoDB would refuse) and listing them.

use std::cmp::Reverse;

use super::evict::AuditDue;
use super::{size, space_in, Inner, MemoryStore, Shared};
use crate::config::{AuditEvent, AuditPage};
use crate::error::StoreError;
use crate::namespace::{DEFAULT_NAMESPACE, NAMESPACE_AUDIT_ENTITY, SYSTEM_NAMESPACE};

/// True once an event's retention ended at store time `latest_ms`.
fn expired(e: &AuditEvent, latest_ms: i64) -> bool {
    e.expires_at_ms.is_some_and(|x| x < latest_ms)
}

/// Namespace changes are filed in the table-level namespace.
fn audit_space<'a>(ns: &'a str, entity_id: &str) -> &'a str {
    if entity_id == NAMESPACE_AUDIT_ENTITY {
        SYSTEM_NAMESPACE
    } else {
        ns
    }
}

impl Inner {
    /// Record an audit event; true when it is new.
    pub(super) fn record(&mut self, audit: &AuditEvent) -> bool {
        let new = self
            .audit
            .entry(audit.entity_id.clone())
            .or_default()
            .insert(audit.event_id.clone(), audit.clone())
            .is_none();
        self.audit_count += usize::from(new);
        new
    }
}

impl Shared {
    /// Record `audit` in namespace `ns` (namespace events: in the table-level one).
    pub(super) fn record_audit(&mut self, ns: &str, audit: &AuditEvent) {
        let inner = space_in(&mut self.spaces, audit_space(ns, &audit.entity_id));
        if inner.record(audit) {
            if let Some(at) = audit.expires_at_ms {
                self.audit_due.push(Reverse(AuditDue {
                    at,
                    ns: inner.id.clone(),
                    entity: audit.entity_id.clone(),
                    event: audit.event_id.clone(),
                }));
                self.publish_audit_due();
            }
        }
        self.observe(audit.timestamp_ms);
    }

    /// A page of `entity_id`'s events in namespace `ns`, newest first, older than `before`
    /// (the body of [`Store::list_audit`](crate::store::Store::list_audit)).
    pub(super) fn list_audit(
        &mut self,
        ns: &str,
        entity_id: &str,
        limit: usize,
        before: Option<&str>,
    ) -> Result<AuditPage, StoreError> {
        // the namespace audit is table-level: only a handle on `default` reads it
        if entity_id == NAMESPACE_AUDIT_ENTITY
            && self.active(DEFAULT_NAMESPACE).map(|n| n.id.as_str()) != Some(ns)
        {
            return Err(StoreError::Refused(format!(
                "the namespace audit ({NAMESPACE_AUDIT_ENTITY}) is table-level: only a handle \
                 on the '{DEFAULT_NAMESPACE}' namespace reads it"
            )));
        }
        let latest = self.time.latest();
        let inner = self.space(audit_space(ns, entity_id));
        let Some(events) = inner.audit.get(entity_id) else {
            return Ok(AuditPage {
                events: Vec::new(),
                next: None,
            });
        };
        let older = events
            .range::<str, _>((
                std::ops::Bound::Unbounded,
                before.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded),
            ))
            .rev()
            .filter(|(_, e)| !expired(e, latest));
        let mut page: Vec<AuditEvent> = older.take(limit + 1).map(|(_, e)| e.clone()).collect();
        let more = page.len() > limit;
        page.truncate(limit);
        let next = if more {
            page.last().map(|e| e.event_id.clone())
        } else {
            None
        };
        Ok(AuditPage { events: page, next })
    }
}

impl MemoryStore {
    /// Refuse an audit event DynamoDB would refuse.
    pub(super) fn check_audit(&self, audit: &AuditEvent) -> Result<(), StoreError> {
        size::check(size::audit_item(&self.ns, audit), || {
            format!(
                "the audit event '{}' of '{}'",
                audit.event_id, audit.entity_id
            )
        })
    }
}
