//! The HTTP server loop: accepts connections up to a configured bound (past it, new connections
//! wait in the listen backlog instead of exhausting memory), serves each with hyper under
//! header-size and header-time limits (from the first byte on), closes a connection with no
//! request in progress for the header time (`idle`), and drains in-flight requests on shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};
use warp::Filter;

use super::authority::HostFromAuthority;
use super::idle::{Activity, Counted};
use super::sniff_deadline::SniffDeadline;

/// Limits on connections and on what a client may send before its body.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Bytes of request line plus headers; past it hyper answers `431`.
    pub max_header_bytes: usize,
    /// Time a client has to send its request line and headers (hyper's timer, for every
    /// request on a connection), and, on a new connection, to send its first bytes at all; a
    /// connection with no request in progress for this long is closed.
    pub header_timeout: Duration,
}

/// Serves `filter` on `listener` until `shutdown` is cancelled, then waits for in-flight
/// requests to finish (the caller bounds how long).
pub async fn serve<F>(
    listener: TcpListener,
    filter: F,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) where
    F: Filter<Extract = (warp::reply::Response,), Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = TaskTracker::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // hyper (1.x) starts this timer whenever it waits for a request head, including the
        // wait for the next request on an idle keep-alive connection (`State::idle` re-arms
        // it), so idle keep-alive clients give their slot back too. It does not cover the
        // protocol sniff before HTTP/1 starts: `SniffDeadline` does.
        .header_read_timeout(limits.header_timeout)
        // hyper's read buffer bounds the request head; 8 KiB is its floor.
        .max_buf_size(limits.max_header_bytes.max(8192));
    loop {
        // Wait for a free slot before accepting: excess clients queue in the kernel.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::default());
        let service = Counted {
            inner: HostFromAuthority(TowerToHyperService::new(warp::service(filter.clone()))),
            activity: activity.clone(),
        };
        // The deadline runs inside the connection's own task, so the accept loop never waits
        // on it, and graceful shutdown cancels a connection still sniffing at once.
        let stream = SniffDeadline::new(stream, limits.header_timeout);
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let (shutdown, idle) = (shutdown.clone(), limits.header_timeout);
        connections.spawn(async move {
            tokio::pin!(connection);
            let mut closing = false;
            loop {
                tokio::select! {
                    ended = connection.as_mut() => {
                        if let Err(e) = ended {
                            debug!(%peer, error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    // Both close gracefully: requests in progress finish (HTTP/2: `GOAWAY`,
                    // then the open streams end; HTTP/1: the current response, then close).
                    _ = shutdown.cancelled(), if !closing => {
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                    }
                    _ = activity.idle_for(idle), if !closing => {
                        debug!(%peer, "closing a connection with no request in progress");
                        connection.as_mut().graceful_shutdown();
                        // It still needs its peer's help to end (HTTP/2 waits for the
                        // acknowledgement of a ping after its `GOAWAY`): past this, dropped.
                        match tokio::time::timeout(idle, connection.as_mut()).await {
                            Ok(Err(e)) => {
                                debug!(%peer, error = %e, "connection ended with an error");
                            }
                            Ok(Ok(())) => {}
                            Err(_) => debug!(%peer, "dropping an idle connection still open"),
                        }
                        break;
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}
