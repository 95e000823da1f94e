//! The frames of protocol version 1, written here and nowhere else.

use serde_json::{Value, json};

use crate::ToolError;
use crate::tool::Answer;

/// The protocol version this crate speaks.
pub const PROTOCOL: u64 = 1;

/// `{"id":ID,"ok":true,"v":1,"value":VALUE}`: the keys in the order that
/// every other frame has (serde_json's maps sort them), with a raw answer
/// copied in as it is.
pub(crate) fn ok_frame(id: &Value, answer: &Answer) -> Vec<u8> {
    let raw_len = match answer {
        Answer::Raw(raw) => raw.get().len(),
        Answer::Value(_) => 0,
    };
    let mut frame = Vec::with_capacity(raw_len + 64);
    frame.extend_from_slice(br#"{"id":"#);
    let _ = serde_json::to_writer(&mut frame, id);
    frame.extend_from_slice(format!(r#","ok":true,"v":{PROTOCOL},"value":"#).as_bytes());
    match answer {
        Answer::Value(value) => {
            if serde_json::to_writer(&mut frame, value).is_err() {
                return b"{}".to_vec();
            }
        }
        Answer::Raw(raw) => frame.extend_from_slice(raw.get().as_bytes()),
    }
    frame.push(b'}');
    frame
}

pub(crate) fn error_frame(id: &Value, error: &ToolError) -> Vec<u8> {
    frame_bytes(
        json!({"v": PROTOCOL, "id": id, "ok": false, "error": {"kind": error.kind.as_str(), "message": error.message}}),
    )
}

pub(crate) fn frame_bytes(value: Value) -> Vec<u8> {
    serde_json::to_vec(&value).unwrap_or_else(|_| b"{}".to_vec())
}
