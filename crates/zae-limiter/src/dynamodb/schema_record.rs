//! Reading and writing the schema record (`_/SYSTEM#` / `#SCHEMA`, see [`crate::schema`]).

use aws_sdk_dynamodb::types::AttributeValue;

use super::{sdk_err, DynamoStore};
use crate::error::{Error, Result, StoreError};
use crate::schema::{compatibility, refusal, SchemaRecord, RECORD_PK, RECORD_SK, SCHEMA_VERSION};

fn key() -> std::collections::HashMap<String, AttributeValue> {
    [
        ("PK".to_string(), AttributeValue::S(RECORD_PK.into())),
        ("SK".to_string(), AttributeValue::S(RECORD_SK.into())),
    ]
    .into()
}

impl DynamoStore {
    /// The table's schema record, `None` when none was written (a table created before
    /// schema records, or by hand).
    pub async fn schema_record(&self) -> Result<Option<SchemaRecord>> {
        Ok(self.read_schema_record().await?)
    }

    async fn read_schema_record(&self) -> std::result::Result<Option<SchemaRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&*self.table)
            .set_key(Some(key()))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_err)?;
        let Some(item) = out.item() else {
            return Ok(None);
        };
        let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
        let schema_version = s("schema_version")
            .ok_or_else(|| StoreError::Malformed("schema record without schema_version".into()))?;
        Ok(Some(SchemaRecord {
            schema_version,
            client_version: s("client_version").unwrap_or_default(),
            updated_at_ms: item
                .get("updated_at_ms")
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
        }))
    }

    /// Record this client's schema version in the table. Refused (nothing written) when the
    /// table already records a newer schema: an older client never downgrades it.
    pub async fn write_schema_record(&self, client_version: &str, now_ms: i64) -> Result<()> {
        self.check_schema_for_write().await?;
        self.client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(key()))
            .item("schema_version", AttributeValue::S(SCHEMA_VERSION.into()))
            .item("client_version", AttributeValue::S(client_version.into()))
            .item("updated_at_ms", AttributeValue::N(now_ms.to_string()))
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }

    /// Fail with a clear message when the table records a schema this client must not
    /// write (newer than its own, or another major version); a table without a record is
    /// accepted.
    pub async fn check_schema_for_write(&self) -> Result<()> {
        match self.schema_record().await?.as_ref().and_then(write_refusal) {
            Some(why) => Err(Error::invalid("schema", why)),
            None => Ok(()),
        }
    }

    /// Every write of this handle goes through here: the first one reads the schema record
    /// (one `GetItem`, remembered for the handle's life); a table whose schema is newer than
    /// this client refuses the write with [`StoreError::Conflict`] saying to upgrade.
    pub(super) async fn writable(&self) -> std::result::Result<(), StoreError> {
        let block = self
            .schema_block
            .get_or_try_init(|| async {
                let rec = self.read_schema_record().await?;
                Ok::<_, StoreError>(rec.as_ref().and_then(write_refusal))
            })
            .await?;
        match block {
            Some(why) => Err(StoreError::Conflict(why.clone())),
            None => Ok(()),
        }
    }
}

/// Why this client must not write to a table with schema record `rec` (`None`: it may).
fn write_refusal(rec: &SchemaRecord) -> Option<String> {
    match compatibility(SCHEMA_VERSION, &rec.schema_version) {
        Some(c) if c.can_write() => None,
        Some(crate::schema::Compatibility::MajorMismatch) => Some(format!(
            "the table has schema {}, another major version than this client's \
             {SCHEMA_VERSION}: migrate the table first",
            rec.schema_version
        )),
        _ => Some(refusal(&rec.schema_version)),
    }
}
