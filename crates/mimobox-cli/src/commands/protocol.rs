//! The JSON-lines protocol of `mimobox session`: what a request line may
//! be, and how answers and stream events are written.
//!
//! - `{"code": C}` or `{"code": C, "stream": true}`: a turn;
//! - `{"op": "write_file", "path": P, "data": BASE64}`,
//!   `{"op": "read_file", "path": P}`, `{"op": "list_files", "path": P}`:
//!   file operations on the session's guest paths.
//!
//! Every request gets one answer line (a stream gets its event lines
//! first, and its answer carries `"type": "end"`); a refused one gets
//! `{"error": "..."}` and the session goes on.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mimobox_core::{FigureFormat, TurnError, TurnEvent, TurnResult};
use serde_json::{Map, Value, json};

use crate::commands::run::result_json;

/// One request line.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// Run `code` as a turn; with `stream`, write its events as they come;
    /// figures come back in `figure_formats` besides PNG.
    Turn { code: String, stream: bool, figure_formats: Vec<FigureFormat> },
    /// Write `data` as the whole content of the file at `path`.
    WriteFile { path: String, data: Vec<u8> },
    /// Read the file at `path`.
    ReadFile { path: String },
    /// List the directory at `path`.
    ListFiles { path: String },
}

/// The request a line holds, or why it holds none (one line).
pub fn parse(line: &[u8]) -> Result<Request, String> {
    let value: Value = serde_json::from_slice(line).map_err(|e| format!("not a JSON request: {e}"))?;
    let Some(object) = value.as_object() else { return Err("a request is a JSON object".into()) };
    let op = match object.get("op") {
        None => None,
        Some(Value::String(op)) => Some(op.as_str()),
        Some(_) => return Err("`op` must be a string".into()),
    };
    let allowed: &[&str] = match op {
        None => &["code", "stream", "figure_formats"],
        Some("write_file") => &["op", "path", "data"],
        Some("read_file" | "list_files") => &["op", "path"],
        Some(other) => {
            return Err(format!(
                "unknown op `{}`: the ops are write_file, read_file and list_files",
                mimobox_core::text::one_line_bounded(other)
            ));
        }
    };
    if let Some(key) = object.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(format!("unknown request key `{}`", mimobox_core::text::one_line_bounded(key)));
    }
    let string = |key: &str| match object.get(key) {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(_) => Err(format!("`{key}` must be a string")),
        None => Err(format!("a request needs `{key}`")),
    };
    Ok(match op {
        None => {
            let stream = match object.get("stream") {
                None => false,
                Some(Value::Bool(stream)) => *stream,
                Some(_) => return Err("`stream` must be true or false".into()),
            };
            let figure_formats = match object.get("figure_formats") {
                None => Vec::new(),
                Some(Value::Array(names)) => names
                    .iter()
                    .map(|name| name.as_str().and_then(FigureFormat::parse))
                    .collect::<Option<Vec<_>>>()
                    .ok_or("`figure_formats` lists \"png\" and \"svg\" only")?,
                Some(_) => return Err("`figure_formats` must be an array".into()),
            };
            Request::Turn { code: string("code")?, stream, figure_formats }
        }
        Some("write_file") => {
            let data = STANDARD.decode(string("data")?).map_err(|e| format!("`data` is not base64: {e}"))?;
            Request::WriteFile { path: string("path")?, data }
        }
        Some("read_file") => Request::ReadFile { path: string("path")? },
        _ => Request::ListFiles { path: string("path")? },
    })
}

/// A turn's answer: the run's fields, its number and whether the session
/// lives, and its results and error.
pub fn turn_json(result: &TurnResult) -> Value {
    let mut value = result_json(&result.result);
    value["turn"] = result.turn.into();
    value["alive"] = result.alive.into();
    value["results"] = Value::Array(result.results.iter().cloned().map(Value::Object).collect());
    value["results_truncated"] = result.results_truncated.into();
    value["error"] = result.error.as_ref().map_or(Value::Null, error_json_fields);
    value
}

fn error_json_fields(error: &TurnError) -> Value {
    json!({ "name": error.name, "value": error.value, "traceback": error.traceback })
}

/// An answer that refuses a request.
pub fn error_json(message: &str) -> Value {
    json!({ "error": message })
}

/// Turns a stream's events into lines, keeping a character that a chunk
/// split across two events whole.
#[derive(Default)]
pub struct EventLines {
    stdout: Utf8Carry,
    stderr: Utf8Carry,
}

