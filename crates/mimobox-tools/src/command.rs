//! Tools that are host commands (`[tools.NAME]` in a profile).
//!
//! Each call spawns the command in a process group of its own, with only
//! the granted environment, writes the JSON arguments to its stdin and
//! reads one JSON value from its stdout. The call ends at the tool's
//! timeout: the whole group is killed, so nothing it started outlives the
//! call.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use mimobox_core::grants::CommandTool;
use mimobox_core::text::one_line_bounded;
use serde_json::Value;

use crate::{DEFAULT_MAX_RESPONSE, ErrorKind, Tool, ToolError};

/// Most bytes of a failing command's stderr quoted to the guest.
const STDERR_QUOTED: usize = 2048;

/// The tool that runs `config`'s command, named `name`.
pub fn command_tool(name: &str, config: &CommandTool) -> Tool {
    let command = config.command.clone();
    let env = config.env.clone();
    let timeout = config.timeout;
    let label = name.to_owned();
    Tool::new(name, config.description.clone(), config.input_schema.clone(), move |args| {
        run(&label, &command, &env, timeout, &args)
    })
}

fn run(
    name: &str,
    command: &[String],
    env: &std::collections::BTreeMap<String, String>,
    timeout: Duration,
    args: &Value,
) -> Result<Value, ToolError> {
    let (program, rest) = command.split_first().ok_or_else(|| ToolError::failed("no program"))?;
    let mut child = Command::new(program)
        .args(rest)
        .env_clear()
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| ToolError::failed(format!("`{name}` could not start: {e}")))?;
    let group = child.id();
    let kill_group = move || {
        if let Some(pid) = rustix::process::Pid::from_raw(group as i32) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    };
    // Feed and drain on threads of their own, so that a command that
    // neither reads nor exits cannot block the call past its timeout.
    let mut stdin = child.stdin.take().expect("piped");
    let input = serde_json::to_vec(args).expect("JSON serialises");
    std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || read_capped(stdout, DEFAULT_MAX_RESPONSE + 1));
    let stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || read_capped(stderr, STDERR_QUOTED));
    let (done, exited) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait());
    });
    let status = match exited.recv_timeout(timeout) {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => {
            kill_group();
            return Err(ToolError::failed(format!("`{name}`: {e}")));
        }
        Err(_) => {
            kill_group();
            return Err(ToolError {
                kind: ErrorKind::Timeout,
                message: format!("`{name}` ran past its timeout of {}s", timeout.as_secs_f64()),
            });
        }
    };
    // Whatever the command left running would hold its pipes open.
    kill_group();
    let out = reader.join().unwrap_or_default();
    let err = errors.join().unwrap_or_default();
    if !status.success() {
        let why = match status.code() {
            Some(code) => format!("exited with status {code}"),
            None => "was killed by a signal".to_owned(),
        };
        let said = String::from_utf8_lossy(&err);
        let said = said.trim();
        let said = if said.is_empty() { String::new() } else { format!(": {}", one_line_bounded(said)) };
        return Err(ToolError::failed(format!("`{name}` {why}{said}")));
    }
    if out.len() > DEFAULT_MAX_RESPONSE {
        return Err(ToolError {
            kind: ErrorKind::TooLarge,
            message: format!("`{name}` answered more than {DEFAULT_MAX_RESPONSE} bytes"),
        });
    }
    serde_json::from_slice(&out).map_err(|e| ToolError::failed(format!("`{name}` did not answer JSON: {e}")))
}

/// Reads up to `cap` bytes, then drains (and drops) the rest.
fn read_capped(mut from: impl Read, cap: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let _ = from.by_ref().take(cap as u64).read_to_end(&mut kept);
    let _ = std::io::copy(&mut from, &mut std::io::sink());
    kept
}
