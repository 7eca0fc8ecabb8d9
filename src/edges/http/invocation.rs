//! The Functions host's invocation protocol for the three queue triggers: the host POSTs
//! `/AsyncProcessingBackgroundWorker` (the work queue), `/AsyncProcessingPoisonWorker` (its
//! poison queue) or `/AsyncProcessingCallbackWorker` (the callbacks queue) with `{"Data": {...}, "Metadata": {...}}` and expects `200` with
//! `{"Outputs", "Logs", "ReturnValue"}`; any other status is a failed invocation. Parsed
//! leniently where the host is loose (extra quotes, strings for numbers), and distrustful where
//! the host lets the message speak: it copies a JSON message's top-level fields into
//! `Metadata`, over its own keys, so a key the message itself carries is not the host's word.

use serde::Deserialize;
use serde_json::{json, Map, Value};
use tracing::warn;
use warp::http::StatusCode;

use super::problem::Problem;
use super::request::{read_body, Request};
use super::response::json_response;
use super::state::HttpState;
use crate::domain::Outcome;

/// The binding name in `AsyncProcessingBackgroundWorker/function.json`.
pub const QUEUE_ITEM_BINDING: &str = "myQueueItem";
/// The binding name in `AsyncProcessingPoisonWorker/function.json`.
pub const POISON_ITEM_BINDING: &str = "poisonQueueItem";
/// The binding name in `AsyncProcessingCallbackWorker/function.json`.
pub const CALLBACK_ITEM_BINDING: &str = "callbackQueueItem";

