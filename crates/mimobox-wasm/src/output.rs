//! Capped capture of guest stdout and stderr.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use mimobox_core::OutputSink;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// How much a guest may hand over in one write. It only sizes the guest's
/// chunks; the cap is enforced on every byte.
const WRITE_BUDGET: usize = 64 << 10;

/// One output stream of a guest: captured up to a cap, and optionally passed
/// on live to a sink. Past the cap, output is dropped and the stream is
/// flagged truncated; the guest is not told, so it is never killed for
/// writing too much.
#[derive(Clone)]
pub(crate) struct CappedPipe {
    state: Arc<Mutex<PipeState>>,
}

struct PipeState {
    captured: Vec<u8>,
    cap: usize,
    truncated: bool,
    sink: Option<OutputSink>,
}

impl CappedPipe {
    pub(crate) fn new(cap: u64, sink: Option<OutputSink>) -> CappedPipe {
        let cap = usize::try_from(cap).unwrap_or(usize::MAX);
        CappedPipe {
            state: Arc::new(Mutex::new(PipeState { captured: Vec::new(), cap, truncated: false, sink })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PipeState> {
        // A sink that panicked poisons the lock; the bytes are still sound.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push(&self, bytes: &[u8]) {
        let mut state = self.lock();
        let room = state.cap - state.captured.len();
        let kept = &bytes[..bytes.len().min(room)];
        if kept.len() < bytes.len() {
            state.truncated = true;
        }
        if kept.is_empty() {
            return;
        }
        state.captured.extend_from_slice(kept);
        if let Some(sink) = state.sink.as_mut() {
            sink(kept);
        }
    }

    /// The captured bytes and whether anything was dropped.
    pub(crate) fn take(&self) -> (Vec<u8>, bool) {
        let mut state = self.lock();
        (std::mem::take(&mut state.captured), state.truncated)
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CappedPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_BUDGET)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedPipe {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CappedPipe {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_bytes_up_to_the_cap_and_flags_the_rest() {
        let pipe = CappedPipe::new(5, None);
        pipe.push(b"abc");
        pipe.push(b"defg");
        pipe.push(b"h");
        assert_eq!(pipe.take(), (b"abcde".to_vec(), true));
    }

    #[test]
    fn sink_sees_only_what_is_kept() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let pipe =
            CappedPipe::new(4, Some(Box::new(move |b: &[u8]| seen2.lock().unwrap().extend_from_slice(b))));
        pipe.push(b"xy");
        pipe.push(b"zzzz");
        assert_eq!(&*seen.lock().unwrap(), b"xyzz");
        assert_eq!(pipe.take(), (b"xyzz".to_vec(), true));
    }
}
