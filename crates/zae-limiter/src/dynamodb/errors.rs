//! Which DynamoDB failures mean "unavailable" (the `on_unavailable` policy may admit), which
//! mean "contended" (retry, never admit), and which are errors to report as they are.

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use crate::error::StoreError;

/// How a failure is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Transport failure, timeout, throttling after the SDK's retries, 5xx.
    Unavailable,
    /// Concurrent writers on the same items: retry with backoff.
    Contended,
    /// Anything else (validation, access, missing table, malformed data): never admitted.
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
            | "ThroughputExceeded"
            | "InternalServerError"
            | "InternalFailure"
            | "ServiceUnavailable",
        ) => Kind::Unavailable,
        _ if status.is_some_and(|s| s >= 500) => Kind::Unavailable,
        _ => Kind::Other,
    }
}

/// A service error as a store error, with a hint where the cause is obvious.
pub(crate) fn service_error(
    code: Option<&str>,
    message: Option<&str>,
    status: Option<u16>,
) -> StoreError {
    let mut text = format!("{}: {}", code.unwrap_or("error"), message.unwrap_or(""));
    match code {
        Some("ResourceNotFoundException") => text.push_str(
            " (the table does not exist: create it with `zae-limiter table create` for \
             DynamoDB Local / development, or deploy the stack)",
        ),
        Some("AccessDeniedException" | "UnrecognizedClientException") => {
            text.push_str(" (check the credentials and the IAM policy)")
        }
        _ => {}
    }
    match kind(code, status) {
        Kind::Unavailable => StoreError::Unavailable(text),
        Kind::Contended => StoreError::Contended(text),
        Kind::Other => StoreError::Other(text),
    }
}

/// Map an SDK failure to a store error: transport failures and timeouts are `Unavailable`;
/// service errors by [`kind`]; a request the SDK could not even build is a bug, `Other`.
pub(crate) fn sdk_err<E: ProvideErrorMetadata + std::error::Error + 'static>(
    e: SdkError<E, HttpResponse>,
) -> StoreError {
    match &e {
        SdkError::ServiceError(se) => service_error(
            se.err().code(),
            se.err().message(),
            Some(se.raw().status().as_u16()),
        ),
        SdkError::ConstructionFailure(_) => {
            StoreError::Other(aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string())
        }
        _ => StoreError::Unavailable(aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_real_outages_are_unavailable() {
        assert_eq!(
            kind(Some("ThrottlingException"), Some(400)),
            Kind::Unavailable
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
        for code in [
            "ValidationException",
            "ResourceNotFoundException",
            "AccessDeniedException",
            "ConditionalCheckFailedException",
        ] {
            assert_eq!(kind(Some(code), Some(400)), Kind::Other, "{code}");
        }
        let e = service_error(
            Some("ResourceNotFoundException"),
            Some("no table"),
            Some(400),
        );
        assert!(matches!(e, StoreError::Other(m) if m.contains("table create")));
    }
}
