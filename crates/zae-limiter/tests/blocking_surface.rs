//! The blocking API keeps up with the async one: every public method of
//! `zae_limiter::RateLimiter` and `zae_limiter::Lease` has a `pub fn` twin of the same name
//! in `zae_limiter::blocking` (the scan reads the sources, so a new async method without a
//! twin fails here), and a few twins work end to end on the memory store.

use std::collections::BTreeSet;

use zae_limiter::{blocking, ConfigScope, Error, Limit, MemoryStore, NewEntity, StoredConfig};

/// Sources holding `impl RateLimiter` / `impl Lease` blocks of the async API.
const ASYNC_SOURCES: &[(&str, &str)] = &[
    ("limiter.rs", include_str!("../src/limiter.rs")),
    ("limiter/read.rs", include_str!("../src/limiter/read.rs")),
    (
        "limiter/shards.rs",
        include_str!("../src/limiter/shards.rs"),
    ),
    ("admin.rs", include_str!("../src/admin.rs")),
    ("entities.rs", include_str!("../src/entities.rs")),
    ("namespace.rs", include_str!("../src/namespace.rs")),
    ("acquire/mod.rs", include_str!("../src/acquire/mod.rs")),
    (
        "acquire/request.rs",
        include_str!("../src/acquire/request.rs"),
    ),
    (
        "acquire/decide.rs",
        include_str!("../src/acquire/decide.rs"),
    ),
    ("lease.rs", include_str!("../src/lease.rs")),
    ("entity.rs", include_str!("../src/entity.rs")),
    ("cache.rs", include_str!("../src/cache.rs")),
];
const BLOCKING: &str = include_str!("../src/blocking.rs");

/// Async methods with no blocking twin on purpose: constructors of the async limiter
/// (`blocking::RateLimiter::new` wraps a built one).
const NO_TWIN: &[&str] = &["builder", "builder_shared"];

/// Names of the `pub fn` / `pub async fn` methods directly inside top-level
/// `impl {ty} {` blocks of `src`.
fn methods(src: &str, ty: &str) -> BTreeSet<String> {
    let open = format!("impl {ty} {{");
    let mut out = BTreeSet::new();
    let mut inside = false;
    for line in src.lines() {
        if !inside {
            inside = line == open;
            continue;
        }
        if line == "}" {
            inside = false;
            continue;
        }
        let rest = line
            .strip_prefix("    pub async fn ")
            .or_else(|| line.strip_prefix("    pub fn "));
        if let Some(rest) = rest {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.insert(name);
        }
    }
    out
}

fn async_methods(ty: &str) -> BTreeSet<String> {
    ASYNC_SOURCES
        .iter()
        .flat_map(|(_, src)| methods(src, ty))
        .collect()
}

#[test]
fn the_scan_finds_the_api() {
    let limiter = async_methods("RateLimiter");
    for m in [
        "acquire",
        "available",
        "update_entity",
        "set_config",
        "audit_events",
        "namespace",
        "purge_namespace",
        "flush",
        "cache_stats",
    ] {
        assert!(limiter.contains(m), "{m} not found in {limiter:?}");
    }
    // `impl NamespaceStatus` methods are not the limiter's
    assert!(!limiter.contains("as_str"), "{limiter:?}");
    let lease = async_methods("Lease");
    for m in ["commit", "rollback", "consume", "adjust", "statuses"] {
        assert!(lease.contains(m), "{m} not found in {lease:?}");
    }
}

#[test]
fn every_async_method_has_a_blocking_twin() {
    for ty in ["RateLimiter", "Lease"] {
        let twins = methods(BLOCKING, ty);
        let missing: Vec<String> = async_methods(ty)
            .into_iter()
            .filter(|m| !NO_TWIN.contains(&m.as_str()) && !twins.contains(m))
            .collect();
        assert!(
            missing.is_empty(),
            "zae_limiter::{ty} methods without a `pub fn` twin in blocking::{ty}: {missing:?} \
             (add one to src/blocking.rs, or to NO_TWIN with a reason)"
        );
    }
    // the allow-list stays honest: each entry is still an async method without a twin
    let limiter = async_methods("RateLimiter");
    let twins = methods(BLOCKING, "RateLimiter");
    for m in NO_TWIN {
        assert!(limiter.contains(*m) && !twins.contains(*m), "{m}");
    }
}

#[test]
fn blocking_twins_work_on_the_memory_store() {
    let l =
        blocking::RateLimiter::new(zae_limiter::RateLimiter::builder(MemoryStore::new()).build())
            .unwrap();
    let lim = [Limit::per_minute("rpm", 10)];

    // entities
    l.create_entity(NewEntity::new("proj")).unwrap();
    l.create_entity(NewEntity::new("key").parent("proj"))
        .unwrap();
    let key = l
        .update_entity("key", |u| u.name("Web key").metadata("tier", "gold"))
        .unwrap();
    assert_eq!(key.name.as_deref(), Some("Web key"));
    assert_eq!(l.get_entity("key").unwrap().unwrap(), key);
    let kids: Vec<String> = l
        .children("proj")
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(kids, ["key"]);

    // stored limits and listings
    let gpt4 = ConfigScope::Resource {
        resource: "gpt-4".into(),
    };
    l.set_config(&gpt4, StoredConfig::limits(lim.clone()))
        .unwrap();
    assert!(l.get_config(&gpt4).unwrap().is_some());
    assert_eq!(l.resources_with_defaults().unwrap(), ["gpt-4"]);
    let page = l.list_entities(1, None).unwrap();
    assert_eq!(page.entities[0].id, "key");
    assert_eq!(page.next.as_deref(), Some("key"));
    assert!(l
        .entities_with_limits("gpt-4", 10, None)
        .unwrap()
        .ids
        .is_empty());
    let lease = l
        .acquire("solo", "gpt-4")
        .consume([("rpm", 4)])
        .call()
        .unwrap();
    assert_eq!(lease.limits(), &lim[..]);
    lease.commit().unwrap();
    assert_eq!(l.available("solo", "gpt-4", &[]).unwrap()["rpm"], 6);
    let wait = l
        .time_until_available("solo", "gpt-4", &lim, [("rpm", 7)])
        .unwrap();
    assert!(wait > std::time::Duration::ZERO, "{wait:?}");
    assert!(l.delete_config(&gpt4).unwrap());
    assert!(!l.delete_config(&gpt4).unwrap());
    let page = l.audit_events("$RESOURCE:gpt-4", 10, None).unwrap();
    assert_eq!(page.events.len(), 2);

    // cache
    l.invalidate_config_cache();
    let _ = l.cache_stats();
    l.flush();

    // namespaces
    let info = l.register_namespace("tenant-a").unwrap();
    let tenant = l.namespace("tenant-a").unwrap();
    tenant.create_entity(NewEntity::new("key")).unwrap();
    assert_eq!(l.get_namespace("tenant-a").unwrap().unwrap().id, info.id);
    assert!(matches!(
        l.delete_namespace("default"),
        Err(Error::Conflict(_))
    ));
    assert!(l.delete_namespace("tenant-a").unwrap());
    assert_eq!(l.recover_namespace(&info.id).unwrap().id, info.id);
    assert!(l.delete_namespace("tenant-a").unwrap());
    assert!(l.purge_namespace(&info.id, |_| {}).unwrap() >= 1);
    assert!(l.namespaces().unwrap().iter().all(|n| n.id != info.id));
    assert!(l.delete_entity("key").unwrap());
}
