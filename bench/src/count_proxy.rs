//! The counting proxy (`bench count-proxy`): sits between a storage client and Azurite on two
//! loopback ports (blob, queue), forwards every call unchanged and counts it by class, so the
//! harness reports storage transactions per operation as made, not as estimated from the code.
//!
//! `GET /__counts` answers the counts as JSON and `POST /__reset` zeroes them, on either port;
//! nothing else is answered by the proxy itself.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::common::BoxError;

/// What one proxy has forwarded since its start or its last reset.
#[derive(Default)]
pub struct Counts {
    blob_writes: AtomicU64,
    /// Blob writes refused by their condition (412) or because the target exists (409).
    blob_writes_refused: AtomicU64,
    blob_reads: AtomicU64,
    queue_calls: AtomicU64,
    queue_receives: AtomicU64,
    queue_empty_receives: AtomicU64,
}

impl Counts {
    fn all(&self) -> [(&'static str, &AtomicU64); 6] {
        [
            ("blob_writes", &self.blob_writes),
            ("blob_writes_refused", &self.blob_writes_refused),
            ("blob_reads", &self.blob_reads),
            ("queue_calls", &self.queue_calls),
            ("queue_receives", &self.queue_receives),
            ("queue_empty_receives", &self.queue_empty_receives),
        ]
    }

    pub fn json(&self) -> String {
        let fields: Vec<String> = self
            .all()
            .iter()
            .map(|(k, v)| format!("\"{k}\":{}", v.load(Ordering::SeqCst)))
            .collect();
        format!("{{{}}}", fields.join(","))
    }

    fn reset(&self) {
        for (_, v) in self.all() {
            v.store(0, Ordering::SeqCst);
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Endpoint {
    Blob,
    Queue,
}

/// Headers that belong to one hop (RFC 9110 §7.6.1) or that the forwarding client sets itself.
/// `Host` is among them: Shared Key signs the path and the `x-ms-` headers, never the host.
const HOP: [&str; 9] = [
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// The receives of a queue (`GET .../messages` without `peekonly`) are what an idle worker
/// repeats; the body tells whether one brought a message.
fn is_receive(method: &Method, path: &str, query: &str) -> bool {
    method == Method::GET && path.ends_with("/messages") && !query.contains("peekonly=true")
}

fn loopback_base(url: &str) -> Result<String, BoxError> {
    let u = reqwest::Url::parse(url)?;
    let host = u.host_str().unwrap_or_default();
    if !matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1") {
        return Err(format!("upstream {url}: only loopback addresses may be proxied").into());
    }
    let port = u.port_or_known_default().ok_or("upstream without a port")?;
    Ok(format!("{}://{host}:{port}", u.scheme()))
}

struct Proxy {
    counts: Counts,
    client: reqwest::Client,
    /// Writes a line per forwarded call to stdout (`--log`): what each count is made of.
    log: bool,
}

impl Proxy {
    async fn handle(
        &self,
        ep: Endpoint,
        upstream: &str,
        req: Request<Incoming>,
    ) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_string();
        match (req.method(), path.as_str()) {
            (&Method::GET, "/__counts") => return reply(200, self.counts.json().into()),
            (&Method::POST, "/__reset") => {
                self.counts.reset();
                return reply(200, self.counts.json().into());
            }
            _ => {}
        }
        match self.forward(ep, upstream, req).await {
            Ok(r) => r,
            Err(e) => reply(502, format!("count-proxy: {e}").into()),
        }
    }

    async fn forward(
        &self,
        ep: Endpoint,
        upstream: &str,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, BoxError> {
        let (parts, body) = req.into_parts();
        let query = parts.uri.query().unwrap_or_default().to_string();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let body = body.collect().await?.to_bytes();
        let mut out = self
            .client
            .request(parts.method.clone(), format!("{upstream}{path_and_query}"));
        for (k, v) in &parts.headers {
            if !HOP.contains(&k.as_str()) {
                out = out.header(k, v);
            }
        }
        // A call that carries a body (even an empty one: Put Blob of zero bytes) keeps its
        // Content-Length; a GET, HEAD or DELETE without one is forwarded without one too.
        let has_body =
            parts.headers.contains_key(hyper::header::CONTENT_LENGTH) || !body.is_empty();
        if has_body {
            out = out.body(body);
        }
        let r = out.send().await?;
        let status = r.status();
        let headers = r.headers().clone();
        let bytes = r.bytes().await?;

        let receive = ep == Endpoint::Queue && is_receive(&parts.method, parts.uri.path(), &query);
        let c = &self.counts;
        match ep {
            Endpoint::Queue => {
                c.queue_calls.fetch_add(1, Ordering::SeqCst);
                if receive {
                    c.queue_receives.fetch_add(1, Ordering::SeqCst);
                    let found = bytes.windows(14).any(|w| w == b"<QueueMessage>");
                    if status.is_success() && !found {
                        c.queue_empty_receives.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            Endpoint::Blob if matches!(parts.method, Method::GET | Method::HEAD) => {
                c.blob_reads.fetch_add(1, Ordering::SeqCst);
            }
            Endpoint::Blob => {
                c.blob_writes.fetch_add(1, Ordering::SeqCst);
                if matches!(status.as_u16(), 409 | 412) {
                    c.blob_writes_refused.fetch_add(1, Ordering::SeqCst);
                }
            }
        }

        if self.log {
            let class = match ep {
                Endpoint::Queue
                    if receive && !bytes.windows(14).any(|w| w == b"<QueueMessage>") =>
                {
                    "queue-empty"
                }
                Endpoint::Queue => "queue",
                Endpoint::Blob if matches!(parts.method, Method::GET | Method::HEAD) => "blob-read",
                Endpoint::Blob => "blob-write",
            };
            println!("{class} {} {} {}", parts.method, parts.uri, status.as_u16());
        }

        let mut resp = Response::builder().status(status.as_u16());
        for (k, v) in &headers {
            // Content-Length is kept: a HEAD's (blob properties) is the blob's size.
            if k.as_str() == "content-length" || !HOP.contains(&k.as_str()) {
                resp = resp.header(k, v);
            }
        }
        Ok(resp.body(Full::new(bytes))?)
    }
}

fn reply(code: u16, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = hyper::StatusCode::from_u16(code).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

async fn serve(
    proxy: Arc<Proxy>,
    ep: Endpoint,
    port: u16,
    upstream: String,
) -> Result<(), BoxError> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    let upstream = Arc::new(upstream);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (proxy, upstream) = (proxy.clone(), upstream.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let (proxy, upstream) = (proxy.clone(), upstream.clone());
                async move { Ok::<_, Infallible>(proxy.handle(ep, &upstream, req).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Runs until killed: blob calls on `blob_port` go to `upstream_blob`, queue calls on
/// `queue_port` to `upstream_queue` (both `http://127.0.0.1:PORT`).
pub async fn run(
    upstream_blob: &str,
    upstream_queue: &str,
    blob_port: u16,
    queue_port: u16,
    log: bool,
) -> Result<(), BoxError> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(600))
        .build()?;
    let proxy = Arc::new(Proxy {
        counts: Counts::default(),
        client,
        log,
    });
    let blob = serve(
        proxy.clone(),
        Endpoint::Blob,
        blob_port,
        loopback_base(upstream_blob)?,
    );
    let queue = serve(
        proxy,
        Endpoint::Queue,
        queue_port,
        loopback_base(upstream_queue)?,
    );
    tokio::try_join!(blob, queue)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receive_is_a_get_of_messages_that_does_not_peek() {
        assert!(is_receive(
            &Method::GET,
            "/devstoreaccount1/q/messages",
            "numofmessages=32"
        ));
        assert!(!is_receive(
            &Method::GET,
            "/devstoreaccount1/q/messages",
            "peekonly=true"
        ));
        assert!(!is_receive(
            &Method::POST,
            "/devstoreaccount1/q/messages",
            ""
        ));
        assert!(!is_receive(
            &Method::GET,
            "/devstoreaccount1/q",
            "comp=metadata"
        ));
    }

    #[test]
    fn only_loopback_upstreams() {
        assert_eq!(
            loopback_base("http://127.0.0.1:10000/devstoreaccount1").unwrap(),
            "http://127.0.0.1:10000"
        );
        assert!(loopback_base("http://10.0.0.1:10000").is_err());
    }
}
