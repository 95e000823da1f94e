//! `mimobox session`: one live guest, driven by JSON lines or a REPL.
//!
//! Input is read on a thread of its own, so that the session is closed at
//! its idle timeout or lifetime whether or not another line comes: a
//! silent client that keeps stdin open does not keep the guest alive.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::time::Instant;

use anyhow::Result;
use mimobox_core::{ExecRequest, Session, TurnRequest, TurnResult};
use mimobox_wasm::{WasmSandbox, WasmSession, check_config};

use crate::cli::SessionArgs;
use mimobox_server::wire::{self, EventLines, error_json, listing_json, turn_json};

use crate::commands::protocol::{self, Request, file_answer};
use crate::commands::run::{ignore_broken_pipe, module_and_args, one_shot};
use crate::commands::terminal::{self, TerminalText};
use crate::commands::{pause, progress};
use crate::flags::Resolved;

/// Longest request line read; a longer one is answered with an error.
const MAX_LINE: usize = 16 << 20;

pub fn execute(args: SessionArgs) -> Result<ExitCode> {
    let resolved = Resolved::new(&args.limits, check_config)?;
    let (module, guest_args) = module_and_args(&resolved.config, args.command)?;
    let interactive = std::io::stdin().is_terminal();
    // `--env` variables are the session's own, not the profile's: a
    // preload checkpoint, built with the profile's environment, serves
    // sessions with any (the restore turn applies them).
    let mut config = resolved.config.clone();
    let env = args.limits.envs.clone();
    for (name, _) in &env {
        config.env.remove(name);
    }
    let mut config = one_shot(config);
    // Pausing compares the session with a fresh instance of its image,
    // which takes a second slot.
    if args.pause_to.is_some() {
        config.pool.size = config.pool.size.max(2);
    }
    let sandbox = WasmSandbox::create(config).map_err(|e| resolved.explain(e))?;
    if std::io::stderr().is_terminal() {
        progress::attach(&sandbox);
    }
    let key = if args.pause_to.is_some() || args.resume.is_some() {
        Some(pause::state_key(args.state_key.as_deref(), &sandbox)?)
    } else {
        None
    };
    let session = match &args.resume {
        Some(file) => {
            let paused = pause::read_paused(file, sandbox.config())?;
            let key = key.as_deref().expect("read above");
            sandbox
                .resume_session(&paused, key, &pause::binding())
                .map_err(|e| anyhow::Error::new(e).context(format!("resuming {}", file.display())))?
        }
        None => sandbox
            .open_session(ExecRequest { module, args: guest_args, env, ..ExecRequest::default() })
            .map_err(|e| resolved.explain(e))?,
    };
    let input = read_lines();
    let mut live = Live::new(session);
    live.pause_to = args.pause_to.clone().zip(key);
    if interactive { repl(live, &input, !args.raw_output) } else { json_lines(live, &input) }
}

/// One line of input, as the reading thread found it.
enum Line {
    /// A line (without its newline), at most [`MAX_LINE`] bytes.
    Text(Vec<u8>),
    /// A line longer than [`MAX_LINE`]; its bytes were read and dropped.
    TooLong,
    /// End of input.
    End,
    /// Reading stdin failed.
    Failed(std::io::Error),
}

/// Starts the thread that reads stdin a line at a time. The channel holds
/// one line, so the thread reads at most one line ahead of the session.
fn read_lines() -> Receiver<Line> {
    let (send, lines) = sync_channel(1);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        loop {
            let mut line = Vec::new();
            let read = match read_line_bounded(&mut input, &mut line, MAX_LINE) {
                Ok(Some(true)) => Line::Text(line),
                Ok(Some(false)) => Line::TooLong,
                Ok(None) => Line::End,
                Err(e) => Line::Failed(e),
            };
            let end = matches!(read, Line::End | Line::Failed(_));
            if send.send(read).is_err() || end {
                return;
            }
        }
    });
    lines
}

