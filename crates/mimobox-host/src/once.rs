//! Turns sent again: a caller that lost a turn's answer (a connection
//! broken mid-way, a worker relaying it gone) sends the turn again under
//! the same [`TurnKey`], and gets the answer of the turn that ran rather
//! than a second run of it.
//!
//! A session keeps its last [`MAX_KEYS`] keyed turns (the key, a digest of
//! the request, the turn's number), and the answer of the last one when it
//! is at most [`MAX_KEPT_ANSWER`] bytes. The keys and digests travel with
//! the session's paused state; answers stay with the host that ran them.
//! A turn sent again whose answer is not kept (an earlier key, a large
//! answer, a session that moved) is refused ([`HostError::AlreadyRan`]),
//! never run twice.

use std::fmt;

use mimobox_core::{TurnRequest, TurnResult};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::HostError;

/// Most bytes of a [`TurnKey`].
pub const MAX_TURN_KEY: usize = 255;

/// Keyed turns a session remembers.
pub const MAX_KEYS: usize = 8;

/// Largest answer kept for a turn sent again (its output and results, in
/// bytes); a larger one is refused as run already.
pub const MAX_KEPT_ANSWER: usize = 256 << 10;

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

/// A session's keyed turns, newest last.
#[derive(Debug, Clone, Default)]
pub(crate) struct Keyed {
    turns: std::collections::VecDeque<KeyedTurn>,
    /// The newest one's answer, if it is kept.
    answer: Option<TurnResult>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyedTurn {
    key: TurnKey,
    digest: [u8; 32],
    turn: u64,
}

impl Keyed {
    /// What a turn sent under `key` with `digest` gets from the record:
    /// `None` when no remembered turn has the key (the turn runs), else the
    /// recorded answer or the refusal.
    pub(crate) fn answer_for(
        &self,
        key: &TurnKey,
        digest: &[u8; 32],
    ) -> Option<Result<TurnResult, HostError>> {
        let (at, found) = self.turns.iter().enumerate().rev().find(|(_, t)| t.key == *key)?;
        if found.digest != *digest {
            return Some(Err(HostError::KeyReused { turn: found.turn }));
        }
        let newest = at + 1 == self.turns.len();
        Some(match self.answer.as_ref().filter(|_| newest) {
            Some(answer) => {
                let mut answer = answer.clone();
                answer.replayed = true;
                Ok(answer)
            }
            None => Err(HostError::AlreadyRan { turn: found.turn }),
        })
    }

    /// Records the turn that ran under `key`, with its answer.
    pub(crate) fn ran(&mut self, key: TurnKey, digest: [u8; 32], answer: &TurnResult) {
        self.turns.retain(|t| t.key != key);
        self.turns.push_back(KeyedTurn { key, digest, turn: answer.turn });
        while self.turns.len() > MAX_KEYS {
            self.turns.pop_front();
        }
        self.answer = (answer_bytes(answer) <= MAX_KEPT_ANSWER).then(|| answer.clone());
    }

    /// About the bytes the kept answer holds, counted in the session's
    /// memory while it is live.
    pub(crate) fn kept_bytes(&self) -> u64 {
        self.answer.as_ref().map_or(0, |answer| answer_bytes(answer) as u64 + ANSWER_OVERHEAD)
    }

    /// Lets the kept answer go (a paused session holds none: its keys
    /// travel in its state, its answer does not).
    pub(crate) fn forget_answer(&mut self) {
        self.answer = None;
    }

    /// The records a paused state carries.
    pub(crate) fn records(&self) -> Vec<KeyedRecord> {
        self.turns
            .iter()
            .map(|t| KeyedRecord {
                key: t.key.0.clone(),
                digest: t.digest.iter().map(|b| format!("{b:02x}")).collect(),
                turn: t.turn,
            })
            .collect()
    }

