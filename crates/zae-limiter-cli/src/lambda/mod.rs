//! Lambda mode: the same binary is the `bootstrap` of the provided.al2023 functions. It
//! runs as a Lambda when `AWS_LAMBDA_RUNTIME_API` is set (or when it is called
//! `bootstrap`) and serves the handler named by `ZAEL_HANDLER` (`aggregator` |
//! `provisioner`) through the `lambda_runtime` crate.
//!
//! The handlers are plain async functions from the event JSON to the answer JSON
//! ([`Handler`]), given to [`main`] by `main.rs`, so a build (or a test) chooses which exist.

pub mod aggregator;
pub mod provisioner;

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;

/// The result of a handler: the answer, or an error message (reported to Lambda's
/// `/error`, which makes Lambda retry or bisect the batch).
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Value, String>> + Send>>;

/// One handler: the event JSON in, the answer JSON out.
pub type Handler = fn(Value) -> HandlerFuture;

/// The handlers this build has.
#[derive(Clone, Copy)]
pub struct Handlers {
    /// `ZAEL_HANDLER=aggregator`: DynamoDB stream batches.
    pub aggregator: Option<Handler>,
    /// `ZAEL_HANDLER=provisioner`: declarative limits (CLI and CloudFormation custom
    /// resource events).
    pub provisioner: Option<Handler>,
}

/// Whether this process was started by Lambda.
pub fn is_lambda() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some()
        || std::env::args_os()
            .next()
            .map(std::path::PathBuf::from)
            .and_then(|p| p.file_name().map(|n| n == "bootstrap"))
            .unwrap_or(false)
}

/// The handler `ZAEL_HANDLER` names among `handlers`.
pub fn select(handlers: &Handlers) -> Result<Handler, String> {
    let name = std::env::var("ZAEL_HANDLER").unwrap_or_default();
    let h = match name.as_str() {
        "aggregator" => handlers.aggregator,
        "provisioner" => handlers.provisioner,
        "" => return Err("ZAEL_HANDLER is not set (aggregator | provisioner)".into()),
        other => {
            return Err(format!(
                "ZAEL_HANDLER={other:?} is not a handler (aggregator | provisioner)"
            ))
        }
    };
    h.ok_or_else(|| format!("the {name} handler is not part of this build"))
}

/// Serve invocations until Lambda stops the process. With an unusable `ZAEL_HANDLER` every
/// invocation fails with the message (posted to the Runtime API's `/error`, so it shows in
/// the function's result and logs).
pub async fn main(handlers: Handlers) -> Result<(), String> {
    let handler = select(&handlers);
    let service = lambda_runtime::service_fn(move |event: lambda_runtime::LambdaEvent<Value>| {
        let handler = handler.clone();
        async move {
            let h = handler.map_err(lambda_runtime::Error::from)?;
            h(event.payload).await.map_err(lambda_runtime::Error::from)
        }
    });
    lambda_runtime::run(service)
        .await
        .map_err(|e| format!("lambda runtime: {e}"))
}
