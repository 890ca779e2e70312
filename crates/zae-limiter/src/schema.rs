//! The schema version: the layout of the items this client reads and writes. `deploy` (and
//! table creation by `deploy --endpoint-url`) records it in the table, in the item
//! `_/SYSTEM#` / `#SCHEMA` ([`crate::DynamoStore::write_schema_record`]); `check` compares;
//! a client older than the recorded schema must not write ([`Compatibility::can_write`]).

use std::cmp::Ordering;

/// The schema version of this client.
pub const SCHEMA_VERSION: &str = "1.0.0";

/// Partition key of the schema record (the table-level registry partition).
pub const RECORD_PK: &str = "_/SYSTEM#";
/// Sort key of the schema record.
pub const RECORD_SK: &str = "#SCHEMA";

/// The schema record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaRecord {
    /// Schema version of the table.
    pub schema_version: String,
    /// Version of the client that wrote the record.
    pub client_version: String,
    /// When it was written, ms since the epoch.
    pub updated_at_ms: i64,
}

/// How this client relates to a table's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compatibility {
    /// The same schema version.
    Same,
    /// The table has an older schema of the same major version: this client reads and
    /// writes it (it may upgrade the record).
    ClientNewer,
    /// The table's schema is newer than this client: reads may work, writes are refused.
    ClientOlder,
    /// Different major versions (older table): a migration is needed before use.
    MajorMismatch,
}

impl Compatibility {
    /// Whether this client may write to a table of that schema.
    pub fn can_write(self) -> bool {
        matches!(self, Compatibility::Same | Compatibility::ClientNewer)
    }
}

fn parse(v: &str) -> Option<(u64, u64, u64)> {
    let mut it = v.trim().split('.').map(|p| p.parse::<u64>().ok());
    let t = (it.next()??, it.next()??, it.next()??);
    it.next().is_none().then_some(t)
}

/// Compare this client's schema `client` with a table's `stored` one (`x.y.z` versions);
/// `None` when either is not such a version.
pub fn compatibility(client: &str, stored: &str) -> Option<Compatibility> {
    let (c, s) = (parse(client)?, parse(stored)?);
    Some(match c.cmp(&s) {
        Ordering::Equal => Compatibility::Same,
        Ordering::Less => Compatibility::ClientOlder,
        Ordering::Greater if c.0 == s.0 => Compatibility::ClientNewer,
        Ordering::Greater => Compatibility::MajorMismatch,
    })
}

/// The message of a refused write: the table's schema is newer than this client.
pub fn refusal(stored: &str) -> String {
    format!(
        "the table has schema {stored}, newer than this client's {SCHEMA_VERSION}: upgrade \
         zae-limiter before writing (reads may still work)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare() {
        assert_eq!(compatibility("1.0.0", "1.0.0"), Some(Compatibility::Same));
        assert_eq!(
            compatibility("1.2.0", "1.0.3"),
            Some(Compatibility::ClientNewer)
        );
        assert_eq!(
            compatibility("1.0.0", "1.1.0"),
            Some(Compatibility::ClientOlder)
        );
        assert_eq!(
            compatibility("1.9.9", "2.0.0"),
            Some(Compatibility::ClientOlder)
        );
        assert_eq!(
            compatibility("2.0.0", "1.4.0"),
            Some(Compatibility::MajorMismatch)
        );
        assert_eq!(compatibility("1.0", "1.0.0"), None);
        assert_eq!(compatibility("1.0.0", "x"), None);
        assert!(!Compatibility::ClientOlder.can_write());
        assert!(Compatibility::ClientNewer.can_write());
        assert!(refusal("2.0.0").contains("upgrade"));
    }
}
