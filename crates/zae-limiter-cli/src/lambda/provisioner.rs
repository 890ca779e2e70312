//! The provisioner handler: declarative limits applied from a Lambda event, with the same
//! code as `zae-limiter limits apply` ([`Manifest::plan`] / [`Plan::apply`]).
//!
//! Two kinds of event:
//! - a CloudFormation custom resource (`Custom::ZaeLimiterLimits`, an event with
//!   `RequestType`): Create and Update apply the resource properties as a manifest, Delete
//!   applies an empty manifest of the same namespace (removing what the resource managed);
//!   the outcome is PUT to the pre-signed `ResponseURL` (`Status`, `Reason`,
//!   `PhysicalResourceId`, `Data`), as the custom-resource protocol requires;
//! - a direct invocation `{"action": "plan" | "apply", "namespace"?, "manifest"}`, the
//!   manifest as YAML/JSON text or as an object; the answer is the plan (and the report).
//!
//! The table is the event's `TableName` (or `table_name`), else `ZAEL_TABLE_NAME`;
//! `ZAEL_ENDPOINT_URL` points the client elsewhere than AWS (DynamoDB Local in tests).

use serde_json::{json, Value};
use zae_limiter::manifest::{Manifest, Plan};
use zae_limiter::{DynamoStore, RateLimiter, StoreConfig, DEFAULT_NAMESPACE};

/// Where the handler finds its table.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `ZAEL_TABLE_NAME`.
    pub table: Option<String>,
    /// `ZAEL_ENDPOINT_URL`.
    pub endpoint_url: Option<String>,
}

impl Env {
    /// From the process environment.
    pub fn from_process() -> Env {
        Env {
            table: std::env::var("ZAEL_TABLE_NAME").ok(),
            endpoint_url: std::env::var("ZAEL_ENDPOINT_URL").ok(),
        }
    }
}

/// Handle one event with the process environment (the Lambda entry point).
pub async fn handle(event: Value) -> Result<Value, String> {
    handle_with(event, &Env::from_process()).await
}

/// Handle one event. A custom-resource event always answers CloudFormation (FAILED with
/// the reason when the apply fails) and returns the body it sent; an error here means the
/// answer itself could not be delivered.
pub async fn handle_with(event: Value, env: &Env) -> Result<Value, String> {
    if event.get("RequestType").is_some() {
        custom_resource(&event, env).await
    } else {
        direct(&event, env).await
    }
}

async fn limiter(table: Option<&str>, env: &Env) -> Result<RateLimiter, String> {
    let table = table
        .map(str::to_string)
        .or_else(|| env.table.clone())
        .ok_or("no table: give TableName in the event or set ZAEL_TABLE_NAME")?;
    let mut config = StoreConfig::new(table).namespace(DEFAULT_NAMESPACE);
    if let Some(url) = &env.endpoint_url {
        config = config.endpoint_url(url);
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            config = config.static_credentials("local", "local");
        }
    }
    let store = DynamoStore::connect(config)
        .await
        .map_err(|e| e.to_string())?;
    Ok(RateLimiter::builder(store)
        .principal("zae-limiter-provisioner")
        .build())
}

/// `{action, namespace?, manifest, table_name?}`.
async fn direct(event: &Value, env: &Env) -> Result<Value, String> {
    let action = event["action"].as_str().unwrap_or("plan");
    if !matches!(action, "plan" | "apply") {
        return Err(format!(
            "action '{}' is not plan or apply",
            action.escape_debug()
        ));
    }
    let mut manifest = match &event["manifest"] {
        Value::String(text) => Manifest::from_yaml(text),
        Value::Null => Manifest::from_yaml(""),
        other => Manifest::from_yaml(&other.to_string()),
    }
    .map_err(|e| format!("manifest: {e}"))?;
    if let Some(ns) = event["namespace"].as_str() {
        manifest.namespace = Some(ns.to_string());
    }
    let l = limiter(event["table_name"].as_str(), env).await?;
    let plan = manifest.plan(&l).await.map_err(|e| e.to_string())?;
    if action == "plan" {
        return Ok(json!({"status": "planned", "plan": plan.to_json()}));
    }
    let report = plan.apply(&l).await.map_err(|e| e.to_string())?;
    Ok(json!({"status": "applied", "plan": plan.to_json(), "applied": report}))
}

