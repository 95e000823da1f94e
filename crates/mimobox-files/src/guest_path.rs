//! Guest paths: checked and split into components, never resolved lexically.

use std::fmt;

use crate::error::PathProblem;

/// The longest guest path accepted, in bytes (Linux's `PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;

/// The components of the absolute guest path `path`, with empty and `.`
/// components dropped. Any `..` is refused rather than resolved: resolving
/// it lexically would disagree with the kernel as soon as a symlink is on
/// the way, and it is never needed to name a file inside a mount.
pub(crate) fn components(path: &str) -> Result<Vec<&str>, PathProblem> {
    if path.len() > MAX_PATH_BYTES {
        return Err(PathProblem::TooLong);
    }
    if path.contains('\0') {
        return Err(PathProblem::Nul);
    }
    if !path.starts_with('/') {
        return Err(PathProblem::NotAbsolute);
    }
    let mut out = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err(PathProblem::DotDot),
            name => out.push(name),
        }
    }
    Ok(out)
}

/// The longest prefix of a guest path shown in a message.
const SHOWN_CHARS: usize = 200;

/// A guest path as it may be shown in a one-line message or a log: control
/// and bidirectional-formatting characters escaped, and cut after
/// [`SHOWN_CHARS`] characters. The path comes from the agent, so it must
/// not be able to forge lines or reorder what a reader sees.
pub(crate) struct Shown<'a>(pub(crate) &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.chars().enumerate() {
            if i == SHOWN_CHARS {
                return f.write_str("…");
            }
            if c.is_control() || is_invisible_format(c) {
                write!(f, "{}", c.escape_unicode())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// Zero-width and bidirectional-override characters, which can make text
/// display differently from what it is.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_skip_empty_and_dot() {
        assert_eq!(components("//workspace/./a//b/").unwrap(), ["workspace", "a", "b"]);
        assert_eq!(components("/").unwrap(), Vec::<&str>::new());
    }

    #[test]
    fn components_refuse_dotdot_anywhere() {
        for path in ["/..", "/workspace/..", "/workspace/a/../a", "/../workspace"] {
            assert_eq!(components(path), Err(PathProblem::DotDot), "{path}");
        }
        // A name that merely contains dots is an ordinary name.
        assert_eq!(components("/workspace/..a/...").unwrap(), ["workspace", "..a", "..."]);
    }

    #[test]
    fn shown_escapes_control_characters_and_is_bounded() {
        assert_eq!(Shown("/a\nb\u{202e}").to_string(), "/a\\u{a}b\\u{202e}");
        let long = format!("/{}", "x".repeat(1000));
        let shown = Shown(&long).to_string();
        assert_eq!(shown.chars().count(), SHOWN_CHARS + 1);
        assert!(shown.ends_with('…'));
    }
}
