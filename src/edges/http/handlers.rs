//! The route handlers: parse the request, call the service, shape the answer. Errors go out
//! through `Problem`, the one place that maps them to HTTP.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};
use warp::http::{header, StatusCode};
use warp::Reply;

use super::problem::Problem;
use super::query::{OnComplete, OnPending, StatusQuery};
use super::request::{read_body, Request};
use super::response::{json_response, set};
use super::state::HttpState;
use crate::domain::monitor::{monitor_url, CallbackView, StatusDocument, STATUS_PATH};
use crate::domain::submit::CALLBACK_URL_HEADER;
use crate::domain::SubmitRequest;
use crate::domain::{submission, DomainError, Operation, OperationId, Status};

type Answer = Result<warp::reply::Response, Problem>;

/// The status document where no callback state was read: a callback is pending until its
/// operation has ended and the delivery is tried (the status monitor reads the state itself).
fn status_body(op: &Operation) -> StatusDocument<'_> {
    StatusDocument::new(op, op.callback.as_ref().map(|_| CallbackView::pending()))
}

fn domain_problem(state: &HttpState, e: DomainError) -> Problem {
    if let DomainError::Internal(detail) = &e {
        tracing::error!(%detail, "internal error");
    }
    Problem::from_domain(&e, state.settings.retry_after.as_secs())
}

/// The operation id in a path; a valid one names the request's span (`operation_id`).
fn parse_id(raw: &str) -> Result<OperationId, Problem> {
    let id: OperationId = raw
        .parse()
        .map_err(|_| Problem::invalid_operation_id(raw))?;
    name_span(id);
    Ok(id)
}

/// Records the operation a request is about on its server span.
fn name_span(id: OperationId) {
    tracing::Span::current().record("operation_id", tracing::field::display(id));
}

fn is_json(content_type: &str) -> bool {
    let mut parts = content_type.split(';');
    let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let json = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    let charset_ok = parts.all(|p| match p.trim().split_once('=') {
        Some((k, v)) if k.trim().eq_ignore_ascii_case("charset") => {
            v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        }
        _ => true,
    });
    json && charset_ok
}

/// Whether a request says it has no body (`Content-Length: 0`, or no length and no chunking).
fn declares_no_body(req: &Request) -> bool {
    let length = req.headers.get(header::CONTENT_LENGTH);
    let chunked = req.headers.contains_key(header::TRANSFER_ENCODING);
    match length.and_then(|v| v.to_str().ok()) {
        Some(n) => n.trim() == "0",
        None => length.is_none() && !chunked,
    }
}

/// The `Callback-Url` header, and `Callback-Events`, which may name only the end
/// (`completed`): progress is read from the status monitor, not pushed (docs/api.md).
fn callback_url(req: &Request) -> Result<Option<String>, Problem> {
    if let Some(events) = req.headers.get("callback-events") {
        if events.as_bytes() != b"completed" {
            return Err(Problem::invalid_field(
                "Callback-Events",
                "the Callback-Events header may only be `completed`: callbacks announce the \
                 operation's end; progress is on the status monitor (percentComplete)",
            ));
        }
    }
    let mut values = req.headers.get_all(CALLBACK_URL_HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Problem::invalid_field(
            CALLBACK_URL_HEADER,
            "the Callback-Url header may be sent once",
        ));
    }
    match value.to_str() {
        Ok(url) if !url.trim().is_empty() => Ok(Some(url.trim().to_string())),
        _ => Err(Problem::invalid_field(
            CALLBACK_URL_HEADER,
            "the Callback-Url header must be an absolute URL in visible ASCII",
        )),
    }
}

/// `POST /api/AsyncProcessingWorkAcceptor`
pub async fn submit(state: &HttpState, mut req: Request) -> Answer {
    let content_type = req
        .headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not text)"));
    match content_type {
        Some(ct) if is_json(ct) => {}
        // The Functions host forwards a body, and with it `Content-Type`, only when
        // `Content-Length` is over 0: an empty POST arrives with neither, and deserves the
        // empty-body answer rather than a complaint about a media type the client did send.
        None if declares_no_body(&req) => {
            return Err(Problem::invalid_submission(submission::empty_body()));
        }
        other => return Err(Problem::unsupported_media_type(other)),
    }
    let idempotency_key = match req.headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v.to_str().unwrap_or("").trim();
            if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| (0x21..0x7f).contains(&b))
            {
                return Err(Problem::invalid_field(
                    "Idempotency-Key",
                    "the Idempotency-Key header must be 1 to 255 visible ASCII characters",
                ));
            }
            Some(key.to_string())
        }
    };
    let callback_url = callback_url(&req)?;
    let base = state
        .settings
        .urls
        .base(&req.headers)
        .map_err(|e| Problem::bad_request(e.to_string()))?;
    let settings = &state.settings;
    let body = read_body(&mut req, settings.max_body_bytes, settings.body_timeout).await?;
    let record = submission::parse(&body).map_err(Problem::invalid_submission)?;
    let request = SubmitRequest {
        record,
        idempotency_key,
        // The request's own span (see `dispatch`): the enqueue and the worker join its trace.
        traceparent: req.trace.map(|tp| tp.to_string()),
        callback_url,
    };
    let status_url = |id: OperationId| format!("{base}{STATUS_PATH}{id}");
    let accepted = state
        .service
        .submit(request, &status_url)
        .await
        .map_err(|e| domain_problem(state, e))?;
    let op = &accepted.operation;
    name_span(op.id);
    let mut r = json_response(StatusCode::ACCEPTED, &status_body(op))?;
    if state.settings.location_streams_result {
        set(
            &mut r,
            header::LOCATION,
            &format!("{}?OnComplete=Stream", op.status_url),
        );
    } else {
        set(&mut r, header::LOCATION, &op.status_url);
    }
    set(
        &mut r,
        header::HeaderName::from_static("operation-location"),
        &monitor_url(op),
    );
    set(
        &mut r,
        header::RETRY_AFTER,
        &state.settings.retry_after.as_secs().to_string(),
    );
    if accepted.replayed {
        set(
            &mut r,
            header::HeaderName::from_static("idempotent-replayed"),
            "true",
        );
    }
    Ok(r)
}