/// Apply what a custom-resource event asks; `Ok` carries the physical id and the data of
/// the answer.
async fn apply_resource(event: &Value, env: &Env) -> Result<(String, Value), (String, String)> {
    let props = &event["ResourceProperties"];
    let table = props["TableName"]
        .as_str()
        .map(str::to_string)
        .or_else(|| env.table.clone())
        .unwrap_or_default();
    let request = event["RequestType"].as_str().unwrap_or_default();
    let mut manifest = Manifest::from_cfn_properties(props)
        .map_err(|e| (String::new(), format!("invalid limits: {e}")))?;
    let namespace = manifest.namespace().to_string();
    let physical = format!("{table}/{namespace}/limits");
    let fail = |why: String| (physical.clone(), why);
    match request {
        "Create" | "Update" => {}
        "Delete" => {
            // a resource whose creation failed has no id of ours: nothing was applied
            if event["PhysicalResourceId"].as_str() != Some(physical.as_str()) {
                return Ok((
                    event["PhysicalResourceId"]
                        .as_str()
                        .unwrap_or(&physical)
                        .to_string(),
                    json!({}),
                ));
            }
            manifest = Manifest {
                namespace: Some(namespace.clone()),
                ..Manifest::default()
            };
        }
        other => {
            return Err(fail(format!(
                "unknown RequestType '{}'",
                other.escape_debug()
            )))
        }
    }
    let l = limiter(Some(&table), env).await.map_err(fail)?;
    let plan: Plan = match manifest.plan(&l).await {
        Ok(p) => p,
        // deleting the limits of a namespace that is gone: nothing left to remove
        Err(zae_limiter::Error::NamespaceNotFound(_)) if request == "Delete" => {
            return Ok((physical, json!({})))
        }
        Err(e) => return Err(fail(e.to_string())),
    };
    if request == "Delete" && plan.register_namespace {
        return Ok((physical, json!({})));
    }
    let report = plan.apply(&l).await.map_err(|e| fail(e.to_string()))?;
    Ok((
        physical.clone(),
        json!({
            "Namespace": namespace,
            "Created": report.created,
            "Updated": report.updated,
            "Deleted": report.deleted,
            "Adopted": report.adopted,
            "Writes": report.writes,
        }),
    ))
}

/// The custom-resource protocol: do the work, then PUT the outcome to `ResponseURL`.
async fn custom_resource(event: &Value, env: &Env) -> Result<Value, String> {
    let url = event["ResponseURL"]
        .as_str()
        .ok_or("the custom-resource event has no ResponseURL")?;
    let (status, reason, physical, data) = match apply_resource(event, env).await {
        Ok((physical, data)) => ("SUCCESS", "applied".to_string(), physical, data),
        Err((physical, why)) => {
            // a failed Create must still name a physical id
            let physical = if physical.is_empty() {
                event["PhysicalResourceId"]
                    .as_str()
                    .unwrap_or("zae-limiter-limits-failed")
                    .to_string()
            } else {
                physical
            };
            ("FAILED", why, physical, json!({}))
        }
    };
    let body = json!({
        "Status": status,
        "Reason": reason.chars().take(1000).collect::<String>(),
        "PhysicalResourceId": physical,
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
        "NoEcho": false,
        "Data": data,
    });
    let text = body.to_string();
    // the pre-signed S3 URL was signed without a content type: send none
    let answer = reqwest::Client::new()
        .put(url)
        .header(reqwest::header::CONTENT_TYPE, "")
        .body(text)
        .timeout(std::time::Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| format!("cannot answer CloudFormation at ResponseURL: {e}"))?;
    if !answer.status().is_success() {
        return Err(format!(
            "CloudFormation's ResponseURL answered {}",
            answer.status()
        ));
    }
    Ok(body)
}

#[cfg(all(test, feature = "dynamodb-local-tests"))]
mod tests;
