//! The poison queue's use case: a work message the platform gave up on (every allowed delivery
//! failed, or the instance working on it crashed or timed out on the last one, in which case the
//! host moves it without calling the handler). The operation is ended `Failed`, unless it already
//! ended, and a copy of the message is kept, since consuming the poison queue would otherwise
//! erase the trail operators look for there.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tracing::{info, info_span, warn, Instrument};

use super::{from_json, sha256_hex, to_json, Outcome, Service, Update};
use crate::domain::message::WorkMessage;
use crate::domain::operation::{OperationError, OperationId, Status};
use crate::domain::ports::StoreError;
use crate::domain::DomainError;

/// Where the copies live in the record store: `poison/<sha-256 of the message text>`, so a
/// message delivered twice is kept once.
pub(super) const PREFIX: &str = "poison/";

/// The error an operation ends with when its message reached the poison queue unfinished.
const GAVE_UP: &str = "the work message was moved to the poison queue before an outcome was \
                       recorded: every allowed delivery failed, or the instance working on it \
                       stopped or timed out";

/// The copy of a poison message kept in storage (`operations/poison/<hash>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoisonCopy {
    /// The operation the message was for, when it names one.
    pub operation_id: Option<OperationId>,
    /// The poison queue message's id, as the host reported it (for correlation only).
    pub message_id: String,
    /// The message text as it was queued.
    pub text: String,
    /// The operation's status once this function was done with it, when there is one.
    pub status: Option<Status>,
    /// Why the operation failed, or why the message could not be tied to one.
    pub last_error: OperationError,
    #[serde(with = "time::serde::rfc3339")]
    pub received_date_time: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expiration_date_time: OffsetDateTime,
}

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
            Ok(id) => {
                let gave_up = OperationError::new("RetriesExhausted", GAVE_UP);
                let update = self
                    .update(*id, None, |op, now| {
                        op.transition(Status::Failed, Some(gave_up.clone()), now)
                    })
                    .await;
                match update {
                    Ok(Update::Changed(op, _)) => {
                        warn!("operation failed: its message reached the poison queue unfinished");
                        (Some(op.status), op.error.unwrap_or(gave_up))
                    }
                    Ok(Update::AlreadyEnded(op)) => {
                        info!(status = %op.status, "poison message for an operation that had already ended");
                        let error = op.error.unwrap_or_else(|| {
                            OperationError::new("None", "the operation had ended without error")
                        });
                        (Some(op.status), error)
                    }
                    Err(DomainError::NotFound) => (
                        None,
                        OperationError::new(
                            "OperationNotFound",
                            "no such operation (expired, or never accepted)",
                        ),
                    ),
                    Err(e) => {
                        warn!(error = %e, "could not record the poison message's outcome; it will be retried");
                        return Outcome::Retry;
                    }
                }
            }
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
        let key = format!("{PREFIX}{}", sha256_hex(text.as_bytes()));
        match self.records.insert(&key, to_json(&copy)).await {
            Ok(_) | Err(StoreError::AlreadyExists) => {
                info!(copy = %key, "kept a copy of the poison message");
                Outcome::Done
            }
            Err(e) => {
                warn!(error = %e, "could not keep a copy of the poison message; it will be retried");
                Outcome::Retry
            }
        }
    }

    /// The copies of poison messages kept so far (operators and tests read them).
    pub async fn poison_copies(&self) -> Result<Vec<PoisonCopy>, DomainError> {
        let far_future = self.clock.now() + time::Duration::days(365 * 100);
        let mut copies = Vec::new();
        for key in self.records.list_written_before(PREFIX, far_future).await? {
            if let Some((doc, _)) = self.records.get(&key).await? {
                copies.push(from_json(&doc)?);
            }
        }
        Ok(copies)
    }
}
