//! Display results: the MIME bundles and the error a session's guest sends
//! through the host-call door while a turn runs.
//!
//! A guest's runtime setup (for CPython, `profiles/python-sci/kernel.py`)
//! sends each result as one door frame that starts with exactly
//! [`DISPLAY_PREFIX`] or [`ERROR_PREFIX`]:
//!
//! - `{"v":1,"op":"display","data":{MIME type: value, ...}}`
//! - `{"v":1,"op":"error","name":N,"value":V,"traceback":[lines]}`
//!
//! A display frame may add `"truncated":true` when the guest cut what it
//! sends (a huge text, say); the turn is then flagged.
//!
//! The host answers with an empty answer (0, nothing written) and keeps
//! what fits the turn's bounds: `session.max_result_bytes` of frames and
//! `session.max_results` results. A result too large is never read past its
//! first bytes; a note takes its place and the turn is flagged. Once the
//! turn can take no more results, display frames are answered with
//! [`RESULTS_FULL`], so that a guest stops making them (CPython's kernel
//! then closes the figures it has not drawn). Nothing the guest sends here
//! touches the host's own fields of the turn.

use mimobox_core::{MimeBundle, TurnError, TurnEvent};
use serde::Deserialize;
use serde_json::Value;

use super::output::LiveSender;

/// How a display frame starts, byte for byte.
pub(crate) const DISPLAY_PREFIX: &[u8] = br#"{"v":1,"op":"display","#;
/// How an error frame starts, byte for byte.
pub(crate) const ERROR_PREFIX: &[u8] = br#"{"v":1,"op":"error","#;
/// The whole frame that asks for the turn's display options; the answer is
/// `{"figure_formats":["png",...]}`.
pub(crate) const OPTIONS_FRAME: &[u8] = br#"{"v":1,"op":"options"}"#;
/// The door's answer to a display frame once the turn takes no more
/// results (CPython's `_host.call` raises `OSError`).
pub(crate) const RESULTS_FULL: i32 = -3;
/// Most bytes of an error frame (the kernel cuts its traceback to fit);
/// a larger one is dropped and the turn flagged.
pub(crate) const MAX_ERROR_FRAME: usize = 256 << 10;
/// Most bytes of an error's name, value and each traceback line.
const MAX_ERROR_NAME: usize = 256;
const MAX_ERROR_VALUE: usize = 16 << 10;
const MAX_TRACEBACK_LINE: usize = 4 << 10;
const MAX_TRACEBACK_LINES: usize = 1000;
/// Most bytes of a MIME type.
const MAX_MIME_TYPE: usize = 127;

/// What a frame is, from its first bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum FrameKind {
    Display,
    Error,
}

impl FrameKind {
    /// The kind of a frame that starts with `head`, if it is a result.
    pub(crate) fn of(head: &[u8]) -> Option<FrameKind> {
        if head.starts_with(DISPLAY_PREFIX) {
            Some(FrameKind::Display)
        } else if head.starts_with(ERROR_PREFIX) {
            Some(FrameKind::Error)
        } else {
            None
        }
    }
}

/// The results of one turn, and its bounds.
pub(crate) struct TurnResults {
    max_bytes: usize,
    max_count: usize,
    bytes: usize,
    pub(crate) bundles: Vec<MimeBundle>,
    pub(crate) truncated: bool,
    pub(crate) error: Option<TurnError>,
    /// Where results go live, when the turn streams its events.
    pub(crate) live: Option<LiveSender>,
    /// The figure formats the turn asks for, besides PNG.
    formats: Vec<mimobox_core::FigureFormat>,
}

impl TurnResults {
    #[cfg(test)]
    pub(crate) fn new(max_bytes: u64, max_count: u32, live: Option<LiveSender>) -> TurnResults {
        TurnResults::with_formats(max_bytes, max_count, live, &[])
    }

    /// As [`TurnResults::new`], with the figure formats the turn asks for.
    pub(crate) fn with_formats(
        max_bytes: u64,
        max_count: u32,
        live: Option<LiveSender>,
        formats: &[mimobox_core::FigureFormat],
    ) -> TurnResults {
        let formats = formats.to_vec();
        TurnResults {
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
            max_count: usize::try_from(max_count).unwrap_or(usize::MAX),
            bytes: 0,
            bundles: Vec::new(),
            truncated: false,
            error: None,
            live,
            formats,
        }
    }

