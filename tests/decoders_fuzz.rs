//! Property-based fuzzing of every decoder that reads outside input: the submission body, the
//! status query, operation ids, the queue message and the host's invocation payload. Whatever
//! the bytes, they decode or give a typed error; they never panic. Round trips hold.
//! The number of cases per property is `PROPTEST_CASES` (proptest's own setting; CI raises it).

use std::str::FromStr;

use async_request_reply::domain::message::WorkMessage;
use async_request_reply::domain::sample::SampleWork;
use async_request_reply::domain::submission;
use async_request_reply::domain::work::Work;
use async_request_reply::domain::OperationId;
use async_request_reply::edges::http::invocation::Invocation;
use async_request_reply::edges::http::query::StatusQuery;
use proptest::prelude::*;
use serde_json::{json, Value};

/// Arbitrary JSON values, nested a few levels, with keys that matter to the decoders mixed in.
fn json_value() -> impl Strategy<Value = Value> {
    json_values(true)
}

/// As above; without floats where exact round trips are asserted (serde_json's float parsing is
/// not guaranteed to round-trip the last bit without its `float_roundtrip` feature).
fn json_values(floats: bool) -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("id".to_string()),
        Just("customername".to_string()),
        Just("RequestGUID".to_string()),
        Just("RequestSubmittedAt".to_string()),
        Just("RequestStatusURL".to_string()),
        Just("RequestPayloadRef".to_string()),
        Just("RequestTraceparent".to_string()),
        Just("RequestRecordVersion".to_string()),
        Just("Data".to_string()),
        Just("Metadata".to_string()),
        Just("myQueueItem".to_string()),
        Just("DequeueCount".to_string()),
        ".{0,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(move |f| match serde_json::Number::from_f64(f) {
            Some(n) if floats => Value::Number(n),
            _ => Value::Null,
        }),
        ".{0,40}".prop_map(Value::from),
        Just(Value::from("3fa85f64-5717-4562-b3fc-2c963f66afa6")),
        Just(Value::from("2026-11-24T10:00:00Z")),
    ];
    leaf.prop_recursive(4, 48, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Bytes that are often almost JSON: a JSON text, then perhaps cut or corrupted.
fn almost_json() -> impl Strategy<Value = Vec<u8>> {
    (
        json_value(),
        any::<prop::sample::Index>(),
        any::<u8>(),
        0u8..3,
    )
        .prop_map(|(v, at, byte, how)| {
            let mut bytes = v.to_string().into_bytes();
            if !bytes.is_empty() {
                let i = at.index(bytes.len());
                match how {
                    0 => bytes.truncate(i),
                    1 => bytes[i] = byte,
                    _ => {}
                }
            }
            bytes
        })
}

proptest! {
    #[test]
    fn submission_bodies_never_panic(bytes in prop_oneof![any::<Vec<u8>>(), almost_json()]) {
        // Arbitrary bytes: refusing them, at parsing or at the work's validation, is a
        // legitimate outcome; the property is that neither panics.
        if let Ok(record) = submission::parse(&bytes) {
            let _ = SampleWork::default().validate(&record);
        }
    }

    #[test]
    fn valid_records_are_accepted(id in "[a-zA-Z0-9][^\u{0}]{0,39}", name in "[^\\s][^\u{0}]{0,39}", extra in json_value()) {
        let body = json!({ "id": id, "customername": name, "extra": extra }).to_string();
        let record = submission::parse(body.as_bytes());
        prop_assert!(record.is_ok(), "{body}");
        prop_assert!(SampleWork::default().validate(&record.unwrap()).is_ok(), "{body}");
    }

    #[test]
    fn status_queries_never_panic(raw in prop_oneof![".{0,80}", "(OnComplete|OnPending|oncomplete)=[A-Za-z%0-9,]{0,12}(&[A-Za-z=%]{0,16}){0,3}"]) {
        let _ = StatusQuery::parse(&raw);
    }

    #[test]
    fn operation_ids_never_panic_and_round_trip(raw in ".{0,60}", uuid in any::<u128>()) {
        let _ = OperationId::from_str(&raw);
        let canonical = uuid::Uuid::from_u128(uuid).to_string();
        // A canonical UUID must parse, and print back as itself.
        let id = OperationId::from_str(&canonical);
        prop_assert!(id.is_ok(), "{canonical} refused: {:?}", id.err());
        prop_assert_eq!(id.unwrap().to_string(), canonical);
    }

    #[test]
    fn queue_messages_never_panic(text in prop_oneof![".{0,200}", almost_json().prop_map(|b| String::from_utf8_lossy(&b).into_owned())]) {
        let _ = WorkMessage::decode(&text);
    }

    #[test]
    fn encoded_messages_decode_to_themselves(record in prop::collection::btree_map("[a-z]{1,8}", json_values(false), 0..6), tp in proptest::option::of("00-[0-9a-f]{32}-[0-9a-f]{16}-01"), version in proptest::option::of("\"0x[0-9A-F]{15}\"")) {
        let mut fields: serde_json::Map<String, Value> = record.into_iter().collect();
        fields.insert("id".into(), json!("1"));
        fields.insert("customername".into(), json!("Contoso"));
        let message = WorkMessage {
            id: OperationId::new_random(),
            submitted_at: time::OffsetDateTime::from_unix_timestamp(1_790_000_000).unwrap(),
            status_url: "https://example.net/api/RequestStatus/x".into(),
            payload: async_request_reply::domain::message::Payload::Inline(fields),
            traceparent: tp,
            record_version: version,
        };
        let decoded = WorkMessage::decode(&message.encode().unwrap());
        prop_assert_eq!(decoded, Ok(message));
    }

    #[test]
    fn invocation_payloads_never_panic(bytes in prop_oneof![any::<Vec<u8>>(), almost_json()]) {
        // Arbitrary bytes: refusing them is a legitimate outcome (so is a payload without the
        // binding); whatever does parse must still report at least one delivery.
        if let Ok(invocation) = Invocation::parse(&bytes) {
            let text = invocation.message_text("myQueueItem").unwrap_or_default();
            prop_assert!(invocation.dequeue_count(&text) >= 1);
            let _ = invocation.message_id();
        }
    }

    #[test]
    fn host_shaped_invocations_decode(text in ".{0,100}", count in 1u32..1000, quoted in any::<bool>()) {
        let count_text = if quoted { format!("\"{count}\"") } else { count.to_string() };
        let body = json!({
            "Data": { "myQueueItem": serde_json::to_string(&text).unwrap() },
            "Metadata": { "DequeueCount": count_text, "Id": "\"abc\"" }
        });
        let invocation = Invocation::parse(body.to_string().as_bytes()).unwrap();
        let decoded = invocation.message_text("myQueueItem").unwrap();
        prop_assert_eq!(&decoded, &text);
        prop_assert_eq!(invocation.dequeue_count(&decoded), count);
    }
}
