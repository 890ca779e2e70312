//! `zae-limiter serve`: the rate limiter as a sidecar for services not written in Rust —
//! an HTTP/JSON API ([`http`]) over one [`RateLimiter`], open leases by id with expiry
//! ([`leases`]), Prometheus metrics ([`metrics`]), graceful shutdown that rolls back the
//! open leases; and Envoy's Rate Limit Service over gRPC ([`rls`]) when asked.

pub mod http;
pub mod leases;
pub mod metrics;
pub mod rls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use zae_limiter::{Limit, RateLimiter};

/// How to serve.
#[derive(Debug, Clone)]
pub struct Options {
    /// Address of the HTTP API.
    pub listen: SocketAddr,
    /// Lease expiry when a request names none.
    pub lease_ttl: Duration,
    /// The longest expiry a request may ask for.
    pub max_lease_ttl: Duration,
    /// Address of the Envoy RLS gRPC service, if any.
    pub grpc_listen: Option<SocketAddr>,
    /// How RLS descriptors map to acquires, and the fallback limits.
    pub rls: (rls::RlsMapping, Vec<Limit>),
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
    let (stop_tx, stop_rx) = watch::channel(false);
    let grpc = match options.grpc_listen {
        Some(at) => Some(grpc(limiter.clone(), at, options.rls.clone(), stop_rx.clone()).await?),
        None => None,
    };
    let expiry = tokio::spawn(leases.clone().expiry_task());
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let served = axum::serve(listener, http::router(app))
        .with_graceful_shutdown(stopped(stop_rx))
        .await;
    if let Some(g) = grpc {
        match g.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("serve: gRPC server: {e}"),
            Err(e) => eprintln!("serve: gRPC server task: {e}"),
        }
    }
    expiry.abort();
    let n = leases.rollback_all().await;
    limiter.flush().await;
    eprintln!("serve: stopped; rolled back {n} open lease(s)");
    served.map_err(|e| format!("HTTP server: {e}"))
}

use leases::Leases;

/// Resolves once the stop flag is set.
async fn stopped(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Bind the RLS gRPC service and serve it in a task until the stop flag.
async fn grpc(
    limiter: RateLimiter,
    at: SocketAddr,
    (mapping, limits): (rls::RlsMapping, Vec<Limit>),
    stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<Result<(), String>>, String> {
    let listener = tokio::net::TcpListener::bind(at)
        .await
        .map_err(|e| format!("cannot listen on {at}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    eprintln!("serve: Envoy RLS (gRPC) on {addr}");
    let service = rls::RateLimitServiceServer::new(rls::Rls::new(limiter, mapping, limits));
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    Ok(tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, stopped(stop))
            .await
            .map_err(|e| e.to_string())
    }))
}

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
