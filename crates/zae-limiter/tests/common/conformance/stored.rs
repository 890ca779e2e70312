//! Stored limits at the four levels, their validation, and the config cache.

use std::sync::Arc;
use std::time::Duration;

use zae_limiter::{Error, Limit, ManualClock, RateLimiter, Store};

#[allow(unused_imports)]
use super::{avail, limiter, map, rate_limited, rpm_tpm, T0};

#[allow(unused_imports)]
use super::buckets::family;

pub(super) fn stored(limits: &[Limit]) -> zae_limiter::StoredConfig {
    zae_limiter::StoredConfig::limits(limits.iter().cloned())
}

pub(super) fn scopes(entity: &str, resource: &str) -> [zae_limiter::ConfigScope; 4] {
    zae_limiter::ConfigScope::chain(entity, resource)
}

pub(super) async fn resolved_capacity(l: &RateLimiter, entity: &str) -> zae_limiter::Result<i64> {
    Ok(l.available(entity, "gpt-4", &[]).await?["rpm"])
}

pub async fn each_config_level_wins_in_turn(store: Arc<dyn Store>) {
    let (l, _) = limiter(store);
    let [entity, entity_default, resource, system] = scopes("key-1", "gpt-4");
    // nothing stored, nothing passed: a clear error naming entity and resource
    let e = resolved_capacity(&l, "key-1")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("'key-1'") && e.contains("'gpt-4'"), "{e}");
    let e = l
        .acquire("key-1", "gpt-4")
        .consume([("rpm", 1)])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no limits given or stored"), "{e}");
    // limits in code are the fallback when nothing is stored
    assert_eq!(
        l.available("key-1", "gpt-4", &[Limit::per_minute("rpm", 5)])
            .await
            .unwrap()["rpm"],
        5
    );
    // each more specific level wins over the ones below it
    for (scope, cap) in [
        (&system, 10),
        (&resource, 20),
        (&entity_default, 30),
        (&entity, 40),
    ] {
        l.set_config(scope, stored(&[Limit::per_minute("rpm", cap)]))
            .await
            .unwrap();
        assert_eq!(
            resolved_capacity(&l, "key-1").await.unwrap(),
            cap as i64,
            "{scope:?}"
        );
        // stored limits win over limits passed in code
        assert_eq!(
            l.available("key-1", "gpt-4", &[Limit::per_minute("rpm", 5)])
                .await
                .unwrap()["rpm"],
            cap as i64
        );
    }
    // another entity only sees the resource and system levels
    assert_eq!(resolved_capacity(&l, "key-2").await.unwrap(), 20);
    // deleting falls back level by level
    for (scope, cap) in [(&entity, 30), (&entity_default, 20), (&resource, 10)] {
        assert!(l.delete_config(scope).await.unwrap());
        assert_eq!(resolved_capacity(&l, "key-1").await.unwrap(), cap);
    }
    assert!(!l.delete_config(&entity).await.unwrap(), "already gone");
    // an acquire without limits uses the resolved ones
    let lease = l
        .acquire("key-1", "gpt-4")
        .consume([("rpm", 4)])
        .await
        .unwrap();
    lease.commit().await.unwrap();
    assert_eq!(resolved_capacity(&l, "key-1").await.unwrap(), 6);
    let e = l
        .acquire("key-1", "gpt-4")
        .consume([("tpm", 1)])
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("'tpm' is not one of the limits [rpm]"),
        "{e}"
    );
    assert_eq!(
        l.get_config(&system).await.unwrap().map(|c| c.limits),
        Some(stored(&[Limit::per_minute("rpm", 10)]).limits)
    );
    assert_eq!(l.get_config(&resource).await.unwrap(), None);
}

pub async fn stored_config_validation_and_policy(store: Arc<dyn Store>) {
    use zae_limiter::{ConfigScope, OnUnavailable, StoredConfig};
    let (l, _) = limiter(store);
    let policy_only = StoredConfig {
        limits: vec![],
        on_unavailable: Some(OnUnavailable::Allow),
        ..Default::default()
    };
    l.set_config(&ConfigScope::System, policy_only.clone())
        .await
        .unwrap();
    let got = l.get_config(&ConfigScope::System).await.unwrap().unwrap();
    assert_eq!(
        (got.limits, got.on_unavailable),
        (policy_only.limits.clone(), policy_only.on_unavailable)
    );
    // every change at a scope gets a strictly larger version, whatever the clock says
    l.set_config(&ConfigScope::System, policy_only.clone())
        .await
        .unwrap();
    let again = l.get_config(&ConfigScope::System).await.unwrap().unwrap();
    assert_eq!(again.version, got.version + 1);
    let bad = [
        (
            ConfigScope::Resource {
                resource: "gpt-4".into(),
            },
            policy_only.clone(),
            "on_unavailable",
        ),
        (
            ConfigScope::Resource {
                resource: "gpt-4".into(),
            },
            StoredConfig::default(),
            "nothing to store",
        ),
        (
            ConfigScope::Resource {
                resource: "bad resource".into(),
            },
            stored(&[Limit::per_minute("rpm", 1)]),
            "resource",
        ),
        (
            ConfigScope::EntityDefault {
                entity_id: "a#b".into(),
            },
            stored(&[Limit::per_minute("rpm", 1)]),
            "entity_id",
        ),
        (
            ConfigScope::System,
            stored(&[Limit::per_minute("rpm", 0)]),
            "capacity",
        ),
    ];
    for (scope, config, want) in bad {
        let e = l.set_config(&scope, config).await.unwrap_err();
        assert!(
            matches!(e, Error::Validation { .. }) && e.to_string().contains(want),
            "{e}"
        );
    }
    // a system policy without limits does not count as a level holding limits
    let e = l
        .acquire("k", "gpt-4")
        .consume([("rpm", 1)])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no limits"), "{e}");
}

