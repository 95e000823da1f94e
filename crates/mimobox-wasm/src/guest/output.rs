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
use mimobox_core::{EventSink, OutputSink, TurnEvent};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// How much a guest may hand over in one write. It only sizes the guest's
/// chunks; the cap is enforced on every byte.
const WRITE_BUDGET: usize = 64 << 10;
/// Events that may wait for the sink; with WASI's 4 KiB writes, about
/// 1 MiB of output.
pub(crate) const LIVE_QUEUE: usize = 256;

/// Which stream a pipe is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// One output stream of a guest: captured up to a cap, and optionally passed
/// on live to a [`LiveStream`]. Past the cap, output is dropped and the
/// stream is flagged truncated; the guest is not told, so it is never
/// killed for writing too much.
#[derive(Clone)]
pub(crate) struct CappedPipe {
    state: Arc<Mutex<PipeState>>,
}

struct PipeState {
    stream: Stream,
    captured: Vec<u8>,
    cap: usize,
    truncated: bool,
    live: Option<LiveSender>,
}

/// The writing end of a live stream's queue, as one writer holds it.
pub(crate) struct LiveSender {
    queue: tokio::sync::mpsc::Sender<TurnEvent>,
    /// Room in the queue, reserved by `ready` for the next `write`.
    permit: Option<tokio::sync::mpsc::OwnedPermit<TurnEvent>>,
}

impl LiveSender {
    /// Sends `event` into reserved room, else into free room; `false` when
    /// the queue is full (the event is dropped).
    fn send_now(&mut self, event: TurnEvent) -> bool {
        match self.permit.take() {
            Some(permit) => {
                permit.send(event);
                true
            }
            None => self.queue.try_send(event).is_ok(),
        }
    }

    /// Sends `event`, waiting (asynchronously, so the turn's deadline still
    /// ends the wait) for room; `false` when the stream has ended.
    pub(crate) async fn send(&mut self, event: TurnEvent) -> bool {
        if let Some(permit) = self.permit.take() {
            permit.send(event);
            return true;
        }
        self.queue.send(event).await.is_ok()
    }
}

/// Live delivery to a caller's sink: one bounded queue, which any number of
/// writers (stdout, stderr, the door's results) share, so the sink sees
/// events in the order they were produced, and one thread that feeds the
/// sink. The guest waits only when the queue is full, so a sink that blocks
/// forever, such as a pipe nobody reads, can slow a guest down but never
/// stop the run from ending on time.
pub(crate) struct LiveStream {
    queue: tokio::sync::mpsc::Sender<TurnEvent>,
    /// Set when the run is over: the drain thread drops what it still has.
    abandoned: Arc<AtomicBool>,
    /// Says when the drain thread has delivered everything.
    drained: mpsc::Receiver<()>,
}

impl LiveStream {
    /// Starts the thread that feeds `sink`. Without a thread, output is
    /// still captured, just not delivered live.
    pub(crate) fn start(mut sink: EventSink) -> Option<LiveStream> {
        let (queue, mut receiver) = tokio::sync::mpsc::channel::<TurnEvent>(LIVE_QUEUE);
        let abandoned = Arc::new(AtomicBool::new(false));
        let (done, drained) = mpsc::channel();
        let stop = abandoned.clone();
        let spawned = std::thread::Builder::new().name("mimobox-output".into()).spawn(move || {
            while let Some(event) = receiver.blocking_recv() {
                if !stop.load(Ordering::SeqCst) {
                    sink(event);
                }
            }
            let _ = done.send(());
        });
        match spawned {
            Ok(_) => Some(LiveStream { queue, abandoned, drained }),
            Err(e) => {
                tracing::warn!("cannot start a live output thread: {e}");
                None
            }
        }
    }

    /// A stream that passes one pipe's bytes to an [`OutputSink`].
    pub(crate) fn of_bytes(mut sink: OutputSink) -> Option<LiveStream> {
        LiveStream::start(Box::new(move |event| {
            if let TurnEvent::Stdout(bytes) | TurnEvent::Stderr(bytes) = event {
                sink(&bytes);
            }
        }))
    }

    /// A writer of this stream.
    pub(crate) fn sender(&self) -> LiveSender {
        LiveSender { queue: self.queue.clone(), permit: None }
    }

    /// Ends delivery once every writer has let go of its sender: waits
    /// until `deadline` for the sink to take what is queued, and drops
    /// whatever it has not taken by then. `false` when something was
    /// dropped.
    pub(crate) fn finish(self, deadline: Instant) -> bool {
        let LiveStream { queue, abandoned, drained } = self;
        drop(queue);
        let wait = deadline.saturating_duration_since(Instant::now());
        if drained.recv_timeout(wait).is_err() {
            abandoned.store(true, Ordering::SeqCst);
            return false;
        }
        true
    }
}

/// The live streams of one run or turn, and the pipes that write to them.
#[derive(Default)]
pub(crate) struct Delivery {
    streams: Vec<LiveStream>,
}

impl Delivery {
    /// Connects the pipes to their sinks: every event to `events` when it is
    /// given (one stream, in order), else stdout and stderr each to its own
    /// byte sink. Returns the delivery and, with `events`, a writer for
    /// the door's results.
    pub(crate) fn connect(
        stdout: &CappedPipe,
        stderr: &CappedPipe,
        events: Option<EventSink>,
        stdout_sink: Option<OutputSink>,
        stderr_sink: Option<OutputSink>,
    ) -> (Delivery, Option<LiveSender>) {
        let mut delivery = Delivery::default();
        if let Some(events) = events {
            let Some(stream) = LiveStream::start(events) else { return (delivery, None) };
            stdout.attach(Some(stream.sender()));
            stderr.attach(Some(stream.sender()));
            let results = stream.sender();
            delivery.streams.push(stream);
            return (delivery, Some(results));
        }
        for (pipe, sink) in [(stdout, stdout_sink), (stderr, stderr_sink)] {
            let stream = sink.and_then(LiveStream::of_bytes);
            pipe.attach(stream.as_ref().map(LiveStream::sender));
            delivery.streams.extend(stream);
        }
        (delivery, None)
    }

