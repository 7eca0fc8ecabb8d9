//! The poison queue's use case: a work message the platform gave up on (every allowed delivery
//! failed, or the instance working on it crashed or timed out on the last one, in which case the
//! host moves it without calling the handler). The operation is ended `Failed`, unless it already
//! ended, and a copy of the message is kept, since consuming the poison queue would otherwise
//! erase the trail operators look for there.

use tracing::{info, info_span, warn, Instrument};

use super::error::DomainError;
use super::message::WorkMessage;
use super::operation::{OperationError, OperationId, Status};
use super::operations::{PoisonCopy, Update};
use super::process::Outcome;
use super::service::Service;

/// The error an operation ends with when its message reached the poison queue unfinished.
const GAVE_UP: &str = "the work message was moved to the poison queue before an outcome was \
                       recorded: every allowed delivery failed, or the instance working on it \
                       stopped or timed out";

impl Service {
    /// Handles one message from the poison queue: fails its operation (a no-op if it ended) and
    /// keeps a copy of the message. Answers `Retry` only when storage could not be reached, so
    /// nothing is lost to an outage; any message, however malformed, is otherwise `Done`.
    pub async fn poisoned(&self, text: &str, message_id: &str) -> Outcome {
        let id = match WorkMessage::decode(text) {
            Ok(m) => Ok(m.id),
            Err(e) => e.id.ok_or(e.reason),
        };
        let span = info_span!(
            "poison",
            operation_id = id.as_ref().ok().map(|i| i.to_string())
        );
        self.poisoned_for(id, text, message_id)
            .instrument(span)
            .await
    }

    async fn poisoned_for(
        &self,
        id: Result<OperationId, String>,
        text: &str,
        message_id: &str,
    ) -> Outcome {
        let (status, last_error) = match &id {
            Ok(id) => match self.fail_unfinished(*id).await {
                Ok(ended) => ended,
                Err(e) => {
                    warn!(error = %e, "could not record the poison message's outcome; it will be retried");
                    return Outcome::Retry;
                }
            },
            Err(reason) => {
                warn!(%reason, "poison message names no operation; keeping a copy");
                (None, OperationError::new("InvalidMessage", reason.clone()))
            }
        };
        let now = self.clock.now();
        let copy = PoisonCopy {
            operation_id: id.ok(),
            message_id: message_id.to_string(),
            text: text.to_string(),
            status,
            last_error,
            received_date_time: now,
            expiration_date_time: now + self.retention(),
        };
        match self.accepted.operations.keep_poison_copy(&copy).await {
            Ok(key) => {
                info!(copy = %key, "kept a copy of the poison message");
                Outcome::Done
            }
            Err(e) => {
                warn!(error = %e, "could not keep a copy of the poison message; it will be retried");
                Outcome::Retry
            }
        }
    }

    /// Fails the operation unless it ended; answers its status and error as they stand after.
    async fn fail_unfinished(
        &self,
        id: OperationId,
    ) -> Result<(Option<Status>, OperationError), DomainError> {
        let gave_up = OperationError::new("RetriesExhausted", GAVE_UP);
        let update = self
            .accepted
            .operations
            .update(id, None, |op, now| {
                op.transition(Status::Failed, Some(gave_up.clone()), now)
            })
            .await;
        match update {
            Ok(Update::Changed(op, _)) => {
                warn!("operation failed: its message reached the poison queue unfinished");
                crate::telemetry::metrics::ended(Status::Failed.as_str());
                Ok((Some(op.status), op.error.unwrap_or(gave_up)))
            }
            Ok(Update::AlreadyEnded(op)) => {
                info!(status = %op.status, "poison message for an operation that had already ended");
                let error = op.error.unwrap_or_else(|| {
                    OperationError::new("None", "the operation had ended without error")
                });
                Ok((Some(op.status), error))
            }
            Err(DomainError::NotFound) => Ok((
                None,
                OperationError::new(
                    "OperationNotFound",
                    "no such operation (expired, or never accepted)",
                ),
            )),
            Err(e) => Err(e),
        }
    }

    /// The copies of poison messages kept so far (operators and tests read them).
    pub async fn poison_copies(&self) -> Result<Vec<PoisonCopy>, DomainError> {
        self.requests.operations.poison_copies().await
    }
}
