//! `mimobox session`: one live guest, driven by JSON lines or a REPL.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::process::ExitCode;

use anyhow::Result;
use mimobox_core::{ExecRequest, Session, TurnRequest, TurnResult};
use mimobox_wasm::{WasmSandbox, WasmSession, check_config};

use crate::cli::SessionArgs;
use crate::commands::progress;
use crate::commands::run::{ignore_broken_pipe, module_and_args, one_shot, result_json};
use crate::flags::Resolved;

/// Longest request line read; a longer one is answered with an error.
const MAX_LINE: u64 = 16 << 20;

pub fn execute(args: SessionArgs) -> Result<ExitCode> {
    let resolved = Resolved::new(&args.limits, check_config)?;
    let (module, guest_args) = module_and_args(&resolved.config, args.command)?;
    let interactive = std::io::stdin().is_terminal();
    // `--env` variables are the session's own, not the profile's: a
    // preload checkpoint, built with the profile's environment, serves
    // sessions with any (the restore turn applies them).
    let mut config = resolved.config.clone();
    let env = crate::flags::env_pairs(&args.limits)?;
    for (name, _) in &env {
        config.env.remove(name);
    }
    let sandbox = WasmSandbox::create(one_shot(config)).map_err(|e| resolved.explain(e))?;
    if std::io::stderr().is_terminal() {
        progress::attach(&sandbox);
    }
    let session = sandbox
        .open_session(ExecRequest { module, args: guest_args, env, ..ExecRequest::default() })
        .map_err(|e| resolved.explain(e))?;
    if interactive { repl(session) } else { json_lines(session) }
}

/// One request per line, one answer per line, until end of input.
fn json_lines(mut session: WasmSession) -> Result<ExitCode> {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut input).take(MAX_LINE + 1).read_until(b'\n', &mut line)?;
        if read == 0 {
            break;
        }
        let answer = if line.len() as u64 > MAX_LINE && !line.ends_with(b"\n") {
            // Skip the rest of the overlong line.
            let mut rest = Vec::new();
            input.read_until(b'\n', &mut rest)?;
            error_json(&format!("the request line is longer than {MAX_LINE} bytes"))
        } else if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        } else {
            match parse_request(&line) {
                Ok(code) => match session.turn(TurnRequest::new(code)) {
                    Ok(result) => turn_json(&result),
                    Err(e) => error_json(&crate::exit::one_line(&e.into())),
                },
                Err(message) => error_json(&message),
            }
        };
        let mut out = std::io::stdout().lock();
        ignore_broken_pipe(writeln!(out, "{answer}").and_then(|()| out.flush()))?;
    }
    session.close();
    Ok(ExitCode::SUCCESS)
}

/// The code of a request line `{"code": "..."}`, or why it is not one.
fn parse_request(line: &[u8]) -> Result<String, String> {
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| format!("not a JSON request: {e}"))?;
    let Some(object) = value.as_object() else { return Err("a request is a JSON object".into()) };
    if let Some(key) = object.keys().find(|k| *k != "code") {
        return Err(format!("unknown request key `{}`", mimobox_core::text::one_line_bounded(key)));
    }
    match object.get("code") {
        Some(serde_json::Value::String(code)) => Ok(code.clone()),
        Some(_) => Err("`code` must be a string".into()),
        None => Err("a request needs `code`".into()),
    }
}

fn turn_json(result: &TurnResult) -> serde_json::Value {
    let mut value = result_json(&result.result);
    value["turn"] = result.turn.into();
    value["alive"] = result.alive.into();
    value
}

fn error_json(message: &str) -> serde_json::Value {
    serde_json::json!({ "error": message })
}

/// `>>> ` and `... ` prompts; a line ending in `:` or `\` opens a block,
/// which a blank line closes. Output appears as the guest writes it.
fn repl(mut session: WasmSession) -> Result<ExitCode> {
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        prompt(">>> ");
        let Some(first) = lines.next().transpose()? else { break };
        let mut code = first.clone();
        if opens_block(&first) {
            loop {
                prompt("... ");
                match lines.next().transpose()? {
                    Some(line) if !line.trim().is_empty() => {
                        code.push('\n');
                        code.push_str(&line);
                    }
                    _ => break,
                }
            }
        }
        if code.trim().is_empty() {
            continue;
        }
        let request = TurnRequest {
            code,
            stdout_sink: Some(Box::new(|bytes: &[u8]| {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(bytes).and_then(|()| out.flush());
            })),
            stderr_sink: Some(Box::new(|bytes: &[u8]| {
                let _ = std::io::stderr().lock().write_all(bytes);
            })),
        };
        match session.turn(request) {
            Ok(result) if !result.alive => {
                eprintln!("mimobox: the session has ended ({})", result.result.outcome.name());
                return Ok(crate::exit::for_outcome(&result.result.outcome));
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("mimobox: {}", crate::exit::one_line(&e.into()));
                return Ok(ExitCode::from(crate::exit::USAGE));
            }
        }
    }
    println!();
    session.close();
    Ok(ExitCode::SUCCESS)
}

fn prompt(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

fn opens_block(line: &str) -> bool {
    let line = line.trim_end();
    line.ends_with(':') || line.ends_with('\\')
}
