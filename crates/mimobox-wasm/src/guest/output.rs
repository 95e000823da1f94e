//! Capped capture of guest stdout and stderr, and their live delivery.
//!
//! Live output goes through a bounded queue to a thread of its own, which
//! hands it to the caller's sink. The guest waits (asynchronously, so the
//! timeout still ends the wait) only when the queue is full, so a sink that
//! blocks forever, such as a pipe nobody reads, can slow a guest down but
//! never stop the run from ending on time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::Instant;

use bytes::Bytes;
use mimobox_core::OutputSink;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// How much a guest may hand over in one write. It only sizes the guest's
/// chunks; the cap is enforced on every byte.
const WRITE_BUDGET: usize = 64 << 10;
/// Chunks of live output that may wait for the sink; with WASI's 4 KiB
/// writes, about 1 MiB.
const LIVE_QUEUE: usize = 256;

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
    live: Option<Live>,
}

/// The writing end of a live sink's queue.
struct Live {
    queue: tokio::sync::mpsc::Sender<Vec<u8>>,
    /// Room in the queue, reserved by `ready` for the next `write`.
    permit: Option<tokio::sync::mpsc::OwnedPermit<Vec<u8>>>,
    /// Set when the run is over: the drain thread drops what it still has.
    abandoned: Arc<AtomicBool>,
    /// Says when the drain thread has delivered everything.
    drained: mpsc::Receiver<()>,
}

impl CappedPipe {
    pub(crate) fn new(cap: u64, sink: Option<OutputSink>) -> CappedPipe {
        let cap = usize::try_from(cap).unwrap_or(usize::MAX);
        let live = sink.and_then(Live::start);
        CappedPipe {
            state: Arc::new(Mutex::new(PipeState { captured: Vec::new(), cap, truncated: false, live })),
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
        let kept = kept.to_vec();
        if let Some(live) = state.live.as_mut() {
            let sent = match live.permit.take() {
                Some(permit) => {
                    permit.send(kept);
                    true
                }
                None => live.queue.try_send(kept).is_ok(),
            };
            if !sent {
                state.truncated = true;
            }
        }
    }

    /// Whether a write may go ahead now; `false` means wait in `ready`.
    fn has_room(&self) -> bool {
        let state = self.lock();
        match &state.live {
            Some(live) => live.permit.is_some(),
            None => true,
        }
    }

    /// Waits for room in the live queue, without holding the lock.
    async fn wait_for_room(&self) {
        let queue = match &self.lock().live {
            Some(live) if live.permit.is_none() => live.queue.clone(),
            _ => return,
        };
        if let Ok(permit) = queue.reserve_owned().await
            && let Some(live) = self.lock().live.as_mut()
        {
            live.permit = Some(permit);
        }
    }

    /// Ends live delivery: waits until `deadline` for the sink to take what
    /// is queued, and drops (and flags) whatever it has not taken by then.
    pub(crate) fn finish(&self, deadline: Instant) {
        let Some(live) = self.lock().live.take() else { return };
        let Live { queue, permit, abandoned, drained } = live;
        drop((queue, permit));
        let wait = deadline.saturating_duration_since(Instant::now());
        if drained.recv_timeout(wait).is_err() {
            abandoned.store(true, Ordering::SeqCst);
            self.lock().truncated = true;
        }
    }

    /// Starts a new turn of a session: nothing captured, nothing
    /// truncated, the full cap again, and this turn's live sink.
    pub(crate) fn start_turn(&self, sink: Option<OutputSink>) {
        let live = sink.and_then(Live::start);
        let mut state = self.lock();
        state.captured.clear();
        state.truncated = false;
        state.live = live;
    }

    /// The captured bytes and whether anything was dropped.
    pub(crate) fn take(&self) -> (Vec<u8>, bool) {
        let mut state = self.lock();
        (std::mem::take(&mut state.captured), state.truncated)
    }
}

impl Live {
    /// Starts the thread that feeds `sink`. Without a thread, output is
    /// still captured, just not delivered live.
    fn start(mut sink: OutputSink) -> Option<Live> {
        let (queue, mut receiver) = tokio::sync::mpsc::channel::<Vec<u8>>(LIVE_QUEUE);
        let abandoned = Arc::new(AtomicBool::new(false));
        let (done, drained) = mpsc::channel();
        let stop = abandoned.clone();
        let spawned = std::thread::Builder::new().name("mimobox-output".into()).spawn(move || {
            while let Some(chunk) = receiver.blocking_recv() {
                if !stop.load(Ordering::SeqCst) {
                    sink(&chunk);
                }
            }
            let _ = done.send(());
        });
        match spawned {
            Ok(_) => Some(Live { queue, permit: None, abandoned, drained }),
            Err(e) => {
                tracing::warn!("cannot start a live output thread: {e}");
                None
            }
        }
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
        Ok(if self.has_room() { WRITE_BUDGET } else { 0 })
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedPipe {
    async fn ready(&mut self) {
        self.wait_for_room().await;
    }
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
        pipe.finish(Instant::now() + std::time::Duration::from_secs(10));
        assert_eq!(&*seen.lock().unwrap(), b"xyzz");
        assert_eq!(pipe.take(), (b"xyzz".to_vec(), true));
    }

    #[test]
    fn a_stuck_sink_cannot_hold_the_run() {
        let (release, stuck) = mpsc::channel::<()>();
        let stuck = Mutex::new(stuck);
        let pipe = CappedPipe::new(
            1 << 20,
            Some(Box::new(move |_: &[u8]| {
                let _ = stuck.lock().unwrap().recv();
            })),
        );
        // Fill the queue past what the sink will ever take.
        for _ in 0..LIVE_QUEUE + 8 {
            pipe.push(b"x");
        }
        let started = Instant::now();
        pipe.finish(Instant::now() + std::time::Duration::from_millis(50));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let (captured, truncated) = pipe.take();
        assert_eq!(captured.len(), LIVE_QUEUE + 8, "capture is unaffected");
        assert!(truncated, "undelivered output is flagged");
        drop(release);
    }
}