/// The keys the host itself puts in a queue invocation's `Metadata` (the queue trigger's binding
/// data, and `sys`), which a message's own top-level fields override (`Utility.ApplyBindingData`,
/// case-insensitively).
const HOST_METADATA_KEYS: [&str; 7] = [
    "DequeueCount",
    "ExpirationTime",
    "Id",
    "InsertionTime",
    "NextVisibleTime",
    "PopReceipt",
    "sys",
];

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

    /// The queue message text under `binding`. The host sends it as a JSON string holding the
    /// JSON-encoded text (decode twice); accept the text itself too, and a bare JSON object.
    pub fn message_text(&self, binding: &str) -> Result<String, BadInvocation> {
        let item = match self.data.get(binding) {
            Some(v) => v,
            None if self.data.len() == 1 => self.data.values().next().unwrap_or(&Value::Null),
            None => return Err(BadInvocation(format!("`Data` has no `{binding}` entry"))),
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

    /// `DequeueCount` of the message `text`: a number, or a string holding one (perhaps in an
    /// extra pair of quotes). Missing, unreadable, or overridden by a field of the message
    /// itself, it counts as the first delivery: never taken for the last attempt, so the host's
    /// own count decides when the message goes to the poison queue, whose function then ends
    /// the operation.
    pub fn dequeue_count(&self, text: &str) -> u32 {
        if shadowed_host_keys(text).contains(&"DequeueCount") {
            return 1;
        }
        metadata_text(self.metadata.get("DequeueCount"))
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(1)
            .max(1)
    }

    /// The queue message id, for logs only: a message with an `id` field of its own (the
    /// sample's records have one) replaces it.
    pub fn message_id(&self) -> String {
        metadata_text(self.metadata.get("Id")).unwrap_or_default()
    }
}

/// The host's `Metadata` keys that the message `text` overrides with top-level fields of its
/// own: the host copies every top-level field of a JSON object message that is neither an
/// array nor null, matching names case-insensitively.
pub fn shadowed_host_keys(text: &str) -> Vec<&'static str> {
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(text) else {
        return Vec::new();
    };
    HOST_METADATA_KEYS
        .into_iter()
        .filter(|key| {
            fields.iter().any(|(name, value)| {
                name.eq_ignore_ascii_case(key) && !matches!(value, Value::Array(_) | Value::Null)
            })
        })
        .collect()
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

fn invocation_response(
    status: StatusCode,
    logs: Vec<String>,
) -> Result<warp::reply::Response, Problem> {
    json_response(
        status,
        &json!({ "Outputs": {}, "Logs": logs, "ReturnValue": Value::Null }),
    )
}

/// Reads an invocation's message text, refusing what is no invocation with a 400.
async fn read_invocation(
    state: &HttpState,
    req: &mut Request,
    binding: &str,
) -> Result<(Invocation, String), Problem> {
    let body = read_body(req, MAX_INVOCATION_BYTES, state.settings.body_timeout).await?;
    let parsed = Invocation::parse(&body).and_then(|i| {
        let text = i.message_text(binding)?;
        Ok((i, text))
    });
    parsed.map_err(|e| {
        warn!(error = %e, "refused an invocation payload");
        Problem::bad_request(e.0)
    })
}

/// The answer to an invocation: `200` deletes the message; anything else is a failed
/// invocation, which the host retries (work queue: after `visibilityTimeout`, then the poison
/// queue once `maxDequeueCount` is reached; poison queue: after ten minutes, at most
/// `maxDequeueCount` times, since a poison queue has no poison queue of its own).
fn answer(outcome: Outcome, line: String) -> Result<warp::reply::Response, Problem> {
    match outcome {
        Outcome::Done => invocation_response(StatusCode::OK, vec![line]),
        Outcome::Retry => invocation_response(StatusCode::SERVICE_UNAVAILABLE, vec![line]),
    }
}

/// `POST /AsyncProcessingBackgroundWorker`: one delivery of a work message.
pub async fn handle(state: &HttpState, mut req: Request) -> Result<warp::reply::Response, Problem> {
    let (invocation, text) = read_invocation(state, &mut req, QUEUE_ITEM_BINDING).await?;
    let shadowed = shadowed_host_keys(&text);
    if !shadowed.is_empty() {
        warn!(
            keys = ?shadowed,
            "the message's own fields override the host's metadata; not trusting those keys"
        );
    }
    let dequeue_count = invocation.dequeue_count(&text);
    let message_id = invocation.message_id();
    let outcome = state.service.process(&text, dequeue_count).await;
    let line = format!("queue message {message_id} (delivery {dequeue_count}): {outcome:?}");
    answer(outcome, line)
}

/// `POST /AsyncProcessingPoisonWorker`: a work message the host gave up on.
pub async fn handle_poison(
    state: &HttpState,
    mut req: Request,
) -> Result<warp::reply::Response, Problem> {
    let (invocation, text) = read_invocation(state, &mut req, POISON_ITEM_BINDING).await?;
    let message_id = invocation.message_id();
    let outcome = state.service.poisoned(&text, &message_id).await;
    let line = format!("poison message {message_id}: {outcome:?}");
    answer(outcome, line)
}

/// `POST /AsyncProcessingCallbackWorker`: one delivery attempt of a completion callback. A
/// receiver's failure still answers `200`: the next attempt is already queued with its own
/// delay, far longer than the host's retries would wait; non-2xx only when storage is away.
pub async fn handle_callback(
    state: &HttpState,
    mut req: Request,
) -> Result<warp::reply::Response, Problem> {
    let (invocation, text) = read_invocation(state, &mut req, CALLBACK_ITEM_BINDING).await?;
    let message_id = invocation.message_id();
    let outcome = state.service.deliver_callback(&text).await;
    let line = format!("callback message {message_id}: {outcome:?}");
    answer(outcome, line)
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
        let t = i.message_text(QUEUE_ITEM_BINDING).unwrap();
        assert_eq!(t, text);
        assert_eq!(i.dequeue_count(&t), 3);
        assert_eq!(i.message_id(), "5f1c");
    }

    #[test]
    fn lenient_where_the_host_is_loose() {
        let text = r#"{"a":1}"#;
        let plain = inv(json!({"Data": {"myQueueItem": text}, "Metadata": {"DequeueCount": 2}}));
        assert_eq!(plain.message_text(QUEUE_ITEM_BINDING).unwrap(), text);
        assert_eq!(plain.dequeue_count(text), 2);
        let object =
            inv(json!({"Data": {"other": {"a": 1}}, "Metadata": {"DequeueCount": "\"5\""}}));
        assert_eq!(object.message_text(QUEUE_ITEM_BINDING).unwrap(), text);
        assert_eq!(object.dequeue_count(text), 5);
        let bare = inv(json!({"Data": {"myQueueItem": "not json"}}));
        assert_eq!(bare.message_text(QUEUE_ITEM_BINDING).unwrap(), "not json");
        assert_eq!(bare.dequeue_count("not json"), 1);
    }

    #[test]
    fn a_count_the_message_itself_carries_is_not_the_hosts() {
        let i = inv(json!({"Data": {}, "Metadata": {"DequeueCount": "\"1\""}}));
        for text in [r#"{"DequeueCount":5}"#, r#"{"dequeuecount":"5"}"#] {
            assert_eq!(shadowed_host_keys(text), ["DequeueCount"]);
            assert_eq!(i.dequeue_count(text), 1);
        }
        // Arrays and nulls are not copied by the host, so they shadow nothing.
        assert!(
            shadowed_host_keys(r#"{"DequeueCount":[1],"Id":null,"RequestGUID":"x"}"#).is_empty()
        );
        assert_eq!(
            shadowed_host_keys(r#"{"id":"1","popreceipt":"x","SYS":{}}"#),
            ["Id", "PopReceipt", "sys"]
        );
    }

    #[test]
    fn refuses_what_is_no_invocation() {
        assert!(Invocation::parse(b"[]").is_err());
        assert!(Invocation::parse(b"{}").is_err());
        assert!(inv(json!({"Data": {}}))
            .message_text(QUEUE_ITEM_BINDING)
            .is_err());
        assert!(inv(json!({"Data": {"myQueueItem": 5}}))
            .message_text(QUEUE_ITEM_BINDING)
            .is_err());
    }
}
