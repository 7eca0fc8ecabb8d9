//! The work itself, behind one seam: replace [`SampleWork`] with your own [`Work`] and the
//! plumbing (queue, states, results, retries) stays as it is.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::message::{rfc3339, REQUEST_GUID, REQUEST_STATUS_URL, REQUEST_SUBMITTED_AT};
use super::operation::OperationId;

/// What the work gets.
#[derive(Debug, Clone)]
pub struct WorkInput {
    pub operation_id: OperationId,
    /// The submitted record (validated: `id` and `customername` are non-empty strings).
    pub record: Map<String, Value>,
    pub submitted_at: OffsetDateTime,
    pub status_url: String,
    /// When processing started.
    pub now: OffsetDateTime,
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
    async fn perform(&self, input: WorkInput) -> Result<WorkOutput, WorkError>;
}

/// The field a record may carry to make the sample's work fail on purpose, so failure and
/// retries can be shown with curl: `"permanent"` fails at once, `"transient"` fails every attempt.
pub const SIMULATE_FAILURE_FIELD: &str = "simulateFailure";

/// The original sample's work: the result is the submitted record, stamped with the request's
/// fields and `ProcessedAt`, after an optional delay that makes the asynchrony visible.
#[derive(Debug, Clone, Default)]
pub struct SampleWork {
    pub delay: Duration,
}

#[async_trait]
impl Work for SampleWork {
    async fn perform(&self, input: WorkInput) -> Result<WorkOutput, WorkError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        match input
            .record
            .get(SIMULATE_FAILURE_FIELD)
            .and_then(Value::as_str)
        {
            Some("permanent") => {
                return Err(WorkError::Permanent(
                    "simulated permanent failure (the record asked for it)".into(),
                ))
            }
            Some("transient") => {
                return Err(WorkError::Transient(
                    "simulated transient failure (the record asked for it)".into(),
                ))
            }
            _ => {}
        }
        let mut result = input.record;
        result.insert(REQUEST_GUID.into(), input.operation_id.to_string().into());
        result.insert(
            REQUEST_SUBMITTED_AT.into(),
            rfc3339(input.submitted_at).into(),
        );
        result.insert(REQUEST_STATUS_URL.into(), input.status_url.into());
        result.insert("ProcessedAt".into(), rfc3339(input.now).into());
        let body = serde_json::to_vec(&Value::Object(result))
            .map_err(|e| WorkError::Permanent(format!("cannot serialize the result: {e}")))?;
        Ok(WorkOutput {
            body: Bytes::from(body),
            content_type: "application/json".into(),
        })
    }
}
