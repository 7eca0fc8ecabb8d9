//! The HTTP edge: one warp filter that routes requests case-insensitively (the Functions host
//! matches routes that way and forwards the caller's casing), reads bodies within limits, and
//! hands them to the handlers. Under the host the same filter also receives queue invocations.

pub mod handlers;
pub mod problem;
pub mod public_url;
pub mod query;
pub mod server;
mod sniff_deadline;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use tracing::{debug, Instrument};
use warp::http::{header, HeaderMap, Method, Response, StatusCode};
use warp::{Buf, Filter, Reply};

use crate::domain::Service;
use problem::Problem;
use public_url::UrlPolicy;

/// What the HTTP edge needs besides the service.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub urls: UrlPolicy,
    pub max_body_bytes: usize,
    /// `BODY_TIMEOUT_SECONDS`: how long a client may take to send its body.
    pub body_timeout: Duration,
    pub retry_after: Duration,
    pub sync_wait_max: Duration,
    /// `LOCATION_STREAMS_RESULT`: the `202`'s `Location` asks for the result itself
    /// (`?OnComplete=Stream`), for clients that follow `Location` to the first non-`202`.
    pub location_streams_result: bool,
    /// Under the Functions host: also serve the queue trigger's invocations.
    pub host_mode: bool,
}

pub struct HttpState {
    pub service: Arc<Service>,
    pub settings: HttpSettings,
}

/// A request as the handlers see it.
pub struct Request {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: BoxStream<'static, Result<Bytes, warp::Error>>,
}


/// The whole HTTP surface as one filter that never rejects.
pub fn routes(
    state: Arc<HttpState>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone {
    warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(body_stream())
        .then(
            move |method, path: warp::path::FullPath, query, headers, body| {
                let state = state.clone();
                let request = Request {
                    method,
                    path: path.as_str().to_string(),
                    query,
                    headers,
                    body,
                };
                let span =
                    tracing::info_span!("http", method = %request.method, path = %request.path);
                async move {
                    let response = dispatch(&state, request).await;
                    debug!(status = response.status().as_u16(), "answered");
                    response
                }
                .instrument(span)
            },
        )
        // Nothing above rejects once a request is parsed; answer in the house style regardless.
        .recover(|_rejection: warp::Rejection| async {
            Ok::<_, Infallible>(
                Problem::bad_request("the request could not be read").into_response("/"),
            )
        })
        .unify()
}

/// The request body as a stream of `Bytes`.
fn body_stream(
) -> impl Filter<Extract = (BoxStream<'static, Result<Bytes, warp::Error>>,), Error = warp::Rejection>
       + Clone {
    fn to_bytes<B: Buf>(mut b: B) -> Bytes {
        b.copy_to_bytes(b.remaining())
    }
    warp::body::stream().map(|s| StreamExt::boxed(TryStreamExt::map_ok(s, to_bytes)))
}

async fn dispatch(state: &HttpState, req: Request) -> warp::reply::Response {
    let path = req.path.clone();
    let trimmed = path.trim_start_matches('/');
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    let segments: Vec<&str> = trimmed.split('/').collect();
    let lower: Vec<String> = segments.iter().map(|s| s.to_ascii_lowercase()).collect();
    let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
    let result = match (lower.as_slice(), &req.method) {
        ([""], &Method::GET | &Method::HEAD) => Ok(ok_text("ok")),
        ([""], _) => Err(Problem::method_not_allowed("GET, HEAD")),
        (["api", "asyncprocessingworkacceptor"], &Method::POST) => {
            handlers::submit(state, req).await
        }
        (["api", "asyncprocessingworkacceptor"], _) => Err(Problem::method_not_allowed("POST")),
        (["api", "requeststatus", _], &Method::GET) => {
            handlers::status(state, segments[2], &req.query).await
        }
        (["api", "requeststatus", _], &Method::DELETE) => {
            handlers::cancel(state, segments[2]).await
        }
        (["api", "requeststatus", _], _) => Err(Problem::method_not_allowed("GET, DELETE")),
        // The Azure REST API guidelines' cancel: `POST /api/operations/{id}:cancel` (the colon
        // may arrive percent-encoded).
        (["api", "operations", op], method) if cancel_action(op).is_some() => {
            match (method, cancel_action(segments[2])) {
                (&Method::POST, Some(id)) => handlers::cancel(state, id).await,
                _ => Err(Problem::method_not_allowed("POST")),
            }
        }
        (["api", "operations", _], &Method::GET) => handlers::monitor(state, segments[2]).await,
        (["api", "operations", _], _) => Err(Problem::method_not_allowed("GET")),
        (["asyncprocessingbackgroundworker"], &Method::POST) if state.settings.host_mode => {
            super::invocation::handle(state, req).await
        }
        (["asyncprocessingpoisonworker"], &Method::POST) if state.settings.host_mode => {
            super::invocation::handle_poison(state, req).await
        }
        _ => Err(Problem::route_not_found()),
    };
    result.unwrap_or_else(|p| p.into_response(&path))
}

/// The id in an `{id}:cancel` path segment (any casing, the colon plain or as `%3A`).
fn cancel_action(segment: &str) -> Option<&str> {
    [":cancel", "%3acancel"].into_iter().find_map(|suffix| {
        let cut = segment.len().checked_sub(suffix.len())?;
        (segment.is_char_boundary(cut) && segment[cut..].eq_ignore_ascii_case(suffix))
            .then(|| &segment[..cut])
    })
}

fn ok_text(text: &'static str) -> warp::reply::Response {
    let mut r = Response::new(Bytes::from_static(text.as_bytes())).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
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

/// A JSON response with the headers every API answer carries.
pub fn json_response(status: StatusCode, body: &impl serde::Serialize) -> warp::reply::Response {
    // Serializing plain data to a Vec cannot fail; an empty object would be the fallback.
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(Bytes::from(bytes)).into_response();
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}
