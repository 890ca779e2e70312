//! The schema version: the layout of the items this client reads and writes. `deploy` (and
//! table creation) records it in the table; a client older than the recorded schema must not
//! write.

/// The schema version of this client.
pub const SCHEMA_VERSION: &str = "1.0.0";
