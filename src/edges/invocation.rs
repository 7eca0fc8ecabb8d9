//! The Functions host's invocation protocol for the queue trigger: the host POSTs
//! `/AsyncProcessingBackgroundWorker` with `{"Data": {...}, "Metadata": {...}}` and expects
//! `200` with `{"Outputs", "Logs", "ReturnValue"}`; any other status is a failed invocation
//! that the host retries after `visibilityTimeout` and finally moves to the poison queue.
//! Parsed leniently where the host is loose (extra quotes, strings for numbers).

use serde::Deserialize;
use serde_json::{json, Map, Value};
use tracing::warn;
use warp::http::StatusCode;

use super::http::problem::Problem;
use super::http::{json_response, read_body, HttpState, Request};
use crate::domain::service::Outcome;

/// The binding name in `AsyncProcessingBackgroundWorker/function.json`.
pub const QUEUE_ITEM_BINDING: &str = "myQueueItem";

/// Invocation bodies carry one queue message (at most 64 KiB) plus metadata.
const MAX_INVOCATION_BYTES: usize = 1024 * 1024;

#[derive(Debug, Deserialize)]
pub struct Invocation {
    #[serde(rename = "Data")]
    pub data: Map<String, Value>,
    #[serde(rename = "Metadata", default)]
    pub metadata: Map<String, Value>,
}

/// Why an invocation payload cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadInvocation(pub String);

impl Invocation {
    pub fn parse(body: &[u8]) -> Result<Self, BadInvocation> {
        serde_json::from_slice(body)
            .map_err(|e| BadInvocation(format!("not an invocation payload: {e}")))
    }

    /// The queue message text. The host sends it as a JSON string holding the JSON-encoded
    /// text (decode twice); accept the text itself too, and a bare JSON object.
    pub fn message_text(&self) -> Result<String, BadInvocation> {
        let item = match self.data.get(QUEUE_ITEM_BINDING) {
            Some(v) => v,
            None if self.data.len() == 1 => self.data.values().next().unwrap_or(&Value::Null),
            None => {
                return Err(BadInvocation(format!(
                    "`Data` has no `{QUEUE_ITEM_BINDING}` entry"
                )))
            }
        };
        match item {
            Value::String(outer) => match serde_json::from_str::<Value>(outer) {
                Ok(Value::String(inner)) => Ok(inner),
                _ => Ok(outer.clone()),
            },
            Value::Object(_) => Ok(item.to_string()),
            _ => Err(BadInvocation(
                "the queue item is neither text nor a JSON object".into(),
            )),
        }
    }

    /// `DequeueCount`: a number, or a string holding one (perhaps in an extra pair of quotes).
    /// Missing or unreadable counts as the first delivery.
    pub fn dequeue_count(&self) -> u32 {
        metadata_text(self.metadata.get("DequeueCount"))
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(1)
            .max(1)
    }

    /// The queue message id, for logs.
    pub fn message_id(&self) -> String {
        metadata_text(self.metadata.get("Id")).unwrap_or_default()
    }
}

/// A metadata value as text, without the extra quotes the host sometimes adds.
fn metadata_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => {
            let s = s.trim();
            match serde_json::from_str::<Value>(s) {
                Ok(Value::String(inner)) => Some(inner),
                Ok(Value::Number(n)) => Some(n.to_string()),
                _ => Some(s.to_string()),
            }
        }
        _ => None,
    }
}

fn invocation_response(status: StatusCode, logs: Vec<String>) -> warp::reply::Response {
    json_response(
        status,
        &json!({ "Outputs": {}, "Logs": logs, "ReturnValue": Value::Null }),
    )
}

/// `POST /AsyncProcessingBackgroundWorker`
pub async fn handle(state: &HttpState, mut req: Request) -> Result<warp::reply::Response, Problem> {
    let body = read_body(&mut req, MAX_INVOCATION_BYTES).await?;
    let invocation = Invocation::parse(&body).map_err(|e| {
        warn!(error = %e, "refused an invocation payload");
        Problem::bad_request(e.0)
    })?;
    let text = invocation.message_text().map_err(|e| {
        warn!(error = %e, "refused an invocation payload");
        Problem::bad_request(e.0)
    })?;
    let dequeue_count = invocation.dequeue_count();
    let message_id = invocation.message_id();
    let outcome = state.service.process(&text, dequeue_count).await;
    let line = format!("queue message {message_id} (delivery {dequeue_count}): {outcome:?}");
    Ok(match outcome {
        Outcome::Done => invocation_response(StatusCode::OK, vec![line]),
        // A failed invocation: the host makes the message visible again and retries it.
        Outcome::Retry => invocation_response(StatusCode::SERVICE_UNAVAILABLE, vec![line]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(v: Value) -> Invocation {
        Invocation::parse(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn decodes_the_hosts_double_encoding_and_quoted_metadata() {
        let text = r#"{"id":"1234","customername":"Contoso"}"#;
        let item = Value::String(Value::String(text.into()).to_string()).to_string();
        let body = format!(
            r#"{{"Data":{{"myQueueItem":{item}}},"Metadata":{{"DequeueCount":"3","Id":"\"5f1c\"","sys":{{"MethodName":"AsyncProcessingBackgroundWorker"}}}}}}"#
        );
        let i = Invocation::parse(body.as_bytes()).unwrap();
        assert_eq!(i.message_text().unwrap(), text);
        assert_eq!(i.dequeue_count(), 3);
        assert_eq!(i.message_id(), "5f1c");
    }

    #[test]
    fn lenient_where_the_host_is_loose() {
        let text = r#"{"a":1}"#;
        let plain = inv(json!({"Data": {"myQueueItem": text}, "Metadata": {"DequeueCount": 2}}));
        assert_eq!(plain.message_text().unwrap(), text);
        assert_eq!(plain.dequeue_count(), 2);
        let object =
            inv(json!({"Data": {"other": {"a": 1}}, "Metadata": {"DequeueCount": "\"5\""}}));
        assert_eq!(object.message_text().unwrap(), text);
        assert_eq!(object.dequeue_count(), 5);
        let bare = inv(json!({"Data": {"myQueueItem": "not json"}}));
        assert_eq!(bare.message_text().unwrap(), "not json");
        assert_eq!(bare.dequeue_count(), 1);
    }

    #[test]
    fn refuses_what_is_no_invocation() {
        assert!(Invocation::parse(b"[]").is_err());
        assert!(Invocation::parse(b"{}").is_err());
        assert!(inv(json!({"Data": {}})).message_text().is_err());
        assert!(inv(json!({"Data": {"myQueueItem": 5}}))
            .message_text()
            .is_err());
    }
}
