//! Guest output and mimobox's own lines on an operator's terminal.
//!
//! A guest's output is text of its choosing: written raw to a terminal it
//! could clear the screen, set the window title, write the clipboard
//! (OSC 52) or print a line that looks like one of mimobox's. In the REPL
//! it is passed through [`TerminalText`], which escapes every control
//! character but newline and tab and replaces invalid UTF-8; mimobox's own
//! lines and prompts are then drawn in reverse video and bold, which the
//! cleaned guest text cannot produce.

use mimobox_core::text::escaped_on_a_terminal;

/// Cleans a stream of guest output for a terminal, chunk by chunk: a UTF-8
/// sequence cut between two chunks is kept until its end arrives.
#[derive(Default)]
pub struct TerminalText {
    /// The start of a UTF-8 sequence that the last chunk cut off.
    carry: Vec<u8>,
}

impl TerminalText {
    /// `bytes` as text that is safe to write to a terminal.
    pub fn clean(&mut self, bytes: &[u8]) -> String {
        if self.carry.is_empty() {
            return self.clean_all(bytes);
        }
        let mut joined = std::mem::take(&mut self.carry);
        joined.extend_from_slice(bytes);
        self.clean_all(&joined)
    }

    fn clean_all(&mut self, mut input: &[u8]) -> String {
        let mut out = String::with_capacity(input.len());
        loop {
            match std::str::from_utf8(input) {
                Ok(text) => {
                    push_clean(&mut out, text);
                    return out;
                }
                Err(error) => {
                    let (valid, rest) = input.split_at(error.valid_up_to());
                    // The first `valid_up_to` bytes are valid UTF-8.
                    push_clean(&mut out, std::str::from_utf8(valid).unwrap_or_default());
                    match error.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            input = &rest[bad..];
                        }
                        None => {
                            // A sequence that the next chunk may finish.
                            self.carry = rest.to_vec();
                            return out;
                        }
                    }
                }
            }
        }
    }
}

fn push_clean(out: &mut String, text: &str) {
    for c in text.chars() {
        if c != '\n' && c != '\t' && escaped_on_a_terminal(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
}

/// A line of mimobox's own: `mimobox: MESSAGE`, with `mimobox:` in reverse
/// video when `marked` (the stream is a terminal). `message` must already
/// be escaped.
pub fn host_line(message: &str, marked: bool) -> String {
    if marked { format!("\x1b[7mmimobox:\x1b[0m {message}") } else { format!("mimobox: {message}") }
}

/// A REPL prompt, in bold when `marked`.
pub fn prompt(text: &str, marked: bool) -> String {
    if marked { format!("\x1b[1m{text}\x1b[0m") } else { text.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_newlines_and_tabs_kept() {
        let mut text = TerminalText::default();
        let shown = text.clean(b"a\tb\n\x1b[2J\x1b]0;title\x07\x1b]52;c;aGk=\x07\rmimobox: fake\n");
        assert!(!shown.chars().any(|c| c.is_control() && c != '\n' && c != '\t'), "{shown:?}");
        assert!(shown.starts_with("a\tb\n\\u{1b}[2J"), "{shown:?}");
        assert!(shown.contains("\\u{d}mimobox: fake\n"), "{shown:?}");
    }

    #[test]
    fn invalid_utf8_is_replaced_and_a_cut_sequence_joined() {
        let mut text = TerminalText::default();
        assert_eq!(text.clean(b"x\xffy"), "x\u{fffd}y");
        let euro = "€".as_bytes();
        assert_eq!(text.clean(&euro[..1]), "");
        assert_eq!(text.clean(&euro[1..]), "€");
        assert_eq!(text.clean("\u{202e}".as_bytes()), "\\u{202e}");
    }

    #[test]
    fn host_lines_are_marked_on_a_terminal() {
        assert_eq!(host_line("ended", false), "mimobox: ended");
        assert!(host_line("ended", true).starts_with("\x1b[7m"));
        let mut text = TerminalText::default();
        assert!(
            !text.clean(host_line("ended", true).as_bytes()).contains('\x1b'),
            "a guest cannot draw the mark"
        );
    }
}
