//! Tools that are host commands (`[tools.NAME]` in a profile).
//!
//! Each call runs the command with only the granted environment and only
//! stdin, stdout and stderr open (every other descriptor mimobox has is
//! closed at the command's exec), writes the JSON arguments to its stdin
//! and reads one JSON value from its stdout.
//!
//! **What contains the process tree.** Each call has a PID namespace of its
//! own. When the namespace's first process (PID 1) dies, the kernel kills
//! every other process in it, and no process can leave its namespace:
//! `setsid`, a process group of its own or a double fork change nothing,
//! where a kill of the process group misses all three. That PID 1 is not
//! the command but an *init* forked from mimobox that never execs: it only
//! reaps, and exits with the status of its one child, the command (PID 2),
//! when the command ends, which ends the namespace. So the command runs
//! none of the code that holds the namespace: it may clear its own
//! parent-death signal, or exec a setuid program (which clears it), and
//! still dies with the init. Between mimobox and the init stands a
//! *keeper*, also a process forked from mimobox that never execs:
//!
//! - it waits for the init, and kills it at the tool's timeout by its own
//!   clock, so the timeout holds whatever mimobox is doing;
//! - when mimobox ends a call early (SIGTERM), it kills the init and exits
//!   only once the init, and with it the whole namespace, is gone, so when
//!   a call returns every process it started has ended;
//! - it dies with the thread of mimobox that started it, and the init dies
//!   with the keeper (`PR_SET_PDEATHSIG` on both, each checked against the
//!   race where its parent has already gone), so nothing outlives mimobox,
//!   even a mimobox killed with SIGKILL.
//!
//! **Signals and the terminal.** The keeper starts a session of its own,
//! and the command another: nothing of a call is in mimobox's process
//! group or session, or has its controlling terminal. A `kill(0, ...)` from
//! the command (`kill 0`, `trap 'kill 0' EXIT`, `kill -STOP 0`) reaches its
//! own group only, and a signal to mimobox's group (a terminal's Ctrl-Z)
//! does not stop the keeper's clock. The keeper has no PID inside the
//! namespace, and the init takes no signal from inside it (the kernel drops
//! those that a namespace's init has no handler for, and it has none).
//!
//! **What this is not.** The command runs with mimobox's own user and
//! privileges, and sees the host's `/proc` and files: the namespace
//! contains processes, it is not a privilege boundary. The keeper and the
//! init are not dumpable (`PR_SET_DUMPABLE` 0), so a command without
//! `CAP_SYS_PTRACE` over them (one of an unprivileged mimobox, which runs
//! in a user namespace of its own) cannot trace them or write their memory
//! through `/proc/PID/mem`, though it can find their host PIDs there. A
//! command of a mimobox that runs as root is root on the host, and can do
//! that and anything else: give root's tools only to programs you would
//! trust as root.
//!
//! mimobox reads the pipes without blocking and only until the call's
//! deadline, so a process that holds stdout open cannot hold the call
//! either. The answer is checked to be JSON without building it in memory,
//! and passed on as (compacted) JSON text: an answer costs host memory in
//! proportion to its bytes, not to its number of values. An answer nested
//! deeper than [`MAX_DEPTH`] is refused, so that a guest's recursive parser
//! is not handed one.
//!
//! A PID namespace needs `CAP_SYS_ADMIN`, or else unprivileged user
//! namespaces (the command then runs in a user namespace of its own as
//! well, as the same user, with the same rights on the host's files).
//! Where neither is allowed, every call fails, and
//! [`command_tools_supported`] says so up front.
//!
//! The keeper and the init are forks of mimobox, not new programs: while a
//! call runs, the pages that mimobox writes are copied for them (copy on
//! write), which costs a process with a large heap some time and memory
//! per call.

