//! Where `aggregator run` stands in each stream shard, kept in the table itself (table-level
//! records under `_/SYSTEM#`, sort key `#AGGREGATOR#{stream label}#{shard id}`), so a
//! restarted reader resumes after the last batch it finished. A checkpoint only moves
//! forward (conditioned on the stored sequence number).

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;
use zae_limiter::usage::SeqNo;

/// Partition of the checkpoints.
pub const PK: &str = "_/SYSTEM#";
/// Sort key prefix of the checkpoints.
pub const SK_PREFIX: &str = "#AGGREGATOR#";

/// One shard's checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// Last sequence number processed (as given), if any.
    pub seq: Option<String>,
    /// The shard is closed and was read to its end.
    pub done: bool,
}

/// The checkpoints of one stream.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    client: aws_sdk_dynamodb::Client,
    table: String,
    label: String,
}

fn err<E: std::error::Error>(what: &str, e: E) -> String {
    format!(
        "{what}: {}",
        aws_sdk_dynamodb::error::DisplayErrorContext(&e)
    )
}

impl Checkpoints {
    /// Checkpoints of the stream `stream_arn` in `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: &str, stream_arn: &str) -> Self {
        let label = stream_arn
            .rsplit('/')
            .next()
            .unwrap_or(stream_arn)
            .to_string();
        Checkpoints {
            client,
            table: table.to_string(),
            label,
        }
    }

    fn sk(&self, shard: &str) -> String {
        format!("{SK_PREFIX}{}#{shard}", self.label)
    }

    /// The checkpoint of `shard` (default: nothing read).
    pub async fn get(&self, shard: &str) -> Result<Checkpoint, String> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("PK", AttributeValue::S(PK.into()))
            .key("SK", AttributeValue::S(self.sk(shard)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| err("GetItem checkpoint", e))?;
        let Some(item) = out.item() else {
            return Ok(Checkpoint::default());
        };
        let seq = match item.get("seq") {
            None => None,
            Some(v) => Some(
                v.as_s()
                    .ok()
                    .filter(|s| SeqNo::parse(s).is_some())
                    .cloned()
                    .ok_or("checkpoint: seq is not a sequence number")?,
            ),
        };
        let done = matches!(item.get("done"), Some(AttributeValue::Bool(true)));
        Ok(Checkpoint { seq, done })
    }

    /// Record that everything of `shard` up to `seq` is processed (`done`: the shard is
    /// closed and read to its end). A checkpoint never moves back.
    pub async fn put(
        &self,
        shard: &str,
        seq: Option<&str>,
        done: bool,
        now_ms: i64,
    ) -> Result<(), String> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("PK", AttributeValue::S(PK.into()))
            .key("SK", AttributeValue::S(self.sk(shard)))
            .expression_attribute_values(":done", AttributeValue::Bool(done))
            .expression_attribute_values(":now", AttributeValue::N(now_ms.to_string()));
        let mut set = "done = :done, updated_ms = :now".to_string();
        if let Some(s) = seq {
            let p = SeqNo::parse(s).ok_or("checkpoint of a bad sequence number")?;
            set.push_str(", seq = :seq, sp = :sp");
            req = req
                .expression_attribute_values(":seq", AttributeValue::S(s.to_string()))
                .expression_attribute_values(":sp", AttributeValue::S(p.padded().to_string()))
                .condition_expression("attribute_not_exists(sp) OR sp <= :sp");
        }
        match req.update_expression(format!("SET {set}")).send().await {
            Ok(_) => Ok(()),
            // another reader is further: keep its checkpoint
            Err(SdkError::ServiceError(se)) if se.err().is_conditional_check_failed_exception() => {
                Ok(())
            }
            Err(e) => Err(err("UpdateItem checkpoint", e)),
        }
    }
}

/// Whether a record's keys are a checkpoint (the reader's own writes: never a reason to
/// checkpoint again, or `--once` would never drain).
pub fn is_checkpoint(pk: Option<&str>, sk: Option<&str>) -> bool {
    pk == Some(PK) && sk.is_some_and(|s| s.starts_with(SK_PREFIX))
}
