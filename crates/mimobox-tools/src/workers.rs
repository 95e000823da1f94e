//! Threads that run tool handlers. A call takes an idle worker, or starts
//! a new one when every worker is busy (so a handler that never returns
//! holds only its own thread, never another call). A worker that finishes
//! waits for the next call; past [`MAX_IDLE`] idle workers it exits.

use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::time::{Duration, Instant};

type Job = Box<dyn FnOnce() + Send>;

/// Most workers kept waiting for calls.
const MAX_IDLE: usize = 16;
/// How long a guest polls for a quick answer, and a worker for its
/// next call, before they sleep.
pub const SPIN: Duration = Duration::from_micros(100);

static IDLE: Mutex<Vec<Sender<Job>>> = Mutex::new(Vec::new());

/// Runs `job` on a worker thread.
pub fn run(job: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    let mut job: Job = Box::new(job);
    loop {
        let idle = IDLE.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let Some(worker) = idle else { break };
        // A worker that has exited hands the job back.
        match worker.send(job) {
            Ok(()) => return Ok(()),
            Err(returned) => job = returned.0,
        }
    }
    let (send, receive) = channel::<Job>();
    send.send(job).expect("the receiver is alive");
    std::thread::Builder::new().name("mimobox-tool".into()).spawn(move || {
        while let Some(job) = next(&receive) {
            job();
            let mut idle = IDLE.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() >= MAX_IDLE {
                return;
            }
            idle.push(send.clone());
        }
    })?;
    Ok(())
}

/// The worker's next job: polled for [`SPIN`] after the last one (a
/// guest making calls in a row gets its worker without a wake-up),
/// then waited for.
fn next(receive: &Receiver<Job>) -> Option<Job> {
    let until = Instant::now() + SPIN;
    while Instant::now() < until {
        match receive.try_recv() {
            Ok(job) => return Some(job),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) => std::hint::spin_loop(),
        }
    }
    receive.recv().ok()
}
