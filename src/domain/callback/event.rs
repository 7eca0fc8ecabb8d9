//! The completion callback's event: CloudEvents 1.0 in structured mode (the whole event is the
//! JSON body, `application/cloudevents+json`), its `data` the status monitor document.

use bytes::Bytes;
use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::domain::monitor::{base_url, StatusDocument};
use crate::domain::operation::{Operation, OperationId, Status};

pub const CONTENT_TYPE: &str = "application/cloudevents+json";

/// The event's id, the same on every attempt (and `webhook-id`): an operation ends once, so
/// its end is one event, derived from the operation alone.
pub fn event_id(id: OperationId) -> String {
    let digest = Sha256::digest(format!("async-request-reply:end:{id}").as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("evt_{hex}")
}

pub fn event_type(status: Status) -> &'static str {
    match status {
        Status::Succeeded => "AsyncRequestReply.Operation.Succeeded",
        Status::Failed => "AsyncRequestReply.Operation.Failed",
        Status::Canceled => "AsyncRequestReply.Operation.Canceled",
        // Only ends are announced; a pending state has no event of its own.
        Status::NotStarted | Status::Running => "AsyncRequestReply.Operation.Pending",
    }
}

#[derive(Serialize)]
struct CloudEvent<'a> {
    specversion: &'static str,
    id: String,
    source: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    subject: String,
    #[serde(with = "time::serde::rfc3339")]
    time: OffsetDateTime,
    datacontenttype: &'static str,
    data: StatusDocument<'a>,
}

/// The event announcing `op`'s end: its id and body. The body is the same on every attempt
/// (`time` is when the operation ended); `data` is the status monitor document without its
/// `callback` member, which describes this very delivery.
pub fn cloud_event(op: &Operation) -> Result<(String, Bytes), String> {
    let base = base_url(op);
    let event = CloudEvent {
        specversion: "1.0",
        id: event_id(op.id),
        source: if base.is_empty() { "/" } else { base },
        kind: event_type(op.status),
        subject: op.id.to_string(),
        time: op.last_updated_date_time,
        datacontenttype: "application/json",
        data: StatusDocument::new(op, None),
    };
    let body =
        serde_json::to_vec(&event).map_err(|e| format!("cannot serialize the event: {e}"))?;
    Ok((event.id, Bytes::from(body)))
}
