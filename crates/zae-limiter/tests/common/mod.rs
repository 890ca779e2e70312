//! Shared test bed: store factories and the conformance suite (one body, every store).
#![allow(dead_code)]

pub mod conformance;
pub mod hardening;

/// The fault-injecting proxy (`crates/zae-limiter-proxy`), where the tests expect it (only
/// tests/faults.rs uses it; every other test target includes this module too).
#[allow(unused_imports)]
pub use zae_limiter_proxy as proxy;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use zae_limiter::{DynamoStore, MemoryStore, Store, StoreConfig};

/// A fresh embedded store.
pub async fn memory_store() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

/// The DynamoDB Local endpoint the test script started (`ZAEL_TEST_DYNAMODB_ENDPOINT`).
pub fn dynamodb_endpoint() -> String {
    std::env::var("ZAEL_TEST_DYNAMODB_ENDPOINT").expect(
        "ZAEL_TEST_DYNAMODB_ENDPOINT is not set: run the suite with scripts/test.sh, \
         which starts DynamoDB Local",
    )
}

/// A DynamoDB store on a new, empty table of DynamoDB Local.
pub async fn dynamo() -> DynamoStore {
    static N: AtomicUsize = AtomicUsize::new(0);
    let table = format!(
        "zael-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let store = DynamoStore::connect(
        StoreConfig::new(table)
            .endpoint_url(dynamodb_endpoint())
            .static_credentials("test", "test")
            // the suite checks exact counts under contention on two loaded cores; stalled
            // attempts and their retries are tests/faults.rs's subject, with its own settings
            .attempt_timeout(std::time::Duration::from_secs(20)),
    )
    .await
    .expect("connect");
    store.create_table().await.expect("create table");
    store
}

/// [`dynamo`] as a trait object, for the conformance suite.
pub async fn dynamo_store() -> Arc<dyn Store> {
    Arc::new(dynamo().await)
}

/// Expand the conformance suite against one store factory.
#[macro_export]
macro_rules! conformance_suite {
    ($factory:path) => {
        $crate::conformance_tests!($factory;
            exact_token_accounting,
            adjust_into_debt_then_recovery,
            cascade_parent_rejects_leaves_child_untouched,
            cascade_consumes_both,
            concurrent_acquires_admit_exactly_capacity,
            new_limit_on_existing_bucket,
            parameter_change_keeps_tokens,
            bad_input_is_rejected_clearly,
            request_above_capacity_never_passes,
            lease_lifecycle_errors,
            run_commits_on_ok_and_rolls_back_on_err,
            dropped_lease_rolls_back,
            entities_and_hierarchy_rules,
            time_until_available_is_exact,
            unconsumed_limit_in_debt_refuses,
            each_config_level_wins_in_turn,
            stored_config_validation_and_policy,
            cascade_uses_the_parents_stored_limits,
            config_cache_hits_misses_ttl_and_invalidation,
            audit_records_every_change_newest_first,
            delete_entity_children_and_listings,
            list_entities_pages_through_the_namespace,
            namespaces_isolate_and_have_a_lifecycle,
            manifest_applies_once_and_then_writes_nothing,
            manifest_updates_deletes_and_reports_drift,
            manifest_takes_over_and_detects_concurrent_changes,
            manifest_registers_its_namespace_and_purge_removes_it,
            sharded_bucket_admits_exactly_its_capacity,
            a_stale_client_adopts_the_split_and_nothing_is_over_admitted,
            leases_on_a_shard_settle_on_that_shard,
            cascade_into_a_sharded_parent_with_other_limit_names,
            concurrent_splits_split_once,
        );
        $crate::conformance_tests!($factory; hardening;
            cascade_with_different_limit_names,
            parent_limits_come_from_the_parent,
            clock_skew_neither_locks_out_nor_over_admits,
            parameter_changes_take_effect_and_never_flip_flop,
            limit_count_is_bounded_everywhere,
            flush_waits_for_background_rollbacks,
            a_deleted_namespace_stops_its_handles,
            available_of_a_child_counts_its_parent,
            a_lease_reports_its_limits_and_statuses,
            the_default_namespace_is_protected,
        );
    };
}

/// Helper of [`conformance_suite`].
#[macro_export]
macro_rules! conformance_tests {
    ($factory:path; $module:ident; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let store = $factory().await;
                common::$module::$name(store).await;
            }
        )*
    };
    ($factory:path; $($name:ident),* $(,)?) => {
        $crate::conformance_tests!($factory; conformance; $($name),*);
    };
}

/// Acquire and commit straight away (for tests where the lease's life does not matter).
pub async fn take(
    l: &zae_limiter::RateLimiter,
    entity: &str,
    resource: &str,
    limits: &[zae_limiter::Limit],
    consume: &[(&str, u64)],
) {
    l.acquire(entity, resource)
        .limits(limits.to_vec())
        .consume(consume.iter().copied())
        .await
        .unwrap()
        .commit()
        .await
        .unwrap();
}
