//! [`StoreConfig`]: where and how a [`DynamoStore`](super::DynamoStore) connects, and the
//! SDK client settings derived from it.

use std::time::Duration;

use crate::error::Result;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub(super) table_name: String,
    pub(super) region: Option<String>,
    pub(super) endpoint_url: Option<String>,
    pub(super) namespace: String,
    pub(super) namespace_id: Option<String>,
    pub(super) static_credentials: Option<(String, String)>,
    pub(super) state_cache_size: usize,
    pub(super) track_capacity: bool,
    pub(super) sts_endpoint_url: Option<String>,
    pub(super) attempt_timeout: Duration,
    pub(super) max_attempts: u32,
    pub(super) sdk_config: Option<aws_config::SdkConfig>,
    pub(super) local_refusals: bool,
}

impl StoreConfig {
    /// Use table `table_name`; region and credentials come from the standard AWS chain.
    pub fn new(table_name: impl Into<String>) -> Self {
        StoreConfig {
            table_name: table_name.into(),
            region: None,
            endpoint_url: None,
            namespace: crate::namespace::DEFAULT_NAMESPACE.to_string(),
            namespace_id: None,
            static_credentials: None,
            state_cache_size: 10_000,
            track_capacity: false,
            sts_endpoint_url: None,
            attempt_timeout: Duration::from_millis(1_000),
            max_attempts: 3,
            sdk_config: None,
            local_refusals: true,
        }
    }
    /// AWS region (otherwise from the environment / profile).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }
    /// Talk to another endpoint, e.g. DynamoDB Local at `http://127.0.0.1:8000`.
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }
    /// Use fixed credentials instead of the chain (DynamoDB Local accepts any).
    pub fn static_credentials(mut self, key: impl Into<String>, secret: impl Into<String>) -> Self {
        self.static_credentials = Some((key.into(), secret.into()));
        self
    }
    /// Work in the namespace of this name (default `default`, registered on first use; any
    /// other must be registered). Its id is looked up on the first call that needs it.
    pub fn namespace(mut self, name: impl Into<String>) -> Self {
        self.namespace = name.into();
        self
    }
    /// Use a known namespace id directly, skipping the registry lookup (e.g. a tenant whose
    /// IAM policy only reaches its own `{id}/*` keys).
    pub fn namespace_id(mut self, id: impl Into<String>) -> Self {
        self.namespace_id = Some(id.into());
        self
    }
    /// How many buckets' last-seen states the client remembers to guess the write form.
    pub fn state_cache_size(mut self, n: usize) -> Self {
        self.state_cache_size = n;
        self
    }
    /// Ask DynamoDB for the capacity each call consumed (`ReturnConsumedCapacity=TOTAL`) and
    /// add it up; read it with [`DynamoStore::consumed_capacity`]. Off by default.
    pub fn track_consumed_capacity(mut self, on: bool) -> Self {
        self.track_capacity = on;
        self
    }
    /// Ask this STS endpoint for the caller identity (the audit principal when none is
    /// given); by default the standard one, or `endpoint_url` when that is set.
    pub fn sts_endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.sts_endpoint_url = Some(url.into());
        self
    }
    /// Upper bound on one attempt of one DynamoDB call, connection included (default 1 s):
    /// a stalled attempt is abandoned and retried while the operation's deadline (the
    /// limiter's `timeout`) allows.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }
    /// Attempts per DynamoDB call for transient failures (throttling, 5xx, transport),
    /// with jittered backoff from 25 ms (default 3). Retries of a write never apply it twice.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }
    /// Refuse without a write what the last state seen for a bucket proves refused (on by
    /// default). A refused conditional write still costs a write unit; a client hammering
    /// an exhausted key is refused from the state its previous refusal returned, with the
    /// same statuses and retry-after, until refill alone would let the request pass. It
    /// never admits without a write. The cost: tokens given back by another client (a
    /// rollback, a negative adjustment) in the meantime are noticed only at that time.
    pub fn local_refusals(mut self, on: bool) -> Self {
        self.local_refusals = on;
        self
    }
    /// Build the clients from this AWS configuration instead of loading the standard chain
    /// (your own credentials provider, HTTP client, region, ...). [`region`](Self::region),
    /// [`endpoint_url`](Self::endpoint_url), [`static_credentials`](Self::static_credentials)
    /// and [`sts_endpoint_url`](Self::sts_endpoint_url) still apply on top of it, and so do
    /// [`attempt_timeout`](Self::attempt_timeout) and [`max_attempts`](Self::max_attempts)
    /// (they replace the config's timeout and retry settings for DynamoDB). Call counting
    /// ([`DynamoStore::call_counts`]) works as usual.
    ///
    /// ```no_run
    /// # async fn f() -> zae_limiter::Result<()> {
    /// use zae_limiter::{DynamoStore, StoreConfig};
    ///
    /// let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
    ///     .profile_name("rate-limits")
    ///     .load()
    ///     .await;
    /// let store = DynamoStore::connect(StoreConfig::new("limits").sdk_config(sdk)).await?;
    /// # Ok(()) }
    /// ```
    pub fn sdk_config(mut self, sdk: aws_config::SdkConfig) -> Self {
        self.sdk_config = Some(sdk);
        self
    }
    /// The table name.
    pub fn table_name(&self) -> &str {
        &self.table_name
    }

    pub(super) fn validate(&self) -> Result<()> {
        crate::namespace::validate_namespace_name(&self.namespace)?;
        if let Some(id) = &self.namespace_id {
            crate::namespace::validate_namespace_id(id)?;
        }
        Ok(())
    }

    pub(super) fn credentials(&self) -> Option<aws_sdk_dynamodb::config::Credentials> {
        self.static_credentials.as_ref().map(|(k, s)| {
            aws_sdk_dynamodb::config::Credentials::new(k, s, None, None, "zae-limiter-static")
        })
    }

    /// The region to set on a service config whose base has `base` (`None`: keep it).
    pub(super) fn region_over(
        &self,
        base: Option<&aws_config::Region>,
    ) -> Option<aws_config::Region> {
        match (&self.region, base) {
            (Some(r), _) => Some(aws_config::Region::new(r.clone())),
            // DynamoDB Local and friends need some region
            (None, None) if self.endpoint_url.is_some() => {
                Some(aws_config::Region::new("us-east-1"))
            }
            _ => None,
        }
    }

    /// Region, endpoint and credential overrides on a DynamoDB service config.
    pub(super) fn dynamodb_overrides(
        &self,
        mut b: aws_sdk_dynamodb::config::Builder,
        base_region: Option<&aws_config::Region>,
    ) -> aws_sdk_dynamodb::config::Builder {
        if let Some(r) = self.region_over(base_region) {
            b = b.region(r);
        }
        if let Some(url) = &self.endpoint_url {
            b = b.endpoint_url(url);
        }
        if let Some(c) = self.credentials() {
            b = b.credentials_provider(c);
        }
        b
    }

    /// The STS client asking for the caller identity: best effort, one attempt.
    pub(super) fn sts_client(&self, sdk: &aws_config::SdkConfig) -> aws_sdk_sts::Client {
        let mut b = aws_sdk_sts::config::Builder::from(sdk)
            .retry_config(aws_sdk_sts::config::retry::RetryConfig::standard().with_max_attempts(1));
        if let Some(r) = self.region_over(sdk.region()) {
            b = b.region(r);
        }
        if let Some(url) = self
            .sts_endpoint_url
            .as_ref()
            .or(self.endpoint_url.as_ref())
        {
            b = b.endpoint_url(url);
        }
        if let Some(c) = self.credentials() {
            b = b.credentials_provider(c);
        }
        aws_sdk_sts::Client::from_conf(b.build())
    }
}
