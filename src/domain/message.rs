//! The queue message: the sample's fields `RequestGUID`, `RequestSubmittedAt` and
//! `RequestStatusURL` at the top level, and the customer record nested under `RequestRecord`.
//! Nested, because the Functions host copies every top-level field of a JSON message into the
//! invocation's `Metadata`, over its own keys (`DequeueCount`, `Id`, `PopReceipt`, ...): with
//! the record one level down, nothing a client submits can change how an invocation is read.
//! A record too large for one queue message travels by claim check: the payload is stored and
//! the message carries `RequestPayloadRef`. `RequestRecordVersion`, the version (ETag) of the
//! operation record as submitted, lets the worker start it without reading it first.

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::operation::OperationId;

pub const REQUEST_GUID: &str = "RequestGUID";
pub const REQUEST_SUBMITTED_AT: &str = "RequestSubmittedAt";
pub const REQUEST_STATUS_URL: &str = "RequestStatusURL";
pub const REQUEST_PAYLOAD_REF: &str = "RequestPayloadRef";
pub const REQUEST_TRACEPARENT: &str = "RequestTraceparent";
pub const REQUEST_RECORD_VERSION: &str = "RequestRecordVersion";
pub const REQUEST_RECORD: &str = "RequestRecord";
/// Every top-level field a message of ours carries: none of them is a key the host puts in an
/// invocation's `Metadata`, so the host's own values reach the handler unchanged.
pub const ENVELOPE_FIELDS: [&str; 7] = [
    REQUEST_GUID,
    REQUEST_SUBMITTED_AT,
    REQUEST_STATUS_URL,
    REQUEST_PAYLOAD_REF,
    REQUEST_TRACEPARENT,
    REQUEST_RECORD_VERSION,
    REQUEST_RECORD,
];

/// Where the record is: in the message, or stored under a key (claim check).
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Inline(Map<String, Value>),
    Stored(String),
}

/// A decoded work message.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkMessage {
    pub id: OperationId,
    pub submitted_at: OffsetDateTime,
    pub status_url: String,
    pub payload: Payload,
    /// W3C trace context of the submitting request, so the worker's logs join its trace.
    pub traceparent: Option<String>,
    /// The version (ETag) the operation record had when it was submitted, when known.
    pub record_version: Option<String>,
}

/// A message that cannot be decoded; `id` is set when the operation could still be identified.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("undecodable work message: {reason}")]
pub struct UndecodableMessage {
    pub id: Option<OperationId>,
    pub reason: String,
}

impl WorkMessage {
    /// The message text (JSON). The transport encoding (base64) is the queue adapter's business.
    /// Fails only for a submission time RFC 3339 cannot write (past the year 9999).
    pub fn encode(&self) -> Result<String, time::error::Format> {
        let mut fields = Map::new();
        match &self.payload {
            Payload::Inline(record) => {
                fields.insert(REQUEST_RECORD.into(), Value::Object(record.clone()));
            }
            Payload::Stored(key) => {
                fields.insert(REQUEST_PAYLOAD_REF.into(), Value::String(key.clone()));
            }
        }
        fields.insert(REQUEST_GUID.into(), Value::String(self.id.to_string()));
        fields.insert(
            REQUEST_SUBMITTED_AT.into(),
            Value::String(rfc3339(self.submitted_at)?),
        );
        fields.insert(
            REQUEST_STATUS_URL.into(),
            Value::String(self.status_url.clone()),
        );
        if let Some(tp) = &self.traceparent {
            fields.insert(REQUEST_TRACEPARENT.into(), Value::String(tp.clone()));
        }
        if let Some(v) = &self.record_version {
            fields.insert(REQUEST_RECORD_VERSION.into(), Value::String(v.clone()));
        }
        Ok(Value::Object(fields).to_string())
    }