/// Reads one line into `line` (without its newline): `Some(true)` when it
/// fits in `max` bytes, `Some(false)` when it is longer (then `line` is
/// empty and the rest of the line has been read in bounded pieces and
/// dropped, so a line of any length costs at most `max` bytes), `None` at
/// end of input with nothing read.
fn read_line_bounded(
    input: &mut impl BufRead,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<bool>> {
    line.clear();
    let mut too_long = false;
    let mut any = false;
    loop {
        let available = match input.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(any.then_some(!too_long));
        }
        any = true;
        let (piece, ends) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => (&available[..at], Some(at + 1)),
            None => (available, None),
        };
        if !too_long {
            if line.len() + piece.len() > max {
                too_long = true;
                *line = Vec::new();
            } else {
                line.extend_from_slice(piece);
            }
        }
        let used = ends.unwrap_or(available.len());
        input.consume(used);
        if ends.is_some() {
            return Ok(Some(!too_long));
        }
    }
}

/// The session while it lives, and what to say once it has ended. An
/// ended session's instance is dropped at once (its memory and pool slot
/// freed); later requests are answered that it has ended.
struct Live {
    session: Option<WasmSession>,
    /// Where to pause the session at the end of input, and the key.
    pause_to: Option<(std::path::PathBuf, Vec<u8>)>,
    ended: Option<String>,
    /// When the session closes if no turn comes first.
    closes_at: Instant,
}

/// What came of waiting for a line.
enum Next {
    Line(Line),
    /// The live session reached its idle timeout or lifetime.
    Closed(String),
    /// The session had ended already (a turn ended it), and its idle
    /// timeout has passed since: the process winds down as at end of input.
    Done,
}

impl Live {
    fn new(session: WasmSession) -> Live {
        let closes_at = session.closes_at();
        Live { session: Some(session), pause_to: None, ended: None, closes_at }
    }

    /// The next line, or the session's closing if it comes first.
    fn next(&mut self, lines: &Receiver<Line>) -> Next {
        loop {
            let wait = self.closes_at.saturating_duration_since(Instant::now());
            match lines.recv_timeout(wait) {
                Ok(line) => return Next::Line(line),
                Err(RecvTimeoutError::Disconnected) => return Next::Line(Line::End),
                Err(RecvTimeoutError::Timeout) => {
                    // An ended session's process goes too: at the idle
                    // timeout after its last turn.
                    let Some(session) = &self.session else { return Next::Done };
                    if let Some(reason) = session.expired() {
                        self.session = None;
                        return Next::Closed(reason);
                    }
                    // The clock read just short of the deadline.
                    self.closes_at = session.closes_at();
                }
            }
        }
    }

    fn turn(&mut self, request: TurnRequest) -> Result<TurnResult, mimobox_core::SandboxError> {
        let Some(session) = &mut self.session else {
            let reason = self.ended.clone().unwrap_or_else(|| "closed".into());
            return Err(mimobox_core::SandboxError::SessionEnded { reason });
        };
        let result = session.turn(request);
        self.closes_at = session.closes_at();
        if !session.alive() {
            let reason = session.ended().map(str::to_owned).or_else(|| session.expired());
            self.ended = Some(reason.unwrap_or_else(|| "ended".into()));
            self.session = None;
        }
        result
    }

    fn close(self) {
        if let Some(session) = self.session {
            session.close();
        }
    }

    /// The end of input: the session is paused to its file when
    /// `--pause-to` asks, else closed.
    fn finish(mut self) -> Result<()> {
        let Some((file, key)) = self.pause_to.take() else {
            self.close();
            return Ok(());
        };
        let Some(mut session) = self.session.take() else {
            let reason = self.ended.unwrap_or_else(|| "closed".into());
            anyhow::bail!("cannot pause to {}: the session has ended: {reason}", file.display());
        };
        let paused = session
            .pause(&key, &pause::binding())
            .map_err(|e| anyhow::Error::new(e).context(format!("pausing to {}", file.display())))?;
        pause::write_paused(&file, &paused)
    }

