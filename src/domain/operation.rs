//! An operation: one accepted piece of work, its identity, its state and the rules for changing it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

/// The id of an operation: a random (v4) UUID, the only key to its result, so it must not be
/// guessable. Always written in the canonical lower-case hyphenated form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OperationId(Uuid);

/// A string that is not an operation id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an operation id (a UUID such as 3fa85f64-5717-4562-b3fc-2c963f66afa6)")]
pub struct InvalidOperationId;

impl OperationId {
    /// A new random id.
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }
}

impl FromStr for OperationId {
    type Err = InvalidOperationId;

    /// Accepts only the 36-character hyphenated form (any case), so every id has one spelling.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 36 {
            return Err(InvalidOperationId);
        }
        Uuid::try_parse(s).map(Self).map_err(|_| InvalidOperationId)
    }
}

impl TryFrom<String> for OperationId {
    type Error = InvalidOperationId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<OperationId> for String {
    fn from(id: OperationId) -> Self {
        id.to_string()
    }
}

impl fmt::Display for OperationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// Where an operation is in its life. The names are those of the Azure REST API guidelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    NotStarted,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl Status {
    /// Terminal states never change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed | Status::Canceled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::NotStarted => "NotStarted",
            Status::Running => "Running",
            Status::Succeeded => "Succeeded",
            Status::Failed => "Failed",
            Status::Canceled => "Canceled",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an operation failed, in the shape of the Azure REST API guidelines' error object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationError {
    pub code: String,
    pub message: String,
}

impl OperationError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// The stored record of an operation. Serialized as JSON in the record store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    pub id: OperationId,
    pub status: Status,
    #[serde(with = "time::serde::rfc3339")]
    pub created_date_time: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_updated_date_time: OffsetDateTime,
    /// After this the operation and its result are gone (404).
    #[serde(with = "time::serde::rfc3339")]
    pub expiration_date_time: OffsetDateTime,
    /// The absolute status URL handed to the client at submission.
    pub status_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<OperationError>,
    /// How far the work has got (0 to 100), as it last reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent_complete: Option<u8>,
    /// A small JSON status the work last reported with its progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_status: Option<Value>,
    /// Where to announce the operation's end, when the submission asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<CallbackTarget>,
}

/// The receiver of an operation's completion callback, as validated at submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackTarget {
    pub url: String,
}

/// A change refused because the operation already ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the operation already ended ({0})")]
pub struct AlreadyEnded(pub Status);

impl Operation {
    /// A freshly accepted operation.
    pub fn new(
        id: OperationId,
        status_url: String,
        now: OffsetDateTime,
        retention: time::Duration,
    ) -> Self {
        Self {
            id,
            status: Status::NotStarted,
            created_date_time: now,
            last_updated_date_time: now,
            expiration_date_time: now + retention,
            status_url,
            error: None,
            percent_complete: None,
            custom_status: None,
            callback: None,
        }
    }

    /// Whether the retention period is over (the operation then reads as unknown).
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        now >= self.expiration_date_time
    }

    /// Moves the operation to `to`. Any non-terminal state may move to any state but
    /// `NotStarted`; a terminal state never changes.
    pub fn transition(
        &mut self,
        to: Status,
        error: Option<OperationError>,
        now: OffsetDateTime,
    ) -> Result<(), AlreadyEnded> {
        if self.status.is_terminal() {
            return Err(AlreadyEnded(self.status));
        }
        debug_assert!(to != Status::NotStarted, "nothing moves back to NotStarted");
        self.status = to;
        self.error = error;
        self.last_updated_date_time = now;
        // Work that reported progress and succeeded is, by definition, all the way there.
        if to == Status::Succeeded && self.percent_complete.is_some() {
            self.percent_complete = Some(100);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op() -> Operation {
        Operation::new(
            OperationId::new_random(),
            "http://x/api/RequestStatus/1".into(),
            OffsetDateTime::UNIX_EPOCH,
            time::Duration::hours(24),
        )
    }

    #[test]
    fn ids_have_one_spelling() {
        let id: OperationId = "3FA85F64-5717-4562-B3FC-2C963F66AFA6".parse().unwrap();
        assert_eq!(id.to_string(), "3fa85f64-5717-4562-b3fc-2c963f66afa6");
        for bad in [
            "",
            "3fa85f6457174562b3fc2c963f66afa6",
            "{3fa85f64-5717-4562-b3fc-2c963f66afa6}",
            "../../etc/passwd",
            "3fa85f64-5717-4562-b3fc-2c963f66afaZ",
        ] {
            assert!(bad.parse::<OperationId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn new_ids_are_random_v4() {
        let a = OperationId::new_random();
        assert_ne!(a, OperationId::new_random());
        assert_eq!(a.0.get_version_num(), 4);
    }

    #[test]
    fn terminal_states_never_change() {
        for end in [Status::Succeeded, Status::Failed, Status::Canceled] {
            let mut o = op();
            o.transition(Status::Running, None, OffsetDateTime::UNIX_EPOCH)
                .unwrap();
            o.transition(end, None, OffsetDateTime::UNIX_EPOCH).unwrap();
            for next in [
                Status::Running,
                Status::Succeeded,
                Status::Failed,
                Status::Canceled,
            ] {
                assert_eq!(
                    o.transition(next, None, OffsetDateTime::UNIX_EPOCH),
                    Err(AlreadyEnded(end))
                );
            }
        }
    }

    #[test]
    fn expiry_follows_retention() {
        let o = op();
        assert!(!o.is_expired(OffsetDateTime::UNIX_EPOCH + time::Duration::hours(23)));
        assert!(o.is_expired(OffsetDateTime::UNIX_EPOCH + time::Duration::hours(24)));
    }

    #[test]
    fn record_round_trips_as_json() {
        let mut o = op();
        o.transition(
            Status::Failed,
            Some(OperationError::new("X", "y")),
            OffsetDateTime::UNIX_EPOCH,
        )
        .unwrap();
        let json = serde_json::to_string(&o).unwrap();
        assert!(json.contains("\"status\":\"Failed\""));
        assert_eq!(serde_json::from_str::<Operation>(&json).unwrap(), o);
    }
}
