//! What the host keeps around a paused state in the store: the session's
//! owner, profile, opening time and turns, so that a host started later
//! can take the session up again; authenticated with the state key as a
//! whole, so that a store cannot move a state to another owner or profile.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

const MAGIC: &[u8; 8] = b"MIMOHOST";
const VERSION: u8 = 1;
/// Most bytes of the metadata (the idempotency keys of
/// [`crate::once::MAX_KEYS`] turns fit).
const MAX_META: usize = 16 << 10;

/// The host's record of a paused session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Ticket {
    pub(crate) session: String,
    pub(crate) owner: String,
    pub(crate) profile: String,
    /// When the session opened, in milliseconds since the Unix epoch.
    pub(crate) opened_ms: u64,
    pub(crate) turns: u64,
    /// The number of this pause among the session's pauses (1 for the
    /// first): a state of another pause is an older one replayed.
    #[serde(default)]
    pub(crate) pauses: u64,
    /// The fencing epoch its writer held the session under (0 for a host
    /// alone): with `pauses`, the [`crate::StateName`] it must be found at.
    #[serde(default)]
    pub(crate) epoch: u64,
    /// The session's last turns sent under an idempotency key: a turn sent
    /// again under one after the session moved is not run twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) keys: Vec<crate::once::KeyedRecord>,
    /// The turn a session went on from after its worker was lost, when no
    /// answer has said so yet: the next holder's first answer does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) resumed_from: Option<u64>,
}

impl Ticket {
    /// How long ago the session opened (zero if the clock says the future).
    pub(crate) fn age(&self) -> Duration {
        let opened = UNIX_EPOCH + Duration::from_millis(self.opened_ms);
        SystemTime::now().duration_since(opened).unwrap_or_default()
    }

    /// The opening time `age` ago, for a ticket.
    pub(crate) fn opened_ms(age: Duration) -> u64 {
        let opened = SystemTime::now().checked_sub(age).unwrap_or(UNIX_EPOCH);
        opened.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// `paused` wrapped with `ticket`, authenticated under `key`.
pub(crate) fn seal(key: &[u8], ticket: &Ticket, paused: &[u8]) -> Vec<u8> {
    let meta = serde_json::to_vec(ticket).expect("a ticket serializes");
    let mut out = Vec::with_capacity(paused.len() + meta.len() + 64);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(paused);
    let tag = mac(key, &out);
    out.extend_from_slice(&tag);
    out
}

/// The ticket and the paused state inside `sealed`, if its MAC holds.
pub(crate) fn open<'a>(key: &[u8], sealed: &'a [u8]) -> Option<(Ticket, &'a [u8])> {
    let body_len = sealed.len().checked_sub(32)?;
    let (body, tag) = sealed.split_at(body_len);
    let mut check = <Hmac<Sha256> as Mac>::new_from_slice(key).ok()?;
    check.update(body);
    check.verify_slice(tag).ok()?;
    let rest = body.strip_prefix(MAGIC.as_slice())?;
    let (&version, rest) = rest.split_first()?;
    if version != VERSION || rest.len() < 4 {
        return None;
    }
    let meta_len = u32::from_le_bytes(rest[..4].try_into().ok()?) as usize;
    let rest = &rest[4..];
    if meta_len > MAX_META || rest.len() < meta_len {
        return None;
    }
    let ticket: Ticket = serde_json::from_slice(&rest[..meta_len]).ok()?;
    Some((ticket, &rest[meta_len..]))
}

fn mac(key: &[u8], bytes: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(bytes);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_state_opens_under_its_key_only_and_any_change_is_refused() {
        let ticket = Ticket {
            session: "s".into(),
            owner: "alice".into(),
            profile: "python".into(),
            opened_ms: 1,
            turns: 3,
            pauses: 2,
            epoch: 4,
            keys: Vec::new(),
            resumed_from: Some(1),
        };
        let sealed = seal(b"key", &ticket, b"paused bytes");
        let (opened, paused) = open(b"key", &sealed).unwrap();
        assert_eq!((opened, paused), (ticket, &b"paused bytes"[..]));
        assert!(open(b"other key", &sealed).is_none());
        for i in 0..sealed.len() {
            let mut altered = sealed.clone();
            altered[i] ^= 1;
            assert!(open(b"key", &altered).is_none(), "byte {i}");
        }
        assert!(open(b"key", &sealed[..sealed.len() - 1]).is_none());
        assert!(open(b"key", b"").is_none());
    }
}
