//! The stack lifecycle on AWS: create or update (through a change set), wait with the
//! events as they arrive, describe, list the deployed limiters with their health, delete;
//! the Lambda code upload.
//!
//! Every client is built from the loaded `SdkConfig`, so the SDK's standard endpoint
//! settings (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_CLOUDFORMATION`, `…_S3`, `…_LAMBDA`,
//! `…_STS`) apply: that is how the tests point them at moto.
//!
//! Here: errors, the clients, describing and listing stacks; the change-set lifecycle
//! (deploy, wait, delete) is in `lifecycle.rs`, the Lambda code in `code.rs`.

mod code;
mod lifecycle;

pub use code::*;
pub use lifecycle::*;

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
