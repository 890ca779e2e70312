//! The conformance suite on the embedded store.
mod common;

conformance_suite!(common::memory_store);
