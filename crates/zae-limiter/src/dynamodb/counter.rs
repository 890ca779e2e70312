//! Counts the DynamoDB API calls a store makes, by operation name (an SDK interceptor).

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use parking_lot::Mutex;

/// Shared call counts: operation name -> calls.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallCounter(Arc<Mutex<BTreeMap<String, u64>>>);

impl CallCounter {
    pub(crate) fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().clone()
    }
    pub(crate) fn reset(&self) {
        self.0.lock().clear();
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "zae-limiter-call-counter"
    }

    // once per operation (SDK-level retries are not counted), after the operation's
    // configuration (which names it) is in place
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let name = cfg
            .load::<Metadata>()
            .map_or("unknown", |m| m.name())
            .to_string();
        *self.0.lock().entry(name).or_default() += 1;
        Ok(())
    }
}
