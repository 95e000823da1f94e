//! The runtime that drives a synchronous caller's execution, and how an
//! async one keeps slow host work off its executor.

use mimobox_core::SandboxError;

/// Runs `future` to completion on this thread's runtime. Each thread has
/// its own, so that concurrent executions each drive their own timers. A
/// caller that is itself inside a tokio runtime (which cannot block on
/// another) gets the execution run on a helper thread instead.
pub(crate) fn block_on<F>(future: F) -> Result<F::Output, SandboxError>
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        return std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("mimobox-run".into())
                .spawn_scoped(scope, || block_on_this_thread(future))
                .map_err(|e| SandboxError::Internal(format!("cannot start a run thread: {e}")))?
                .join()
                .map_err(|_| SandboxError::Internal("the run thread panicked".into()))?
        });
    }
    block_on_this_thread(future)
}

fn block_on_this_thread<F: std::future::Future>(future: F) -> Result<F::Output, SandboxError> {
    thread_local! {
        static RUNTIME: std::cell::OnceCell<tokio::runtime::Runtime> = const { std::cell::OnceCell::new() };
    }
    RUNTIME.with(|cell| {
        let runtime = match cell.get() {
            Some(runtime) => runtime,
            None => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .map_err(|e| SandboxError::Internal(format!("cannot start the runtime: {e}")))?;
                cell.get_or_init(|| runtime)
            }
        };
        Ok(runtime.block_on(future))
    })
}

/// Runs `work`, which blocks (compiling, compressing, reading files), without
/// stalling the other tasks of a multi-threaded tokio runtime: there it runs
/// in [`tokio::task::block_in_place`]. Elsewhere (a synchronous caller's own
/// runtime, or none) it runs as it is.
pub(crate) fn offload<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}
