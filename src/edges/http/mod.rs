//! The HTTP edge: one warp filter that routes requests case-insensitively (the Functions host
//! matches routes that way and forwards the caller's casing), reads bodies within limits, and
//! hands them to the handlers. Under the host the same filter also receives queue invocations.
//!
//! warp does the HTTP plumbing (method, path, query, headers, the body stream, the service
//! hyper serves); the routing and the body limit are written here because warp's own do not fit:
//! its path filters match segments exactly (the host matches them case-insensitively), and
//! `warp::body::content_length_limit` refuses a body without `Content-Length` and has no
//! deadline, where `request::read_body` bounds a chunked body's size as it streams and a slow
//! client's time. The accept loop is `server`'s, for a like reason: warp's server has no header
//! deadline and no connection cap.

pub mod handlers;
pub mod invocation;
pub mod problem;
pub mod public_url;
pub mod query;
pub mod request;
pub mod response;
pub mod server;
mod sniff_deadline;
pub mod state;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use tracing::{debug, Instrument};
use warp::http::Method;
use warp::{Buf, Filter};

use problem::Problem;
use request::Request;
use response::ok_text;
use state::HttpState;

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
            invocation::handle(state, req).await
        }
        (["asyncprocessingpoisonworker"], &Method::POST) if state.settings.host_mode => {
            invocation::handle_poison(state, req).await
        }
        (["asyncprocessingcallbackworker"], &Method::POST) if state.settings.host_mode => {
            invocation::handle_callback(state, req).await
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
