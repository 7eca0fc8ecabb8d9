//! The host of an HTTP/2 request, where the edge reads it: HTTP/2 carries it as the
//! `:authority` pseudo-header (in the request's URI), not as a `Host` header, and the edge
//! builds its absolute URLs from `Host`, as it gets it under the Functions host (HTTP/1.1). A
//! request without `Host` gets one from its URI's authority, as RFC 9113 section 8.3.1 asks of
//! anything that turns an HTTP/2 request into HTTP/1.1's terms. A `Host` present is kept.

use warp::http::{header, HeaderValue, Request};

/// A hyper service that adds the missing `Host` before `S` sees the request.
pub struct HostFromAuthority<S>(pub S);

impl<S, B> hyper::service::Service<Request<B>> for HostFromAuthority<S>
where
    S: hyper::service::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, mut request: Request<B>) -> Self::Future {
        if !request.headers().contains_key(header::HOST) {
            let host = request
                .uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
            if let Some(host) = host {
                request.headers_mut().insert(header::HOST, host);
            }
        }
        self.0.call(request)
    }
}
