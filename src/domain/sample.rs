//! The original sample's work: a customer record with non-empty string fields `id` and
//! `customername` comes back stamped with the request's fields and `ProcessedAt`, after an
//! optional delay (`PROCESSING_DELAY_MS`) that makes the asynchrony visible, reporting its
//! progress each quarter of it. A record may ask it to fail, so failure and retries can be
//! shown with curl.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Map, Value};

use super::message::{rfc3339, REQUEST_GUID, REQUEST_STATUS_URL, REQUEST_SUBMITTED_AT};
use super::submission::InvalidSubmission;
use super::work::{Work, WorkContext, WorkError, WorkOutput};

/// The fields every record must carry.
pub const REQUIRED_FIELDS: [&str; 2] = ["id", "customername"];

/// The field a record may carry to make the sample's work fail on purpose: `"permanent"`
/// fails at once, `"transient"` fails every attempt.
pub const SIMULATE_FAILURE_FIELD: &str = "simulateFailure";

#[derive(Debug, Clone, Default)]
pub struct SampleWork {
    pub delay: Duration,
}

impl SampleWork {
    pub fn new(delay: Duration) -> Self {
        Self { delay }
    }
}

#[async_trait]
impl Work for SampleWork {
    fn validate(&self, record: &Map<String, Value>) -> Result<(), InvalidSubmission> {
        for field in REQUIRED_FIELDS {
            let problem = match record.get(field) {
                None => "is required",
                Some(Value::String(s)) if s.trim().is_empty() => "must not be empty",
                Some(Value::String(_)) => continue,
                Some(_) => "must be a string",
            };
            return Err(InvalidSubmission::field(
                field,
                format!("the field `{field}` {problem}"),
            ));
        }
        Ok(())
    }

    async fn perform(
        &self,
        context: &WorkContext,
        record: Map<String, Value>,
    ) -> Result<WorkOutput, WorkError> {
        if !self.delay.is_zero() {
            // A quarter at a time, reporting each, so progress can be watched with curl.
            for quarter in 1..=4u8 {
                tokio::time::sleep(self.delay / 4).await;
                if quarter < 4 {
                    let status =
                        serde_json::json!({ "stage": format!("quarter {quarter} of 4 done") });
                    if let Err(e) = context.progress.report(quarter * 25, Some(status)) {
                        return Err(WorkError::Permanent(e.to_string()));
                    }
                }
            }
        }
        match record.get(SIMULATE_FAILURE_FIELD).and_then(Value::as_str) {
            Some("permanent") => {
                return Err(WorkError::Permanent(
                    "simulated permanent failure (the record asked for it)".into(),
                ))
            }
            Some("transient") => {
                return Err(WorkError::Transient(
                    "simulated transient failure (the record asked for it)".into(),
                ))
            }
            _ => {}
        }
        let time = |t| rfc3339(t).map_err(|e| WorkError::Permanent(format!("a time: {e}")));
        let mut result = record;
        result.insert(REQUEST_GUID.into(), context.operation_id.to_string().into());
        result.insert(
            REQUEST_SUBMITTED_AT.into(),
            time(context.submitted_at)?.into(),
        );
        result.insert(REQUEST_STATUS_URL.into(), context.status_url.clone().into());
        result.insert("ProcessedAt".into(), time(context.started_at)?.into());
        let body = serde_json::to_vec(&Value::Object(result))
            .map_err(|e| WorkError::Permanent(format!("cannot serialize the result: {e}")))?;
        Ok(WorkOutput {
            body: Bytes::from(body),
            content_type: "application/json".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::submission::parse;

    fn check(body: &[u8]) -> Result<(), InvalidSubmission> {
        SampleWork::default().validate(&parse(body)?)
    }

    #[test]
    fn names_the_bad_field() {
        let cases: &[(&[u8], &str)] = &[
            (br#"{"customername":"C"}"#, "id"),
            (br#"{"id":"","customername":"C"}"#, "id"),
            (br#"{"id":"  ","customername":"C"}"#, "id"),
            (br#"{"id":1,"customername":"C"}"#, "id"),
            (br#"{"id":"1"}"#, "customername"),
            (br#"{"id":"1","customername":null}"#, "customername"),
        ];
        for (body, field) in cases {
            let err = check(body).unwrap_err();
            assert_eq!(
                err.field.as_deref(),
                Some(*field),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(check(br#"{"id":"1","customername":"Contoso","extra":[1]}"#).is_ok());
    }
}
