//! Work for tests: held until the test says so (`GatedWork`), or counted (`CountedWork`).

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use tokio::sync::Notify;

use async_request_reply::domain::sample::SampleWork;
use async_request_reply::domain::work::{Work, WorkContext, WorkError, WorkOutput};
use serde_json::{Map, Value};

/// Work that signals `started`, then holds until `go` is notified, then does the sample work.
#[derive(Default)]
pub struct GatedWork {
    pub started: Notify,
    pub go: Notify,
}

#[async_trait]
impl Work for GatedWork {
    async fn perform(
        &self,
        context: &WorkContext,
        record: Map<String, Value>,
    ) -> Result<WorkOutput, WorkError> {
        self.started.notify_one();
        self.go.notified().await;
        SampleWork::default().perform(context, record).await
    }
}

/// The sample work, counting how often it was started.
#[derive(Default)]
pub struct CountedWork(pub AtomicUsize);

#[async_trait]
impl Work for CountedWork {
    async fn perform(
        &self,
        context: &WorkContext,
        record: Map<String, Value>,
    ) -> Result<WorkOutput, WorkError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        SampleWork::default().perform(context, record).await
    }
}
