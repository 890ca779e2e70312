//! Listing every entity of a namespace: the namespace index (GSI4, keys only) holds every
//! item of a namespace under its `PK`; entity items are those under `{ns}/ENTITY#{id}` with
//! sort key `#META` (the entity's configs share that `PK`).

use super::items::{self, s, Item};
use super::keys::{self, ENTITY_SK};
use super::{sdk_err, DynamoStore};
use crate::entity::EntityPage;
use crate::error::StoreError;

impl DynamoStore {
    /// A page of the entities by id, after `after`: query GSI4 from just past `after`'s key
    /// until `limit + 1` entity keys are found (or the namespace ends), then read the page's
    /// entities with one `BatchGetItem` per 100.
    pub(super) async fn list_entity_items(
        &self,
        limit: usize,
        after: Option<&str>,
    ) -> Result<EntityPage, StoreError> {
        let ns = self.ns().await?;
        let ns = &*ns;
        // entity ids are ASCII letters, digits and `_ . - : @`: nothing sorts between a key
        // and the key followed by \u{1}, so this starts strictly after `after`
        let from = match after {
            Some(a) => format!("{}\u{1}", keys::entity_pk(ns, a)),
            None => keys::entity_pk(ns, ""),
        };
        // '$' follows '#': the end of the `{ns}/ENTITY#` range
        let to = format!("{ns}/ENTITY$");
        let mut found: Vec<Item> = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&*self.table)
                .index_name("GSI4")
                .key_condition_expression("GSI4PK = :ns AND GSI4SK BETWEEN :from AND :to")
                .filter_expression("SK = :meta")
                .expression_attribute_values(":ns", s(ns))
                .expression_attribute_values(":from", s(&from))
                .expression_attribute_values(":to", s(&to))
                .expression_attribute_values(":meta", s(ENTITY_SK))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk_err)?;
            found.extend(page.items().iter().map(items::key_of));
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() && found.len() <= limit => start = Some(k.clone()),
                _ => break,
            }
        }
        found.truncate(limit + 1);
        let mut entities = self
            .batch_get(found)
            .await?
            .iter()
            .map(items::parse_entity)
            .collect::<Result<Vec<_>, _>>()?;
        entities.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(EntityPage::from_sorted(entities, limit))
    }
}