    /// The answer line to one request.
    fn answer(&mut self, request: Request) -> serde_json::Value {
        let one_line = |e: mimobox_core::SandboxError| error_json(&crate::exit::one_line(&e.into()));
        let file_error = |e: mimobox_wasm::FileOpError| mimobox_core::text::one_line_bounded(&e.to_string());
        match request {
            Request::Turn { code, stream, figure_formats } => {
                let events: Option<mimobox_core::EventSink> = stream.then(|| {
                    let mut lines = EventLines::default();
                    Box::new(move |event| {
                        if let Some(line) = lines.line(event) {
                            let mut out = std::io::stdout().lock();
                            let _ = writeln!(out, "{line}").and_then(|()| out.flush());
                        }
                    }) as mimobox_core::EventSink
                });
                match self.turn(TurnRequest { events, figure_formats, ..TurnRequest::new(code) }) {
                    Ok(result) => {
                        let mut answer = turn_json(&result);
                        if stream {
                            answer["type"] = "end".into();
                        }
                        answer
                    }
                    Err(e) => one_line(e),
                }
            }
            Request::WriteFile { path, data } => match self.session_mut() {
                Err(e) => one_line(e),
                Ok(session) => file_answer(
                    session
                        .write_file(&path, &data)
                        .map(|bytes| serde_json::json!({ "bytes": bytes }))
                        .map_err(file_error),
                ),
            },
            Request::ReadFile { path } => match self.session_mut() {
                Err(e) => one_line(e),
                Ok(session) => file_answer(
                    session
                        .read_file(&path)
                        .map(|data| serde_json::json!({ "data": wire::base64(&data), "bytes": data.len() }))
                        .map_err(file_error),
                ),
            },
            Request::ListFiles { path } => match self.session_mut() {
                Err(e) => one_line(e),
                Ok(session) => file_answer(
                    session.list_files(&path).map(|listing| listing_json(&listing)).map_err(file_error),
                ),
            },
        }
    }

    /// The live session, or why there is none.
    fn session_mut(&mut self) -> Result<&mut WasmSession, mimobox_core::SandboxError> {
        match &mut self.session {
            Some(session) => {
                self.closes_at = session.closes_at();
                Ok(session)
            }
            None => Err(mimobox_core::SandboxError::SessionEnded {
                reason: self.ended.clone().unwrap_or_else(|| "closed".into()),
            }),
        }
    }
}

/// One request per line, one answer per line, until end of input or the
/// session's closing.
fn json_lines(mut live: Live, lines: &Receiver<Line>) -> Result<ExitCode> {
    loop {
        let line = match live.next(lines) {
            Next::Line(line) => line,
            Next::Closed(reason) => return Ok(closed(&reason)),
            Next::Done => break,
        };
        let answer = match line {
            Line::End => break,
            Line::Failed(e) => {
                live.close();
                return Err(anyhow::Error::new(e).context("reading the request lines on stdin"));
            }
            Line::TooLong => error_json(&format!("the request line is longer than {MAX_LINE} bytes")),
            Line::Text(line) if line.iter().all(u8::is_ascii_whitespace) => continue,
            Line::Text(line) => match protocol::parse(&line) {
                Ok(request) => live.answer(request),
                Err(message) => error_json(&message),
            },
        };
        let mut out = std::io::stdout().lock();
        ignore_broken_pipe(writeln!(out, "{answer}").and_then(|()| out.flush()))?;
    }
    live.finish()?;
    Ok(ExitCode::SUCCESS)
}

/// Says why the session was closed, and the status that reports it.
fn closed(reason: &str) -> ExitCode {
    let message = mimobox_core::text::one_line_bounded(&format!("the session was closed: {reason}"));
    eprintln!("{}", terminal::host_line(&message, std::io::stderr().is_terminal()));
    ExitCode::from(crate::exit::TIMED_OUT)
}

