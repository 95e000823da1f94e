//! A connection that gives up on a client that stops reading: a write
//! that makes no progress for `write_timeout` fails, and the connection
//! with it (an answer nobody reads never holds a connection for long).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// `inner`, whose writes must make progress within `timeout`.
pub(crate) struct WriteDeadline<S> {
    inner: S,
    stalled: Pin<Box<Sleep>>,
    armed: bool,
    timeout: Duration,
}

impl<S> WriteDeadline<S> {
    pub(crate) fn new(inner: S, timeout: Duration) -> WriteDeadline<S> {
        WriteDeadline { inner, stalled: Box::pin(tokio::time::sleep(timeout)), armed: false, timeout }
    }
}

impl<S: AsyncWrite + Unpin> WriteDeadline<S> {
    /// Runs one write-side poll: on progress the clock stops; while the
    /// client reads nothing it runs, and past the timeout the write fails.
    fn guard<T>(
        &mut self,
        context: &mut Context<'_>,
        poll: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match poll(Pin::new(&mut self.inner), context) {
            Poll::Ready(result) => {
                self.armed = false;
                Poll::Ready(result)
            }
            Poll::Pending => {
                if !self.armed {
                    let deadline = Instant::now().checked_add(self.timeout).unwrap_or_else(far_future);
                    self.stalled.as_mut().reset(deadline);
                    self.armed = true;
                }
                ready!(self.stalled.as_mut().poll(context));
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading")))
            }
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(context, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(self: Pin<&mut Self>, context: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().guard(context, |inner, context| inner.poll_write(context, buf))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().guard(context, |inner, context| inner.poll_write_vectored(context, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().guard(context, |inner, context| inner.poll_flush(context))
    }
    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().guard(context, |inner, context| inner.poll_shutdown(context))
    }
}