use std::io::{self, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mimobox_core::grants::CommandTool;
use mimobox_core::text::one_line_bounded;
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fd::{AsFd, OwnedFd};
use rustix::process::{Pid, PidfdFlags, Signal};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::tool::{Abandoned, Answer};
use crate::{DEFAULT_MAX_RESPONSE, ErrorKind, Tool, ToolError};

/// Most bytes of a failing command's stderr quoted to the guest.
const STDERR_QUOTED: usize = 2048;
/// How long past the tool's timeout mimobox waits for the keeper (which
/// enforces the timeout itself) before it ends the call on its own.
const KEEPER_GRACE: Duration = Duration::from_secs(1);
/// How long a keeper that was told to end its call gets to kill the
/// command and see its namespace empty, before it is killed itself.
const TEARDOWN: Duration = Duration::from_secs(2);
/// How often a running call looks whether it has been abandoned.
const ABANDON_CHECK: Duration = Duration::from_millis(50);
/// The signal that a keeper dies of when it ended its command at the
/// timeout, so that mimobox can tell a timeout from the command's status.
const TIMED_OUT: libc::c_int = libc::SIGALRM;
/// The exit status of a keeper, init or command whose setup failed after
/// the fork (after a line on the command's stderr that says what failed,
/// where one can still be written).
const SETUP_FAILED: libc::c_int = 127;
/// How deeply arrays and objects may nest in a command's answer.
const MAX_DEPTH: usize = 128;

/// The tool that runs `config`'s command, named `name`.
pub fn command_tool(name: &str, config: &CommandTool) -> Tool {
    let command = config.command.clone();
    let env = config.env.clone();
    let timeout = config.timeout;
    let label = name.to_owned();
    Tool::answering(name, config.description.clone(), config.input_schema.clone(), move |args, abandoned| {
        run(&label, &command, &env, timeout, &args, abandoned).map(Answer::Raw)
    })
}

/// Whether this host can contain command tools the way every call needs
/// (a PID namespace of its own; see the module doc), with the reason if
/// not. It probes by starting a contained process that exits at once. It
/// remembers success, and failures that last (the host refuses the
/// namespace); a failure that may pass (no memory or processes to spare)
/// is probed again at the next ask. Where this fails, every call of a
/// command tool fails with this reason too.
pub fn command_tools_supported() -> Result<(), String> {
    static KNOWN: OnceLock<Result<(), String>> = OnceLock::new();
    remembered(&KNOWN, probe)
}

/// What a probe found, and whether that lasts for the life of the process.
type Probed = (Result<(), String>, bool);

/// The answer `known` holds, or else what `probe` finds, which `known`
/// keeps if it lasts.
fn remembered(known: &OnceLock<Result<(), String>>, probe: impl FnOnce() -> Probed) -> Result<(), String> {
    if let Some(answer) = known.get() {
        return answer.clone();
    }
    let (answer, lasts) = probe();
    if lasts {
        let _ = known.set(answer.clone());
    }
    answer
}

fn probe() -> Probed {
    // The program is never run: the contained process exits before exec.
    let mut command = Command::new("/bin/true");
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    // SAFETY: `contain` makes only async-signal-safe calls and does not
    // allocate, as code between fork and exec must.
    unsafe { command.pre_exec(keeper(Duration::from_secs(5), true)) };
    let (why, lasts) = match command.output() {
        Ok(out) if out.status.success() => return (Ok(()), true),
        Ok(out) => {
            let said = String::from_utf8_lossy(&out.stderr);
            let said = said.trim();
            let said = if said.is_empty() { String::new() } else { format!(": {}", one_line_bounded(said)) };
            (format!("the contained process ended with {}{said}", out.status), false)
        }
        // The host refuses the namespace itself, or has no room for one
        // under its limits (`user.max_*_namespaces`): that lasts. Anything
        // else (EAGAIN, ENOMEM from a fork) may pass.
        Err(e) => {
            let lasts =
                matches!(e.raw_os_error(), Some(libc::EPERM | libc::EINVAL | libc::ENOSYS | libc::ENOSPC));
            (e.to_string(), lasts)
        }
    };
    (Err(format!("command tools need a PID namespace of their own, and this host refuses one: {why}")), lasts)
}

fn run(
    name: &str,
    command: &[String],
    env: &std::collections::BTreeMap<String, String>,
    timeout: Duration,
    args: &Value,
    abandoned: &Abandoned,
) -> Result<Box<RawValue>, ToolError> {
    let (program, rest) = command.split_first().ok_or_else(|| ToolError::failed("no program"))?;
    let mut spawn = Command::new(program);
    spawn
        .args(rest)
        .env_clear()
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: `contain` makes only async-signal-safe calls and does not
    // allocate, as code between fork and exec must.
    unsafe { spawn.pre_exec(keeper(timeout, false)) };
    let could_not_start = |e: io::Error| {
        let why = command_tools_supported().err().unwrap_or_else(|| e.to_string());
        ToolError::failed(format!("`{name}` could not start: {why}"))
    };
    let mut call = Call::start(spawn.spawn().map_err(could_not_start)?).map_err(could_not_start)?;
    let input = serde_json::to_vec(args).expect("JSON serialises");
    let now = Instant::now();
    let deadline = now
        .checked_add(timeout.saturating_add(KEEPER_GRACE))
        .unwrap_or_else(|| now + Duration::from_secs(u32::MAX.into()));
    let ended = call.exchange(&input, deadline, abandoned);
    let status = call.finish();
    let timed_out = || ToolError {
        kind: ErrorKind::Timeout,
        message: format!("`{name}` ran past its timeout of {}s", timeout.as_secs_f64()),
    };
    let status = match ended {
        Ended::Exited => {
            status.ok_or_else(|| ToolError::failed(format!("`{name}` could not be waited for")))?
        }
        Ended::TimedOut => return Err(timed_out()),
        Ended::Abandoned => {
            return Err(ToolError {
                kind: ErrorKind::Timeout,
                message: format!("`{name}` was abandoned: nobody waits for its answer"),
            });
        }
        Ended::TooLarge => {
            return Err(ToolError {
                kind: ErrorKind::TooLarge,
                message: format!("`{name}` answered more than {DEFAULT_MAX_RESPONSE} bytes"),
            });
        }
        Ended::Failed(e) => return Err(ToolError::failed(format!("`{name}`: {e}"))),
    };
    if status.signal() == Some(TIMED_OUT) {
        return Err(timed_out());
    }
    if !status.success() {
        let why = match status.code() {
            Some(code) => format!("exited with status {code}"),
            None => "was killed by a signal".to_owned(),
        };
        let said = String::from_utf8_lossy(&call.err);
        let said = said.trim();
        let said = if said.is_empty() { String::new() } else { format!(": {}", one_line_bounded(said)) };
        return Err(ToolError::failed(format!("`{name}` {why}{said}")));
    }
    raw_json(std::mem::take(&mut call.out))
        .map_err(|e| ToolError::failed(format!("`{name}` did not answer JSON: {e}")))
}

/// Checks that `answer` is one JSON value nested at most [`MAX_DEPTH`]
/// deep, without building it, and returns it as JSON text with the
/// whitespace between tokens removed.
fn raw_json(mut answer: Vec<u8>) -> Result<Box<RawValue>, String> {
    let text = std::str::from_utf8(&answer).map_err(|e| e.to_string())?;
    // A borrowed raw value is only validated, never allocated (and serde
    // validates it without recursion, however deep it is).
    serde_json::from_str::<&RawValue>(text).map_err(|e| e.to_string())?;
    compact(&mut answer)?;
    let text = String::from_utf8(answer).map_err(|e| e.to_string())?;
    RawValue::from_string(text).map_err(|e| e.to_string())
}

/// Removes the whitespace outside strings from valid JSON, in place, and
/// refuses it if it nests deeper than [`MAX_DEPTH`].
fn compact(json: &mut Vec<u8>) -> Result<(), String> {
    let (mut in_string, mut escaped, mut kept, mut depth) = (false, false, 0, 0usize);
    for at in 0..json.len() {
        let byte = json[at];
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
        } else {
            match byte {
                b' ' | b'\t' | b'\n' | b'\r' => continue,
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(format!("nested deeper than {MAX_DEPTH}"));
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        json[kept] = byte;
        kept += 1;
    }
    json.truncate(kept);
    Ok(())
}

/// How the exchange with a command ended.
enum Ended {
    /// The keeper exited and the command's pipes reached their end.
    Exited,
    /// The call's deadline passed.
    TimedOut,
    /// Nobody waits for the answer any more.
    Abandoned,
    /// The command wrote more than an answer may hold.
    TooLarge,
    /// Waiting on the pipes, or for the keeper, failed.
    Failed(io::Error),
}

/// A running call: the keeper, a descriptor that becomes readable when it
/// exits, and what the command wrote. Dropping it ends the call.
struct Call {
    keeper: Child,
    exit: OwnedFd,
    status: Option<ExitStatus>,
    out: Vec<u8>,
    err: Vec<u8>,
}

/// A pipe being polled.
#[derive(Clone, Copy)]
enum Slot {
    In,
    Out,
    Err,
    Exit,
}

impl Call {
    fn start(mut keeper: Child) -> io::Result<Call> {
        let exit = match rustix::process::pidfd_open(Pid::from_child(&keeper), PidfdFlags::empty()) {
            Ok(exit) => exit,
            Err(e) => {
                let _ = keeper.kill();
                let _ = keeper.wait();
                return Err(e.into());
            }
        };
        Ok(Call { keeper, exit, status: None, out: Vec::new(), err: Vec::new() })
    }

    /// Writes `input` to the command's stdin and reads its stdout and
    /// stderr, until the keeper has exited and both are at their end, or
    /// the deadline, or the call is abandoned or over the answer's bound.
    fn exchange(&mut self, input: &[u8], deadline: Instant, abandoned: &Abandoned) -> Ended {
        let mut stdin = self.keeper.stdin.take().filter(|_| !input.is_empty());
        let mut stdout = self.keeper.stdout.take();
        let mut stderr = self.keeper.stderr.take();
        for pipe in [
            stdin.as_ref().map(AsFd::as_fd),
            stdout.as_ref().map(AsFd::as_fd),
            stderr.as_ref().map(AsFd::as_fd),
        ]
        .into_iter()
        .flatten()
        {
            if let Err(e) = rustix::io::ioctl_fionbio(pipe, true) {
                return Ended::Failed(e.into());
            }
        }
        let mut written = 0;
        let mut chunk = vec![0; 64 << 10];
        // Why the keeper's status cannot be had, if it cannot (it was
        // reaped elsewhere: where SIGCHLD is ignored, the kernel does).
        let mut unwaitable: Option<io::Error> = None;
        loop {
            if stdout.is_none() && stderr.is_none() {
                if self.status.is_some() {
                    return Ended::Exited;
                }
                if let Some(e) = unwaitable.take() {
                    return Ended::Failed(io::Error::new(e.kind(), format!("could not be waited for: {e}")));
                }
            }
            if self.out.len() > DEFAULT_MAX_RESPONSE {
                return Ended::TooLarge;
            }
            if abandoned.is_set() {
                return Ended::Abandoned;
            }
            let now = Instant::now();
            if now >= deadline {
                return Ended::TimedOut;
            }
            let wait = Timespec::try_from((deadline - now).min(ABANDON_CHECK)).unwrap_or_default();
            let mut slots = Vec::with_capacity(4);
            let mut fds = Vec::with_capacity(4);
            if let Some(pipe) = &stdin {
                slots.push(Slot::In);
                fds.push(PollFd::new(pipe, PollFlags::OUT));
            }
            if let Some(pipe) = &stdout {
                slots.push(Slot::Out);
                fds.push(PollFd::new(pipe, PollFlags::IN));
            }
            if let Some(pipe) = &stderr {
                slots.push(Slot::Err);
                fds.push(PollFd::new(pipe, PollFlags::IN));
            }
            // A pidfd stays readable once its process has exited: polled
            // only until the status is had, or known not to be.
            if self.status.is_none() && unwaitable.is_none() {
                slots.push(Slot::Exit);
                fds.push(PollFd::new(&self.exit, PollFlags::IN));
            }
            match rustix::event::poll(&mut fds, Some(&wait)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Ended::Failed(e.into()),
            }
            let ready: Vec<Slot> = slots
                .into_iter()
                .zip(&fds)
                .filter(|(_, fd)| !fd.revents().is_empty())
                .map(|(s, _)| s)
                .collect();
            drop(fds);
            for slot in ready {
                match slot {
                    Slot::In => {
                        let pipe = stdin.as_mut().expect("polled");
                        match pipe.write(&input[written..]) {
                            Ok(n) => written += n,
                            Err(e) if is_transient(&e) => {}
                            // The command closed its stdin: it reads no more.
                            Err(_) => written = input.len(),
                        }
                        if written == input.len() {
                            stdin = None;
                        }
                    }
                    Slot::Out => {
                        if !drain(
                            stdout.as_mut().expect("polled"),
                            &mut self.out,
                            DEFAULT_MAX_RESPONSE + 1,
                            &mut chunk,
                        ) {
                            stdout = None;
                        }
                    }
                    Slot::Err => {
                        if !drain(stderr.as_mut().expect("polled"), &mut self.err, STDERR_QUOTED, &mut chunk)
                        {
                            stderr = None;
                        }
                    }
                    Slot::Exit => match self.keeper.try_wait() {
                        Ok(status) => self.status = status,
                        Err(e) => unwaitable = Some(e),
                    },
                }
            }
        }
    }

    /// Ends the call: tells the keeper to end the command (it exits once
    /// every process of the call has), kills it if it has not done so
    /// within [`TEARDOWN`], and reaps it. Returns its status.
    fn finish(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            let _ = rustix::process::pidfd_send_signal(&self.exit, Signal::TERM);
            if !self.exits_within(TEARDOWN) {
                let _ = rustix::process::pidfd_send_signal(&self.exit, Signal::KILL);
            }
            self.status = self.keeper.wait().ok();
        }
        self.status
    }

    /// Whether the keeper exits within `limit` (a signal that interrupts
    /// the wait does not shorten it).
    fn exits_within(&self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        loop {
            let left =
                Timespec::try_from(until.saturating_duration_since(Instant::now())).unwrap_or_default();
            let mut exited = [PollFd::new(&self.exit, PollFlags::IN)];
            match rustix::event::poll(&mut exited, Some(&left)) {
                Ok(ready) => return ready == 1,
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => return false,
            }
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Reads what `pipe` has (at most 16 chunks, so that a command that writes
/// without end cannot keep the caller from its deadline), keeping up to
/// `cap` bytes in `kept` and dropping the rest. False once the pipe is at
/// its end (or failed).
fn drain(pipe: &mut impl Read, kept: &mut Vec<u8>, cap: usize, chunk: &mut [u8]) -> bool {
    for _ in 0..16 {
        match pipe.read(chunk) {
            Ok(0) => return false,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
            }
            Err(e) if is_transient(&e) => return true,
            Err(_) => return false,
        }
    }
    true
}

fn is_transient(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted)
}

/// The code that runs in the child that `Command` forks, before exec: it
/// contains the command, and becomes its keeper (see the module doc).
/// `probe` makes the command exit instead of exec'ing.
fn keeper(timeout: Duration, probe: bool) -> impl FnMut() -> io::Result<()> + Send + Sync + 'static {
    // Everything the child needs is made here, before the fork.
    // SAFETY: getuid and getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let plan = Plan {
        timeout: libc::timespec {
            tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        },
        mimobox: std::process::id() as libc::pid_t,
        probe,
        uid_map: format!("{uid} {uid} 1\n"),
        gid_map: format!("{gid} {gid} 1\n"),
    };
    move || {
        // SAFETY: this runs in the child between fork and exec, where only
        // async-signal-safe calls are allowed; `contain` makes only those
        // and does not allocate.
        unsafe { contain(&plan) }
    }
}

/// What the forked child needs, made before the fork.
struct Plan {
    /// The tool's timeout.
    timeout: libc::timespec,
    /// mimobox's PID, to tell whether it is still the parent.
    mimobox: libc::pid_t,
    /// Exit instead of exec'ing (see [`command_tools_supported`]).
    probe: bool,
    /// The lines that map mimobox's user and group to themselves in a user
    /// namespace of the command's own, if it needs one.
    uid_map: String,
    gid_map: String,
}

/// Closes every other descriptor at exec, leaves mimobox's session, makes
/// a PID namespace and forks its init into it, which forks the command.
/// Only the command returns (to exec); this process stays as the keeper and
/// never returns.
///
/// # Safety
///
/// Only in a child of mimobox between fork and exec.
unsafe fn contain(plan: &Plan) -> io::Result<()> {
    let last = io::Error::last_os_error;
    // SAFETY: plain system calls on this process and on descriptors and
    // buffers it owns; see each step.
    unsafe {
        // Only stdin, stdout and stderr pass to the command. (Closed at
        // exec, not now: std reports a failed exec through one of them.)
        close_from(3, true);
        // The keeper dies with the thread that started it. If that thread
        // has already gone, the signal will never come: stop here.
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
            return Err(last());
        }
        if libc::getppid() != plan.mimobox {
            libc::_exit(1);
        }
        // Out of mimobox's session and process group, away from its
        // terminal: what is sent to mimobox's group does not stop or kill
        // the keeper, nor reach the init, which stays in the keeper's.
        if libc::setsid() < 0 {
            return Err(last());
        }
        // mimobox's signal handlers are not for this process (or the init).
        forget_handlers();
        if libc::unshare(libc::CLONE_NEWPID) != 0 {
            let denied = last();
            if denied.raw_os_error() != Some(libc::EPERM)
                || libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWPID) != 0
            {
                return Err(denied);
            }
            // Without a mapping the command would run as `nobody`, which
            // it must not: its rights on the host's files are to be
            // mimobox's, neither more nor less. (Where `setgroups` cannot
            // be written, the gid map fails.)
            write_file(c"/proc/self/setgroups", b"deny");
            if !write_file(c"/proc/self/uid_map", plan.uid_map.as_bytes()) {
                die(b"could not map the user into the tool's user namespace");
            }
            if !write_file(c"/proc/self/gid_map", plan.gid_map.as_bytes()) {
                die(b"could not map the group into the tool's user namespace");
            }
        }
        // Not to be traced or read by the command, from here on (and not
        // sooner: the maps above are not writable by a process that is not
        // dumpable).
        libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong);
        // The keeper takes these two signals with `sigtimedwait`: SIGCHLD
        // when the init exits, SIGTERM when mimobox ends the call. The
        // command gets the mask that mimobox's thread had.
        let mut waited: libc::sigset_t = std::mem::zeroed();
        let mut inherited: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut waited);
        libc::sigaddset(&mut waited, libc::SIGCHLD);
        libc::sigaddset(&mut waited, libc::SIGTERM);
        libc::sigprocmask(libc::SIG_BLOCK, &waited, &mut inherited);
        // An ignored SIGCHLD would reap the init before the keeper saw its
        // status.
        default_action(libc::SIGCHLD);
        // The init holds the reading end: it is at its end once the keeper
        // is gone.
        let mut keeper_alive = [0; 2];
        if libc::pipe2(keeper_alive.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(last());
        }
        let init = fork_bare();
        if init < 0 {
            return Err(last());
        }
        if init == 0 {
            libc::close(keeper_alive[1]);
            return be_init(keeper_alive[0], &inherited, plan.probe);
        }
        // The keeper holds nothing of mimobox's, and no end of the
        // command's pipes; std's spawn waits for its error channel to
        // close, here and at the command's exec.
        close_all_but(keeper_alive[1]);
        libc::_exit(keep(init, plan.timeout, &waited))
    }
}