/// `GET /api/RequestStatus/{id}`
pub async fn status(state: &HttpState, raw_id: &str, raw_query: &str) -> Answer {
    let id = parse_id(raw_id)?;
    let query = StatusQuery::parse(raw_query)?;
    let op = match query.on_pending {
        OnPending::Synchronous => state.service.wait(id, state.settings.sync_wait_max).await,
        _ => state.service.get(id).await,
    }
    .map_err(|e| domain_problem(state, e))?;
    match op.status {
        Status::NotStarted | Status::Running => {
            if query.on_pending == OnPending::Ok {
                let mut r = json_response(StatusCode::OK, &status_body(&op))?;
                set(&mut r, header::LOCATION, &op.status_url);
                return Ok(r);
            }
            let mut r = json_response(StatusCode::ACCEPTED, &status_body(&op))?;
            // Poll the same URL, keeping the caller's preferences.
            let location = if raw_query.is_empty() {
                op.status_url.clone()
            } else {
                format!("{}?{raw_query}", op.status_url)
            };
            set(&mut r, header::LOCATION, &location);
            set(
                &mut r,
                header::RETRY_AFTER,
                &state.settings.retry_after.as_secs().to_string(),
            );
            Ok(r)
        }
        Status::Succeeded => match query.on_complete {
            OnComplete::Redirect => {
                let link = state
                    .service
                    .result_link(&op)
                    .await
                    .map_err(|e| domain_problem(state, e))?
                    .unwrap_or_else(|| format!("{}?OnComplete=Stream", op.status_url));
                let mut r = warp::reply::Response::new(Default::default());
                *r.status_mut() = StatusCode::FOUND;
                set(&mut r, header::LOCATION, &link);
                set(&mut r, header::CACHE_CONTROL, "no-store");
                Ok(r)
            }
            OnComplete::Stream => stream_result(state, &op).await,
        },
        Status::Failed | Status::Canceled => Err(Problem::for_ended(&op)),
    }
}

/// A stream made `Sync`, as warp's body type requires of any stream. It is only ever polled
/// through `&mut`, so the mutex is never locked: it is there for the type, and costs nothing.
struct SyncStream<S>(std::sync::Mutex<S>);

impl<S: Stream + Unpin> Stream for SyncStream<S> {
    type Item = S::Item;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.get_mut().0.get_mut() {
            Ok(inner) => inner.poll_next_unpin(cx),
            Err(poisoned) => poisoned.into_inner().poll_next_unpin(cx),
        }
    }
}

async fn stream_result(state: &HttpState, op: &Operation) -> Answer {
    let result = state
        .service
        .open_result(op)
        .await
        .map_err(|e| domain_problem(state, e))?;
    let mut chunks = result.chunks;
    // The first piece of the body is read before answering: a storage failure then (the usual
    // one: storage unreachable) is a clean 503, not a 200 cut off mid-body.
    let first = match chunks.next().await {
        Some(Ok(bytes)) => Some(bytes),
        Some(Err(e)) => return Err(domain_problem(state, e.into())),
        None => None,
    };
    // The rest streams as the client reads it (memory stays bounded whatever the size); a
    // failure mid-way ends the body early, which the client sees as a short read.
    let id = op.id;
    let rest = chunks.map(move |chunk| {
        chunk.map_err(|e| {
            tracing::warn!(operation_id = %id, error = %e, "result stream broke off");
            io::Error::other("the result could not be read")
        })
    });
    let body = futures::stream::iter(first.map(Ok)).chain(rest);
    let mut r = warp::reply::stream(SyncStream(std::sync::Mutex::new(body))).into_response();
    set(&mut r, header::CONTENT_TYPE, &result.content_type);
    set(
        &mut r,
        header::CONTENT_LENGTH,
        &result.content_length.to_string(),
    );
    set(&mut r, header::CACHE_CONTROL, "no-store");
    Ok(r)
}

/// `DELETE /api/RequestStatus/{id}` and `POST /api/operations/{id}:cancel`
pub async fn cancel(state: &HttpState, raw_id: &str) -> Answer {
    let id = parse_id(raw_id)?;
    let op = state
        .service
        .cancel(id)
        .await
        .map_err(|e| domain_problem(state, e))?;
    json_response(StatusCode::OK, &status_body(&op))
}

/// `GET /api/operations/{id}`: the status monitor for standard LRO clients.
pub async fn monitor(state: &HttpState, raw_id: &str) -> Answer {
    let id = parse_id(raw_id)?;
    let op = state
        .service
        .get(id)
        .await
        .map_err(|e| domain_problem(state, e))?;
    let callback = state
        .service
        .callback_view(&op)
        .await
        .map_err(|e| domain_problem(state, e))?;
    let mut r = json_response(StatusCode::OK, &StatusDocument::new(&op, callback))?;
    if !op.status.is_terminal() {
        set(
            &mut r,
            header::RETRY_AFTER,
            &state.settings.retry_after.as_secs().to_string(),
        );
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
            "application/json;charset=\"UTF-8\"",
        ] {
            assert!(is_json(ok), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/xml",
            "application/json; charset=latin1",
            "",
            "json",
        ] {
            assert!(!is_json(bad), "{bad}");
        }
    }
}
