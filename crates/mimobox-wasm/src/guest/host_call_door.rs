//! `host::call`, the door through which a guest asks its host for tools.
//!
//! The guest passes one whole request (`req_ptr`, `req_len`) and two
//! pre-zeroed out-slots for the answer's pointer and length; the host
//! answers 0 with the answer written into memory it got from the guest's
//! `host_alloc`, or a negative code. `docs/sessions.md` has the contract,
//! and `mimobox-tools` the protocol. A sandbox without tools answers every
//! call with [`NO_HOST`], which a guest reports as "no host" (CPython's
//! `from host import tools` raises `ImportError`).
//!
//! A tool's handler runs on a worker thread while the guest's call waits
//! asynchronously, so the turn's timer still ends a turn whose tool does not
//! answer: the turn times out, and the handler's late answer is dropped.

use std::sync::Arc;
use std::time::Instant;

use mimobox_core::ToolCall;
use mimobox_tools::{Request, Toolbox};
use wasmtime::{Caller, Extern, Linker};

use super::results::{FrameKind, OPTIONS_FRAME, RESULTS_FULL, TurnResults};
use crate::guest::state::GuestState;

/// The answer of a host with no tools.
pub(crate) const NO_HOST: i32 = -1;
/// The answer to a call the host cannot serve (bad pointers, no memory for
/// the answer).
pub(crate) const FAULT: i32 = -2;

/// The door's per-run (per-turn, in a session) state.
#[derive(Default)]
pub(crate) struct DoorState {
    /// The tools granted, if any.
    pub(crate) tools: Option<Arc<Toolbox>>,
    /// Calls made so far this turn, for the call budget.
    pub(crate) made: u32,
    /// The record of this turn's calls.
    pub(crate) calls: Vec<ToolCall>,
    /// Whether the host is inside the guest's `host_alloc`, placing an
    /// answer: a call from there is refused, so that a guest cannot nest
    /// calls and take every stack of the shared pool.
    pub(crate) answering: bool,
    /// This turn's display results, in a session (a one-shot run takes
    /// none: its door is for tools only).
    pub(crate) results: Option<TurnResults>,
}

impl DoorState {
    /// A fresh turn: no calls made, none recorded.
    pub(crate) fn new_turn(&mut self) {
        self.made = 0;
        self.calls.clear();
    }
}

/// Adds `host::call` to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    linker.func_wrap_async(
        "host",
        "call",
        |mut caller: Caller<'_, GuestState>,
         (request, request_len, out_ptr, out_len): (i32, i32, i32, i32)| {
            Box::new(async move { call(&mut caller, request, request_len, out_ptr, out_len).await })
        },
    )?;
    Ok(())
}

async fn call(
    caller: &mut Caller<'_, GuestState>,
    request: i32,
    request_len: i32,
    out_ptr: i32,
    out_len: i32,
) -> wasmtime::Result<i32> {
    if caller.data().door.answering {
        return Ok(FAULT);
    }
    if caller.data().door.results.is_some()
        && let Some(code) = receive_result(caller, request, request_len, out_ptr, out_len).await?
    {
        return Ok(code);
    }
    let Some(tools) = caller.data().door.tools.clone() else { return Ok(NO_HOST) };
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else { return Ok(FAULT) };
    // Read at most one byte past the request limit: the toolbox then
    // answers `too_large` without the host copying more.
    let limit = tools.limits().max_request.saturating_add(1);
    let Ok(len) = usize::try_from(request_len) else { return Ok(FAULT) };
    let mut frame = vec![0; len.min(limit)];
    if memory.read(&*caller, request as u32 as usize, &mut frame).is_err() {
        return Ok(FAULT);
    }
    if len > frame.len() {
        frame.resize(limit, b' ');
    }
    let made = caller.data().door.made;
    let answer = match tools.request(&frame, made) {
        Request::Answer(bytes, record) => {
            caller.data_mut().door.calls.extend(record);
            bytes
        }
        Request::Call(pending) => {
            let started = Instant::now();
            let name = pending.tool().to_owned();
            // Held while this call waits: if the turn's timer drops the
            // wait, the call is abandoned, and a command tool ends its
            // processes at once rather than at its own timeout.
            let _abandon_when_dropped = pending.guard();
            // Recorded before it runs, as timed out: if the turn's deadline
            // passes while the tool runs, that is what the record says.
            let door = &mut caller.data_mut().door;
            door.made += 1;
            let index = door.calls.len();
            door.calls.push(ToolCall {
                tool: name.clone(),
                duration: Default::default(),
                ok: false,
                error: Some("timeout".into()),
            });
            // The handler runs on a thread of its own, and the guest's call
            // waits for it asynchronously: if the turn's timer drops this
            // future, the handler is left to finish alone and its late
            // answer is dropped (nothing waits for that thread).
            let (done, mut answered) = tokio::sync::oneshot::channel();
            let finished = match mimobox_tools::workers::run(move || {
                let _ = done.send(pending.run());
            }) {
                Ok(()) => {
                    // Most handlers answer within microseconds: wait for
                    // that briefly on this thread, which costs far less
                    // than parking it, then wait asynchronously.
                    let spin_until = Instant::now() + mimobox_tools::workers::SPIN;
                    loop {
                        match answered.try_recv() {
                            Ok(answer) => break Some(answer),
                            Err(tokio::sync::oneshot::error::TryRecvError::Closed) => break None,
                            Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
                        }
                        if Instant::now() >= spin_until {
                            break answered.await.ok();
                        }
                        std::hint::spin_loop();
                    }
                }
                Err(_) => None,
            };
            let (bytes, record) = finished.unwrap_or_else(|| {
                let record = ToolCall {
                    tool: name,
                    duration: started.elapsed(),
                    ok: false,
                    error: Some("tool_error".into()),
                };
                let bytes =
                    br#"{"v":1,"ok":false,"error":{"kind":"tool_error","message":"the tool failed to run"}}"#;
                (bytes.to_vec(), record)
            });
            caller.data_mut().door.calls[index] = record;
            bytes
        }
    };
    write_answer(caller, &memory, &answer, out_ptr, out_len).await
}

