//! [`SessionId`]: 128 random bits, written as 32 lowercase hex digits.

use std::fmt;
use std::str::FromStr;

use rustix::io::Errno;
use rustix::rand::{GetRandomFlags, getrandom};

/// A session's id: 128 bits from the kernel's random source, so that no
/// caller can guess another's. Written (and parsed) as 32 lowercase hex
/// digits; no other spelling names the same id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId([u8; 16]);

impl SessionId {
    /// A new id from the kernel's random source.
    pub fn random() -> std::io::Result<SessionId> {
        let mut bytes = [0u8; 16];
        let mut filled = 0;
        while filled < bytes.len() {
            match getrandom(&mut bytes[filled..], GetRandomFlags::empty()) {
                Ok(n) => filled += n,
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(SessionId(bytes))
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

/// A string that is not a session id's spelling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a session id is 32 lowercase hex digits")]
pub struct BadSessionId;

impl FromStr for SessionId {
    type Err = BadSessionId;

    fn from_str(text: &str) -> Result<SessionId, BadSessionId> {
        let digits = text.as_bytes();
        if digits.len() != 32 {
            return Err(BadSessionId);
        }
        let value = |d: u8| match d {
            b'0'..=b'9' => Ok(d - b'0'),
            b'a'..=b'f' => Ok(d - b'a' + 10),
            _ => Err(BadSessionId),
        };
        let mut bytes = [0u8; 16];
        for (i, pair) in digits.chunks(2).enumerate() {
            bytes[i] = value(pair[0])? << 4 | value(pair[1])?;
        }
        Ok(SessionId(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_only_their_own_spelling_parses() {
        let id = SessionId::random().unwrap();
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(text.parse::<SessionId>(), Ok(id));
        for bad in [
            text.to_uppercase(),
            format!("{text}0"),
            text[1..].to_owned(),
            format!("../{}", &text[3..]),
            String::new(),
            "g".repeat(32),
        ] {
            assert!(bad.parse::<SessionId>().is_err() || bad == text, "{bad:?} parsed");
        }
    }

    #[test]
    fn ids_do_not_repeat() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(SessionId::random().unwrap()));
        }
    }
}
