//! The crate's error type.
//!
//! Every failure of the store keeps its cause: [`std::error::Error::source`] returns the
//! underlying error (for DynamoDB, the SDK's error, boxed so that no AWS SDK type is part of
//! this crate's API). The kinds callers act on differently are distinct variants: an outage
//! ([`Error::Unavailable`]), throttling ([`Error::Throttled`]), contention
//! ([`Error::Contended`]), missing permissions ([`Error::AccessDenied`]), a missing table
//! ([`Error::TableNotFound`]), a request the store rejected as invalid
//! ([`Error::InvalidRequest`]) and stored data the limiter cannot read ([`Error::Malformed`]).

use crate::exceeded::RateLimitExceeded;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The underlying cause of a store failure (for DynamoDB, the SDK's error).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong when talking to the limiter.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// At least one limit would be exceeded. Carries the status of every limit checked.
    #[error("{0}")]
    RateLimited(Box<RateLimitExceeded>),

    /// Input rejected before anything was written.
    #[error("invalid {field}: {reason}")]
    Validation {
        /// Which argument was wrong (`entity_id`, `limit name`, `consume`, ...).
        field: &'static str,
        /// Why it was rejected, including the offending value where helpful.
        reason: String,
    },

    /// The backing store could not be reached (transport failure, timeout, 5xx) and the
    /// `on_unavailable` policy is `Block`.
    #[error("rate limiter unavailable: {message}")]
    Unavailable {
        /// What failed.
        message: String,
        /// The underlying error, when there is one (none for the limiter's own timeout).
        #[source]
        source: Option<BoxError>,
    },

    /// The store throttled the requests (DynamoDB `ProvisionedThroughputExceededException`,
    /// `ThrottlingException`, ... after the SDK's retries) and the `on_unavailable` policy is
    /// `Block`. Like [`Error::Unavailable`], the policy `Allow` admits instead.
    #[error("rate limiter throttled by the store: {message}")]
    Throttled {
        /// What the store said.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },

    /// The store stayed contended (concurrent writers on the same bucket) until the
    /// operation's deadline. Never subject to `on_unavailable`: the store is up, and
    /// admitting would over-admit exactly where demand is highest. Retry later.
    #[error("rate limiter contended: {message}")]
    Contended {
        /// What kept conflicting.
        message: String,
        /// The last underlying error, when there is one.
        #[source]
        source: Option<BoxError>,
    },

    /// The store refused the credentials or the operation (DynamoDB
    /// `AccessDeniedException`, `UnrecognizedClientException`): check the IAM policy.
    #[error("access denied by the store: {message}")]
    AccessDenied {
        /// What the store said, with a hint.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },

    /// The table does not exist (DynamoDB `ResourceNotFoundException`).
    #[error("table not found: {message}")]
    TableNotFound {
        /// What the store said, with a hint.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },

    /// The store rejected the request as invalid (DynamoDB `ValidationException`); the
    /// limiter's own checks of the same rules are [`Error::Validation`].
    #[error("store rejected the request: {message}")]
    InvalidRequest {
        /// What the store said.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },

    /// The store holds data the limiter cannot interpret (a malformed item, a table with a
    /// different layout, ...).
    #[error("malformed stored data: {message}")]
    Malformed {
        /// Which item and attribute, and what is wrong with it.
        message: String,
    },

    /// The entity does not exist.
    #[error("entity '{0}' not found")]
    EntityNotFound(String),

    /// An entity with that id already exists.
    #[error("entity '{0}' already exists")]
    EntityExists(String),

    /// The namespace is not registered (or not active).
    #[error("namespace '{0}' not found: register it first or check for typos")]
    NamespaceNotFound(String),

    /// The operation does not fit the current state (e.g. recovering an active namespace).
    #[error("{0}")]
    Conflict(String),

    /// The lease was already committed or rolled back.
    #[error("lease is no longer active (already committed or rolled back)")]
    LeaseInactive,

    /// Any other failure of the store or of the limiter's runtime, with its cause.
    #[error("store error: {message}")]
    Other {
        /// What failed.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
}

impl Error {
    /// Shorthand for a validation error.
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::Validation {
            field,
            reason: reason.into(),
        }
    }

    /// The rate-limit details, if this is [`Error::RateLimited`].
    pub fn as_rate_limited(&self) -> Option<&RateLimitExceeded> {
        match self {
            Error::RateLimited(e) => Some(e),
            _ => None,
        }
    }

    /// True for the failures the `on_unavailable` policy applies to: the store is out
    /// ([`Error::Unavailable`]) or throttling ([`Error::Throttled`]). Retrying later may work.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable { .. } | Error::Throttled { .. })
    }

    /// A short, stable name of the kind of error (`"rate_limited"`, `"unavailable"`,
    /// `"throttled"`, `"contended"`, `"access_denied"`, `"table_not_found"`, ...), for logs
    /// and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::RateLimited(_) => "rate_limited",
            Error::Validation { .. } => "validation",
            Error::Unavailable { .. } => "unavailable",
            Error::Throttled { .. } => "throttled",
            Error::Contended { .. } => "contended",
            Error::AccessDenied { .. } => "access_denied",
            Error::TableNotFound { .. } => "table_not_found",
            Error::InvalidRequest { .. } => "invalid_request",
            Error::Malformed { .. } => "malformed",
            Error::EntityNotFound(_) => "entity_not_found",
            Error::EntityExists(_) => "entity_exists",
            Error::NamespaceNotFound(_) => "namespace_not_found",
            Error::Conflict(_) => "conflict",
            Error::LeaseInactive => "lease_inactive",
            Error::Other { .. } => "other",
        }
    }
}

/// Failure reported by a [`Store`](crate::store::Store) implementation. The variants that
/// come from the backend keep its error as their `source`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Transport failure, timeout, 5xx: the store is not usable right now.
    #[error("{message}")]
    Unavailable {
        /// What failed.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// The store throttled the request (after the client's own retries).
    #[error("{message}")]
    Throttled {
        /// What the store said.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// Concurrent writers kept conflicting (transaction conflicts, retries exhausted).
    #[error("{message}")]
    Contended {
        /// What kept conflicting.
        message: String,
        /// The last underlying error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// The credentials or the IAM policy do not allow the operation.
    #[error("{message}")]
    AccessDenied {
        /// What the store said.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// The table does not exist.
    #[error("{message}")]
    TableNotFound {
        /// What the store said.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// The store rejected the request as invalid (DynamoDB `ValidationException`).
    #[error("{message}")]
    InvalidRequest {
        /// What the store said.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// The request is refused as DynamoDB refuses it (too many limits, an empty change, an
    /// item over 400 KB), by the limiter's own checks before anything is sent.
    #[error("{0}")]
    Refused(String),
    /// The entity already exists (create).
    #[error("entity '{0}' already exists")]
    EntityExists(String),
    /// The namespace is not registered or not active.
    #[error("namespace '{0}' not found")]
    NamespaceNotFound(String),
    /// The operation does not fit the current state.
    #[error("{0}")]
    Conflict(String),
    /// The store returned data the client cannot interpret.
    #[error("{0}")]
    Malformed(String),
    /// Another unexpected failure, with its cause.
    #[error("{message}")]
    Other {
        /// What failed.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
}

impl StoreError {
    /// [`StoreError::Unavailable`] without an underlying error.
    pub fn unavailable(message: impl Into<String>) -> Self {
        StoreError::Unavailable {
            message: message.into(),
            source: None,
        }
    }

    /// [`StoreError::Contended`] without an underlying error.
    pub fn contended(message: impl Into<String>) -> Self {
        StoreError::Contended {
            message: message.into(),
            source: None,
        }
    }

    /// [`StoreError::Other`] with `source` as its cause.
    pub fn other(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        StoreError::Other {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// True for the failures the `on_unavailable` policy applies to (an outage, throttling).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable { .. } | StoreError::Throttled { .. }
        )
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable { message, source } => Error::Unavailable { message, source },
            StoreError::Throttled { message, source } => Error::Throttled { message, source },
            StoreError::Contended { message, source } => Error::Contended { message, source },
            StoreError::AccessDenied { message, source } => Error::AccessDenied { message, source },
            StoreError::TableNotFound { message, source } => {
                Error::TableNotFound { message, source }
            }
            StoreError::InvalidRequest { message, source } => {
                Error::InvalidRequest { message, source }
            }
            StoreError::Refused(m) => Error::invalid("request", m),
            StoreError::EntityExists(id) => Error::EntityExists(id),
            StoreError::NamespaceNotFound(n) => Error::NamespaceNotFound(n),
            StoreError::Conflict(m) => Error::Conflict(m),
            StoreError::Malformed(m) => Error::Malformed { message: m },
            StoreError::Other { message, source } => Error::Other { message, source },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn the_cause_is_kept_through_the_conversion() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e: Error = StoreError::Unavailable {
            message: "dispatch failure".into(),
            source: Some(Box::new(io)),
        }
        .into();
        assert!(e.is_unavailable());
        assert_eq!(e.kind(), "unavailable");
        assert_eq!(e.to_string(), "rate limiter unavailable: dispatch failure");
        let cause = e.source().expect("a source");
        assert_eq!(cause.to_string(), "refused");
        assert!(cause.downcast_ref::<std::io::Error>().is_some());
        let e: Error = StoreError::Malformed("bad item".into()).into();
        assert!(matches!(&e, Error::Malformed { message } if message == "bad item"));
        assert!(e.source().is_none());
        assert!(!e.is_unavailable());
    }
}
