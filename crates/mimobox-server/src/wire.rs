//! The answer objects every front door writes, one definition for all:
//! the JSON of a run's result, of a turn, of its stream's events, of a
//! file listing, and bytes as base64. `mimobox session`'s JSON lines, the
//! MCP server's structured content and the HTTP API all answer with these.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mimobox_core::{Outcome, SandboxResult, TurnError, TurnEvent, TurnResult};
use mimobox_files::Listing;
use serde_json::{Map, Value, json};

/// The JSON object of a result, as `run --json` prints it.
pub fn result_json(result: &SandboxResult) -> Value {
    json!({
        "outcome": result.outcome.name(),
        "exit_code": result.exit_code(),
        "trap": match &result.outcome { Outcome::Trap { message } => Some(message.as_str()), _ => None },
        "stdout": result.stdout_lossy(),
        "stderr": result.stderr_lossy(),
        "stdout_truncated": result.stdout_truncated,
        "stderr_truncated": result.stderr_truncated,
        "elapsed_ms": result.elapsed.as_secs_f64() * 1000.0,
        "fuel_consumed": result.fuel_consumed,
        "peak_memory_bytes": result.peak_memory,
        "memory_limit_hit": result.memory_limit_hit,
        "disk_written_bytes": result.disk_written,
        "disk_quota_hit": result.disk_quota_hit,
        "tool_calls": result.tool_calls.iter().map(|call| json!({
            "tool": call.tool,
            "ms": call.duration.as_secs_f64() * 1000.0,
            "ok": call.ok,
            "error": call.error,
        })).collect::<Vec<_>>(),
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
    if let Some(turn) = result.resumed_from_turn {
        value["resumed_from_turn"] = turn.into();
    }
    if result.replayed {
        value["replayed"] = true.into();
    }
    value
}

/// A turn's error: its name, value and traceback.
pub fn error_json_fields(error: &TurnError) -> Value {
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

/// A directory listing: its entries (name, kind, bytes) and whether it was
/// cut short.
pub fn listing_json(listing: &Listing) -> Value {
    let entries: Vec<Value> = listing
        .entries
        .iter()
        .map(|e| json!({ "name": e.name, "kind": e.kind.as_str(), "bytes": e.bytes }))
        .collect();
    json!({ "entries": entries, "truncated": listing.truncated })
}

/// Shortest timeout a turn request may ask for.
pub const MIN_TURN_TIMEOUT: f64 = 0.001;

/// A longer timeout asked for is read as this (a year of seconds); the
/// profile's own bounds it far sooner.
const MAX_TURN_TIMEOUT: f64 = 365.0 * 24.0 * 3600.0;

/// A turn request's `timeout` (seconds, at least [`MIN_TURN_TIMEOUT`]):
/// `None` when absent, or why it is not one. However large, it is only
/// ever the lesser of itself and the profile's timeout.
pub fn turn_timeout(value: Option<&Value>) -> Result<Option<std::time::Duration>, &'static str> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|s| s.is_finite() && *s >= MIN_TURN_TIMEOUT)
            .and_then(|s| std::time::Duration::try_from_secs_f64(s.min(MAX_TURN_TIMEOUT)).ok())
            .map(Some)
            .ok_or("`timeout` must be a number of seconds, at least 0.001"),
        Some(_) => Err("`timeout` must be a number of seconds"),
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
