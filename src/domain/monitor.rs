//! The status monitor document (the Azure REST API guidelines' shape, plus the URLs, progress
//! and the callback's state): what `GET /api/operations/{id}`, the status URL's `202` and a
//! completion callback's `data` all carry, built in one place so they cannot drift.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use super::operation::{Operation, OperationError, Status};

/// The path of a status URL, before the operation id.
pub const STATUS_PATH: &str = "/api/RequestStatus/";
/// The path of the status monitor, before the operation id.
pub const MONITOR_PATH: &str = "/api/operations/";

/// Where a completion callback stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallbackState {
    /// Not delivered yet: the operation has not ended, or delivery is being (re)tried.
    Pending,
    /// A receiver answered `2xx`.
    Delivered,
    /// Given up: the receiver refused (`410`, another `4xx`, a redirect) or kept failing.
    Failed,
}

/// The callback as the monitor shows it (never its URL, which may carry a token).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallbackView {
    pub state: CallbackState,
    /// Deliveries tried so far.
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<OperationError>,
}

impl CallbackView {
    pub fn pending() -> Self {
        Self {
            state: CallbackState::Pending,
            attempts: 0,
            last_error: None,
        }
    }
}

/// The service's public base URL, as the status URL handed out at submission names it.
pub fn base_url(op: &Operation) -> &str {
    let suffix = format!("{STATUS_PATH}{}", op.id);
    op.status_url.strip_suffix(&suffix).unwrap_or("")
}

/// The status monitor's URL, derived from the status URL handed out at submission.
pub fn monitor_url(op: &Operation) -> String {
    format!("{}{MONITOR_PATH}{}", base_url(op), op.id)
}

/// The JSON status document. Typed rather than built as a `Value` (the hottest path would pay
/// a map and a string per field); fields in alphabetical order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusDocument<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback: Option<CallbackView>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_date_time: OffsetDateTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_status: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a OperationError>,
    #[serde(with = "time::serde::rfc3339")]
    pub expiration_date_time: OffsetDateTime,
    pub id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub last_updated_date_time: OffsetDateTime,
    pub operation_location: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent_complete: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_location: Option<&'a str>,
    pub status: &'static str,
    pub status_url: &'a str,
}

impl<'a> StatusDocument<'a> {
    /// The document for `op`; `callback` is its callback's state, when it has one.
    pub fn new(op: &'a Operation, callback: Option<CallbackView>) -> Self {
        Self {
            callback,
            created_date_time: op.created_date_time,
            custom_status: op.custom_status.as_ref(),
            error: op.error.as_ref(),
            expiration_date_time: op.expiration_date_time,
            id: op.id.to_string(),
            last_updated_date_time: op.last_updated_date_time,
            operation_location: monitor_url(op),
            percent_complete: op.percent_complete,
            resource_location: (op.status == Status::Succeeded).then_some(op.status_url.as_str()),
            status: op.status.as_str(),
            status_url: &op.status_url,
        }
    }
}
