//! Creating the table directly through the API (DynamoDB Local, tests, `--endpoint-url`).
//! Production deployments get the same table from the CloudFormation template.

use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType, TableStatus,
    TimeToLiveSpecification,
};

use super::{sdk_err, DynamoStore};
use crate::error::{Result, StoreError};

/// The global secondary indexes: name, hash key, range key. All KEYS_ONLY so hot-path bucket
/// writes never write an index replica.
pub const INDEXES: [(&str, &str, &str); 4] = [
    ("GSI1", "GSI1PK", "GSI1SK"), // parent -> children
    ("GSI2", "GSI2PK", "GSI2SK"), // resource -> buckets
    ("GSI3", "GSI3PK", "GSI3SK"), // resource -> entities with custom limits
    ("GSI4", "GSI4PK", "GSI4SK"), // namespace -> every item (purge)
];

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement, StoreError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .map_err(super::errors::build_err)
}

impl DynamoStore {
    /// Create the table (key schema, GSIs, stream NEW_AND_OLD_IMAGES, TTL on `ttl`) if it does
    /// not exist, and wait until it is active.
    pub async fn create_table(&self) -> Result<()> {
        let b = super::errors::build_err;
        let mut attrs = vec!["PK", "SK"];
        let mut req = self
            .client
            .create_table()
            .table_name(&*self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key("PK", KeyType::Hash)?)
            .key_schema(key("SK", KeyType::Range)?)
            .stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::NewAndOldImages)
                    .build()
                    .map_err(b)?,
            );
        for (name, hash, range) in INDEXES {
            attrs.extend([hash, range]);
            req = req.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(name)
                    .key_schema(key(hash, KeyType::Hash)?)
                    .key_schema(key(range, KeyType::Range)?)
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::KeysOnly)
                            .build(),
                    )
                    .build()
                    .map_err(b)?,
            );
        }
        for a in attrs {
            req = req.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(a)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(b)?,
            );
        }
        match req.send().await {
            Ok(_) => {}
            Err(SdkError::ServiceError(se)) if se.err().is_resource_in_use_exception() => {
                return Ok(());
            }
            Err(e) => return Err(sdk_err(e).into()),
        }
        self.wait_active().await?;
        self.client
            .update_time_to_live()
            .table_name(&*self.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name("ttl")
                    .build()
                    .map_err(b)?,
            )
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }

    async fn wait_active(&self) -> Result<()> {
        for _ in 0..600 {
            let out = self
                .client
                .describe_table()
                .table_name(&*self.table)
                .send()
                .await
                .map_err(sdk_err)?;
            if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(StoreError::unavailable(format!("table {} did not become active", self.table)).into())
    }

    /// Delete the table and everything in it.
    pub async fn delete_table(&self) -> Result<()> {
        self.client
            .delete_table()
            .table_name(&*self.table)
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }
}
