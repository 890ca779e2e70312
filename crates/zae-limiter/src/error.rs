//! The crate's error type.

use crate::exceeded::RateLimitExceeded;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

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

    /// The backing store could not be reached (or timed out) and the
    /// `on_unavailable` policy is `Block`.
    #[error("rate limiter unavailable: {message}")]
    Unavailable {
        /// What failed.
        message: String,
    },

    /// The store stayed contended (concurrent writers on the same bucket) until the
    /// operation's deadline. Never subject to `on_unavailable`: the store is up, and
    /// admitting would over-admit exactly where demand is highest. Retry later.
    #[error("rate limiter contended: {message}")]
    Contended {
        /// What kept conflicting.
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

    /// The store answered with something the limiter did not expect
    /// (a malformed item, a table with a different layout, ...).
    #[error("store error: {0}")]
    Store(String),
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
}

/// Failure reported by a [`Store`](crate::store::Store) implementation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Transport failure, timeout, throttling, missing table: the store is not usable right now.
    #[error("{0}")]
    Unavailable(String),
    /// Concurrent writers kept conflicting (transaction conflicts, retries exhausted).
    #[error("{0}")]
    Contended(String),
    /// The request is refused as DynamoDB refuses it (too many limits, an empty change, an
    /// item over 400 KB).
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
    /// The store returned data the client cannot interpret, or another unexpected error.
    #[error("{0}")]
    Other(String),
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => Error::Unavailable { message: m },
            StoreError::Contended(m) => Error::Contended { message: m },
            StoreError::Refused(m) => Error::invalid("request", m),
            StoreError::EntityExists(id) => Error::EntityExists(id),
            StoreError::NamespaceNotFound(n) => Error::NamespaceNotFound(n),
            StoreError::Conflict(m) => Error::Conflict(m),
            StoreError::Other(m) => Error::Store(m),
        }
    }
}
