//! Entity management of [`RateLimiter`]: create and read entities (updates, deletes and
//! listings are in `admin.rs`).

use crate::config::AuditAction;
use crate::entity::{Entity, NewEntity};
use crate::error::{Error, Result};
use crate::limit::validate_entity_id;
use crate::limiter::RateLimiter;

impl RateLimiter {
    /// The entities of this limiter's namespace sorted by id, `limit` per page (1..=1000);
    /// pass the returned [`EntityPage::next`](crate::EntityPage::next) as `after` for the
    /// next page. On DynamoDB a page is one query of the namespace index (more when
    /// non-entity items fill DynamoDB's 1 MB pages) and one `BatchGetItem`.
    pub async fn list_entities(
        &self,
        limit: usize,
        after: Option<&str>,
    ) -> Result<crate::EntityPage> {
        crate::admin::check_page(limit)?;
        if let Some(a) = after {
            validate_entity_id(a)?;
        }
        Ok(self.call(self.store().list_entities(limit, after)).await?)
    }

    /// Create an entity. A child names its parent, which must exist and must not itself have
    /// a parent (two levels).
    pub async fn create_entity(&self, spec: NewEntity) -> Result<Entity> {
        validate_entity_id(&spec.id)?;
        if let Some(p) = &spec.parent_id {
            validate_entity_id(p)?;
            if *p == spec.id {
                return Err(Error::invalid(
                    "parent_id",
                    "an entity cannot be its own parent",
                ));
            }
            match self.call(self.store().get_entity(p)).await? {
                None => return Err(Error::EntityNotFound(p.clone())),
                Some(parent) if parent.parent_id.is_some() => {
                    return Err(Error::invalid(
                        "parent_id",
                        format!("'{p}' is itself a child; the hierarchy has two levels"),
                    ))
                }
                Some(_) => {}
            }
        }
        if spec.cascade && spec.parent_id.is_none() {
            return Err(Error::invalid("cascade", "cascade needs a parent_id"));
        }
        let entity = Entity {
            id: spec.id,
            name: spec.name,
            parent_id: spec.parent_id,
            cascade: spec.cascade,
            metadata: spec.metadata,
            created_at_ms: self.now_ms(),
        };
        // what the store would refuse to read back is refused here
        entity.validate()?;
        let audit = self
            .audit_event(
                AuditAction::EntityCreated,
                entity.id.clone(),
                None,
                serde_json::json!({ "new": &entity }),
            )
            .await;
        self.call(self.store().create_entity(&entity, &audit))
            .await?;
        // cached "no such entity" results for this id are now wrong
        self.forget_entity(&entity.id);
        Ok(entity)
    }

    /// Read an entity (`None` if it does not exist). Always asks the store.
    pub async fn get_entity(&self, entity_id: &str) -> Result<Option<Entity>> {
        validate_entity_id(entity_id)?;
        Ok(self.call(self.store().get_entity(entity_id)).await?)
    }
}
