//! The IAM actions each role of use needs, and the policy documents built from them.
//!
//! The sets are the DynamoDB actions the code really issues (recorded on DynamoDB Local by
//! the CLI's `least_privilege` test, which fails when the code and these sets drift apart).
//! `TransactWriteItems` is not an IAM action: a transaction needs the action of each item
//! kind it holds (`Update` → `UpdateItem`, `Put` → `PutItem`, `Delete` → `DeleteItem`,
//! `ConditionCheck` → `ConditionCheckItem`); `TransactGetItems` needs `GetItem`. The batch
//! operations are IAM actions of their own (`BatchGetItem`, `BatchWriteItem`).

use serde_json::{json, Value};

/// Applications calling acquire / adjust / commit / rollback / available, with their limits
/// resolved from the table (policy `-acq`).
pub const ACQUIRE_ACTIONS: &[&str] = &[
    "dynamodb:BatchGetItem",
    "dynamodb:GetItem",
    "dynamodb:UpdateItem",
];

/// Monitoring and dashboards: every read-only command (policy `-read`).
pub const READ_ACTIONS: &[&str] = &[
    "dynamodb:BatchGetItem",
    "dynamodb:GetItem",
    "dynamodb:Query",
];

/// Operators: the management API (entities, limits, namespaces, audit) plus everything of
/// `-acq` and `-read` (policy `-full`).
pub const FULL_ACTIONS: &[&str] = &[
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:DeleteItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:UpdateItem",
];

/// The only table-level (`_/…`) partition a tenant reads: the namespace registry
/// `_/SYSTEM#` (its namespace's forward record, and the schema version record). Tenants never
/// write there (registration is an operator's job, done by `deploy` for `default`).
pub const REGISTRY_PARTITION: &str = "_/SYSTEM#";

/// What a tenant reads in [`REGISTRY_PARTITION`].
pub const REGISTRY_ACTIONS: &[&str] = &["dynamodb:GetItem"];

/// The aggregator's table actions, what the Lambda handler issues (issue 10): `UpdateItem`
/// (one conditional write per snapshot and bucket item), `GetItem` (the schema record read
/// once per handle before the first write, and a snapshot's stored sequence number when a
/// retried batch is partly applied). Audit archival needs no table action: the expired items
/// come in the stream record's old image.
pub const AGGREGATOR_TABLE_ACTIONS: &[&str] = &["dynamodb:GetItem", "dynamodb:UpdateItem"];

/// Reading the table's stream (the event source mapping runs under the function's role).
pub const STREAM_ACTIONS: &[&str] = &[
    "dynamodb:DescribeStream",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
    "dynamodb:ListStreams",
];

/// The provisioner's table actions, exactly what `limits apply` issues (proven by
/// `tests/least_privilege.rs`): read the managed state and the configs,
/// put/delete config items.
pub const PROVISIONER_TABLE_ACTIONS: &[&str] = &[
    "dynamodb:DeleteItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
];

/// Actions that work on items and can therefore be confined by `dynamodb:LeadingKeys`
/// (`DescribeTable`, `Scan` and other table-level actions are not).
fn item_scoped(actions: &[&str]) -> Vec<&'static str> {
    const ITEM: &[&str] = &[
        "dynamodb:BatchGetItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:ConditionCheckItem",
        "dynamodb:DeleteItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
    ];
    ITEM.iter()
        .copied()
        .filter(|a| actions.contains(a))
        .collect()
}

/// The managed policies: logical id, name component (`{stack}-{component}`), role of use,
/// actions, namespace-scoped or not.
pub const POLICIES: [PolicySpec; 6] = [
    PolicySpec::new("AcquireOnlyPolicy", "acq", ACQUIRE_ACTIONS, false),
    PolicySpec::new("FullAccessPolicy", "full", FULL_ACTIONS, false),
    PolicySpec::new("ReadOnlyPolicy", "read", READ_ACTIONS, false),
    PolicySpec::new("NamespaceAcquirePolicy", "ns-acq", ACQUIRE_ACTIONS, true),
    PolicySpec::new("NamespaceFullAccessPolicy", "ns-full", FULL_ACTIONS, true),
    PolicySpec::new("NamespaceReadOnlyPolicy", "ns-read", READ_ACTIONS, true),
];

/// One managed policy of the stack.
#[derive(Debug, Clone, Copy)]
pub struct PolicySpec {
    /// Logical id in the template (its ARN is output as `{logical_id}Arn`).
    pub logical_id: &'static str,
    /// Name component: the policy is called `{stack}-{component}` (or the name format's).
    pub component: &'static str,
    /// The DynamoDB actions of the role of use.
    pub actions: &'static [&'static str],
    /// Confined to the principal's namespace (`zael_namespace_id` tag).
    pub namespaced: bool,
}

impl PolicySpec {
    const fn new(
        logical_id: &'static str,
        component: &'static str,
        actions: &'static [&'static str],
        namespaced: bool,
    ) -> Self {
        PolicySpec {
            logical_id,
            component,
            actions,
            namespaced,
        }
    }

    /// The actions this policy grants (for a namespace-scoped policy: the item-level ones).
    pub fn granted(&self) -> Vec<&'static str> {
        if self.namespaced {
            item_scoped(self.actions)
        } else {
            self.actions.to_vec()
        }
    }

    /// The policy document for the table whose ARN is `table_arn` (a template expression).
    pub fn document(&self, table_arn: &Value) -> Value {
        let resources = json!([table_arn, {"Fn::Sub": ["${T}/index/*", {"T": table_arn}]}]);
        if !self.namespaced {
            return json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Sid": "Table",
                    "Effect": "Allow",
                    "Action": self.granted(),
                    "Resource": resources,
                }],
            });
        }
        json!({
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "OwnNamespace",
                    "Effect": "Allow",
                    "Action": self.granted(),
                    "Resource": resources,
                    "Condition": {
                        "ForAllValues:StringLike": {
                            "dynamodb:LeadingKeys": ["${aws:PrincipalTag/zael_namespace_id}/*"]
                        }
                    },
                },
                {
                    "Sid": "NamespaceRegistry",
                    "Effect": "Allow",
                    "Action": REGISTRY_ACTIONS,
                    "Resource": table_arn,
                    "Condition": {
                        "ForAllValues:StringEquals": {
                            "dynamodb:LeadingKeys": [REGISTRY_PARTITION]
                        }
                    },
                },
            ],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_covers_acquire_and_read() {
        for a in ACQUIRE_ACTIONS.iter().chain(READ_ACTIONS) {
            assert!(FULL_ACTIONS.contains(a), "{a} missing from -full");
        }
    }

    #[test]
    fn no_pseudo_actions() {
        for p in POLICIES {
            for a in p.granted() {
                assert!(
                    !a.starts_with("dynamodb:Transact"),
                    "{a} is not an IAM action"
                );
            }
        }
    }

    #[test]
    fn namespaced_policies_have_no_table_level_actions() {
        let p = POLICIES[4];
        assert!(p.namespaced);
        let g = p.granted();
        assert_eq!(g, FULL_ACTIONS.to_vec());
        assert!(item_scoped(&["dynamodb:DescribeTable", "dynamodb:Scan"]).is_empty());
    }
}
