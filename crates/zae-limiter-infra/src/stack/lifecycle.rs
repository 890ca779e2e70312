//! Create or update a stack through a change set, wait for it with its events, delete it.

use super::*;

/// The stack tags of a deploy: the user's, then discovery and version tags (ours win).
pub fn stack_tags(opts: &DeployOptions) -> Vec<(String, String)> {
    let ours = [
        ("ManagedBy", "zae-limiter".to_string()),
        ("zae-limiter:name", opts.name.clone()),
        ("zae-limiter:type", "limiter".to_string()),
        ("zae-limiter:version", CLIENT_VERSION.to_string()),
        ("zae-limiter:schema-version", SCHEMA_VERSION.to_string()),
        ("zae-limiter:lambda-version", CLIENT_VERSION.to_string()),
    ];
    let mut tags: Vec<(String, String)> = opts
        .tags
        .iter()
        .filter(|(k, _)| !ours.iter().any(|(o, _)| o == k))
        .cloned()
        .collect();
    tags.extend(ours.into_iter().map(|(k, v)| (k.to_string(), v)));
    tags
}

/// What [`deploy`] started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    /// CreateStack.
    Create,
    /// A change set with changes, executed.
    Update,
    /// The stack already matches: nothing was done.
    NoChanges,
}

/// Create the stack, or update it through a change set. Returns at once; [`wait`] follows
/// the operation.
pub async fn deploy(
    cfn: &Cfn,
    opts: &DeployOptions,
    template: &str,
) -> Result<Started, StackError> {
    let params: Vec<Parameter> = opts
        .parameters()
        .map_err(|e| StackError(e.0))?
        .into_iter()
        .map(|(k, v)| {
            Parameter::builder()
                .parameter_key(k)
                .parameter_value(v)
                .build()
        })
        .collect();
    let tags: Vec<Tag> = stack_tags(opts)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    let name = &opts.name;
    let existing = describe(cfn, name).await?;
    let Some(existing) = existing else {
        cfn.create_stack()
            .stack_name(name)
            .template_body(template)
            .set_parameters(Some(params))
            .set_tags(Some(tags))
            .capabilities(Capability::CapabilityNamedIam)
            .send()
            .await
            .map_err(|e| aws_err(&format!("creating stack {name}"), e))?;
        return Ok(Started::Create);
    };
    if existing.is_in_progress() {
        return Err(StackError(format!(
            "stack {name} is {}: wait for it to finish (zae-limiter status)",
            existing.stack_status
        )));
    }
    if existing.stack_status == "ROLLBACK_COMPLETE" || existing.stack_status.contains("FAILED") {
        return Err(StackError(format!(
            "stack {name} is {} and cannot be updated: delete it (zae-limiter delete) and deploy again",
            existing.stack_status
        )));
    }
    if unchanged(cfn, name, template, &params, &tags).await? {
        return Ok(Started::NoChanges);
    }
    let cs = format!(
        "zael-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    cfn.create_change_set()
        .stack_name(name)
        .change_set_name(&cs)
        .change_set_type(ChangeSetType::Update)
        .template_body(template)
        .set_parameters(Some(params))
        .set_tags(Some(tags))
        .capabilities(Capability::CapabilityNamedIam)
        .send()
        .await
        .map_err(|e| aws_err(&format!("creating a change set for {name}"), e))?;
    // bounded: 300 polls of 1 s
    for _ in 0..300 {
        let d = cfn
            .describe_change_set()
            .stack_name(name)
            .change_set_name(&cs)
            .send()
            .await
            .map_err(|e| aws_err("describing the change set", e))?;
        match d.status() {
            // the same template, parameters and tags were ruled out above; a change set
            // listing no resource changes still updates parameters or tags
            Some(ChangeSetStatus::CreateComplete) => {
                cfn.execute_change_set()
                    .stack_name(name)
                    .change_set_name(&cs)
                    .send()
                    .await
                    .map_err(|e| aws_err("executing the change set", e))?;
                return Ok(Started::Update);
            }
            Some(ChangeSetStatus::Failed) => {
                let reason = d.status_reason().unwrap_or_default();
                let _ = cfn
                    .delete_change_set()
                    .stack_name(name)
                    .change_set_name(&cs)
                    .send()
                    .await;
                if reason.contains("didn't contain changes") || reason.contains("No updates") {
                    return Ok(Started::NoChanges);
                }
                return Err(StackError(format!(
                    "change set for {name} failed: {reason}"
                )));
            }
            _ => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
    Err(StackError(format!(
        "change set for {name} did not complete in 5 minutes"
    )))
}

/// One stack event, as the progress shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// RFC 3339 time.
    pub time: String,
    /// Logical id of the resource (the stack's own name for stack events).
    pub logical_id: String,
    /// Resource type.
    pub resource_type: String,
    /// Status, e.g. `CREATE_IN_PROGRESS`.
    pub status: String,
    /// Reason given, if any.
    pub reason: Option<String>,
}

/// Start a stack deletion (a stack that does not exist is not an error: returns false).
pub async fn delete(cfn: &Cfn, name: &str) -> Result<bool, StackError> {
    if describe(cfn, name).await?.is_none() {
        return Ok(false);
    }
    cfn.delete_stack()
        .stack_name(name)
        .send()
        .await
        .map_err(|e| aws_err(&format!("deleting stack {name}"), e))?;
    Ok(true)
}

/// How long [`wait`] follows an operation at most.
pub const WAIT_LIMIT: Duration = Duration::from_secs(3600);

/// Follow the operation on stack `name`, started at `since`, until it settles: `on_event`
/// gets every new stack event of it (oldest first) and `on_tick` is called about every `poll`. Returns the final status
/// (`None` once the stack is gone after a delete); a failed or rolled-back operation is an
/// error carrying the failure reasons.
pub async fn wait(
    cfn: &Cfn,
    name: &str,
    since: std::time::SystemTime,
    poll: Duration,
    mut on_event: impl FnMut(&Event),
    mut on_tick: impl FnMut(),
) -> Result<Option<String>, StackError> {
    let start = Instant::now();
    let mut seen = std::collections::HashSet::new();
    // events older than the operation (250 ms of clock skew allowed) are earlier ones'
    let since_ms = since
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
        - 250;
    let mut failures: Vec<String> = Vec::new();
    while start.elapsed() < WAIT_LIMIT {
        let status = match cfn.describe_stacks().stack_name(name).send().await {
            Ok(out) => out.stacks().first().and_then(|s| s.stack_status().cloned()),
            Err(e) if is_missing(&e) => None,
            Err(e) => return Err(aws_err(&format!("describing stack {name}"), e)),
        };
        if let Ok(ev) = cfn.describe_stack_events().stack_name(name).send().await {
            let mut fresh: Vec<Event> = Vec::new();
            for e in ev.stack_events() {
                let id = e.event_id().unwrap_or_default().to_string();
                let old = e
                    .timestamp()
                    .and_then(|t| t.to_millis().ok())
                    .is_some_and(|t| t < since_ms);
                if !seen.insert(id) || old {
                    continue;
                }
                let st = e
                    .resource_status()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default();
                let reason = e.resource_status_reason().map(str::to_string);
                if st.ends_with("_FAILED") {
                    if let Some(r) = &reason {
                        failures.push(format!("{}: {r}", e.logical_resource_id().unwrap_or("?")));
                    }
                }
                fresh.push(Event {
                    time: e
                        .timestamp()
                        .and_then(|t| {
                            t.fmt(aws_sdk_cloudformation::primitives::DateTimeFormat::DateTime)
                                .ok()
                        })
                        .unwrap_or_default(),
                    logical_id: e.logical_resource_id().unwrap_or_default().to_string(),
                    resource_type: e.resource_type().unwrap_or_default().to_string(),
                    status: st,
                    reason,
                });
            }
            // DescribeStackEvents is newest first
            for e in fresh.iter().rev() {
                on_event(e);
            }
        }
        let Some(status) = status else {
            return Ok(None);
        };
        let s = status.as_str().to_string();
        if !s.ends_with("_IN_PROGRESS") {
            let ok = matches!(
                s.as_str(),
                "CREATE_COMPLETE" | "UPDATE_COMPLETE" | "DELETE_COMPLETE"
            );
            if ok {
                return Ok(if s == "DELETE_COMPLETE" {
                    None
                } else {
                    Some(s)
                });
            }
            let why = if failures.is_empty() {
                String::new()
            } else {
                format!(" ({})", failures.join("; "))
            };
            return Err(StackError(format!("stack {name} ended {s}{why}")));
        }
        on_tick();
        tokio::time::sleep(poll).await;
    }
    Err(StackError(format!(
        "stack {name} still in progress after {} s: follow it with zae-limiter status",
        WAIT_LIMIT.as_secs()
    )))
}

/// Whether the stack already has exactly this template, these parameters and tags (then
/// there is nothing to deploy; CloudFormation would refuse an empty change set anyway).
async fn unchanged(
    cfn: &Cfn,
    name: &str,
    template: &str,
    params: &[Parameter],
    tags: &[Tag],
) -> Result<bool, StackError> {
    let current = cfn
        .get_template()
        .stack_name(name)
        .template_stage(aws_sdk_cloudformation::types::TemplateStage::Original)
        .send()
        .await
        .map_err(|e| aws_err(&format!("reading the template of {name}"), e))?;
    let same_template = match (
        current
            .template_body()
            .map(serde_json::from_str::<serde_json::Value>),
        serde_json::from_str::<serde_json::Value>(template),
    ) {
        (Some(Ok(a)), Ok(b)) => a == b,
        _ => false,
    };
    if !same_template {
        return Ok(false);
    }
    let out = cfn
        .describe_stacks()
        .stack_name(name)
        .send()
        .await
        .map_err(|e| aws_err(&format!("describing stack {name}"), e))?;
    let Some(stack) = out.stacks().first() else {
        return Ok(false);
    };
    type Pairs = std::collections::BTreeSet<(String, String)>;
    let pair = |k: Option<&str>, v: Option<&str>| {
        (
            k.unwrap_or_default().to_string(),
            v.unwrap_or_default().to_string(),
        )
    };
    let have_params: Pairs = stack
        .parameters()
        .iter()
        .map(|p| pair(p.parameter_key(), p.parameter_value()))
        .collect();
    let want_params: Pairs = params
        .iter()
        .map(|p| pair(p.parameter_key(), p.parameter_value()))
        .collect();
    let have_tags: Pairs = stack
        .tags()
        .iter()
        .map(|t| pair(t.key(), t.value()))
        .collect();
    let want_tags: Pairs = tags.iter().map(|t| pair(t.key(), t.value())).collect();
    Ok(have_params == want_params && have_tags == want_tags)
}