pub async fn cascade_uses_the_parents_stored_limits(store: Arc<dyn Store>) {
    use zae_limiter::ConfigScope;
    let (l, _) = limiter(store);
    family(&l).await;
    l.set_config(
        &ConfigScope::EntityDefault {
            entity_id: "proj".into(),
        },
        stored(&[Limit::per_hour("rph", 3)]),
    )
    .await
    .unwrap();
    let own = [Limit::per_hour("rph", 100)];
    for _ in 0..3 {
        crate::common::take(&l, "key-a", "gpt-4", &own, &[("rph", 1)]).await;
    }
    let e = rate_limited(
        l.acquire("key-b", "gpt-4")
            .limits(own.clone())
            .consume([("rph", 1)])
            .await,
    );
    let v = e.primary_violation().unwrap();
    assert_eq!((v.entity_id.as_str(), v.limit.capacity()), ("proj", 3));
    // the child's own bucket has 97, but `available` counts the parent, as acquire does
    assert_eq!(avail(&l, "key-a", &own).await["rph"], 0);
}

pub async fn config_cache_hits_misses_ttl_and_invalidation(store: Arc<dyn Store>) {
    use zae_limiter::ConfigScope;
    let clock = ManualClock::new(T0);
    let reader = RateLimiter::builder_shared(store.clone())
        .clock(clock.clone())
        .config_cache_ttl(Duration::from_secs(60))
        .build();
    let writer = RateLimiter::builder_shared(store.clone())
        .clock(clock.clone())
        .build();
    let sys = ConfigScope::System;
    writer
        .set_config(&sys, stored(&[Limit::per_minute("rpm", 10)]))
        .await
        .unwrap();
    assert_eq!(resolved_capacity(&reader, "k").await.unwrap(), 10);
    assert_eq!(resolved_capacity(&reader, "k").await.unwrap(), 10);
    let s = reader.cache_stats();
    assert_eq!(
        (s.hits, s.misses, s.size, s.ttl),
        (1, 1, 1, Duration::from_secs(60))
    );
    // another client changes the config: this one keeps its cached copy until the TTL ends
    writer
        .set_config(&sys, stored(&[Limit::per_minute("rpm", 20)]))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(59));
    assert_eq!(resolved_capacity(&reader, "k").await.unwrap(), 10);
    clock.advance(Duration::from_secs(1));
    assert_eq!(resolved_capacity(&reader, "k").await.unwrap(), 20);
    // explicit invalidation
    writer
        .set_config(&sys, stored(&[Limit::per_minute("rpm", 30)]))
        .await
        .unwrap();
    assert_eq!(resolved_capacity(&reader, "k").await.unwrap(), 20);
    reader.invalidate_config_cache();
    assert_eq!(reader.cache_stats().size, 0);
    assert_eq!(resolved_capacity(&reader, "k").await.unwrap(), 30);
    // "nothing stored" is cached too
    writer.delete_config(&sys).await.unwrap();
    reader.invalidate_config_cache();
    assert!(resolved_capacity(&reader, "k").await.is_err());
    writer
        .set_config(&sys, stored(&[Limit::per_minute("rpm", 40)]))
        .await
        .unwrap();
    assert!(
        resolved_capacity(&reader, "k").await.is_err(),
        "negative result cached"
    );
    let s = reader.cache_stats();
    assert_eq!((s.hits, s.misses), (4, 4));
    // TTL zero disables caching
    let uncached = RateLimiter::builder_shared(store)
        .clock(clock)
        .config_cache_ttl(Duration::ZERO)
        .build();
    assert_eq!(resolved_capacity(&uncached, "k").await.unwrap(), 40);
    assert_eq!(resolved_capacity(&uncached, "k").await.unwrap(), 40);
    let s = uncached.cache_stats();
    assert_eq!((s.hits, s.misses, s.size), (0, 2, 0));
}
