//! The stack lifecycle on AWS: create or update (through a change set), wait with the
//! events as they arrive, describe, list the deployed limiters with their health, delete;
//! the Lambda code upload.
//!
//! Every client is built from the loaded `SdkConfig`, so the SDK's standard endpoint
//! settings (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_CLOUDFORMATION`, `…_S3`, `…_LAMBDA`,
//! `…_STS`) apply: that is how the tests point them at moto.

use std::time::{Duration, Instant};

use aws_sdk_cloudformation::error::ProvideErrorMetadata;
use aws_sdk_cloudformation::types::{
    Capability, ChangeSetStatus, ChangeSetType, Parameter, Stack, StackStatus, Tag,
};
use aws_sdk_cloudformation::Client as Cfn;

use crate::template::{DeployOptions, CLIENT_VERSION, SCHEMA_VERSION};

/// A failed AWS call or stack operation, as one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StackError(pub String);

fn aws_err<E: ProvideErrorMetadata + std::error::Error + 'static>(
    what: &str,
    e: aws_sdk_cloudformation::error::SdkError<E>,
) -> StackError {
    StackError(format!("{what}: {}", sdk_line(&e)))
}

/// An SDK error on one line: the service's code and message, or the transport failure
/// with its causes.
pub fn sdk_line<E, R>(e: &aws_sdk_cloudformation::error::SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e.as_service_error() {
        Some(se) if se.code().is_some() || se.message().is_some() => format!(
            "{}: {}",
            se.code().unwrap_or("error"),
            se.message().unwrap_or("")
        ),
        // an answer the SDK could not read (e.g. an emulator's): say what did not parse
        _ => one_line_err(e),
    }
}

fn one_line_err(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// The AWS clients of the deploy commands.
#[derive(Debug, Clone)]
pub struct Aws {
    /// CloudFormation.
    pub cfn: Cfn,
    /// S3 (code bucket).
    pub s3: aws_sdk_s3::Client,
    /// Lambda (code updates).
    pub lambda: aws_sdk_lambda::Client,
    /// STS (account id for the code bucket name).
    pub sts: aws_sdk_sts::Client,
    /// The loaded configuration (region, credentials, endpoints).
    pub sdk: aws_config::SdkConfig,
}

impl Aws {
    /// Load the standard AWS configuration (profile, environment, endpoints), with `region`
    /// over it when given.
    pub async fn load(region: Option<&str>) -> Aws {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(r) = region {
            loader = loader.region(aws_config::Region::new(r.to_string()));
        }
        let sdk = loader.load().await;
        // a custom S3 endpoint (moto, MinIO, LocalStack) has no per-bucket host names
        let custom_s3 = ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"]
            .iter()
            .any(|v| std::env::var_os(v).is_some());
        let s3 = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(custom_s3)
            .build();
        Aws {
            cfn: Cfn::new(&sdk),
            s3: aws_sdk_s3::Client::from_conf(s3),
            lambda: aws_sdk_lambda::Client::new(&sdk),
            sts: aws_sdk_sts::Client::new(&sdk),
            sdk,
        }
    }

    /// The region in use ("us-east-1" when none is configured).
    pub fn region(&self) -> String {
        self.sdk
            .region()
            .map_or_else(|| "us-east-1".to_string(), |r| r.to_string())
    }
}

/// A deployed limiter, as `list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimiterInfo {
    /// Stack name.
    pub stack_name: String,
    /// The name given at deploy (tag `zae-limiter:name`, else the stack name).
    pub user_name: String,
    /// CloudFormation status, e.g. `CREATE_COMPLETE`.
    pub stack_status: String,
    /// Client version that deployed it (tag `zae-limiter:version`).
    pub version: Option<String>,
    /// Version of the Lambda code (tag `zae-limiter:lambda-version`).
    pub lambda_version: Option<String>,
    /// Schema version (tag `zae-limiter:schema-version`).
    pub schema_version: Option<String>,
    /// Creation time, RFC 3339.
    pub created: Option<String>,
    /// Outputs by key.
    pub outputs: Vec<(String, String)>,
}

