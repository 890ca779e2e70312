//! What the proxy does to a request, and to which ones.

use std::time::Duration;

/// What the proxy does to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Forward it (the default).
    Pass,
    /// Wait this long, then forward it.
    Latency(Duration),
    /// Read it and never answer; the connection stays open until the fault changes (then it
    /// is closed, still unanswered) or the client closes it.
    BlackHole,
    /// Close the connection with a TCP reset (`SO_LINGER` 0), without answering.
    Reset,
    /// Answer with this HTTP status and a DynamoDB-style JSON error, without forwarding
    /// (503 → `ServiceUnavailable`, anything else → `InternalServerError`).
    Status(u16),
    /// Answer with this HTTP status and DynamoDB error type (e.g. 400
    /// `TransactionConflictException`, `ThrottlingException`, `ValidationException`), without
    /// forwarding.
    Error {
        /// HTTP status.
        status: u16,
        /// The `__type` suffix DynamoDB would send.
        kind: &'static str,
    },
    /// Forward the request and read DynamoDB's answer, but hold it until the fault changes,
    /// then close without sending it: every attempt lands, the client hears nothing.
    HoldResponse,
    /// Forward the next `count` requests, read DynamoDB's full answer, then close the client
    /// connection without sending it: the write landed, the client never hears. After
    /// `count` such requests the proxy passes again.
    DropResponse {
        /// How many responses to swallow.
        count: usize,
    },
}

#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) fault: Fault,
    /// Only requests of this operation (`X-Amz-Target` suffix); `None` = every request.
    pub(crate) only: Option<String>,
}

impl Rule {
    /// What to do with a request of `op` now; a [`Fault::DropResponse`] counts it down
    /// (and passes again once it is spent).
    pub(crate) fn take(&mut self, op: &str) -> Fault {
        if self.only.as_deref().is_some_and(|o| o != op) {
            return Fault::Pass;
        }
        match &mut self.fault {
            Fault::DropResponse { count: 0 } => Fault::Pass,
            Fault::DropResponse { count } => {
                *count -= 1;
                if *count == 0 {
                    self.fault = Fault::Pass;
                    self.only = None;
                }
                Fault::DropResponse { count: 1 }
            }
            f => f.clone(),
        }
    }
}
