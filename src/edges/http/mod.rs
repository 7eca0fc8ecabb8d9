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

mod authority;
pub mod handlers;
mod idle;
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
use tracing::field::Empty;
use tracing::{debug, Instrument};
use warp::http::{header, Method};
use warp::{Buf, Filter};

use problem::Problem;
use request::Request;
use response::ok_text;
use state::HttpState;

use crate::telemetry;

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
                    trace: None,
                };
                async move { dispatch(&state, request).await }
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

/// Routes a request inside its span: a server span (`http`) in the caller's trace, or for
/// a queue invocation from the host a span of its own that is not exported (`invocation`: the
/// delivery's consumer span joins the submitter's trace instead). Every answer to the HTTP
/// routes names its span in `traceresponse`.
async fn dispatch(state: &HttpState, mut req: Request) -> warp::reply::Response {
    let path = req.path.clone();
    let trimmed = path.trim_start_matches('/');
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    let segments: Vec<&str> = trimmed.split('/').collect();
    let lower: Vec<String> = segments.iter().map(|s| s.to_ascii_lowercase()).collect();
    let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
    let route = route_template(&lower);
    if state.settings.host_mode && route.is_some_and(|r| INVOCATION_ROUTES.contains(&r)) {
        let span = tracing::info_span!(
            target: "async_request_reply::invocation",
            telemetry::INVOCATION_SPAN,
            method = %req.method,
            path = %req.path
        );
        return route_request(state, req, &segments, &lower)
            .instrument(span)
            .await;
    }
    // `GET /` is the host's (and load balancers') liveness probe: logged, not exported.
    let span = if route == Some("/") {
        tracing::info_span!(
            target: "async_request_reply::probe",
            telemetry::PROBE_SPAN,
            method = %req.method,
            trace_id = Empty,
        )
    } else {
        tracing::info_span!(
            "http",
            otel.kind = Empty,
            otel.name = Empty,
            otel.status_code = Empty,
            http.request.method = %req.method,
            http.route = route,
            http.response.status_code = Empty,
            path = %req.path,
            operation_id = Empty,
            trace_id = Empty,
        )
    };
    if telemetry::exporting() {
        let name = match route {
            Some(r) => format!("{} {r}", req.method),
            None => req.method.to_string(),
        };
        telemetry::for_export(&span, "server", &name);
    }
    let caller = req
        .headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(telemetry::TraceParent::parse);
    let own = telemetry::begin(&span, caller);
    req.trace = Some(own);
    let mut response = route_request(state, req, &segments, &lower)
        .instrument(span.clone())
        .await;
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    span.in_scope(|| debug!(status, "answered"));
    response::set(&mut response, TRACERESPONSE.clone(), &own.to_string());
    response
}

/// The W3C Trace Context Level 2 response header.
const TRACERESPONSE: header::HeaderName = header::HeaderName::from_static("traceresponse");

/// The routes the Functions host invokes with a queue message.
const INVOCATION_ROUTES: [&str; 3] = [
    "/AsyncProcessingBackgroundWorker",
    "/AsyncProcessingPoisonWorker",
    "/AsyncProcessingCallbackWorker",
];

/// The route a (lower-cased) path matches, as a template: a span's name and `http.route`
/// (never the raw path, which holds an operation id).
fn route_template(lower: &[&str]) -> Option<&'static str> {
    Some(match lower {
        [""] => "/",
        ["api", "asyncprocessingworkacceptor"] => "/api/AsyncProcessingWorkAcceptor",
        ["api", "requeststatus", _] => "/api/RequestStatus/{id}",
        ["api", "operations", op] if cancel_action(op).is_some() => "/api/operations/{id}:cancel",
        ["api", "operations", _] => "/api/operations/{id}",
        ["asyncprocessingbackgroundworker"] => INVOCATION_ROUTES[0],
        ["asyncprocessingpoisonworker"] => INVOCATION_ROUTES[1],
        ["asyncprocessingcallbackworker"] => INVOCATION_ROUTES[2],
        _ => return None,
    })
}

async fn route_request(
    state: &HttpState,
    req: Request,
    segments: &[&str],
    lower: &[&str],
) -> warp::reply::Response {
    let path = req.path.clone();
    let result = match (lower, &req.method) {
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
