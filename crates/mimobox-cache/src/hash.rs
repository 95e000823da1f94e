//! Content hashes of modules and identities of engines.

use std::fmt;

use sha2::{Digest, Sha256};

/// The SHA-256 of a module's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentHash([u8; 32]);

impl ContentHash {
    /// Hashes `bytes`.
    pub fn of(bytes: &[u8]) -> ContentHash {
        ContentHash(Sha256::digest(bytes).into())
    }

    /// Parses 64 lowercase hex digits, as written by `Display`.
    pub fn from_hex(text: &str) -> Option<ContentHash> {
        parse_hex(text).map(ContentHash)
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({self})")
    }
}

/// Identifies everything about an engine that changes the code it
/// generates: two engines with the same id can load each other's artifacts.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EngineId([u8; 32]);

impl EngineId {
    /// Hashes the given description parts (runtime version, settings...).
    pub fn from_parts(parts: &[&str]) -> EngineId {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        EngineId(hasher.finalize().into())
    }

    /// Wraps a digest computed elsewhere (for example from a runtime's own
    /// compatibility hash).
    pub fn from_digest(digest: [u8; 32]) -> EngineId {
        EngineId(digest)
    }

    /// The directory name of this engine's artifacts.
    pub(crate) fn dir_name(&self) -> String {
        let mut name = String::with_capacity(16);
        for byte in &self.0[..8] {
            name.push_str(&format!("{byte:02x}"));
        }
        name
    }
}

impl fmt::Display for EngineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for EngineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EngineId({self})")
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for byte in bytes {
        write!(f, "{byte:02x}")?;
    }
    Ok(())
}

fn parse_hex(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_hash_round_trips_through_hex() {
        let hash = ContentHash::of(b"hello");
        assert_eq!(hash.to_string(), "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_eq!(ContentHash::from_hex(&hash.to_string()), Some(hash));
        assert_eq!(ContentHash::from_hex("zz"), None);
        assert_eq!(ContentHash::from_hex(&"A".repeat(64)), None);
    }

    #[test]
    fn engine_ids_separate_parts() {
        assert_ne!(EngineId::from_parts(&["ab", "c"]), EngineId::from_parts(&["a", "bc"]));
        assert_eq!(EngineId::from_parts(&["x"]), EngineId::from_parts(&["x"]));
    }
}
