//! RFC 9457 problem details: the one place where errors become HTTP responses. Every error
//! body has a stable `type` and `title`; no stack trace, storage detail or secret is ever shown.

use bytes::Bytes;
use serde_json::{json, Map, Value};
use warp::http::{header, Response, StatusCode};
use warp::reply::Reply;

use crate::domain::submission::InvalidSubmission;
use crate::domain::{DomainError, Operation, Status};

/// A problem to answer with.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    /// The last part of the stable `type` URI.
    pub kind: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub extensions: Map<String, Value>,
    pub retry_after: Option<u64>,
    pub allow: Option<&'static str>,
}

const TYPE_PREFIX: &str = "urn:async-request-reply:problem:";

impl Problem {
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            title,
            detail: detail.into(),
            extensions: Map::new(),
            retry_after: None,
            allow: None,
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(key.to_string(), value.into());
        self
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-request",
            "The request is invalid",
            detail,
        )
    }

    pub fn invalid_field(field: &str, detail: impl Into<String>) -> Self {
        Self::bad_request(detail).with("field", field)
    }

    pub fn invalid_query(parameter: &str, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-query",
            "A query parameter is invalid",
            detail,
        )
        .with("parameter", parameter)
    }

    pub fn invalid_operation_id(raw: &str) -> Self {
        let shown: String = raw.chars().take(64).collect();
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-operation-id",
            "The operation id is malformed",
            format!("`{shown}` is not an operation id (a UUID such as 3fa85f64-5717-4562-b3fc-2c963f66afa6)"),
        )
    }

    pub fn route_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "route-not-found",
            "No such route",
            "nothing is served at this path",
        )
    }

    pub fn method_not_allowed(allow: &'static str) -> Self {
        let mut p = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            format!("this route answers {allow}"),
        );
        p.allow = Some(allow);
        p
    }

    pub fn unsupported_media_type(got: Option<&str>) -> Self {
        let detail = match got {
            Some(ct) => format!(
                "the body must be `application/json`, not `{}`",
                ct.chars().take(100).collect::<String>()
            ),
            None => {
                "the body must be `application/json` (the Content-Type header is missing)".into()
            }
        };
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            detail,
        )
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "The request body is too large",
            format!("the body must be at most {limit} bytes"),
        )
        .with("limit", limit)
    }

    pub fn request_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "request-timeout",
            "The request body came too slowly",
            "the body was not received in time",
        )
    }

    pub fn unavailable(retry_after: u64) -> Self {
        let mut p = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage-unavailable",
            "The service is temporarily unavailable",
            "storage could not be reached; nothing was accepted or changed; retry later",
        );
        p.retry_after = Some(retry_after);
        p
    }

    /// The answer for a domain error. `retry_after` is the advice given with a 503.
    /// The 400 for a body that is no acceptable submission, naming the field when there is one.
    pub fn invalid_submission(e: InvalidSubmission) -> Self {
        match &e.field {
            Some(field) => Self::invalid_field(field, e.detail.clone()),
            None => Self::bad_request(e.detail),
        }
    }

    pub fn from_domain(e: &DomainError, retry_after: u64) -> Self {
        match e {
            DomainError::Invalid(invalid) => Self::invalid_submission(invalid.clone()),
            DomainError::NotFound => Self::new(
                StatusCode::NOT_FOUND,
                "operation-not-found",
                "No such operation",
                "the operation is unknown or past its retention",
            ),
            DomainError::AlreadyEnded(status) => Self::new(
                StatusCode::CONFLICT,
                "operation-ended",
                "The operation already ended",
                format!("the operation is {status}; only a pending operation can be canceled"),
            )
            .with("operationStatus", status.as_str()),
            DomainError::IdempotencyMismatch => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key reused with a different body",
                e.to_string(),
            ),
            DomainError::Unavailable(reason) => {
                // The reason names the storage call (or the contention), never a key or a signature.
                tracing::warn!(%reason, "answering 503: the service cannot complete this now");
                Self::unavailable(retry_after)
            }
            DomainError::Internal(_) => Self::internal(),
        }
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal-error",
            "Internal error",
            "the service could not complete the request",
        )
    }

    /// The answer for reading an operation that ended without a result.
    pub fn for_ended(op: &Operation) -> Self {
        let p = match op.status {
            Status::Canceled => Self::new(
                StatusCode::GONE,
                "operation-canceled",
                "The operation was canceled",
                "the operation was canceled before it completed; it has no result",
            ),
            _ => {
                let message = op
                    .error
                    .as_ref()
                    .map_or("the operation failed", |e| e.message.as_str());
                Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "operation-failed",
                    "The operation failed",
                    message.to_string(),
                )
            }
        };
        let mut p = p
            .with("operationId", op.id.to_string())
            .with("operationStatus", op.status.as_str());
        if let Some(error) = &op.error {
            p = p.with(
                "error",
                json!({ "code": error.code, "message": error.message }),
            );
        }
        p
    }

    pub fn into_response(self, instance: &str) -> warp::reply::Response {
        let mut body = Map::new();
        body.insert("type".into(), format!("{TYPE_PREFIX}{}", self.kind).into());
        body.insert("title".into(), self.title.into());
        body.insert("status".into(), self.status.as_u16().into());
        body.insert("detail".into(), self.detail.into());
        body.insert(
            "instance".into(),
            instance.chars().take(256).collect::<String>().into(),
        );
        body.extend(self.extensions);
        let mut builder = Response::builder()
            .status(self.status)
            .header(header::CONTENT_TYPE, "application/problem+json")
            .header(header::CACHE_CONTROL, "no-store");
        if let Some(s) = self.retry_after {
            builder = builder.header(header::RETRY_AFTER, s);
        }
        if let Some(allow) = self.allow {
            builder = builder.header(header::ALLOW, allow);
        }
        let bytes = Bytes::from(Value::Object(body).to_string());
        match builder.body(bytes) {
            Ok(r) => r.into_response(),
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        }
    }
}
