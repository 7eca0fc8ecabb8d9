//! Building answers: JSON with the headers every API answer carries, plain text, and setting
//! a header from a value that may not be a valid one.

use bytes::Bytes;
use warp::http::{header, HeaderValue, Response, StatusCode};
use warp::Reply;

use super::problem::Problem;

/// A JSON response with the headers every API answer carries. A body that cannot be serialized
/// is an internal error, never an empty or default document.
pub fn json_response(
    status: StatusCode,
    body: &impl serde::Serialize,
) -> Result<warp::reply::Response, Problem> {
    let bytes = serde_json::to_vec(body).map_err(|e| {
        tracing::error!(error = %e, "an answer could not be serialized");
        Problem::internal()
    })?;
    let mut r = Response::new(Bytes::from(bytes)).into_response();
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// A plain-text `200`.
pub fn ok_text(text: &'static str) -> warp::reply::Response {
    let mut r = Response::new(Bytes::from_static(text.as_bytes())).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Sets a header whose value comes from data (a URL, a number); one that is no valid header
/// value is left out rather than failing the answer.
pub fn set(r: &mut warp::reply::Response, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
}