/// PID 1 of the call's namespace: dies with the keeper, forks the command,
/// and exits with its status once it ends (which ends the namespace),
/// reaping every orphan until then. Returns only in the command, to exec.
///
/// # Safety
///
/// Only in the child that [`contain`] forked into the new namespace;
/// `keeper_alive` is the reading end of a pipe that only the keeper writes.
unsafe fn be_init(keeper_alive: libc::c_int, mask: &libc::sigset_t, probe: bool) -> io::Result<()> {
    // SAFETY: plain system calls on this process, its child and its own
    // descriptors.
    unsafe {
        // If the keeper died before this was set, stop. (The parent of a
        // namespace's init is outside it: getppid says 0 either way.)
        let mut gone = libc::pollfd { fd: keeper_alive, events: libc::POLLIN, revents: 0 };
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0
            || libc::poll(&mut gone, 1, 0) != 0
        {
            libc::_exit(1);
        }
        // Inherited from the keeper already; said again, as it matters.
        libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong);
        let command = fork_bare();
        if command < 0 {
            die(b"could not fork the tool");
        }
        if command == 0 {
            // The command, PID 2: in a session (and process group) of its
            // own, so that a kill of "its group" is a kill of its own.
            libc::close(keeper_alive);
            libc::sigprocmask(libc::SIG_SETMASK, mask, std::ptr::null_mut());
            if libc::setsid() < 0 {
                die(b"could not give the tool a session of its own");
            }
            if probe {
                libc::_exit(0);
            }
            return Ok(());
        }
        // The init holds no descriptor: the command's pipes reach their end
        // when the command's side closes them.
        close_from(0, false);
        loop {
            let mut status = 0;
            let reaped = libc::waitpid(-1, &mut status, 0);
            if reaped == command {
                libc::_exit(passed_on(status));
            }
            if reaped < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                libc::_exit(SETUP_FAILED);
            }
        }
    }
}