/// Takes a display or error frame (see `results.rs`), if the request is
/// one: `None` leaves it to the tools. The answer is empty (0, nothing
/// written), so a result costs no allocation in the guest.
async fn receive_result(
    caller: &mut Caller<'_, GuestState>,
    request: i32,
    request_len: i32,
    out_ptr: i32,
    out_len: i32,
) -> wasmtime::Result<Option<i32>> {
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else { return Ok(Some(FAULT)) };
    let Ok(len) = usize::try_from(request_len) else { return Ok(Some(FAULT)) };
    let mut head = [0u8; 32];
    let head = &mut head[..len.min(32)];
    if memory.read(&*caller, request as u32 as usize, head).is_err() {
        return Ok(Some(FAULT));
    }
    if head == OPTIONS_FRAME {
        let options = caller.data().door.results.as_ref().map(TurnResults::options).unwrap_or_default();
        return write_answer(caller, &memory, &options, out_ptr, out_len).await.map(Some);
    }
    let Some(kind) = FrameKind::of(head) else { return Ok(None) };
    let Some(results) = caller.data().door.results.as_ref() else { return Ok(None) };
    if results.full(kind) {
        caller.data_mut().door.results.as_mut().expect("checked above").truncated = true;
        return Ok(Some(RESULTS_FULL));
    }
    let mut frame = vec![0; len.min(results.read_limit(kind))];
    if memory.read(&*caller, request as u32 as usize, &mut frame).is_err() {
        return Ok(Some(FAULT));
    }
    let results = caller.data_mut().door.results.as_mut().expect("checked above");
    let Some(event) = results.receive(kind, &frame, len) else { return Ok(Some(0)) };
    // Delivered live in order with the guest's output, waiting for room
    // as output does (the turn's deadline still ends the wait).
    if let Some(mut live) = results.live.take() {
        live.send(event).await;
        if let Some(results) = caller.data_mut().door.results.as_mut() {
            results.live = Some(live);
        }
    }
    Ok(Some(0))
}

/// Copies `answer` into memory from the guest's `host_alloc`, and stores
/// its pointer and length in the out-slots.
async fn write_answer(
    caller: &mut Caller<'_, GuestState>,
    memory: &wasmtime::Memory,
    answer: &[u8],
    out_ptr: i32,
    out_len: i32,
) -> wasmtime::Result<i32> {
    let Ok(len) = i32::try_from(answer.len()) else { return Ok(FAULT) };
    let Ok(alloc) = caller
        .get_export("host_alloc")
        .and_then(Extern::into_func)
        .ok_or(())
        .and_then(|f| f.typed::<i32, i32>(&*caller).map_err(|_| ()))
    else {
        return Ok(FAULT);
    };
    caller.data_mut().door.answering = true;
    let at = alloc.call_async(&mut *caller, len).await;
    caller.data_mut().door.answering = false;
    let at = at?;
    if at == 0 && len > 0 {
        return Ok(FAULT);
    }
    let wrote = memory
        .write(&mut *caller, at as u32 as usize, answer)
        .and_then(|()| memory.write(&mut *caller, out_ptr as u32 as usize, &(at as u32).to_le_bytes()))
        .and_then(|()| memory.write(&mut *caller, out_len as u32 as usize, &(len as u32).to_le_bytes()));
    Ok(if wrote.is_ok() { 0 } else { FAULT })
}