    /// The keyed turns a paused state carried (those well formed), without
    /// answers.
    pub(crate) fn from_records(records: &[KeyedRecord]) -> Keyed {
        let turns = records.iter().rev().take(MAX_KEYS).rev().filter_map(KeyedTurn::from_record).collect();
        Keyed { turns, answer: None }
    }
}

impl KeyedTurn {
    fn from_record(record: &KeyedRecord) -> Option<KeyedTurn> {
        let key = TurnKey::new(&record.key).ok()?;
        let text = record.digest.as_bytes();
        if text.len() != 64 {
            return None;
        }
        let mut digest = [0u8; 32];
        for (i, pair) in text.chunks(2).enumerate() {
            digest[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
        }
        Some(KeyedTurn { key, digest, turn: record.turn })
    }
}

/// What a kept answer costs besides its bytes: the result's own fields.
const ANSWER_OVERHEAD: u64 = 512;

/// About the bytes an answer holds: its output and its results' text.
fn answer_bytes(answer: &TurnResult) -> usize {
    fn value_bytes(value: &serde_json::Value) -> usize {
        match value {
            serde_json::Value::String(s) => s.len(),
            serde_json::Value::Array(items) => items.iter().map(value_bytes).sum::<usize>() + items.len(),
            serde_json::Value::Object(map) => map.iter().map(|(k, v)| k.len() + value_bytes(v)).sum(),
            _ => 8,
        }
    }
    let results: usize =
        answer.results.iter().flat_map(|bundle| bundle.iter()).map(|(k, v)| k.len() + value_bytes(v)).sum();
    let error = answer
        .error
        .as_ref()
        .map_or(0, |e| e.name.len() + e.value.len() + e.traceback.iter().map(String::len).sum::<usize>());
    answer.result.stdout.len() + answer.result.stderr.len() + results + error
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

    fn answer(turn: u64, stdout: &[u8]) -> TurnResult {
        TurnResult {
            turn,
            alive: true,
            result: mimobox_core::SandboxResult {
                outcome: mimobox_core::Outcome::Exited { code: 0 },
                stdout: stdout.to_vec(),
                stderr: Vec::new(),
                stdout_truncated: false,
                stderr_truncated: false,
                elapsed: std::time::Duration::ZERO,
                fuel_consumed: None,
                peak_memory: 0,
                memory_limit_hit: false,
                disk_written: 0,
                disk_quota_hit: false,
                tool_calls: Vec::new(),
            },
            results: Vec::new(),
            results_truncated: false,
            error: None,
            resumed_from_turn: None,
            replayed: false,
        }
    }

    #[test]
    fn the_newest_answer_is_kept_earlier_keys_are_refused_and_the_oldest_forgotten() {
        let key = |n: u64| TurnKey::new(&format!("k{n}")).unwrap();
        let mut keyed = Keyed::default();
        for n in 1..=10 {
            keyed.ran(key(n), [n as u8; 32], &answer(n, b"out"));
        }
        let replayed = keyed.answer_for(&key(10), &[10; 32]).unwrap().unwrap();
        assert!(replayed.replayed && replayed.turn == 10);
        assert!(matches!(keyed.answer_for(&key(9), &[9; 32]), Some(Err(HostError::AlreadyRan { turn: 9 }))));
        assert!(matches!(keyed.answer_for(&key(3), &[3; 32]), Some(Err(HostError::AlreadyRan { turn: 3 }))));
        assert!(keyed.answer_for(&key(2), &[2; 32]).is_none(), "past {MAX_KEYS}, forgotten");
        assert!(matches!(keyed.answer_for(&key(9), &[0; 32]), Some(Err(HostError::KeyReused { turn: 9 }))));
        // A large answer is not kept: sent again, it is refused, not run.
        keyed.ran(key(11), [11; 32], &answer(11, &vec![b'x'; MAX_KEPT_ANSWER + 1]));
        assert!(matches!(
            keyed.answer_for(&key(11), &[11; 32]),
            Some(Err(HostError::AlreadyRan { turn: 11 }))
        ));
    }

    #[test]
    fn records_round_trip_without_answers_and_bad_ones_are_dropped() {
        let mut keyed = Keyed::default();
        keyed.ran(TurnKey::new("k1").unwrap(), [7; 32], &answer(4, b""));
        keyed.ran(TurnKey::new("k2").unwrap(), [8; 32], &answer(5, b""));
        let mut records = keyed.records();
        let back = Keyed::from_records(&records);
        assert!(matches!(
            back.answer_for(&TurnKey::new("k2").unwrap(), &[8; 32]),
            Some(Err(HostError::AlreadyRan { turn: 5 }))
        ));
        assert!(matches!(
            back.answer_for(&TurnKey::new("k1").unwrap(), &[7; 32]),
            Some(Err(HostError::AlreadyRan { turn: 4 }))
        ));
        records[0].digest = "zz".repeat(32);
        records[1].key = String::new();
        let back = Keyed::from_records(&records);
        assert!(back.records().is_empty());
    }
}