/// The keeper's life: waits for the `init` of the call's namespace until
/// `timeout`, and returns the status to exit with (or dies of
/// [`TIMED_OUT`]).
///
/// # Safety
///
/// Only in the keeper, with `signals` (SIGCHLD and SIGTERM) blocked.
unsafe fn keep(init: libc::pid_t, timeout: libc::timespec, signals: &libc::sigset_t) -> libc::c_int {
    // SAFETY: plain system calls on this process and its child.
    unsafe {
        let deadline = monotonic_ns().saturating_add(timespec_ns(&timeout));
        loop {
            let left = deadline - monotonic_ns();
            if left <= 0 {
                break;
            }
            let left =
                libc::timespec { tv_sec: (left / 1_000_000_000) as _, tv_nsec: (left % 1_000_000_000) as _ };
            match libc::sigtimedwait(signals, std::ptr::null_mut(), &left) {
                libc::SIGCHLD => {
                    let mut status = 0;
                    if libc::waitpid(init, &mut status, libc::WNOHANG) == init {
                        return passed_on(status);
                    }
                }
                // mimobox ended the call; it does not read this status.
                libc::SIGTERM => {
                    end(init);
                    return 1;
                }
                _ => {}
            }
        }
        end(init);
        // Die of TIMED_OUT, so that mimobox can tell.
        default_action(TIMED_OUT);
        let mut timed_out: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut timed_out);
        libc::sigaddset(&mut timed_out, TIMED_OUT);
        libc::sigprocmask(libc::SIG_UNBLOCK, &timed_out, std::ptr::null_mut());
        libc::kill(libc::getpid(), TIMED_OUT);
        124
    }
}

