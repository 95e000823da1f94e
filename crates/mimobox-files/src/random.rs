//! Unpredictable names: session ids and temp-file names.

use std::fmt::Write as _;

use rustix::io::Errno;
use rustix::rand::{GetRandomFlags, getrandom};

/// `N` bytes from the kernel's random source, as `2 * N` lowercase hex
/// characters.
pub(crate) fn hex<const N: usize>() -> std::io::Result<String> {
    let mut bytes = [0u8; N];
    let mut filled = 0;
    // getrandom may return fewer bytes than asked, or be interrupted.
    while filled < N {
        match getrandom(&mut bytes[filled..], GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut out = String::with_capacity(2 * N);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    Ok(out)
}

/// Whether `name` looks like a [`hex`] string of `len` characters.
pub(crate) fn is_hex(name: &str, len: usize) -> bool {
    name.len() == len && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
