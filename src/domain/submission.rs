//! What a client may submit: a JSON object carrying at least non-empty string fields `id` and
//! `customername` (the sample's customer record). Every other field is kept and travels with it.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The fields every record must carry.
pub const REQUIRED_FIELDS: [&str; 2] = ["id", "customername"];

/// Why a body is not an acceptable submission. `field` names the offending field when there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct InvalidSubmission {
    pub field: Option<String>,
    pub detail: String,
}

impl InvalidSubmission {
    fn body(detail: impl Into<String>) -> Self {
        Self {
            field: None,
            detail: detail.into(),
        }
    }
    fn field(field: &str, detail: impl Into<String>) -> Self {
        Self {
            field: Some(field.to_string()),
            detail: detail.into(),
        }
    }
}

/// A JSON object whose top level has no repeated field: with a repeated `id`, which one the
/// client meant is ambiguous, so such a body is refused rather than silently resolved.
struct StrictObject(Map<String, Value>);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = StrictObject;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<StrictObject, A::Error> {
                let mut map = Map::new();
                while let Some(key) = access.next_key::<String>()? {
                    if map.contains_key(&key) {
                        return Err(de::Error::custom(format!("duplicate field `{key}`")));
                    }
                    let value: Value = access.next_value()?;
                    map.insert(key, value);
                }
                Ok(StrictObject(map))
            }
        }
        d.deserialize_any(ObjectVisitor)
    }
}

/// The answer to an empty body.
pub fn empty_body() -> InvalidSubmission {
    InvalidSubmission::body(
        "the request body is empty; send a JSON object with `id` and `customername` \
         (with a Content-Length: chunked uploads are not forwarded by the Functions host)",
    )
}

/// Parses and validates a submitted body.
pub fn parse(body: &[u8]) -> Result<Map<String, Value>, InvalidSubmission> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(empty_body());
    }
    let StrictObject(record) = serde_json::from_slice(body).map_err(|e| {
        let detail = match e.classify() {
            serde_json::error::Category::Data => format!("the body must be a JSON object: {e}"),
            _ => format!("the body is not valid JSON: {e}"),
        };
        InvalidSubmission::body(detail)
    })?;
    validate(&record)?;
    Ok(record)
}

/// Checks the required fields of a record (also applied to records read back from the queue).
pub fn validate(record: &Map<String, Value>) -> Result<(), InvalidSubmission> {
    for field in REQUIRED_FIELDS {
        match record.get(field) {
            None => {
                return Err(InvalidSubmission::field(
                    field,
                    format!("the field `{field}` is required"),
                ))
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                return Err(InvalidSubmission::field(
                    field,
                    format!("the field `{field}` must not be empty"),
                ))
            }
            Some(Value::String(_)) => {}
            Some(_) => {
                return Err(InvalidSubmission::field(
                    field,
                    format!("the field `{field}` must be a string"),
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_record_and_keeps_other_fields() {
        let r = parse(br#"{"id":"1","customername":"Contoso","extra":{"a":[1,2]}}"#).unwrap();
        assert_eq!(r["extra"]["a"][1], 2);
    }

    #[test]
    fn names_the_bad_field() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (br#"{"customername":"C"}"#, Some("id")),
            (br#"{"id":"","customername":"C"}"#, Some("id")),
            (br#"{"id":"  ","customername":"C"}"#, Some("id")),
            (br#"{"id":1,"customername":"C"}"#, Some("id")),
            (br#"{"id":"1"}"#, Some("customername")),
            (br#"{"id":"1","customername":null}"#, Some("customername")),
            (br#"{"id":"1","id":"2","customername":"C"}"#, None),
            (br#"[1,2]"#, None),
            (br#""text""#, None),
            (br#"{"id":"1","#, None),
            (b"", None),
            (b"\xff\xfe", None),
        ];
        for (body, field) in cases {
            let err = parse(body).unwrap_err();
            assert_eq!(
                err.field.as_deref(),
                *field,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!(
            "{{\"id\":\"1\",\"customername\":\"C\",\"x\":{}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(parse(deep.as_bytes()).is_err());
    }
}
