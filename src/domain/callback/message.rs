//! The callbacks queue's message: which operation ended and how, which delivery attempt this
//! is, and when the first was queued (delivery is bounded in attempts and in time). The field
//! names are none of the keys the Functions host puts in an invocation's `Metadata`.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::domain::operation::{OperationId, Status};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackMessage {
    #[serde(rename = "CallbackOperation")]
    pub operation_id: OperationId,
    /// The terminal state being announced.
    #[serde(rename = "CallbackStatus")]
    pub status: Status,
    /// This delivery attempt's number (1 for the first).
    #[serde(rename = "CallbackAttempt")]
    pub attempt: u32,
    /// When the first attempt was queued.
    #[serde(rename = "CallbackSince", with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
}

impl CallbackMessage {
    pub fn first(operation_id: OperationId, status: Status, now: OffsetDateTime) -> Self {
        Self {
            operation_id,
            status,
            attempt: 1,
            since: now,
        }
    }

    /// The message for the attempt after this one.
    pub fn next(&self) -> Self {
        Self {
            attempt: self.attempt.saturating_add(1),
            ..self.clone()
        }
    }

    /// The message text. Fails only for a time RFC 3339 cannot write (past the year 9999).
    pub fn encode(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    pub fn decode(text: &str) -> Result<Self, String> {
        let message: Self =
            serde_json::from_str(text).map_err(|e| format!("not a callback message: {e}"))?;
        if !message.status.is_terminal() || message.attempt == 0 {
            return Err("a callback message announces a terminal state, from attempt 1".into());
        }
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_is_not_ours() {
        let m = CallbackMessage::first(
            OperationId::new_random(),
            Status::Canceled,
            OffsetDateTime::UNIX_EPOCH,
        );
        assert_eq!(CallbackMessage::decode(&m.encode().unwrap()).unwrap(), m);
        assert!(CallbackMessage::decode("{}").is_err());
        let running = m.encode().unwrap().replace("Canceled", "Running");
        assert!(CallbackMessage::decode(&running).is_err());
    }
}
