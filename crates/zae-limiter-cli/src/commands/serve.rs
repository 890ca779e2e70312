//! `zae-limiter serve`: the HTTP/JSON sidecar (see `crate::serve`). The store is chosen like
//! the other commands: DynamoDB through --endpoint-url / the AWS environment, or
//! `--store memory` for the embedded one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use zae_limiter::{MemoryStore, RateLimiter, Store};

use super::store::connect;
use super::Cli;
use crate::output::CliError;
use crate::serve::rls::RlsMapping;

/// Options of `serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address of the HTTP API (port 0 picks a free port; the address is printed on stderr).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Where the buckets live: DynamoDB (needs --endpoint-url or an AWS environment; the
    /// table must exist) or the embedded in-process store.
    #[arg(long, value_enum, default_value_t = StoreKind::Dynamodb)]
    store: StoreKind,
    /// Seconds a lease stays open when the acquire names no `ttl_ms`; one not committed by
    /// then is rolled back.
    #[arg(long, default_value_t = 30.0)]
    lease_ttl: f64,
    /// The longest lease expiry a request may ask for, in seconds.
    #[arg(long, default_value_t = 3600.0)]
    max_lease_ttl: f64,
    /// Also serve Envoy's Rate Limit Service v3 (gRPC ShouldRateLimit) on this address.
    #[arg(long, value_name = "ADDR")]
    grpc_listen: Option<SocketAddr>,
    /// YAML mapping of RLS descriptors to acquires: entity_key (default `entity`),
    /// resource_key (default `resource`, else the domain), limit (default `rpm`, what
    /// hits_addend counts against), limits (fallback specs, e.g. ["rpm:100/min"]).
    #[arg(long, value_name = "FILE", requires = "grpc_listen")]
    rls_config: Option<std::path::PathBuf>,
}

/// The store `serve` runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StoreKind {
    /// DynamoDB (or DynamoDB Local through --endpoint-url).
    Dynamodb,
    /// The embedded in-process store (state lives and dies with the process).
    Memory,
}

fn seconds(name: &str, s: f64) -> Result<Duration, CliError> {
    if !(s > 0.0 && s <= 86_400.0) {
        return Err(CliError::usage(format!(
            "--{name} must be in (0, 86400] seconds, got {s}"
        )));
    }
    Ok(Duration::from_secs_f64(s))
}

pub async fn run(cli: &Cli, args: &Args) -> Result<(), CliError> {
    let lease_ttl = seconds("lease-ttl", args.lease_ttl)?;
    let max_lease_ttl = seconds("max-lease-ttl", args.max_lease_ttl)?;
    let store: Arc<dyn Store> = match args.store {
        StoreKind::Memory => Arc::new(MemoryStore::new()),
        StoreKind::Dynamodb => {
            let store = connect(cli, false).await?;
            // fail at start, with the store's own hint (e.g. `table create`), rather than
            // answering every request with an error
            store
                .get_bucket(&zae_limiter::store::BucketKey::new(
                    "zae-limiter-serve",
                    "probe",
                ))
                .await
                .map_err(zae_limiter::Error::from)?;
            Arc::new(store)
        }
    };
    let mut builder = RateLimiter::builder_shared(store);
    if let Some(p) = &cli.principal {
        builder = builder.principal(p.clone());
    }
    let rls = match &args.rls_config {
        Some(path) => RlsMapping::load(path).map_err(CliError::usage)?,
        None => (RlsMapping::default(), Vec::new()),
    };
    let options = crate::serve::Options {
        listen: args.listen,
        lease_ttl,
        max_lease_ttl: max_lease_ttl.max(lease_ttl),
        grpc_listen: args.grpc_listen,
        rls,
    };
    crate::serve::run(builder.build(), options)
        .await
        .map_err(CliError::from)
}
