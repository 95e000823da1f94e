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
use mimobox_core::FigureFormat;
use mimobox_server::wire::error_json;
use serde_json::Value;

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
}
