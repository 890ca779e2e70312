//! The open leases of the sidecar: leases handed to clients by id, rolled back by
//! themselves when not committed before their expiry, and all rolled back at shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use zae_limiter::{Error, Lease};

use super::metrics;

struct Open {
    lease: Arc<Lease>,
    expires: Instant,
}

/// Leases by id.
#[derive(Default)]
pub struct Leases {
    open: Mutex<HashMap<String, Open>>,
}

/// How often the expiry task looks for expired leases.
pub const EXPIRY_TICK: Duration = Duration::from_millis(50);

impl Leases {
    /// Keep `lease` open for `ttl`; its id and expiry (ms since the epoch).
    pub fn insert(&self, lease: Lease, ttl: Duration) -> (String, i64) {
        let id = format!("{:032x}", rand::random::<u128>());
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let expires_at_ms = now_ms.saturating_add(ttl.as_millis() as i64);
        let open = Open {
            lease: Arc::new(lease),
            expires: Instant::now() + ttl,
        };
        let n = {
            let mut map = self.open.lock();
            map.insert(id.clone(), open);
            map.len()
        };
        metrics::open_leases(n);
        (id, expires_at_ms)
    }

    /// The open lease `id` (it stays open).
    pub fn get(&self, id: &str) -> Option<Arc<Lease>> {
        self.open.lock().get(id).map(|o| o.lease.clone())
    }

    /// Remove lease `id` from the table (to commit or roll it back).
    pub fn take(&self, id: &str) -> Option<Arc<Lease>> {
        let (lease, n) = {
            let mut map = self.open.lock();
            (map.remove(id).map(|o| o.lease), map.len())
        };
        metrics::open_leases(n);
        lease
    }

    fn take_where(&self, expired: impl Fn(&Open) -> bool) -> Vec<Arc<Lease>> {
        let (out, n) = {
            let mut map = self.open.lock();
            let ids: Vec<String> = map
                .iter()
                .filter(|(_, o)| expired(o))
                .map(|(id, _)| id.clone())
                .collect();
            let out: Vec<Arc<Lease>> = ids
                .iter()
                .filter_map(|id| map.remove(id).map(|o| o.lease))
                .collect();
            (out, map.len())
        };
        metrics::open_leases(n);
        out
    }

    /// Roll back every lease past its expiry; how many.
    pub async fn expire(&self) -> usize {
        let now = Instant::now();
        let expired = self.take_where(|o| o.expires <= now);
        let n = expired.len();
        for lease in expired {
            rollback(&lease).await;
            metrics::expired_lease();
        }
        n
    }

    /// Roll back every open lease (at shutdown); how many.
    pub async fn rollback_all(&self) -> usize {
        let all = self.take_where(|_| true);
        let n = all.len();
        for lease in all {
            rollback(&lease).await;
        }
        n
    }

    /// The expiry task: every [`EXPIRY_TICK`] until the process ends.
    pub async fn expiry_task(self: Arc<Self>) {
        let mut tick = tokio::time::interval(EXPIRY_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.expire().await;
        }
    }
}

async fn rollback(lease: &Lease) {
    match lease.rollback().await {
        Ok(()) | Err(Error::LeaseInactive) => {}
        Err(e) => {
            metrics::store_error(&e);
            eprintln!("serve: rolling back an open lease failed: {e}");
        }
    }
}
