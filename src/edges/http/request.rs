//! A request as the handlers see it, and reading its body within the edge's limits.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::StreamExt;
use warp::http::{header, HeaderMap, Method};

use super::problem::Problem;
use crate::telemetry::TraceParent;

/// A request as the handlers see it.
pub struct Request {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: BoxStream<'static, Result<Bytes, warp::Error>>,
    /// The request's own place in its trace (its server span), once `dispatch` has begun it.
    pub trace: Option<TraceParent>,
}

/// Reads a body of at most `limit` bytes: refuses a larger declared `Content-Length` before
/// reading anything, stops reading a longer body as soon as it passes the limit, and gives up
/// on a client that sends too slowly.
pub async fn read_body(
    req: &mut Request,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, Problem> {
    let declared = req
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Problem::payload_too_large(limit));
    }
    let read = async {
        let mut buf = BytesMut::new();
        while let Some(chunk) = req.body.next().await {
            let chunk =
                chunk.map_err(|_| Problem::bad_request("the request body could not be read"))?;
            if buf.len() + chunk.len() > limit {
                return Err(Problem::payload_too_large(limit));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or_else(|_| Err(Problem::request_timeout()))
}