/// Kills `init` and waits for it: as PID 1 of its namespace, it is reaped
/// only once every other process there has gone.
///
/// # Safety
///
/// `init` is a child of this process, not yet reaped.
unsafe fn end(init: libc::pid_t) {
    // SAFETY: plain system calls on this process's child.
    unsafe {
        libc::kill(init, libc::SIGKILL);
        let mut status = 0;
        while libc::waitpid(init, &mut status, 0) < 0
            && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
        {}
    }
}

/// The exit status for a child's wait status: its exit status, or 128
/// plus the signal that killed it, as shells report it.
fn passed_on(status: libc::c_int) -> libc::c_int {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    }
}

fn monotonic_ns() -> i64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    timespec_ns(&now)
}

fn timespec_ns(t: &libc::timespec) -> i64 {
    t.tv_sec.saturating_mul(1_000_000_000).saturating_add(t.tv_nsec)
}

/// `fork` as a bare system call: a copy of this process, without the C
/// library's fork handlers (`pthread_atfork`), whose locks and state a
/// forked child cannot vouch for.
///
/// # Safety
///
/// Only in a single-threaded child between fork and exec, whose children
/// in turn make only system calls (the C library's idea of the thread is
/// the parent's).
unsafe fn fork_bare() -> libc::pid_t {
    // SAFETY: clone with no flags but the exit signal, and no new stack,
    // is fork. Its arguments are in this order on every target but s390x.
    #[cfg(not(target_arch = "s390x"))]
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::SIGCHLD as libc::c_long,
            0 as libc::c_long,
            0 as libc::c_long,
            0 as libc::c_long,
            0 as libc::c_long,
        )
    };
    #[cfg(target_arch = "s390x")]
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            0 as libc::c_long,
            libc::SIGCHLD as libc::c_long,
            0 as libc::c_long,
            0 as libc::c_long,
            0 as libc::c_long,
        )
    };
    pid as libc::pid_t
}