    /// Decodes message text. Strict: the message is ours, so anything off is a clear error.
    pub fn decode(text: &str) -> Result<Self, UndecodableMessage> {
        let mut fields = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err(undecodable(None, "the message is not a JSON object")),
            Err(e) => return Err(undecodable(None, format!("the message is not JSON: {e}"))),
        };
        let id = match fields.get(REQUEST_GUID) {
            Some(Value::String(s)) => s.parse::<OperationId>().map_err(|_| {
                undecodable(None, format!("`{REQUEST_GUID}` is not an operation id"))
            })?,
            _ => return Err(undecodable(None, format!("`{REQUEST_GUID}` is missing"))),
        };
        let submitted_at = match fields.get(REQUEST_SUBMITTED_AT) {
            Some(Value::String(s)) => OffsetDateTime::parse(s, &Rfc3339).map_err(|_| {
                undecodable(
                    Some(id),
                    format!("`{REQUEST_SUBMITTED_AT}` is not an RFC 3339 time"),
                )
            })?,
            _ => {
                return Err(undecodable(
                    Some(id),
                    format!("`{REQUEST_SUBMITTED_AT}` is missing"),
                ))
            }
        };
        let status_url = match fields.get(REQUEST_STATUS_URL) {
            Some(Value::String(s)) => s.clone(),
            _ => {
                return Err(undecodable(
                    Some(id),
                    format!("`{REQUEST_STATUS_URL}` is missing"),
                ))
            }
        };
        let traceparent = match fields.get(REQUEST_TRACEPARENT) {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        let record_version = match fields.get(REQUEST_RECORD_VERSION) {
            None => None,
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(_) => {
                return Err(undecodable(
                    Some(id),
                    format!("`{REQUEST_RECORD_VERSION}` is not a version string"),
                ))
            }
        };
        let payload = match (fields.remove(REQUEST_RECORD), fields.get(REQUEST_PAYLOAD_REF)) {
            (Some(Value::Object(record)), None) => Payload::Inline(record),
            (None, Some(Value::String(key))) if key == &id.payload_key() => {
                Payload::Stored(key.clone())
            }
            (None, Some(_)) => {
                return Err(undecodable(
                    Some(id),
                    format!("`{REQUEST_PAYLOAD_REF}` does not name this operation's payload"),
                ))
            }
            (Some(_), _) => {
                return Err(undecodable(
                    Some(id),
                    format!("`{REQUEST_RECORD}` is not a JSON object, or comes with `{REQUEST_PAYLOAD_REF}`"),
                ))
            }
            (None, None) => {
                // Written before the record was nested (the message still in a queue across
                // an upgrade): the record is what is left at the top level.
                for f in ENVELOPE_FIELDS {
                    fields.remove(f);
                }
                Payload::Inline(fields)
            }
        };
        Ok(Self {
            id,
            submitted_at,
            status_url,
            payload,
            traceparent,
            record_version,
        })
    }
}

fn undecodable(id: Option<OperationId>, reason: impl Into<String>) -> UndecodableMessage {
    UndecodableMessage {
        id,
        reason: reason.into(),
    }
}