    /// How many bytes of a frame of `kind` the door should read: one more
    /// than fits, so that a frame over the bound is known as such without
    /// the host copying it.
    pub(crate) fn read_limit(&self, kind: FrameKind) -> usize {
        match kind {
            // The frame's own keys come on top of the data.
            FrameKind::Display => (self.max_bytes - self.bytes).saturating_add(64).saturating_add(1),
            FrameKind::Error => MAX_ERROR_FRAME + 1,
        }
    }

    /// The answer to an options frame, built only when a turn asks (one
    /// that draws figures): `{"figure_formats":["png",...]}`.
    pub(crate) fn options(&self) -> Vec<u8> {
        let mut names = vec!["png"];
        names.extend(self.formats.iter().map(|f| f.name()).filter(|n| *n != "png"));
        serde_json::to_vec(&serde_json::json!({ "figure_formats": names })).unwrap_or_default()
    }

    /// Whether the turn takes no more frames of `kind`. Error frames are
    /// always taken, each in place of the one before: the runtime's own
    /// report of the turn's exception comes last, so no frame the guest's
    /// code sent before it can take its place.
    pub(crate) fn full(&self, kind: FrameKind) -> bool {
        match kind {
            FrameKind::Display => self.bundles.len() >= self.max_count || self.bytes >= self.max_bytes,
            FrameKind::Error => false,
        }
    }

    /// Takes a frame of `kind` whose first `frame.len()` bytes were read
    /// out of `len`; returns the event to deliver live, if any. An error is
    /// never delivered live: only the turn's outcome decides whether it
    /// stands (see `WasmSession::turn`).
    pub(crate) fn receive(&mut self, kind: FrameKind, frame: &[u8], len: usize) -> Option<TurnEvent> {
        match kind {
            FrameKind::Display => {
                if self.bundles.len() >= self.max_count {
                    self.truncated = true;
                    return None;
                }
                let bundle = if len > frame.len() {
                    Err(format!(
                        "a display result of {} was dropped: a turn returns at most {} of results (session.max_result_bytes)",
                        mimobox_core::units::format_size(len as u64),
                        mimobox_core::units::format_size(self.max_bytes as u64),
                    ))
                } else {
                    parse_display(frame)
                };
                let bundle = match bundle {
                    Ok((bundle, cut)) => {
                        self.bytes += frame.len();
                        self.truncated |= cut;
                        bundle
                    }
                    Err(note) => {
                        self.truncated = true;
                        let mut bundle = MimeBundle::new();
                        bundle.insert("text/plain".into(), Value::String(format!("[{note}]")));
                        bundle
                    }
                };
                self.bundles.push(bundle.clone());
                Some(TurnEvent::Result(bundle))
            }
            FrameKind::Error => {
                match parse_error(frame).filter(|_| len == frame.len()) {
                    Some(error) => self.error = Some(error),
                    None => self.truncated = true,
                }
                None
            }
        }
    }
}

/// A display frame's bundle, checked: an object of MIME types, each with a
/// string value (JSON types may hold any JSON); and whether the guest says
/// it cut it.
fn parse_display(frame: &[u8]) -> Result<(MimeBundle, bool), String> {
    #[derive(Deserialize)]
    struct Frame {
        data: MimeBundle,
        #[serde(default)]
        truncated: bool,
    }
    let frame: Frame =
        serde_json::from_slice(frame).map_err(|_| "a display result that is not valid JSON was dropped")?;
    if frame.data.is_empty() {
        return Err("an empty display result was dropped".into());
    }
    for (mime, value) in &frame.data {
        if !is_mime_type(mime) {
            return Err("a display result with an invalid MIME type was dropped".into());
        }
        let json = mime == "application/json" || mime.ends_with("+json");
        if !json && !value.is_string() {
            return Err(format!("a display result was dropped: its {mime} is not a string"));
        }
    }
    Ok((frame.data, frame.truncated))
}

