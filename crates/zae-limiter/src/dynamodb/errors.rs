//! Which DynamoDB failures mean "unavailable" or "throttled" (the `on_unavailable` policy may
//! admit), which mean "contended" (retry, never admit), and which are errors to report as
//! they are (access denied, missing table, validation, ...). The SDK's error is kept as the
//! `source` of the store error, boxed (no SDK type in the crate's API).

use std::time::Duration;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::error::TransactionCanceledException;
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
            // a transaction's cancellation reason codes
            | "ProvisionedThroughputExceeded"
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

/// Why a transaction was cancelled, from its cancellation reasons (one per item, in order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cancelled {
    /// A condition failed: the definite answer (the caller's conflict, exists, not found).
    Condition,
    /// No condition failed and an item's partition was throttled (nothing was written):
    /// `Throttled`, worth a retry with backoff.
    Throttled,
    /// Concurrent transactions on the items, and nothing worse.
    Contended,
    /// Anything else (validation, size, unknown codes, no reason at all).
    Other,
}

/// Classify a cancellation from the reasons' codes (`None` / `"None"`: that item was fine).
/// A failed condition wins (it is the answer); then a reason a retry cannot cure; then
/// throttling, then contention.
pub(crate) fn cancelled<'a>(codes: impl IntoIterator<Item = Option<&'a str>>) -> Cancelled {
    let (mut condition, mut other, mut throttled, mut contended) = (false, false, false, false);
    for code in codes {
        match code {
            None | Some("None") => {}
            Some("ConditionalCheckFailed") => condition = true,
            Some(c) => match kind(Some(c), None) {
                Kind::Throttled => throttled = true,
                Kind::Contended => contended = true,
                _ => other = true,
            },
        }
    }
    match (condition, other, throttled, contended) {
        (true, ..) => Cancelled::Condition,
        (_, true, ..) => Cancelled::Other,
        (_, _, true, _) => Cancelled::Throttled,
        (_, _, _, true) => Cancelled::Contended,
        _ => Cancelled::Other,
    }
}

/// The classification of a `TransactionCanceledException`.
pub(crate) fn cancelled_by(tc: &TransactionCanceledException) -> Cancelled {
    cancelled(tc.cancellation_reasons().iter().map(|r| r.code()))
}

/// The classification of a failed `TransactWriteItems` when it is a cancellation.
pub(crate) fn cancellation(
    e: &SdkError<TransactWriteItemsError, HttpResponse>,
) -> Option<Cancelled> {
    match e {
        SdkError::ServiceError(se) => match se.err() {
            TransactWriteItemsError::TransactionCanceledException(tc) => Some(cancelled_by(tc)),
            _ => None,
        },
        _ => None,
    }
}

/// A transaction cancelled by throttling as a store error (`Throttled`), naming the reasons;
/// `source` is the SDK's error.
pub(crate) fn throttled_cancellation(
    tc: &TransactionCanceledException,
    source: Option<BoxError>,
) -> StoreError {
    let reasons: Vec<&str> = tc
        .cancellation_reasons()
        .iter()
        .map(|r| r.code().unwrap_or("None"))
        .collect();
    let detail = tc
        .cancellation_reasons()
        .iter()
        .find_map(|r| r.message().filter(|_| r.code() == Some("ThrottlingError")))
        .unwrap_or("");
    StoreError::Throttled {
        message: format!(
            "ThrottlingError: transaction cancelled [{}] {detail}",
            reasons.join(", ")
        ),
        source,
    }
}

/// A failed `TransactWriteItems` as a store error: a cancellation by throttling is
/// `Throttled` (the code `TransactionCanceledException` alone would say `Other`), the rest
/// as [`sdk_err`]. Conditions are the caller's to interpret before this.
pub(crate) fn tx_err(e: SdkError<TransactWriteItemsError, HttpResponse>) -> StoreError {
    if let SdkError::ServiceError(se) = &e {
        if let TransactWriteItemsError::TransactionCanceledException(tc) = se.err() {
            if cancelled_by(tc) == Cancelled::Throttled {
                let tc = tc.clone();
                return throttled_cancellation(&tc, Some(Box::new(e)));
            }
        }
    }
    sdk_err(e)
}