/// Ends a process whose setup failed after the fork: writes one line
/// (`mimobox: WHAT (os error N)`) to stderr, the command's, which mimobox
/// quotes, and exits with [`SETUP_FAILED`].
///
/// # Safety
///
/// Async-signal-safe: only in the forked child, where it does not return.
unsafe fn die(what: &[u8]) -> ! {
    let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
    let mut line = [0u8; 160];
    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        for &byte in bytes {
            if len < line.len() {
                line[len] = byte;
                len += 1;
            }
        }
    };
    put(b"mimobox: ");
    put(what);
    put(b" (os error ");
    let mut digits = [0u8; 10];
    let (mut n, mut at) = (errno.unsigned_abs(), digits.len());
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    put(&digits[at..]);
    put(b")\n");
    // SAFETY: `line` is valid for `len` bytes; write and _exit are
    // async-signal-safe.
    unsafe {
        libc::write(2, line.as_ptr().cast(), len);
        libc::_exit(SETUP_FAILED)
    }
}

/// Writes `bytes` to the file at `path` in one write; whether all of them
/// were written.
///
/// # Safety
///
/// Async-signal-safe; only for files that take one write.
unsafe fn write_file(path: &std::ffi::CStr, bytes: &[u8]) -> bool {
    // SAFETY: `path` is NUL-terminated and `bytes` valid for its length.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return false;
        }
        let written = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
        // The write's error, not the close's, is the one to report.
        let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
        libc::close(fd);
        *libc::__errno_location() = errno;
        written == bytes.len() as isize
    }
}

/// Sets `signal` to its default action.
///
/// # Safety
///
/// Changes the process's signal disposition; only where no handler is
/// expected (the forked child).
unsafe fn default_action(signal: libc::c_int) {
    // SAFETY: an all-zero sigaction is SIG_DFL with an empty mask and no
    // flags.
    unsafe {
        let action: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, &action, std::ptr::null_mut());
    }
}

