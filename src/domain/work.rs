//! The work itself, behind one seam: a type implementing [`Work`] checks what may be submitted
//! and does the work; pass yours to `app::start` and the plumbing (queue, states, results,
//! retries, the poison queue) stays as it is. [`crate::domain::sample::SampleWork`] is the
//! original sample's.

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::operation::OperationId;
use super::progress::Progress;
use super::submission::InvalidSubmission;

/// What the work knows of the operation it is doing, and where it reports progress. More may
/// be added, so it cannot be built outside this crate, and the trait need not change.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkContext {
    pub operation_id: OperationId,
    pub submitted_at: OffsetDateTime,
    /// When this attempt started.
    pub started_at: OffsetDateTime,
    /// The status URL handed to the client.
    pub status_url: String,
    /// This attempt's number (1 on the first delivery).
    pub dequeue_count: u32,
    /// Where to report how far the work has got (`percentComplete`, `customStatus`).
    pub progress: Progress,
}

/// What the work produces: the result stored at `data/{id}.blobdata`.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkOutput {
    pub body: Bytes,
    pub content_type: String,
}

/// How the work failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkError {
    /// Will never succeed: the operation fails at once.
    #[error("{0}")]
    Permanent(String),
    /// May succeed later: the message is retried until the last allowed attempt.
    #[error("{0}")]
    Transient(String),
}

/// The work done for each operation.
#[async_trait]
pub trait Work: Send + Sync + 'static {
    /// Whether a submitted record (already a JSON object) can be worked on: called before it
    /// is accepted (a refusal is a `400` naming `field`), and again when its message is
    /// processed (a refusal then fails the operation). Accepts anything by default.
    fn validate(&self, record: &Map<String, Value>) -> Result<(), InvalidSubmission> {
        let _ = record;
        Ok(())
    }

    /// Does the work for one operation. It may run more than once for the same operation
    /// (delivery is at least once), and only the first result is kept.
    async fn perform(
        &self,
        context: &WorkContext,
        record: Map<String, Value>,
    ) -> Result<WorkOutput, WorkError>;
}