/// Whether `text` is a MIME type: `type/subtype` of RFC 6838's characters.
fn is_mime_type(text: &str) -> bool {
    let Some((kind, subtype)) = text.split_once('/') else { return false };
    let token =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b));
    text.len() <= MAX_MIME_TYPE && token(kind) && token(subtype)
}

/// An error frame's exception, each part cut to its bound.
fn parse_error(frame: &[u8]) -> Option<TurnError> {
    #[derive(Deserialize)]
    struct Frame {
        name: String,
        value: String,
        traceback: Vec<String>,
    }
    let frame: Frame = serde_json::from_slice(frame).ok()?;
    Some(TurnError {
        name: cut(frame.name, MAX_ERROR_NAME),
        value: cut(frame.value, MAX_ERROR_VALUE),
        traceback: frame
            .traceback
            .into_iter()
            .take(MAX_TRACEBACK_LINES)
            .map(|l| cut(l, MAX_TRACEBACK_LINE))
            .collect(),
    })
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(mut text: String, max: usize) -> String {
    mimobox_core::text::cut_to(&mut text, max);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn display(data: &str) -> Vec<u8> {
        format!(r#"{{"v":1,"op":"display","data":{data}}}"#).into_bytes()
    }

    #[test]
    fn a_bundle_is_kept_as_sent() {
        let mut results = TurnResults::new(1 << 20, 8, None);
        let frame = display(r#"{"text/plain":"2","application/json":{"a":[1]}}"#);
        assert_eq!(FrameKind::of(&frame), Some(FrameKind::Display));
        results.receive(FrameKind::Display, &frame, frame.len());
        assert_eq!(results.bundles.len(), 1);
        assert_eq!(results.bundles[0]["text/plain"], "2");
        assert!(!results.truncated);
    }

    #[test]
    fn results_past_the_count_are_dropped_and_flagged() {
        let mut results = TurnResults::new(1 << 20, 2, None);
        let frame = display(r#"{"text/plain":"x"}"#);
        for _ in 0..10_000 {
            results.receive(FrameKind::Display, &frame, frame.len());
        }
        assert_eq!(results.bundles.len(), 2);
        assert!(results.truncated);
    }

    #[test]
    fn a_result_over_the_byte_bound_becomes_a_note() {
        let mut results = TurnResults::new(1000, 8, None);
        let limit = results.read_limit(FrameKind::Display);
        let frame = display(&format!(r#"{{"image/png":"{}"}}"#, "A".repeat(5000)));
        results.receive(FrameKind::Display, &frame[..limit], frame.len());
        assert!(results.truncated);
        let note = results.bundles[0]["text/plain"].as_str().unwrap();
        assert!(note.contains("dropped") && note.contains("session.max_result_bytes"), "{note}");
    }

    #[test]
    fn invalid_bundles_become_notes() {
        for data in [r#"{"not a type":"x"}"#, r#"{"text/plain":1}"#, "{}", r#"{"text/plain":"\xff"}"#] {
            let mut results = TurnResults::new(1 << 20, 8, None);
            let frame = display(data);
            results.receive(FrameKind::Display, &frame, frame.len());
            assert!(results.truncated, "{data}");
            assert!(results.bundles[0]["text/plain"].as_str().unwrap().contains("dropped"), "{data}");
        }
        let mut results = TurnResults::new(1 << 20, 8, None);
        let mut frame = display(r#"{"text/plain":"ok"}"#);
        frame.insert(40, 0xff);
        results.receive(FrameKind::Display, &frame, frame.len());
        assert!(results.truncated, "invalid UTF-8 is no JSON");
    }

    #[test]
    fn an_error_is_bounded() {
        let mut results = TurnResults::new(1 << 20, 8, None);
        let frame = format!(
            r#"{{"v":1,"op":"error","name":"{}","value":"v","traceback":["a","b"]}}"#,
            "N".repeat(1000)
        );
        results.receive(FrameKind::Error, frame.as_bytes(), frame.len());
        let error = results.error.unwrap();
        assert!(error.name.len() <= MAX_ERROR_NAME + '…'.len_utf8());
        assert_eq!(error.traceback, ["a", "b"]);
    }
}
