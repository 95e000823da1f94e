//! Turns sent again: a caller that lost a turn's answer (a connection
//! broken mid-way, a worker relaying it gone) sends the turn again under
//! the same [`TurnKey`], and gets the answer of the turn that ran rather
//! than a second run of it.
//!
//! A session keeps its last keyed turn: the key, a digest of the request
//! and the answer. The key and digest travel with the session's paused
//! state; the answer stays with the host that ran it, so that a turn sent
//! again after the session moved is refused ([`HostError::AlreadyRan`]),
//! never run twice.

use std::fmt;

use mimobox_core::{TurnRequest, TurnResult};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::HostError;

/// Most bytes of a [`TurnKey`].
pub const MAX_TURN_KEY: usize = 255;

/// A caller's name for one turn of a session (an `Idempotency-Key`): 1 to
/// [`MAX_TURN_KEY`] bytes of visible ASCII.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TurnKey(String);

/// Why a text is not a [`TurnKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an idempotency key is 1 to {MAX_TURN_KEY} visible ASCII characters")]
pub struct BadTurnKey;

impl TurnKey {
    /// The key spelled `text`.
    pub fn new(text: &str) -> Result<TurnKey, BadTurnKey> {
        if text.is_empty() || text.len() > MAX_TURN_KEY || !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(BadTurnKey);
        }
        Ok(TurnKey(text.to_owned()))
    }

    /// Its text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TurnKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TurnKey({:?})", self.0)
    }
}

/// A session's last keyed turn.
#[derive(Debug, Clone)]
pub(crate) struct Keyed {
    pub(crate) key: TurnKey,
    pub(crate) digest: [u8; 32],
    pub(crate) turn: u64,
    /// Its answer; `None` once the session came from a paused state (the
    /// answer stays with the host that ran the turn).
    pub(crate) answer: Option<TurnResult>,
}

impl Keyed {
    /// What a turn sent under `key` with `digest` gets from this record:
    /// `None` when the key is another (the turn runs), else the recorded
    /// answer or the refusal.
    pub(crate) fn answer_for(
        &self,
        key: &TurnKey,
        digest: &[u8; 32],
    ) -> Option<Result<TurnResult, HostError>> {
        if self.key != *key {
            return None;
        }
        if self.digest != *digest {
            return Some(Err(HostError::KeyReused { turn: self.turn }));
        }
        Some(match &self.answer {
            Some(answer) => {
                let mut answer = answer.clone();
                answer.replayed = true;
                Ok(answer)
            }
            None => Err(HostError::AlreadyRan { turn: self.turn }),
        })
    }

    /// The record as a paused state carries it.
    pub(crate) fn record(&self) -> KeyedRecord {
        KeyedRecord {
            key: self.key.0.clone(),
            digest: self.digest.iter().map(|b| format!("{b:02x}")).collect(),
            turn: self.turn,
        }
    }

    /// The record a paused state carried, if it is well formed.
    pub(crate) fn from_record(record: &KeyedRecord) -> Option<Keyed> {
        let key = TurnKey::new(&record.key).ok()?;
        let text = record.digest.as_bytes();
        if text.len() != 64 {
            return None;
        }
        let mut digest = [0u8; 32];
        for (i, pair) in text.chunks(2).enumerate() {
            digest[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
        }
        Some(Keyed { key, digest, turn: record.turn, answer: None })
    }
}

/// A session's last keyed turn, in its paused state's ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KeyedRecord {
    key: String,
    digest: String,
    turn: u64,
}

/// What a turn sent again must match: its code, figure formats and
/// timeout.
pub(crate) fn digest(request: &TurnRequest) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(b"mimobox-turn-1\n");
    hash.update((request.code.len() as u64).to_le_bytes());
    hash.update(request.code.as_bytes());
    for format in &request.figure_formats {
        hash.update(format.name().as_bytes());
        hash.update(b",");
    }
    hash.update(b"\n");
    hash.update(request.timeout.map_or(u128::MAX, |t| t.as_nanos()).to_le_bytes());
    hash.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_visible_ascii_of_bounded_length() {
        assert!(TurnKey::new("turn-1:abc").is_ok());
        assert!(TurnKey::new(&"k".repeat(MAX_TURN_KEY)).is_ok());
        for bad in ["", " ", "a b", "caf\u{e9}", "a\nb", "a\u{1b}[31m"] {
            assert_eq!(TurnKey::new(bad), Err(BadTurnKey), "{bad:?}");
        }
        assert_eq!(TurnKey::new(&"k".repeat(MAX_TURN_KEY + 1)), Err(BadTurnKey));
    }

    #[test]
    fn the_digest_tells_requests_apart_by_code_formats_and_timeout() {
        let base = digest(&TurnRequest::new("x = 1"));
        assert_eq!(base, digest(&TurnRequest::new("x = 1")));
        assert_ne!(base, digest(&TurnRequest::new("x = 2")));
        let svg = TurnRequest {
            figure_formats: vec![mimobox_core::FigureFormat::Svg],
            ..TurnRequest::new("x = 1")
        };
        assert_ne!(base, digest(&svg));
        let short =
            TurnRequest { timeout: Some(std::time::Duration::from_secs(1)), ..TurnRequest::new("x = 1") };
        assert_ne!(base, digest(&short));
    }

    #[test]
    fn a_record_round_trips_without_its_answer_and_a_bad_one_is_dropped() {
        let keyed = Keyed { key: TurnKey::new("k1").unwrap(), digest: [7; 32], turn: 4, answer: None };
        let back = Keyed::from_record(&keyed.record()).unwrap();
        assert_eq!((back.key, back.digest, back.turn), (keyed.key.clone(), keyed.digest, 4));
        let mut bad = keyed.record();
        bad.digest = "zz".repeat(32);
        assert!(Keyed::from_record(&bad).is_none());
        let mut bad = keyed.record();
        bad.key = String::new();
        assert!(Keyed::from_record(&bad).is_none());
    }
}
