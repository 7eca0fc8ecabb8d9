//! A connection's idle time: how many of its requests are in progress, and a wait that ends once
//! none has been for a given time. The server closes (gracefully) a connection idle that long,
//! whatever its protocol: hyper bounds an idle HTTP/1 keep-alive connection by its header
//! timer, but nothing in hyper bounds an HTTP/2 connection that sent its preface and then no
//! stream, and each such connection holds one of `MAX_CONNECTIONS`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;
use warp::http::Response;

/// The requests in progress on one connection, and when the last one ended: plain atomics,
/// so a request costs two counter updates and a clock read, and the wait below one timer per
/// `limit`, however many requests pass.
#[derive(Debug)]
pub struct Activity {
    busy: AtomicUsize,
    /// When a request last ended, in milliseconds since `born`.
    last_ended: AtomicU64,
    born: Instant,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            busy: AtomicUsize::new(0),
            last_ended: AtomicU64::new(0),
            born: Instant::now(),
        }
    }
}

impl Activity {
    /// Ends once no request has been in progress for `limit`.
    pub async fn idle_for(&self, limit: Duration) {
        let mut wait = limit;
        loop {
            tokio::time::sleep(wait).await;
            if self.busy.load(Ordering::SeqCst) > 0 {
                wait = limit;
                continue;
            }
            let since = self
                .millis()
                .saturating_sub(self.last_ended.load(Ordering::SeqCst));
            match limit.checked_sub(Duration::from_millis(since)) {
                Some(left) if !left.is_zero() => wait = left,
                _ => return,
            }
        }
    }

    fn millis(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    fn enter(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::SeqCst);
        Busy(self.clone())
    }
}

/// One request in progress, until dropped.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let activity = &self.0;
        activity
            .last_ended
            .store(activity.millis(), Ordering::SeqCst);
        activity.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A hyper service that counts its requests in progress in an `Activity`: from the call until
/// its response body has been sent (or dropped), so a long download is not idle.
pub struct Counted<S> {
    pub inner: S,
    pub activity: Arc<Activity>,
}

impl<S, R, B> hyper::service::Service<R> for Counted<S>
where
    S: hyper::service::Service<R, Response = Response<B>>,
    S::Future: Send + 'static,
{
    type Response = Response<BusyBody<B>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn call(&self, request: R) -> Self::Future {
        let busy = self.activity.enter();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| BusyBody { body, _busy: busy }))
        })
    }
}

/// A response body that keeps its request counted as in progress while it lasts.
pub struct BusyBody<B> {
    body: B,
    _busy: Busy,
}

impl<B: Body + Unpin> Body for BusyBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn it_waits_out_requests_in_progress_then_the_limit() {
        let activity = Arc::new(Activity::default());
        let limit = Duration::from_secs(10);
        let busy = activity.enter();
        let idle = activity.idle_for(limit);
        tokio::pin!(idle);
        assert!(
            tokio::time::timeout(Duration::from_secs(60), idle.as_mut())
                .await
                .is_err(),
            "not idle while a request is in progress"
        );
        drop(busy);
        let started = tokio::time::Instant::now();
        idle.await;
        assert_eq!(started.elapsed(), limit);
    }

    /// A body that never ends.
    struct Endless;

    impl Body for Endless {
        type Data = bytes::Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
            Poll::Pending
        }
    }

    struct Answers;

    impl hyper::service::Service<()> for Answers {
        type Response = Response<Endless>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Response<Endless>, Self::Error>>;
        fn call(&self, _: ()) -> Self::Future {
            std::future::ready(Ok(Response::new(Endless)))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_response_body_still_being_sent_keeps_the_connection_busy() {
        use hyper::service::Service;
        let activity = Arc::new(Activity::default());
        let service = Counted {
            inner: Answers,
            activity: activity.clone(),
        };
        let response = service.call(()).await.unwrap();
        let limit = Duration::from_secs(10);
        assert!(
            tokio::time::timeout(Duration::from_secs(60), activity.idle_for(limit))
                .await
                .is_err(),
            "not idle while the body is being sent"
        );
        drop(response);
        let started = tokio::time::Instant::now();
        activity.idle_for(limit).await;
        assert_eq!(started.elapsed(), limit);
    }
}
