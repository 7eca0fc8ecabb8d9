//! A deadline on a new connection's first bytes: hyper-util's `auto` server reads them to tell
//! HTTP/1 from HTTP/2 before either protocol's own timeouts start, so without this a client
//! that connects and sends nothing (or half the HTTP/2 preface) holds its slot forever.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// What an HTTP/2 client sends first; any other first bytes mean HTTP/1.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Wraps a connection: reads fail with `TimedOut` if the protocol is still unknown once
/// `limit` has passed since the connection was accepted. After that the wrapper only forwards.
pub struct SniffDeadline<I> {
    io: I,
    /// Armed until the bytes read so far decide the protocol.
    deadline: Option<Pin<Box<Sleep>>>,
    /// How much of the HTTP/2 preface the bytes read so far match.
    matched: usize,
}

impl<I> SniffDeadline<I> {
    pub fn new(io: I, limit: Duration) -> Self {
        SniffDeadline {
            io,
            deadline: Some(Box::pin(tokio::time::sleep(limit))),
            matched: 0,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for SniffDeadline<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let Some(deadline) = this.deadline.as_mut() else {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        };
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Pending => {
                if deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no HTTP request began within the header timeout",
                    )));
                }
                Poll::Pending
            }
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                let end = (this.matched + new.len()).min(H2_PREFACE.len());
                let on_preface =
                    !new.is_empty() && new[..end - this.matched] == H2_PREFACE[this.matched..end];
                if on_preface && end < H2_PREFACE.len() {
                    this.matched = end;
                } else {
                    // End of stream, a byte off the preface (HTTP/1), or the whole preface
                    // (HTTP/2): the protocol is known and its own timeouts take over.
                    this.deadline = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for SniffDeadline<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Reads what `sent` delivers, then reports whether a further read (with nothing more
    /// to come) times out (`true`) or just waits (`false`), under paused time.
    async fn times_out_after(sent: &[&[u8]]) -> bool {
        let (mut client, server) = tokio::io::duplex(64);
        let mut conn = SniffDeadline::new(server, Duration::from_secs(1));
        let mut buf = [0u8; 64];
        for chunk in sent {
            tokio::io::AsyncWriteExt::write_all(&mut client, chunk)
                .await
                .unwrap();
            let n = conn.read(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], *chunk);
        }
        let read = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await;
        match read {
            Ok(Err(e)) => {
                assert_eq!(e.kind(), io::ErrorKind::TimedOut);
                true
            }
            Err(_) => false,
            Ok(Ok(n)) => panic!("read {n} bytes that were never sent"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn silence_and_a_partial_preface_time_out() {
        assert!(times_out_after(&[]).await);
        assert!(times_out_after(&[b"PRI * HTTP/2.0\r\n"]).await);
        assert!(times_out_after(&[b"PRI", b" * HTTP"]).await);
    }

    #[tokio::test(start_paused = true)]
    async fn once_the_protocol_is_known_reads_wait_as_long_as_they_need() {
        assert!(!times_out_after(&[b"GET / HTTP/1.1\r\n"]).await);
        assert!(!times_out_after(&[b"P", b"OST"]).await);
        assert!(!times_out_after(&[b"PRI * HTTP/2.0\r\n", b"\r\nSM\r\n\r\n"]).await);
        assert!(!times_out_after(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04"]).await);
    }
}