/// RFC 3339 text for a time (which fails for years RFC 3339 cannot write).
pub fn rfc3339(t: OffsetDateTime) -> Result<String, time::error::Format> {
    t.format(&Rfc3339)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(payload: Payload) -> WorkMessage {
        WorkMessage {
            id: OperationId::new_random(),
            submitted_at: OffsetDateTime::UNIX_EPOCH,
            status_url: "https://app.example/api/RequestStatus/x".into(),
            payload,
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            record_version: Some("\"0x8DC2A4D6E8F1B2C\"".into()),
        }
    }

    #[test]
    fn carries_the_samples_fields_and_round_trips() {
        let mut record = Map::new();
        record.insert("id".into(), "1".into());
        record.insert("customername".into(), "Contoso".into());
        let m = message(Payload::Inline(record));
        let text = m.encode().unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["RequestGUID"], m.id.to_string());
        assert_eq!(v["RequestSubmittedAt"], "1970-01-01T00:00:00Z");
        assert_eq!(v["RequestRecord"]["customername"], "Contoso");
        for key in v.as_object().unwrap().keys() {
            assert!(
                ENVELOPE_FIELDS.contains(&key.as_str()),
                "{key} at the top level"
            );
        }
        assert_eq!(v["RequestRecordVersion"], "\"0x8DC2A4D6E8F1B2C\"");
        assert_eq!(WorkMessage::decode(&text).unwrap(), m);
    }

    #[test]
    fn a_record_cannot_reach_the_top_level() {
        let mut record = Map::new();
        for key in [
            "DequeueCount",
            "dequeuecount",
            "Id",
            "PopReceipt",
            "sys",
            "RequestGUID",
        ] {
            record.insert(key.into(), "forged".into());
        }
        let m = message(Payload::Inline(record.clone()));
        let v: Value = serde_json::from_str(&m.encode().unwrap()).unwrap();
        let top: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert!(
            top.iter().all(|k| ENVELOPE_FIELDS.contains(&k.as_str())),
            "{top:?}"
        );
        assert_eq!(v["RequestGUID"], m.id.to_string());
        assert_eq!(
            WorkMessage::decode(&m.encode().unwrap()).unwrap().payload,
            Payload::Inline(record)
        );
    }

    #[test]
    fn a_message_from_before_the_nesting_still_decodes() {
        let id = OperationId::new_random();
        let text = format!(
            r#"{{"RequestGUID":"{id}","RequestSubmittedAt":"1970-01-01T00:00:00Z","RequestStatusURL":"u","id":"1","customername":"C"}}"#
        );
        let Payload::Inline(record) = WorkMessage::decode(&text).unwrap().payload else {
            panic!("inline")
        };
        assert_eq!(record.len(), 2);
        assert_eq!(record["customername"], "C");
    }

    #[test]
    fn a_record_that_is_not_an_object_is_refused() {
        let m = message(Payload::Inline(Map::new()));
        let mut v: Value = serde_json::from_str(&m.encode().unwrap()).unwrap();
        v["RequestRecord"] = "x".into();
        let e = WorkMessage::decode(&v.to_string()).unwrap_err();
        assert_eq!(e.id, Some(m.id));
        assert!(e.reason.contains("RequestRecord"), "{}", e.reason);
    }

    #[test]
    fn a_record_version_that_is_not_a_string_is_refused() {
        let m = message(Payload::Inline(Map::new()));
        let mut v: Value = serde_json::from_str(&m.encode().unwrap()).unwrap();
        v["RequestRecordVersion"] = 7.into();
        let e = WorkMessage::decode(&v.to_string()).unwrap_err();
        assert_eq!(e.id, Some(m.id));
        assert!(e.reason.contains("RequestRecordVersion"), "{}", e.reason);
    }

    #[test]
    fn claim_check_round_trips() {
        let id = OperationId::new_random();
        let mut m = message(Payload::Stored(id.payload_key()));
        m.id = id;
        assert_eq!(WorkMessage::decode(&m.encode().unwrap()).unwrap(), m);
    }

    #[test]
    fn bad_messages_say_why_and_keep_the_id_when_known() {
        assert_eq!(WorkMessage::decode("nope").unwrap_err().id, None);
        assert_eq!(WorkMessage::decode("[]").unwrap_err().id, None);
        assert_eq!(
            WorkMessage::decode(r#"{"RequestGUID":"x"}"#)
                .unwrap_err()
                .id,
            None
        );
        let id = OperationId::new_random();
        let e = WorkMessage::decode(&format!(r#"{{"RequestGUID":"{id}"}}"#)).unwrap_err();
        assert_eq!(e.id, Some(id));
        let e = WorkMessage::decode(&format!(
            r#"{{"RequestGUID":"{id}","RequestSubmittedAt":"1970-01-01T00:00:00Z","RequestStatusURL":"u","RequestPayloadRef":"payloads/other"}}"#
        ))
        .unwrap_err();
        assert_eq!(e.id, Some(id));
    }
}
