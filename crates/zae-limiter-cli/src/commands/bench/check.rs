//! Post-checks: after a scenario the buckets are read back and their consumed counters
//! compared with what the operations took.

use zae_limiter::store::{BucketKey, BucketState};
use zae_limiter::Store;

use super::ops::RESOURCE;

/// Result of a post-check: `Ok` or what differed.
pub(super) type Check = Result<(), String>;

/// One bucket as stored (`None` if it does not exist).
pub(super) async fn read_bucket(
    store: &dyn Store,
    entity: &str,
) -> Result<Option<BucketState>, String> {
    store
        .get_bucket(&BucketKey::new(entity, RESOURCE))
        .await
        .map_err(|e| format!("reading the bucket of {entity}: {e}"))
}

/// Compare a bucket's consumed counters with `expected` (millitokens per limit).
pub(super) async fn check_bucket(
    store: &dyn Store,
    entity: &str,
    expected: &[(&str, i128)],
) -> Check {
    let state = read_bucket(store, entity).await?.unwrap_or_default();
    for (name, want) in expected {
        let got = state.limits.get(*name).map_or(0, |s| s.consumed);
        if got != *want {
            return Err(format!(
                "{entity} {name}: consumed {got} millitokens, expected {want}"
            ));
        }
    }
    Ok(())
}

/// Counters after `n` operations of `per_op` each.
pub(super) fn times(per_op: Vec<(&'static str, i128)>, n: u64) -> Vec<(&'static str, i128)> {
    per_op
        .into_iter()
        .map(|(k, v)| (k, v * n as i128))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_counters_scale_with_the_operations() {
        assert_eq!(
            times(vec![("rpm", 1000), ("tpm", 500_000)], 3),
            [("rpm", 3000), ("tpm", 1_500_000)]
        );
        assert_eq!(times(vec![("rpm", 1000)], 0), [("rpm", 0)]);
        assert!(times(vec![], 7).is_empty());
    }

    #[tokio::test]
    async fn check_bucket_compares_consumed_counters() {
        use zae_limiter::{Limit, MemoryStore, RateLimiter};
        let store = std::sync::Arc::new(MemoryStore::new());
        let limiter = RateLimiter::builder_shared(store.clone()).build();
        limiter
            .acquire("e", RESOURCE)
            .limits([Limit::per_minute("rpm", 100)])
            .consume([("rpm", 2)])
            .await
            .unwrap()
            .commit()
            .await
            .unwrap();
        assert_eq!(check_bucket(&*store, "e", &[("rpm", 2000)]).await, Ok(()));
        let e = check_bucket(&*store, "e", &[("rpm", 1000)])
            .await
            .unwrap_err();
        assert_eq!(e, "e rpm: consumed 2000 millitokens, expected 1000");
        // a missing bucket has consumed nothing
        assert_eq!(check_bucket(&*store, "nobody", &[("rpm", 0)]).await, Ok(()));
        assert!(read_bucket(&*store, "nobody").await.unwrap().is_none());
    }
}