/// The pause before another attempt of a transaction cancelled by throttling, after
/// `attempts` (1-based) of at most `max_attempts`, or `None` to give up: full jitter (`unit`
/// in [0, 1)) on the SDK's own base for throttled single-item writes (25 ms doubling, capped
/// at 400 ms), so every write gets the same treatment. Also `None` when less than twice the
/// pause is `remaining` before the operation's deadline (the caller must still hear back).
pub(crate) fn throttle_pause(
    attempts: u32,
    max_attempts: u32,
    unit: f64,
    remaining: Option<Duration>,
) -> Option<Duration> {
    if attempts >= max_attempts {
        return None;
    }
    let cap_ms = (25u64 << attempts.saturating_sub(1).min(4)).min(400);
    let pause = Duration::from_millis(1 + (cap_ms as f64 * unit.clamp(0.0, 1.0)) as u64);
    match remaining {
        Some(r) if pause * 2 >= r => None,
        _ => Some(pause),
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

    #[test]
    fn cancellations_are_classified_by_their_reasons() {
        use Cancelled::*;
        let c = |codes: &[Option<&str>]| cancelled(codes.iter().copied());
        // the emulated hot partition (and DynamoDB's own answer)
        assert_eq!(c(&[Some("ThrottlingError"), Some("None")]), Throttled);
        assert_eq!(c(&[Some("None"), Some("ThrottlingError")]), Throttled);
        assert_eq!(c(&[None, Some("ProvisionedThroughputExceeded")]), Throttled);
        assert_eq!(
            c(&[Some("ProvisionedThroughputExceededException"), None]),
            Throttled
        );
        // a failed condition is the answer, whatever else happened
        assert_eq!(
            c(&[Some("ConditionalCheckFailed"), Some("None")]),
            Condition
        );
        assert_eq!(
            c(&[Some("ThrottlingError"), Some("ConditionalCheckFailed")]),
            Condition
        );
        assert_eq!(c(&[Some("TransactionConflict"), Some("None")]), Contended);
        assert_eq!(
            c(&[Some("TransactionConflict"), Some("ThrottlingError")]),
            Throttled
        );
        // a reason no retry cures wins over a retryable one
        assert_eq!(
            c(&[Some("ValidationError"), Some("ThrottlingError")]),
            Other
        );
        assert_eq!(c(&[Some("ItemCollectionSizeLimitExceeded")]), Other);
        assert_eq!(c(&[None, Some("None")]), Other);
        assert_eq!(c(&[]), Other);
    }

    #[test]
    fn a_throttled_cancellation_is_throttled() {
        use aws_sdk_dynamodb::types::CancellationReason;
        let tc = TransactionCanceledException::builder()
            .message("Transaction cancelled")
            .cancellation_reasons(
                CancellationReason::builder()
                    .code("ThrottlingError")
                    .message("Throughput exceeds the current capacity")
                    .build(),
            )
            .cancellation_reasons(CancellationReason::builder().code("None").build())
            .build();
        assert_eq!(cancelled_by(&tc), Cancelled::Throttled);
        let e = throttled_cancellation(&tc, None);
        assert!(
            matches!(&e, StoreError::Throttled { message, .. }
                if message.contains("ThrottlingError, None") && message.contains("capacity")),
            "{e:?}"
        );
        assert!(e.is_unavailable());
    }

    #[test]
    fn throttled_transactions_back_off_like_the_sdk() {
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis());
        // bounded by the attempts: one attempt means no retry
        assert_eq!(throttle_pause(1, 1, 0.5, None), None);
        assert_eq!(throttle_pause(3, 3, 0.5, None), None);
        // full jitter on 25 ms doubling, capped at 400 ms; never zero
        assert_eq!(ms(throttle_pause(1, 3, 0.0, None)), Some(1));
        assert_eq!(ms(throttle_pause(1, 3, 0.999, None)), Some(25));
        assert_eq!(ms(throttle_pause(2, 3, 0.999, None)), Some(50));
        assert_eq!(ms(throttle_pause(5, 10, 0.999, None)), Some(400));
        assert_eq!(ms(throttle_pause(9, 10, 0.999, None)), Some(400));
        assert_eq!(ms(throttle_pause(40, 99, 1.5, None)), Some(401));
        // bounded by the deadline: the answer must still arrive in time
        assert_eq!(
            ms(throttle_pause(
                1,
                3,
                0.999,
                Some(Duration::from_millis(100))
            )),
            Some(25)
        );
        assert_eq!(
            throttle_pause(1, 3, 0.999, Some(Duration::from_millis(50))),
            None
        );
        assert_eq!(throttle_pause(1, 3, 0.0, Some(Duration::ZERO)), None);
    }
}