/// Sets every signal that has a handler to its default action, as exec
/// would: a handler is mimobox's code (or its embedder's), not to be run by
/// a signal that the command sends. Ignored signals stay ignored.
///
/// # Safety
///
/// As [`default_action`].
unsafe fn forget_handlers() {
    for signal in 1..=libc::SIGRTMAX() {
        // SAFETY: `action` is valid for sigaction to fill; for a signal
        // that cannot be queried (SIGKILL, the C library's own), it fails.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, std::ptr::null(), &mut action) == 0
                && action.sa_sigaction != libc::SIG_DFL
                && action.sa_sigaction != libc::SIG_IGN
            {
                default_action(signal);
            }
        }
    }
}

/// Closes (or, with `at_exec`, marks close-on-exec) every descriptor from
/// `first` on.
///
/// # Safety
///
/// Only where nothing else uses those descriptors (the forked child).
unsafe fn close_from(first: libc::c_uint, at_exec: bool) {
    let flags = if at_exec { libc::CLOSE_RANGE_CLOEXEC } else { 0 };
    // SAFETY: close_range takes plain integers.
    let done = unsafe { libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, flags) } == 0;
    if done {
        return;
    }
    // Kernels before 5.11: one descriptor at a time, up to the limit.
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid rlimit for the call to fill.
    let last = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur.min(1 << 20) as libc::c_int
    } else {
        1 << 16
    };
    for fd in first as libc::c_int..last {
        // SAFETY: on a descriptor that is not open, these fail harmlessly.
        unsafe {
            if at_exec {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            } else {
                libc::close(fd);
            }
        }
    }
}

