//! The stored state of one operation's completion callback (`callbacks/<id>` beside the
//! operation records): kept apart from the operation record, so that recording a delivery
//! never writes to an operation whose terminal state must not change.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::domain::monitor::{CallbackState, CallbackView};
use crate::domain::operation::{OperationError, OperationId};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallbackRecord {
    pub operation_id: OperationId,
    pub state: CallbackState,
    /// Deliveries tried so far.
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<OperationError>,
    /// While set and in the future, one delivery holds the callback: another copy of its
    /// message waits rather than calling the receiver twice at once.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub lease_until: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub last_updated_date_time: OffsetDateTime,
    /// Gone with its operation.
    #[serde(with = "time::serde::rfc3339")]
    pub expiration_date_time: OffsetDateTime,
}

impl CallbackRecord {
    pub fn view(&self) -> CallbackView {
        CallbackView {
            state: self.state,
            attempts: self.attempts,
            last_error: self.last_error.clone(),
        }
    }

    /// Whether delivery is over for good (delivered, or given up on).
    pub fn is_settled(&self) -> bool {
        self.state != CallbackState::Pending
    }
}