impl LimiterInfo {
    /// `*_COMPLETE` other than a rollback or delete: usable.
    pub fn is_healthy(&self) -> bool {
        matches!(
            self.stack_status.as_str(),
            "CREATE_COMPLETE" | "UPDATE_COMPLETE" | "IMPORT_COMPLETE"
        )
    }
    /// An operation is running.
    pub fn is_in_progress(&self) -> bool {
        self.stack_status.ends_with("_IN_PROGRESS")
    }
    /// Failed or rolled back: needs attention.
    pub fn is_failed(&self) -> bool {
        !self.is_healthy() && !self.is_in_progress()
    }
    /// One output's value.
    pub fn output(&self, key: &str) -> Option<&str> {
        self.outputs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn tag(stack: &Stack, key: &str) -> Option<String> {
    stack
        .tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value().map(str::to_string))
}

fn info(stack: &Stack) -> LimiterInfo {
    let name = stack.stack_name().unwrap_or_default().to_string();
    LimiterInfo {
        user_name: tag(stack, "zae-limiter:name").unwrap_or_else(|| name.clone()),
        stack_name: name,
        stack_status: stack
            .stack_status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        version: tag(stack, "zae-limiter:version"),
        lambda_version: tag(stack, "zae-limiter:lambda-version"),
        schema_version: tag(stack, "zae-limiter:schema-version"),
        created: stack.creation_time().and_then(|t| {
            t.fmt(aws_sdk_cloudformation::primitives::DateTimeFormat::DateTime)
                .ok()
        }),
        outputs: stack
            .outputs()
            .iter()
            .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
            .collect(),
    }
}

fn is_missing<E: ProvideErrorMetadata>(e: &aws_sdk_cloudformation::error::SdkError<E>) -> bool {
    e.as_service_error().is_some_and(|se| {
        se.code() == Some("ValidationError")
            && se.message().is_some_and(|m| m.contains("does not exist"))
    })
}

/// The stack `name`, or `None` when there is none (deleted stacks included).
pub async fn describe(cfn: &Cfn, name: &str) -> Result<Option<LimiterInfo>, StackError> {
    match cfn.describe_stacks().stack_name(name).send().await {
        Ok(out) => Ok(out
            .stacks()
            .first()
            .map(info)
            .filter(|i| i.stack_status != "DELETE_COMPLETE")),
        Err(e) if is_missing(&e) => Ok(None),
        Err(e) => Err(aws_err(&format!("describing stack {name}"), e)),
    }
}

/// Most stacks listed (pages of DescribeStacks followed at most this many times).
const MAX_PAGES: usize = 100;

/// Every zae-limiter stack of the region (tag `ManagedBy=zae-limiter`), not deleted, sorted
/// by name.
pub async fn list(cfn: &Cfn) -> Result<Vec<LimiterInfo>, StackError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = cfn
            .describe_stacks()
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| aws_err("listing stacks", e))?;
        for s in page.stacks() {
            if tag(s, "ManagedBy").as_deref() == Some("zae-limiter")
                && s.stack_status() != Some(&StackStatus::DeleteComplete)
            {
                out.push(info(s));
            }
        }
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    out.sort_by(|a, b| a.user_name.cmp(&b.user_name));
    Ok(out)
}

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

/// Upload the Lambda zip to the code bucket (`zae-limiter-code-{account}-{region}`, created
/// when missing) under a key naming its content; returns (bucket, key).
pub async fn upload_code(
    aws: &Aws,
    stack: &str,
    zip: &[u8],
) -> Result<(String, String), StackError> {
    let account = aws
        .sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| StackError(format!("asking STS for the account: {}", sdk_line(&e))))?
        .account()
        .unwrap_or("000000000000")
        .to_string();
    let region = aws.region();
    let bucket = format!("zae-limiter-code-{account}-{region}");
    if aws.s3.head_bucket().bucket(&bucket).send().await.is_err() {
        let mut req = aws.s3.create_bucket().bucket(&bucket);
        if region != "us-east-1" {
            req = req.create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                        region.as_str(),
                    ))
                    .build(),
            );
        }
        req.send()
            .await
            .map_err(|e| StackError(format!("creating code bucket {bucket}: {}", sdk_line(&e))))?;
    }
    let key = format!(
        "{stack}/bootstrap-{CLIENT_VERSION}-{:08x}.zip",
        crate::package::crc32(zip)
    );
    aws.s3
        .put_object()
        .bucket(&bucket)
        .key(&key)
        .body(aws_sdk_s3::primitives::ByteStream::from(zip.to_vec()))
        .send()
        .await
        .map_err(|e| {
            StackError(format!(
                "uploading the Lambda code to s3://{bucket}/{key}: {}",
                sdk_line(&e)
            ))
        })?;
    Ok((bucket, key))
}

/// Point the functions of stack `stack` (those that exist) at new code and tag them with
/// this client's version; returns the names updated.
pub async fn update_functions(
    aws: &Aws,
    stack: &str,
    bucket: &str,
    key: &str,
) -> Result<Vec<String>, StackError> {
    let mut done = Vec::new();
    for f in [
        format!("{stack}-aggregator"),
        format!("{stack}-limits-provisioner"),
    ] {
        let arn = match aws.lambda.get_function().function_name(&f).send().await {
            Ok(out) => out
                .configuration()
                .and_then(|c| c.function_arn())
                .unwrap_or_default()
                .to_string(),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                continue
            }
            Err(e) => {
                return Err(StackError(format!(
                    "reading function {f}: {}",
                    sdk_line(&e)
                )))
            }
        };
        aws.lambda
            .update_function_code()
            .function_name(&f)
            .s3_bucket(bucket)
            .s3_key(key)
            .send()
            .await
            .map_err(|e| StackError(format!("updating the code of {f}: {}", sdk_line(&e))))?;
        aws.lambda
            .tag_resource()
            .resource(&arn)
            .tags("zae-limiter:lambda-version", CLIENT_VERSION)
            .send()
            .await
            .map_err(|e| StackError(format!("tagging {f}: {}", sdk_line(&e))))?;
        done.push(f);
    }
    Ok(done)
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