/// `>>> ` and `... ` prompts; a line ending in `:` or `\` opens a block,
/// which a blank line closes. Output appears as the guest writes it, with
/// its control characters escaped unless `clean` is false; mimobox's own
/// lines and prompts are drawn in a way guest output cannot imitate.
fn repl(mut live: Live, lines: &Receiver<Line>, clean: bool) -> Result<ExitCode> {
    // Prompts go to stdout, mimobox's own lines to stderr: each is marked
    // when its stream is a terminal.
    let (prompts_marked, marked) = (std::io::stdout().is_terminal(), std::io::stderr().is_terminal());
    /// A typed line, or what stops reading them.
    enum Typed {
        Text(String),
        /// Dropped for its length; so is the block it was part of.
        Dropped,
        Stop(ExitCode),
    }
    let read = |live: &mut Live| -> Result<Typed> {
        Ok(match live.next(lines) {
            Next::Line(Line::Text(line)) => Typed::Text(String::from_utf8_lossy(&line).into_owned()),
            Next::Line(Line::TooLong) => {
                let message = format!("the line is longer than {MAX_LINE} bytes; it was dropped");
                eprintln!("{}", terminal::host_line(&message, marked));
                Typed::Dropped
            }
            Next::Line(Line::End) | Next::Done => Typed::Stop(ExitCode::SUCCESS),
            Next::Line(Line::Failed(e)) => return Err(anyhow::Error::new(e).context("reading stdin")),
            Next::Closed(reason) => Typed::Stop(closed(&reason)),
        })
    };
    'turns: loop {
        prompt(">>> ", prompts_marked);
        let first = match read(&mut live)? {
            Typed::Text(line) => line,
            Typed::Dropped => continue,
            Typed::Stop(status) if status == ExitCode::SUCCESS => break,
            Typed::Stop(status) => return Ok(status),
        };
        let mut code = first.clone();
        if opens_block(&first) {
            loop {
                prompt("... ", prompts_marked);
                match read(&mut live)? {
                    Typed::Text(line) if !line.trim().is_empty() => {
                        code.push('\n');
                        code.push_str(&line);
                    }
                    Typed::Text(_) => break,
                    Typed::Dropped => continue 'turns,
                    Typed::Stop(status) if status == ExitCode::SUCCESS => break 'turns,
                    Typed::Stop(status) => return Ok(status),
                }
            }
        }
        if code.trim().is_empty() {
            continue;
        }
        let request = TurnRequest {
            code,
            stdout_sink: Some(guest_sink(clean, || Box::new(std::io::stdout()))),
            stderr_sink: Some(guest_sink(clean, || Box::new(std::io::stderr()))),
            ..TurnRequest::default()
        };
        let turn = live.turn(request);
        if let Ok(result) = &turn {
            show_results(result, clean, prompts_marked);
        }
        match turn {
            Ok(result) if !result.alive => {
                let message = format!("the session has ended ({})", result.result.outcome.name());
                eprintln!("{}", terminal::host_line(&message, marked));
                return Ok(crate::exit::for_outcome(&result.result.outcome));
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("{}", terminal::host_line(&crate::exit::one_line(&e.into()), marked));
                return Ok(ExitCode::from(crate::exit::USAGE));
            }
        }
    }
    println!();
    live.finish()?;
    Ok(ExitCode::SUCCESS)
}

/// A live sink for one of the guest's streams on the terminal: cleaned of
/// control characters and invalid UTF-8 unless `clean` is false.
fn guest_sink(clean: bool, stream: impl Fn() -> Box<dyn Write> + Send + 'static) -> mimobox_core::OutputSink {
    let mut text = TerminalText::default();
    Box::new(move |bytes: &[u8]| {
        let mut out = stream();
        let _ = if clean { out.write_all(text.clean(bytes).as_bytes()) } else { out.write_all(bytes) };
        let _ = out.flush();
    })
}

