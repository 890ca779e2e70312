//! The plan: a pure comparison of what the manifest declares, what is stored now, and what
//! the last apply managed. No I/O here ([`super::apply`] reads and writes).

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{json, Value};

use crate::config::{ConfigScope, OnUnavailable, ProvisionerState, StoredConfig};
use crate::limit::Limit;

/// What applying does to one config item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Nothing is stored there: write it.
    Create,
    /// Something else is stored there: replace it.
    Update,
    /// The last apply managed it and the manifest no longer has it: delete it.
    Delete,
    /// Stored with the declared value but set imperatively: no write to the item, it is
    /// managed from now on.
    Adopt,
    /// The last apply managed it, the manifest no longer has it and it is already gone:
    /// only dropped from the managed set.
    Forget,
}

impl Action {
    /// The sign plans print: `+`, `~`, `-`, `=`, `.`.
    pub fn sign(self) -> char {
        match self {
            Action::Create => '+',
            Action::Update => '~',
            Action::Delete => '-',
            Action::Adopt => '=',
            Action::Forget => '.',
        }
    }

    /// Whether the item itself is written.
    pub fn writes_item(self) -> bool {
        matches!(self, Action::Create | Action::Update | Action::Delete)
    }
}

/// One limit's difference between the stored and the declared config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitDelta {
    /// Declared, not stored.
    Added(Limit),
    /// Stored, not declared.
    Removed(Limit),
    /// Stored with other parameters.
    Changed {
        /// Stored now.
        old: Limit,
        /// Declared.
        new: Limit,
    },
}

/// One item of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// What happens.
    pub action: Action,
    /// The item.
    pub scope: ConfigScope,
    /// What is stored now (with the version the write is conditioned on).
    pub old: Option<StoredConfig>,
    /// What the manifest declares.
    pub new: Option<StoredConfig>,
    /// The item exists but was never managed by a manifest: the apply takes it over.
    pub takeover: bool,
}

impl Change {
    /// The differences limit by limit (empty for a create or delete).
    pub fn limit_deltas(&self) -> Vec<LimitDelta> {
        let (Some(old), Some(new)) = (&self.old, &self.new) else {
            return Vec::new();
        };
        let by_name = |c: &StoredConfig| -> HashMap<String, Limit> {
            c.limits
                .iter()
                .map(|l| (l.name().to_string(), l.clone()))
                .collect()
        };
        let (olds, news) = (by_name(old), by_name(new));
        let mut names: Vec<&String> = olds.keys().chain(news.keys()).collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .filter_map(|n| match (olds.get(n), news.get(n)) {
                (Some(o), Some(w)) if o != w => Some(LimitDelta::Changed {
                    old: o.clone(),
                    new: w.clone(),
                }),
                (Some(o), None) => Some(LimitDelta::Removed(o.clone())),
                (None, Some(w)) => Some(LimitDelta::Added(w.clone())),
                _ => None,
            })
            .collect()
    }

    /// The policy change at the system level, if any (old, new).
    pub fn policy_delta(&self) -> Option<(Option<OnUnavailable>, Option<OnUnavailable>)> {
        let old = self.old.as_ref().and_then(|c| c.on_unavailable);
        let new = self.new.as_ref().and_then(|c| c.on_unavailable);
        (self.action == Action::Update && old != new).then_some((old, new))
    }

    /// The change as data: action, level, target, old and new limits, the limit deltas.
    pub fn to_json(&self) -> Value {
        let deltas: Vec<Value> = self
            .limit_deltas()
            .iter()
            .map(|d| match d {
                LimitDelta::Added(l) => {
                    json!({"limit": l.name(), "old": null, "new": l.to_string()})
                }
                LimitDelta::Removed(l) => {
                    json!({"limit": l.name(), "old": l.to_string(), "new": null})
                }
                LimitDelta::Changed { old, new } => {
                    json!({"limit": old.name(), "old": old.to_string(), "new": new.to_string()})
                }
            })
            .collect();
        let limits = |c: &Option<StoredConfig>| {
            c.as_ref()
                .map(|c| json!(c.limits.iter().map(|l| l.to_string()).collect::<Vec<_>>()))
                .unwrap_or(Value::Null)
        };
        let mut v = json!({
            "action": self.action,
            "level": self.scope.level(),
            "target": target(&self.scope),
            "takeover": self.takeover,
            "old": limits(&self.old),
            "new": limits(&self.new),
            "limit_changes": deltas,
        });
        if let Some((old, new)) = self.policy_delta() {
            v["on_unavailable"] = json!({"old": old, "new": new});
        }
        v
    }
}

/// How plans name an item: `system`, `resource gpt-4`, `entity user-1 / gpt-4`,
/// `entity user-1 / _default_`.
pub fn target(scope: &ConfigScope) -> String {
    match scope {
        ConfigScope::System => "system".into(),
        ConfigScope::Resource { resource } => resource.clone(),
        ConfigScope::Entity { entity_id, .. } | ConfigScope::EntityDefault { entity_id } => {
            format!("{entity_id}/{}", scope.resource().unwrap_or_default())
        }
    }
}

