//! `mimobox run`: one module, one sandbox, one execution.

use std::io::{IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use mimobox_core::{ExecRequest, ModuleSource, Outcome, SandboxConfig, SandboxResult, Stdin};
use mimobox_wasm::{WasmSandbox, check_config};

use crate::cli::RunArgs;
use crate::commands::progress;
use crate::exit;
use crate::flags::Resolved;

pub fn execute(args: RunArgs) -> Result<ExitCode> {
    let resolved = Resolved::new(&args.limits, check_config)?;
    let (module, guest_args) = module_and_args(&resolved.config, args.command)?;
    let stdin = guest_stdin(args.stdin.as_ref())?;
    let sandbox = WasmSandbox::create(one_shot(resolved.config.clone())).map_err(|e| resolved.explain(e))?;
    if !args.json && std::io::stderr().is_terminal() {
        progress::attach(&sandbox);
    }

    let mut request = ExecRequest { module, args: guest_args, stdin, ..ExecRequest::default() };
    if !args.json {
        // Pass output through as the guest writes it; the caps still apply.
        request.stdout_sink = Some(Box::new(|bytes: &[u8]| {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(bytes).and_then(|()| out.flush());
        }));
        request.stderr_sink = Some(Box::new(|bytes: &[u8]| {
            let _ = std::io::stderr().lock().write_all(bytes);
        }));
    }
    let result = sandbox.run(request).map_err(|e| resolved.explain(e))?;
    report(&result, args.json, !args.json)
}

/// The module to run (none when the profile names one) and the guest's
/// arguments, from the positional arguments of the command line.
pub fn module_and_args(
    config: &SandboxConfig,
    command: Vec<String>,
) -> Result<(Option<ModuleSource>, Vec<String>)> {
    let mut command = command.into_iter();
    let module = match &config.module {
        Some(_) => None,
        None => match command.next() {
            Some(module) => Some(ModuleSource::Path(PathBuf::from(module))),
            None => bail!("no module given: name one, or use a profile with `module = \"...\"`"),
        },
    };
    Ok((module, command.collect()))
}

/// The config for a process that runs exactly one execution: a pool of
/// more than one slot would only reserve address space it never uses.
pub fn one_shot(mut config: SandboxConfig) -> SandboxConfig {
    config.pool.size = config.pool.size.min(1);
    config
}

/// The guest's stdin: the `--stdin` file, else ours when it is not a
/// terminal (streamed as the guest reads it), else nothing.
fn guest_stdin(file: Option<&PathBuf>) -> Result<Stdin> {
    if let Some(path) = file {
        // Opened without blocking (a FIFO swapped in would otherwise hang
        // the open) and checked through the handle, then streamed.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .with_context(|| format!("--stdin {}", path.display()))?;
        let metadata = file.metadata().with_context(|| format!("--stdin {}", path.display()))?;
        if !metadata.is_file() {
            bail!("--stdin {}: not a regular file (pipe it into mimobox instead)", path.display());
        }
        return Ok(Stdin::File(file));
    }
    if std::io::stdin().is_terminal() {
        return Ok(Stdin::default());
    }
    Ok(Stdin::Inherit)
}

/// Prints the result (as JSON, or the output that was not already streamed
/// plus a note on how the guest ended) and picks the exit status.
pub fn report(result: &SandboxResult, json: bool, streamed: bool) -> Result<ExitCode> {
    if json {
        let value = mimobox_server::wire::result_json(result);
        ignore_broken_pipe(writeln!(std::io::stdout().lock(), "{value}"))?;
    } else {
        if !streamed {
            ignore_broken_pipe(std::io::stdout().lock().write_all(&result.stdout))?;
            ignore_broken_pipe(std::io::stdout().flush())?;
            ignore_broken_pipe(std::io::stderr().lock().write_all(&result.stderr))?;
        }
        let mut notes = String::new();
        for (truncated, stream) in [(result.stdout_truncated, "stdout"), (result.stderr_truncated, "stderr")]
        {
            if truncated {
                notes.push_str(&format!("mimobox: guest {stream} was truncated at the output cap\n"));
            }
        }
        if result.disk_quota_hit {
            notes.push_str("mimobox: guest reached the disk write quota (max_disk_write)\n");
        }
        match &result.outcome {
            Outcome::Exited { .. } => {}
            Outcome::TimedOut => notes.push_str("mimobox: guest timed out\n"),
            Outcome::OutOfFuel => notes.push_str("mimobox: guest ran out of fuel\n"),
            Outcome::MemoryLimit => notes.push_str("mimobox: guest hit the memory limit\n"),
            Outcome::Trap { message } => notes.push_str(&format!("mimobox: guest trapped: {message}\n")),
            other => notes.push_str(&format!("mimobox: guest ended: {}\n", other.name())),
        }
        if !notes.is_empty() {
            say_bounded(notes);
        }
    }
    Ok(exit::for_outcome(&result.outcome))
}

/// Writes mimobox's closing notes to stderr, giving up after a moment: a
/// stderr that nobody reads (the guest may have filled it) must not keep
/// mimobox from exiting.
fn say_bounded(notes: String) {
    let (done, written) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new().name("mimobox-notes".into()).spawn(move || {
        let _ = std::io::stderr().lock().write_all(notes.as_bytes());
        let _ = done.send(());
    });
    if spawned.is_ok() {
        let _ = written.recv_timeout(std::time::Duration::from_secs(1));
    }
}

/// A reader that closed our stdout early (`| head`) is not an error of the
/// run.
pub fn ignore_broken_pipe(result: std::io::Result<()>) -> std::io::Result<()> {
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