/// A turn's display results on the terminal: each one's text (escaped
/// like guest output), or mimobox's own line saying what kinds of data it
/// holds (marked when stdout is a terminal, as the prompts are).
fn show_results(result: &TurnResult, clean: bool, marked: bool) {
    let mut out = std::io::stdout().lock();
    for bundle in &result.results {
        let text = match bundle.get("text/plain").and_then(|v| v.as_str()) {
            Some(text) if !bundle.keys().any(|k| k.starts_with("image/")) => {
                if clean {
                    TerminalText::default().clean(text.as_bytes())
                } else {
                    text.to_owned()
                }
            }
            _ => {
                // MIME types are checked tokens: no control character can
                // reach the terminal through them.
                let kinds: Vec<&str> = bundle.keys().map(String::as_str).collect();
                terminal::host_line(&format!("[display data: {}]", kinds.join(", ")), marked)
            }
        };
        let _ = writeln!(out, "{text}");
    }
    if result.results_truncated {
        let _ = writeln!(
            out,
            "{}",
            terminal::host_line("[some results were dropped for their size or number]", marked)
        );
    }
    let _ = out.flush();
}

fn prompt(text: &str, marked: bool) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(terminal::prompt(text, marked).as_bytes()).and_then(|()| out.flush());
}

fn opens_block(line: &str) -> bool {
    let line = line.trim_end();
    line.ends_with(':') || line.ends_with('\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out `total` bytes of `fill` and then a newline
    /// and `tail`, in small pieces, without ever holding them.
    struct Endless {
        left: u64,
        tail: std::io::Cursor<Vec<u8>>,
        buffer: [u8; 4096],
        filled: usize,
        taken: usize,
    }

    impl std::io::Read for Endless {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            unreachable!("read through BufRead")
        }
    }

    impl BufRead for Endless {
        fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
            if self.taken == self.filled {
                self.taken = 0;
                self.filled = if self.left > 0 {
                    let n = self.left.min(self.buffer.len() as u64) as usize;
                    self.buffer[..n].fill(b'x');
                    self.left -= n as u64;
                    n
                } else {
                    std::io::Read::read(&mut self.tail, &mut self.buffer)?
                };
            }
            Ok(&self.buffer[self.taken..self.filled])
        }

        fn consume(&mut self, n: usize) {
            self.taken += n;
        }
    }

    #[test]
    fn an_overlong_line_is_dropped_without_being_held() {
        let mut input = Endless {
            left: 64 << 20,
            tail: std::io::Cursor::new(b"\n{\"code\": \"1\"}\nlast".to_vec()),
            buffer: [0; 4096],
            filled: 0,
            taken: 0,
        };
        let mut line = Vec::new();
        assert_eq!(read_line_bounded(&mut input, &mut line, 1 << 20).unwrap(), Some(false));
        assert!(line.capacity() <= 1 << 20, "held {} bytes", line.capacity());
        assert_eq!(read_line_bounded(&mut input, &mut line, 1 << 20).unwrap(), Some(true));
        assert_eq!(line, b"{\"code\": \"1\"}");
        assert_eq!(
            read_line_bounded(&mut input, &mut line, 1 << 20).unwrap(),
            Some(true),
            "no newline at the end"
        );
        assert_eq!(line, b"last");
        assert_eq!(read_line_bounded(&mut input, &mut line, 1 << 20).unwrap(), None);
    }

    #[test]
    fn a_line_of_exactly_the_bound_fits() {
        let text = format!("{}\n{}\n", "a".repeat(10), "b".repeat(11));
        let mut input = std::io::BufReader::with_capacity(3, text.as_bytes());
        let mut line = Vec::new();
        assert_eq!(read_line_bounded(&mut input, &mut line, 10).unwrap(), Some(true));
        assert_eq!(line.len(), 10);
        assert_eq!(read_line_bounded(&mut input, &mut line, 10).unwrap(), Some(false));
        assert_eq!(read_line_bounded(&mut input, &mut line, 10).unwrap(), None);
    }
}