    /// Ends live delivery (see [`LiveStream::finish`]); output that did not
    /// reach its sink by `deadline` flags both pipes truncated. The door's
    /// writer must have been dropped first.
    ///
    /// Only waiting for a live stream's reader blocks, and that wait runs
    /// off a multi-threaded executor; without a live stream this costs
    /// nothing (handing a worker's place over costs more than a whole
    /// trivial turn).
    pub(crate) fn finish(self, deadline: Instant, stdout: &CappedPipe, stderr: &CappedPipe) {
        stdout.attach(None);
        stderr.attach(None);
        if self.streams.is_empty() {
            return;
        }
        crate::exec::offload(|| {
            for stream in self.streams {
                if !stream.finish(deadline) {
                    stdout.lock().truncated = true;
                    stderr.lock().truncated = true;
                }
            }
        });
    }
}

impl CappedPipe {
    pub(crate) fn new(stream: Stream, cap: u64) -> CappedPipe {
        let cap = usize::try_from(cap).unwrap_or(usize::MAX);
        CappedPipe {
            state: Arc::new(Mutex::new(PipeState {
                stream,
                captured: Vec::new(),
                cap,
                truncated: false,
                live: None,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PipeState> {
        // A sink that panicked poisons the lock; the bytes are still sound.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sets (or with `None`, ends) where kept bytes go live.
    fn attach(&self, live: Option<LiveSender>) {
        self.lock().live = live;
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
        let event = match state.stream {
            Stream::Stdout => TurnEvent::Stdout(kept.to_vec()),
            Stream::Stderr => TurnEvent::Stderr(kept.to_vec()),
        };
        if let Some(live) = state.live.as_mut()
            && !live.send_now(event)
        {
            state.truncated = true;
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

    /// Starts a new turn of a session: nothing captured, nothing
    /// truncated, the full cap again.
    pub(crate) fn start_turn(&self) {
        let mut state = self.lock();
        state.captured.clear();
        state.truncated = false;
        state.live = None;
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

    fn bytes_sink(seen: &Arc<Mutex<Vec<u8>>>) -> OutputSink {
        let seen = seen.clone();
        Box::new(move |b: &[u8]| seen.lock().unwrap().extend_from_slice(b))
    }

    #[test]
    fn keeps_bytes_up_to_the_cap_and_flags_the_rest() {
        let pipe = CappedPipe::new(Stream::Stdout, 5);
        pipe.push(b"abc");
        pipe.push(b"defg");
        pipe.push(b"h");
        assert_eq!(pipe.take(), (b"abcde".to_vec(), true));
    }

    #[test]
    fn sink_sees_only_what_is_kept() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stdout, stderr) = (CappedPipe::new(Stream::Stdout, 4), CappedPipe::new(Stream::Stderr, 4));
        let (delivery, _) = Delivery::connect(&stdout, &stderr, None, Some(bytes_sink(&seen)), None);
        stdout.push(b"xy");
        stdout.push(b"zzzz");
        delivery.finish(Instant::now() + std::time::Duration::from_secs(10), &stdout, &stderr);
        assert_eq!(&*seen.lock().unwrap(), b"xyzz");
        assert_eq!(stdout.take(), (b"xyzz".to_vec(), true));
    }

    #[test]
    fn one_event_sink_sees_both_streams_and_results_in_order() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let (stdout, stderr) = (CappedPipe::new(Stream::Stdout, 64), CappedPipe::new(Stream::Stderr, 64));
        let sink: EventSink = Box::new(move |e| seen2.lock().unwrap().push(e));
        let (delivery, results) = Delivery::connect(&stdout, &stderr, Some(sink), None, None);
        let mut results = results.unwrap();
        stdout.push(b"a");
        stderr.push(b"b");
        assert!(results.send_now(TurnEvent::Result(Default::default())));
        stdout.push(b"c");
        drop(results);
        delivery.finish(Instant::now() + std::time::Duration::from_secs(10), &stdout, &stderr);
        assert_eq!(
            *seen.lock().unwrap(),
            [
                TurnEvent::Stdout(b"a".to_vec()),
                TurnEvent::Stderr(b"b".to_vec()),
                TurnEvent::Result(Default::default()),
                TurnEvent::Stdout(b"c".to_vec())
            ]
        );
    }

    #[test]
    fn a_stuck_sink_cannot_hold_the_run() {
        let (release, stuck) = mpsc::channel::<()>();
        let stuck = Mutex::new(stuck);
        let (stdout, stderr) = (CappedPipe::new(Stream::Stdout, 1 << 20), CappedPipe::new(Stream::Stderr, 1));
        let sink: OutputSink = Box::new(move |_: &[u8]| {
            let _ = stuck.lock().unwrap().recv();
        });
        let (delivery, _) = Delivery::connect(&stdout, &stderr, None, Some(sink), None);
        // Fill the queue past what the sink will ever take.
        for _ in 0..LIVE_QUEUE + 8 {
            stdout.push(b"x");
        }
        let started = Instant::now();
        delivery.finish(Instant::now() + std::time::Duration::from_millis(50), &stdout, &stderr);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let (captured, truncated) = stdout.take();
        assert_eq!(captured.len(), LIVE_QUEUE + 8, "capture is unaffected");
        assert!(truncated, "undelivered output is flagged");
        drop(release);
    }
}