/// What [`Plan::apply`] will do, computed from values read by
/// [`Manifest::plan`](super::Manifest::plan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The namespace.
    pub namespace: String,
    /// The namespace is not registered: the apply registers it first.
    pub register_namespace: bool,
    /// The items that change (creates, updates, deletes, adoptions, forgotten items), in
    /// order: system, resources, entities.
    pub changes: Vec<Change>,
    /// Items of the manifest already stored as declared and managed.
    pub unchanged: usize,
    /// The `#PROVISIONER` record as read (`None`: no manifest was applied here yet).
    pub before: Option<ProvisionerState>,
    /// The managed set after the apply (hash set; time, principal and revision are set when
    /// it is written).
    pub after: ProvisionerState,
}

impl Plan {
    /// Nothing to write: the items are as declared, the record up to date.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && !self.register_namespace && !self.record_stale()
    }

    /// The `#PROVISIONER` record needs writing (new managed set or new manifest hash).
    pub fn record_stale(&self) -> bool {
        match &self.before {
            None => true,
            Some(b) => !b.same_set(&self.after) || b.applied_hash != self.after.applied_hash,
        }
    }

    /// The drift between the file and the table: the changes that write an item (the
    /// record and adoptions aside).
    pub fn drift(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.action.writes_item())
    }

    /// How many changes of `action`.
    pub fn count(&self, action: Action) -> usize {
        self.changes.iter().filter(|c| c.action == action).count()
    }

    /// The plan as data (what `limits plan --output json` prints).
    pub fn to_json(&self) -> Value {
        json!({
            "namespace": self.namespace,
            "register_namespace": self.register_namespace,
            "changes": self.changes.iter().map(Change::to_json).collect::<Vec<_>>(),
            "summary": {
                "create": self.count(Action::Create),
                "update": self.count(Action::Update),
                "delete": self.count(Action::Delete),
                "adopt": self.count(Action::Adopt),
                "forget": self.count(Action::Forget),
                "unchanged": self.unchanged,
            },
            "record_stale": self.record_stale(),
            "applied_hash": self.after.applied_hash,
        })
    }
}

/// Two configs hold the same limits (in any order) and policy.
pub(super) fn same_config(a: &StoredConfig, b: &StoredConfig) -> bool {
    fn sorted(c: &StoredConfig) -> Vec<&Limit> {
        let mut v: Vec<&Limit> = c.limits.iter().collect();
        v.sort_by(|x, y| x.name().cmp(y.name()));
        v
    }
    a.on_unavailable == b.on_unavailable && sorted(a) == sorted(b)
}

/// The plan from what the manifest declares (`desired`, with its hash), what is stored
/// (`live`: every scope of `desired` and of `before`'s managed set that holds a config), and
/// the record of the last apply.
pub(super) fn diff(
    namespace: &str,
    register_namespace: bool,
    desired: &[(ConfigScope, StoredConfig)],
    hash: &str,
    live: &HashMap<ConfigScope, StoredConfig>,
    before: Option<&ProvisionerState>,
) -> Plan {
    let managed = |s: &ConfigScope| before.is_some_and(|b| b.contains(s));
    let mut after = ProvisionerState {
        applied_hash: hash.to_string(),
        ..ProvisionerState::default()
    };
    let mut changes = Vec::new();
    let mut unchanged = 0;
    for (scope, want) in desired {
        after.insert(scope);
        let old = live.get(scope);
        let action = match old {
            None => Some(Action::Create),
            Some(o) if !same_config(o, want) => Some(Action::Update),
            Some(_) if !managed(scope) => Some(Action::Adopt),
            Some(_) => None,
        };
        match action {
            Some(action) => changes.push(Change {
                action,
                scope: scope.clone(),
                old: old.cloned(),
                new: Some(want.clone()),
                takeover: old.is_some() && !managed(scope),
            }),
            None => unchanged += 1,
        }
    }
    if let Some(b) = before {
        for scope in b.scopes() {
            if after.contains(&scope) {
                continue;
            }
            let old = live.get(&scope).cloned();
            changes.push(Change {
                action: if old.is_some() {
                    Action::Delete
                } else {
                    Action::Forget
                },
                scope,
                old,
                new: None,
                takeover: false,
            });
        }
    }
    // system, resources, entities: the order of the managed set
    let rank = |s: &ConfigScope| match s {
        ConfigScope::System => 0,
        ConfigScope::Resource { .. } => 1,
        _ => 2,
    };
    changes.sort_by(|a, b| {
        (rank(&a.scope), target(&a.scope)).cmp(&(rank(&b.scope), target(&b.scope)))
    });
    Plan {
        namespace: namespace.to_string(),
        register_namespace,
        changes,
        unchanged,
        before: before.cloned(),
        after,
    }
}
