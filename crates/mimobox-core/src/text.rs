//! Making text from a guest or a file safe to show on a terminal.
//!
//! A module chooses its function and import names; a profile or module
//! path may hold any bytes. Before such text reaches a host message it is
//! put on one line, its control characters are escaped (so it cannot move
//! the cursor, erase a line or fake a message of mimobox's own), each long
//! word is cut, and the whole message is bounded.

/// Longest run of non-space characters kept in a message (a name, say).
pub const MAX_WORD: usize = 200;
/// Longest message kept, in bytes.
pub const MAX_MESSAGE: usize = 4 << 10;

/// Whether `c` is shown escaped rather than written to a terminal as it
/// is: control characters (which move the cursor, erase, set titles or
/// start escape sequences) and the invisible characters that reorder or
/// hide text (bidirectional overrides and isolates, zero-width marks).
pub fn escaped_on_a_terminal(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{61c}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}'
        )
}

/// `text` on one line, with control characters escaped (`\u{1b}`), each
/// word cut to [`MAX_WORD`] characters and the whole to [`MAX_MESSAGE`]
/// bytes; a cut is marked with `…`.
pub fn one_line_bounded(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_MESSAGE));
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        for (kept, c) in word.chars().enumerate() {
            if kept == MAX_WORD {
                out.push('…');
                break;
            }
            if escaped_on_a_terminal(c) {
                out.extend(c.escape_unicode());
            } else {
                out.push(c);
            }
        }
        if cut_to(&mut out, MAX_MESSAGE) {
            break;
        }
    }
    out
}

/// Cuts `text` to at most `max` bytes on a character boundary and marks
/// the cut with `…`; `false` when it was short enough already.
pub fn cut_to(text: &mut String, max: usize) -> bool {
    if text.len() <= max {
        return false;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_terminal_controls() {
        let shown = one_line_bounded("name\u{1b}[2K\rmimobox: guest exited 0\u{7}");
        assert!(!shown.chars().any(char::is_control), "{shown}");
        assert!(shown.contains("\\u{1b}"), "{shown}");
    }

    #[test]
    fn bounds_words_and_messages() {
        let long = "x".repeat(90_000);
        let shown = one_line_bounded(&format!("call {long} failed"));
        assert!(shown.len() < MAX_WORD + 32, "{}", shown.len());
        assert!(shown.ends_with("failed"));
        let many = "word ".repeat(10_000);
        assert!(one_line_bounded(&many).len() <= MAX_MESSAGE + 4);
    }

    #[test]
    fn joins_lines_and_keeps_plain_text() {
        assert_eq!(one_line_bounded("a\n  b\tc"), "a b c");
    }
}
