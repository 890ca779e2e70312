//! Which DynamoDB failures mean "unavailable" or "throttled" (the `on_unavailable` policy may
//! admit), which mean "contended" (retry, never admit), and which are errors to report as
//! they are (access denied, missing table, validation, ...). The SDK's error is kept as the
//! `source` of the store error, boxed (no SDK type in the crate's API).

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use crate::error::{BoxError, StoreError};

/// How a failure is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Transport failure, timeout, 5xx.
    Unavailable,
    /// Throttling after the SDK's retries.
    Throttled,
    /// Concurrent writers on the same items: retry with backoff.
    Contended,
    /// The credentials or the policy refuse the operation.
    AccessDenied,
    /// The table does not exist.
    TableNotFound,
    /// The request is invalid for DynamoDB.
    Invalid,
    /// Anything else (conditional checks, malformed data, ...): never admitted.
    Other,
}

/// Classify a service error code (and the HTTP status, when known).
pub(crate) fn kind(code: Option<&str>, status: Option<u16>) -> Kind {
    match code {
        Some(
            "TransactionConflictException"
            | "TransactionConflict"
            | "TransactionInProgressException",
        ) => Kind::Contended,
        Some(
            "ProvisionedThroughputExceededException"
            | "ThrottlingException"
            | "ThrottlingError"
            | "RequestLimitExceeded"
            | "ThroughputExceeded",
        ) => Kind::Throttled,
        Some("InternalServerError" | "InternalFailure" | "ServiceUnavailable") => Kind::Unavailable,
        Some(
            "AccessDeniedException"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "MissingAuthenticationToken"
            | "ExpiredTokenException",
        ) => Kind::AccessDenied,
        Some("ResourceNotFoundException") => Kind::TableNotFound,
        Some("ValidationException" | "SerializationException") => Kind::Invalid,
        _ if status.is_some_and(|s| s >= 500) => Kind::Unavailable,
        _ => Kind::Other,
    }
}

/// A service error as a store error, with a hint where the cause is obvious; `source` is the
/// SDK's error.
pub(crate) fn service_error(
    code: Option<&str>,
    message: Option<&str>,
    status: Option<u16>,
    source: Option<BoxError>,
) -> StoreError {
    let mut message = format!("{}: {}", code.unwrap_or("error"), message.unwrap_or(""));
    let kind = kind(code, status);
    match kind {
        Kind::TableNotFound => message.push_str(
            " (the table does not exist: create it with `zae-limiter table create` for \
             DynamoDB Local / development, or deploy the stack)",
        ),
        Kind::AccessDenied => message.push_str(" (check the credentials and the IAM policy)"),
        _ => {}
    }
    match kind {
        Kind::Unavailable => StoreError::Unavailable { message, source },
        Kind::Throttled => StoreError::Throttled { message, source },
        Kind::Contended => StoreError::Contended { message, source },
        Kind::AccessDenied => StoreError::AccessDenied { message, source },
        Kind::TableNotFound => StoreError::TableNotFound { message, source },
        Kind::Invalid => StoreError::InvalidRequest { message, source },
        Kind::Other => StoreError::Other { message, source },
    }
}

/// A request the SDK could not build (a bug of the limiter): `Other`, with the cause.
pub(crate) fn build_err(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Other {
        message: format!("cannot build the request: {e}"),
        source: Some(Box::new(e)),
    }
}

/// Map an SDK failure to a store error: transport failures and timeouts are `Unavailable`;
/// service errors by [`kind`]; a request the SDK could not even build is a bug, `Other`.
/// The SDK's error is the `source` in every case.
pub(crate) fn sdk_err<E>(e: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &e {
        SdkError::ServiceError(se) => {
            let code = se.err().code().map(str::to_owned);
            let message = se.err().message().map(str::to_owned);
            let status = se.raw().status().as_u16();
            service_error(
                code.as_deref(),
                message.as_deref(),
                Some(status),
                Some(Box::new(e)),
            )
        }
        SdkError::ConstructionFailure(_) => {
            let message = aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string();
            StoreError::Other {
                message,
                source: Some(Box::new(e)),
            }
        }
        _ => {
            let mut message = aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string();
            match &e {
                SdkError::DispatchFailure(d) if d.is_io() => message.push_str(
                    " (the endpoint is unreachable: check --endpoint-url / AWS_ENDPOINT_URL, the \
                     region and the network)",
                ),
                SdkError::TimeoutError(_) => {
                    message.push_str(" (no answer in time: the endpoint may be overloaded)")
                }
                _ => {}
            }
            StoreError::Unavailable {
                message,
                source: Some(Box::new(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_has_its_kind() {
        assert_eq!(
            kind(Some("ThrottlingException"), Some(400)),
            Kind::Throttled
        );
        assert_eq!(
            kind(Some("ProvisionedThroughputExceededException"), Some(400)),
            Kind::Throttled
        );
        assert_eq!(
            kind(Some("InternalServerError"), Some(500)),
            Kind::Unavailable
        );
        assert_eq!(kind(None, Some(503)), Kind::Unavailable);
        assert_eq!(
            kind(Some("TransactionConflictException"), Some(400)),
            Kind::Contended
        );
        assert_eq!(kind(Some("ValidationException"), Some(400)), Kind::Invalid);
        assert_eq!(
            kind(Some("ResourceNotFoundException"), Some(400)),
            Kind::TableNotFound
        );
        assert_eq!(
            kind(Some("AccessDeniedException"), Some(400)),
            Kind::AccessDenied
        );
        assert_eq!(
            kind(Some("ConditionalCheckFailedException"), Some(400)),
            Kind::Other
        );
        let e = service_error(
            Some("ResourceNotFoundException"),
            Some("no table"),
            Some(400),
            None,
        );
        assert!(
            matches!(&e, StoreError::TableNotFound { message, .. } if message.contains("table create")),
            "{e:?}"
        );
        let e = service_error(Some("AccessDeniedException"), Some("no"), Some(400), None);
        assert!(
            matches!(&e, StoreError::AccessDenied { message, .. } if message.contains("IAM policy")),
            "{e:?}"
        );
        // throttling and outages are what the on_unavailable policy applies to; nothing else
        assert!(service_error(Some("ThrottlingException"), None, Some(400), None).is_unavailable());
        assert!(service_error(None, None, Some(503), None).is_unavailable());
        assert!(
            !service_error(Some("ValidationException"), None, Some(400), None).is_unavailable()
        );
    }
}