impl EventLines {
    /// The line for `event`, if it has anything to say.
    pub fn line(&mut self, event: TurnEvent) -> Option<Value> {
        match event {
            TurnEvent::Stdout(bytes) => {
                let text = self.stdout.push(&bytes);
                (!text.is_empty()).then(|| json!({ "type": "stdout", "text": text }))
            }
            TurnEvent::Stderr(bytes) => {
                let text = self.stderr.push(&bytes);
                (!text.is_empty()).then(|| json!({ "type": "stderr", "text": text }))
            }
            TurnEvent::Result(bundle) => Some(json!({ "type": "result", "data": Value::Object(bundle) })),
            TurnEvent::Error(error) => {
                let mut line = Map::new();
                line.insert("type".into(), "error".into());
                if let Value::Object(fields) = error_json_fields(&error) {
                    line.extend(fields);
                }
                Some(Value::Object(line))
            }
        }
    }
}

/// Bytes to text across chunk boundaries: an incomplete character at the
/// end of a chunk waits for the next one; invalid bytes become U+FFFD.
#[derive(Default)]
struct Utf8Carry {
    pending: Vec<u8>,
}

impl Utf8Carry {
    fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let keep = match std::str::from_utf8(&self.pending) {
            Ok(_) => 0,
            // An error with no length is an incomplete character at the end.
            Err(e) if e.error_len().is_none() => self.pending.len() - e.valid_up_to(),
            Err(_) => incomplete_tail(&self.pending),
        };
        let tail = self.pending.split_off(self.pending.len() - keep);
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending = tail;
        text
    }
}

/// How many bytes at the end of `bytes` start a character that is not
/// complete yet (at most 3).
fn incomplete_tail(bytes: &[u8]) -> usize {
    for back in 1..=3.min(bytes.len()) {
        let byte = bytes[bytes.len() - back];
        if byte & 0xC0 != 0x80 {
            let needed = match byte {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF7 => 4,
                _ => return 0,
            };
            return if needed > back { back } else { 0 };
        }
    }
    0
}

/// The answer to a file operation, from its outcome.
pub fn file_answer(outcome: Result<Value, String>) -> Value {
    match outcome {
        Ok(Value::Object(mut fields)) => {
            fields.insert("ok".into(), true.into());
            Value::Object(fields)
        }
        Ok(other) => other,
        Err(message) => error_json(&message),
    }
}

/// `data` as the protocol writes bytes.
pub fn base64(data: &[u8]) -> String {
    STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_unknown_keys_are_refused() {
        assert_eq!(
            parse(br#"{"code":"1"}"#),
            Ok(Request::Turn { code: "1".into(), stream: false, figure_formats: vec![] })
        );
        assert_eq!(
            parse(br#"{"code":"1","stream":true,"figure_formats":["svg"]}"#),
            Ok(Request::Turn { code: "1".into(), stream: true, figure_formats: vec![FigureFormat::Svg] })
        );
        assert!(parse(br#"{"code":"1","figure_formats":["gif"]}"#).unwrap_err().contains("png"));
        assert_eq!(
            parse(br#"{"op":"write_file","path":"/workspace/a","data":"aGk="}"#),
            Ok(Request::WriteFile { path: "/workspace/a".into(), data: b"hi".to_vec() })
        );
        assert_eq!(parse(br#"{"op":"read_file","path":"/w"}"#), Ok(Request::ReadFile { path: "/w".into() }));
        for (line, problem) in [
            (&br#"{"code":"1","extra":1}"#[..], "unknown request key `extra`"),
            (br#"{"op":"read_file","path":"/w","data":"x"}"#, "unknown request key `data`"),
            (br#"{"op":"rm","path":"/"}"#, "unknown op `rm`"),
            (br#"{"op":"write_file","path":"/a","data":"***"}"#, "not base64"),
            (br#"{"code":"1","stream":"yes"}"#, "`stream` must be true or false"),
            (br#"{"op":"list_files"}"#, "needs `path`"),
        ] {
            let error = parse(line).unwrap_err();
            assert!(error.contains(problem), "{error}");
        }
    }

    #[test]
    fn a_character_split_across_chunks_stays_whole() {
        let mut carry = Utf8Carry::default();
        let text = "é😀";
        let bytes = text.as_bytes();
        let mut out = String::new();
        for byte in bytes {
            out.push_str(&carry.push(&[*byte]));
        }
        assert_eq!(out, text);
        assert_eq!(carry.push(b"\xff"), "\u{fffd}");
    }
}