/// Closes every descriptor but `keep`.
///
/// # Safety
///
/// Only where nothing else uses those descriptors (the keeper).
unsafe fn close_all_but(keep: libc::c_int) {
    // SAFETY: as `close_from`; `keep` stays open.
    unsafe {
        for fd in 0..keep {
            libc::close(fd);
        }
        close_from(keep as libc::c_uint + 1, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_checked_and_compacted_without_a_tree() {
        let raw = raw_json(b" {\"a\" : [1, 2,\n 3], \"b c\": \"x \\\" y\"}\n".to_vec()).unwrap();
        assert_eq!(raw.get(), r#"{"a":[1,2,3],"b c":"x \" y"}"#);
        for bad in [&b"not json"[..], b"{\"a\": 1} trailing", b"", b"\"\xff\"", b"[1,"] {
            assert!(raw_json(bad.to_vec()).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn this_host_can_contain_command_tools() {
        command_tools_supported().unwrap();
    }

    #[test]
    fn the_command_runs_in_a_pid_namespace_and_a_session_of_its_own_as_mimobox_s_user() {
        // Its PID and session ID as the namespace sees them (`NSsid` is 0
        // for a session outside the namespace, as mimobox's is).
        let script = r#"sid=$(/usr/bin/awk '/^NSsid/ { print $NF }' /proc/self/status)
printf '{"pid": %s, "sid": %s, "uid": %s}' $$ "$sid" $(/usr/bin/id -u)"#;
        let command = ["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned()];
        let answer = run(
            "pid",
            &command,
            &Default::default(),
            Duration::from_secs(5),
            &Value::Null,
            &Abandoned::default(),
        );
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        // PID 1 is the namespace's init; the command is its child, the leader
        // of a session of its own.
        assert_eq!(answer.unwrap().get(), format!(r#"{{"pid":2,"sid":2,"uid":{uid}}}"#));
    }

    #[test]
    fn a_command_that_writes_without_end_cannot_hold_the_call() {
        let sh = |script: &str| ["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned()];
        let timeout = Duration::from_secs(1);
        let started = Instant::now();
        let answer = run(
            "yes",
            &sh("/usr/bin/yes"),
            &Default::default(),
            timeout,
            &Value::Null,
            &Abandoned::default(),
        );
        assert_eq!(answer.unwrap_err().kind, ErrorKind::TooLarge);
        let answer = run(
            "yes",
            &sh("/usr/bin/yes >&2"),
            &Default::default(),
            timeout,
            &Value::Null,
            &Abandoned::default(),
        );
        assert_eq!(answer.unwrap_err().kind, ErrorKind::Timeout);
        assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
    }

    #[test]
    fn an_abandoned_call_ends_at_once() {
        let command = ["/bin/sleep".to_owned(), "30".to_owned()];
        let abandoned = Abandoned::default();
        let started = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(200));
                abandoned.set();
            });
            let answer = run(
                "sleep",
                &command,
                &Default::default(),
                Duration::from_secs(20),
                &Value::Null,
                &abandoned,
            );
            assert_eq!(answer.unwrap_err().kind, ErrorKind::Timeout);
        });
        assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    }

    #[test]
    fn answers_nested_deeper_than_128_are_refused() {
        let nested =
            |open: &str, close: &str, depth: usize| (open.repeat(depth) + &close.repeat(depth)).into_bytes();
        assert!(raw_json(nested("[", "]", 128)).is_ok());
        assert_eq!(raw_json(nested("[", "]", 129)).unwrap_err(), "nested deeper than 128");
        assert!(raw_json(nested("{\"a\":[", "]}", 64)).is_ok());
        assert!(raw_json(nested("{\"a\":[", "]}", 65)).is_err());
        // 16 MiB of brackets: valid JSON, and no recursive parser's friend.
        assert!(raw_json(nested("[", "]", 8 << 20)).is_err());
        // Brackets inside strings are text.
        assert!(raw_json(format!("[\"{}\"]", "[{".repeat(1000)).into_bytes()).is_ok());
    }

    #[test]
    fn a_keeper_that_cannot_be_waited_for_does_not_keep_the_call_to_its_deadline() {
        let child = Command::new("/bin/true")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as libc::pid_t;
        let mut call = Call::start(child).unwrap();
        // Reaped behind the call's back, as where SIGCHLD is ignored: its
        // wait fails (ECHILD) while its pidfd stays readable.
        let mut status = 0;
        // SAFETY: the PID is our child's, not reaped yet; status is valid.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        let started = Instant::now();
        let ended = call.exchange(b"", started + Duration::from_secs(5), &Abandoned::default());
        assert!(matches!(ended, Ended::Failed(_)), "did not fail");
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    }

    #[test]
    fn only_lasting_answers_of_the_probe_are_remembered() {
        let known = OnceLock::new();
        let mut probes = 0;
        // A fork that failed for want of memory or processes may pass.
        let passing = || (Err("EAGAIN".to_owned()), false);
        assert_eq!(remembered(&known, || (probes += 1, passing()).1), Err("EAGAIN".to_owned()));
        assert_eq!(remembered(&known, || (probes += 1, (Ok(()), true)).1), Ok(()));
        assert_eq!(remembered(&known, || (probes += 1, passing()).1), Ok(()));
        assert_eq!(probes, 2);
        // A refusal lasts.
        let known = OnceLock::new();
        assert!(remembered(&known, || (Err("EPERM".to_owned()), true)).is_err());
        assert!(remembered(&known, || (Ok(()), true)).is_err());
    }

    /// Takes `CAP_SYS_PTRACE` away from the calling thread for good (a
    /// thread's capabilities are its own), from its bounding set too, so
    /// that what it starts does not get it back at exec as root. False
    /// where the thread is not root (it has no capabilities to drop).
    fn drop_cap_sys_ptrace_from_this_thread() -> bool {
        const CAP_SYS_PTRACE: u32 = 19;
        #[repr(C)]
        struct Header {
            version: u32,
            pid: libc::c_int,
        }
        #[repr(C)]
        #[derive(Clone, Copy, Default)]
        struct Set {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        // SAFETY: getuid cannot fail.
        if unsafe { libc::getuid() } != 0 {
            return false;
        }
        let mut header = Header { version: 0x2008_0522, pid: 0 };
        let mut sets = [Set::default(); 2];
        // SAFETY: capget and capset read and fill a valid header and two
        // sets (version 3); the prctl takes plain integers. All three act on
        // the calling thread only.
        unsafe {
            assert_eq!(libc::syscall(libc::SYS_capget, &mut header, sets.as_mut_ptr()), 0);
            assert_eq!(libc::prctl(libc::PR_CAPBSET_DROP, CAP_SYS_PTRACE as libc::c_ulong), 0);
            for set in [&mut sets[0].effective, &mut sets[0].permitted, &mut sets[0].inheritable] {
                *set &= !(1 << CAP_SYS_PTRACE);
            }
            assert_eq!(libc::syscall(libc::SYS_capset, &mut header, sets.as_ptr()), 0);
        }
        true
    }

    #[test]
    fn a_command_without_cap_sys_ptrace_cannot_open_the_memory_of_its_keeper_or_init() {
        // The command finds the host PIDs of the processes above it through
        // the host's /proc, and opens their memory, which is writable to a
        // process allowed to trace them. Here mimobox (this thread) is root
        // without CAP_SYS_PTRACE, as in a container that grants
        // CAP_SYS_ADMIN only; a root with it is root on the host anyway.
        let script = r#"sh=$(/usr/bin/awk '{ print $4 }' /proc/self/stat)
parent=$(/usr/bin/awk '{ print $4 }' /proc/$sh/stat)
grandparent=$(/usr/bin/awk '{ print $4 }' /proc/$parent/stat)
opened=
for pid in $parent $grandparent; do
  /bin/dd if=/proc/$pid/mem of=/dev/null bs=1 count=0 2>/dev/null && opened="$opened $pid"
done
printf '"%s"' "$opened""#;
        let command = ["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned()];
        let answer = std::thread::spawn(move || {
            let dropped = drop_cap_sys_ptrace_from_this_thread();
            let answer = run(
                "mem",
                &command,
                &Default::default(),
                Duration::from_secs(5),
                &Value::Null,
                &Abandoned::default(),
            );
            (dropped, answer)
        })
        .join()
        .unwrap();
        // SAFETY: getuid cannot fail.
        assert_eq!(answer.0, unsafe { libc::getuid() } == 0);
        assert_eq!(answer.1.unwrap().get(), r#""""#, "the command opened the memory of these processes");
    }
}
