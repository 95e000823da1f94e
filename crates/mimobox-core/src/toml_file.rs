//! TOML files an operator writes (profiles, a server's config): reading
//! one safely, and errors that point at the key and line at fault.

use std::fmt;
use std::ops::Range;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

/// Why a TOML file could not be used. Its `Display` is one line:
/// `FILE:LINE:COLUMN: key `KEY`: PROBLEM`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct TomlError {
    /// The file.
    pub path: PathBuf,
    /// One-based line and column of the fault, where it has one.
    pub position: Option<(usize, usize)>,
    /// The key at fault, dotted for nested tables (`cache.dir`).
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for TomlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl TomlError {
    /// An error about the whole file, at no line.
    pub fn file(path: &Path, message: String) -> TomlError {
        TomlError { path: path.to_owned(), position: None, key: None, message }
    }

    /// An error about the key `dotted` of `source`, at its line when it is
    /// written there.
    pub fn at_key(path: &Path, source: &str, dotted: &str, message: String) -> TomlError {
        TomlError {
            path: path.to_owned(),
            position: locate(source, dotted).map(|span| line_column(source, span.start)),
            key: Some(dotted.to_owned()),
            message,
        }
    }

    /// A parse or type error of `source`, at the key that owns its span.
    pub fn from_toml(path: &Path, source: &str, error: &toml::de::Error) -> TomlError {
        let span = error.span();
        // serde puts no key on a wrong value; find the key that owns the span.
        TomlError {
            path: path.to_owned(),
            position: span.as_ref().map(|span| line_column(source, span.start)),
            key: span.as_ref().and_then(|span| key_at(source, span.start)),
            message: error.message().split_whitespace().collect::<Vec<_>>().join(" "),
        }
    }
}

/// Deserializes `source` (the text of the file at `path`) as a `T`.
///
/// A key that `T` does not have is an error naming it, dotted, at its line
/// (`p.toml:3:1: key `cache.directory`: unknown key`), as is a value of the wrong type: the
/// names `T`'s serde attributes give its fields are the only list of the
/// keys a file may have. Mounts and other arrays of tables are named
/// without their index (`fs_readonly.gust`).
pub fn parse<T: serde::de::DeserializeOwned>(path: &Path, source: &str) -> Result<T, TomlError> {
    let deserializer =
        toml::Deserializer::parse(source).map_err(|e| TomlError::from_toml(path, source, &e))?;
    let mut unknown: Option<Vec<Segment>> = None;
    let value: T = serde_ignored::deserialize(deserializer, |ignored| {
        if unknown.is_none() {
            unknown = Some(segments(&ignored));
        }
    })
    .map_err(|e| TomlError::from_toml(path, source, &e))?;
    match unknown {
        None => Ok(value),
        Some(segments) => {
            let dotted = dotted(&segments);
            Err(TomlError {
                path: path.to_owned(),
                position: locate_segments(source, &segments).map(|span| line_column(source, span.start)),
                message: "unknown key".to_owned(),
                key: Some(dotted),
            })
        }
    }
}

/// One step of the way to a value: a key of a table, or an index of an
/// array.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

fn segments(path: &serde_ignored::Path<'_>) -> Vec<Segment> {
    use serde_ignored::Path;
    let mut out = match path {
        Path::Root => return Vec::new(),
        Path::Seq { parent, .. }
        | Path::Map { parent, .. }
        | Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => segments(parent),
    };
    match path {
        Path::Seq { index, .. } => out.push(Segment::Index(*index)),
        Path::Map { key, .. } => out.push(Segment::Key(key.clone())),
        _ => {}
    }
    out
}

fn dotted(segments: &[Segment]) -> String {
    let keys: Vec<&str> = segments
        .iter()
        .filter_map(|segment| match segment {
            Segment::Key(key) => Some(key.as_str()),
            Segment::Index(_) => None,
        })
        .collect();
    keys.join(".")
}

/// The span of the key at the end of `segments` in `source`: a path of
/// keys of tables and indexes of arrays.
fn locate_segments(source: &str, segments: &[Segment]) -> Option<Range<usize>> {
    fn table<'a, 'b>(root: &'a DeTable<'b>, at: Option<&'a DeValue<'b>>) -> Option<&'a DeTable<'b>> {
        match at {
            None => Some(root),
            Some(DeValue::Table(inner)) => Some(inner),
            Some(_) => None,
        }
    }
    let document = DeTable::parse(source).ok()?;
    let root = document.get_ref();
    let (Segment::Key(last), steps) = segments.split_last()? else { return None };
    let mut at: Option<&DeValue<'_>> = None;
    for step in steps {
        at = Some(match step {
            Segment::Key(key) => {
                table(root, at)?.iter().find(|(k, _)| k.get_ref().as_ref() == key.as_str())?.1.get_ref()
            }
            Segment::Index(index) => match at {
                Some(DeValue::Array(items)) => items.get(*index)?.get_ref(),
                _ => return None,
            },
        });
    }
    table(root, at)?.iter().find(|(k, _)| k.get_ref().as_ref() == last.as_str()).map(|(k, _)| k.span())
}

/// Reads the text of the file at `path` (`what` names it in errors):
/// opened once without blocking (a FIFO opens at once instead of waiting
/// for a writer), checked through the handle to be a regular file, read
/// with a bound of `max` bytes, so the path cannot be swapped between the
/// check and the read.
pub fn read(path: &Path, max: u64, what: &str) -> Result<String, TomlError> {
    let fail = |message: String| TomlError::file(path, message);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| fail(format!("cannot read {what}: {e}")))?;
    let metadata = file.metadata().map_err(|e| fail(format!("cannot read {what}: {e}")))?;
    if !metadata.is_file() {
        return Err(fail("not a regular file".into()));
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, max + 1), &mut bytes)
        .map_err(|e| fail(format!("cannot read {what}: {e}")))?;
    if bytes.len() as u64 > max {
        return Err(fail(format!("{what} is larger than {max} bytes")));
    }
    String::from_utf8(bytes).map_err(|e| fail(format!("not UTF-8 text: {e}")))
}

/// The span of the key `dotted` in `source`, if it is written there.
pub fn locate(source: &str, dotted: &str) -> Option<Range<usize>> {
    let segments: Vec<Segment> = dotted.split('.').map(|key| Segment::Key(key.to_owned())).collect();
    locate_segments(source, &segments)
}

/// The dotted key whose entry contains byte `offset` of `source`.
pub fn key_at(source: &str, offset: usize) -> Option<String> {
    fn walk(table: &DeTable<'_>, offset: usize, prefix: &str) -> Option<String> {
        for (key, value) in table {
            let name = if prefix.is_empty() {
                key.get_ref().to_string()
            } else {
                format!("{prefix}.{}", key.get_ref())
            };
            if key.span().contains(&offset) {
                return Some(name);
            }
            // A table's own span may cover only its header, so look inside
            // every table.
            if let DeValue::Table(inner) = value.get_ref()
                && let Some(found) = walk(inner, offset, &name)
            {
                return Some(found);
            }
            if value.span().contains(&offset) || value.span().start == offset {
                return Some(name);
            }
        }
        None
    }
    let table = DeTable::parse(source).ok()?;
    walk(table.get_ref(), offset, "")
}

/// One-based line and column (in characters) of byte `offset`.
pub fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..source.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}
