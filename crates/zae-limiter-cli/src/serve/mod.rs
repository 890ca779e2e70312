//! `zae-limiter serve`: the rate limiter as a sidecar for services not written in Rust —
//! an HTTP/JSON API ([`http`]) over one [`RateLimiter`], open leases by id with expiry
//! ([`leases`]), Prometheus metrics ([`metrics`]), graceful shutdown that rolls back the
//! open leases.

pub mod http;
pub mod leases;
pub mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use zae_limiter::RateLimiter;

/// How to serve.
#[derive(Debug, Clone)]
pub struct Options {
    /// Address of the HTTP API.
    pub listen: SocketAddr,
    /// Lease expiry when a request names none.
    pub lease_ttl: Duration,
    /// The longest expiry a request may ask for.
    pub max_lease_ttl: Duration,
}

/// Serve until SIGINT or SIGTERM, then stop taking requests, let the ones in flight finish,
/// roll back every open lease and wait for the limiter's background writes.
pub async fn run(limiter: RateLimiter, options: Options) -> Result<(), String> {
    metrics::install()?;
    let leases = Arc::new(Leases::default());
    let app = Arc::new(http::App {
        limiter: limiter.clone(),
        leases: leases.clone(),
        lease_ttl: options.lease_ttl,
        max_lease_ttl: options.max_lease_ttl,
    });
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", options.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    eprintln!("serve: HTTP API on http://{addr}");
    let expiry = tokio::spawn(leases.clone().expiry_task());
    let served = axum::serve(listener, http::router(app))
        .with_graceful_shutdown(shutdown_signal())
        .await;
    expiry.abort();
    let n = leases.rollback_all().await;
    limiter.flush().await;
    eprintln!("serve: stopped; rolled back {n} open lease(s)");
    served.map_err(|e| format!("HTTP server: {e}"))
}

use leases::Leases;

/// SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    eprintln!("serve: shutting down");
}
