//! What a client may submit: one JSON object, with no repeated field. What its fields must be
//! is the work's business (`Work::validate`); every field is kept and travels with it.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Why a body is not an acceptable submission. `field` names the offending field when there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct InvalidSubmission {
    pub field: Option<String>,
    pub detail: String,
}

impl InvalidSubmission {
    pub fn body(detail: impl Into<String>) -> Self {
        Self {
            field: None,
            detail: detail.into(),
        }
    }
    pub fn field(field: &str, detail: impl Into<String>) -> Self {
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
        "the request body is empty; send a JSON object (such as `id` and `customername` for the sample) \
         (with a Content-Length: chunked uploads are not forwarded by the Functions host)",
    )
}

/// Parses a submitted body.
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
    Ok(record)
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
    fn refuses_what_is_no_single_object() {
        let cases: &[(&[u8], Option<&str>)] = &[
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
