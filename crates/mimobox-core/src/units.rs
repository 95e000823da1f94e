//! Readable sizes and durations: `"64MiB"`, `"1.5s"`, `"250ms"`.
//!
//! Profiles may write a limit either as a bare number, in the unit that the
//! key's name carries (`memory_limit_mb = 64`, `timeout_secs = 1.5`), or as a
//! string with an explicit unit (`memory_limit_mb = "64MiB"`). The parsers here
//! are shared by the profile loader and the command line so that both accept
//! exactly the same spellings.

use std::fmt;
use std::time::Duration;

/// An error from [`parse_size`] or [`parse_duration`]: the text and why it
/// was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} `{text}`: {reason}")]
pub struct UnitError {
    what: &'static str,
    text: String,
    reason: &'static str,
}

impl UnitError {
    fn new(what: &'static str, text: &str, reason: &'static str) -> Self {
        UnitError { what, text: text.to_owned(), reason }
    }
}

/// A number as written: its whole part and up to [`MAX_FRACTION_DIGITS`]
/// digits of its fraction, exactly (no floating point), so that
/// `9007199254740993` is that number and `0.1s` is 100 ms.
struct Decimal {
    whole: u128,
    fraction: u128,
    /// 10 to the number of fraction digits kept.
    scale: u128,
}

/// Fraction digits kept; later ones are dropped (rounding down).
const MAX_FRACTION_DIGITS: usize = 18;

impl Decimal {
    /// `self × per_unit`, rounded down, if it fits in `u128`.
    fn times(&self, per_unit: u128) -> Option<u128> {
        let whole = self.whole.checked_mul(per_unit)?;
        let fraction = self.fraction.checked_mul(per_unit)? / self.scale;
        whole.checked_add(fraction)
    }
}

/// Splits `"1.5GiB"` into the number `1.5` and the unit `"GiB"`. Digits may
/// be grouped with `_`; there is no sign, exponent or infinity.
fn split_number<'a>(what: &'static str, text: &'a str) -> Result<(Decimal, &'a str), UnitError> {
    let trimmed = text.trim();
    let end = trimmed.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_')).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(end);
    let malformed = || UnitError::new(what, text, "the number is malformed");
    if number.is_empty() {
        return Err(UnitError::new(what, text, "expected a number followed by a unit"));
    }
    let digits: String = number.chars().filter(|&c| c != '_').collect();
    let (whole, fraction) = match digits.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (digits.as_str(), ""),
    };
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return Err(malformed());
    }
    let too_large = || UnitError::new(what, text, "the number is too large");
    let whole = if whole.is_empty() { 0 } else { whole.parse::<u128>().map_err(|_| too_large())? };
    let kept = &fraction[..fraction.len().min(MAX_FRACTION_DIGITS)];
    let fraction = if kept.is_empty() { 0 } else { kept.parse::<u128>().map_err(|_| malformed())? };
    let scale = 10u128.pow(kept.len() as u32);
    Ok((Decimal { whole, fraction, scale }, unit.trim()))
}

/// Parses a byte size such as `"64MiB"`, `"1.5 GiB"`, `"512k"` or `"4096"`.
///
/// Binary (`KiB`, `MiB`, `GiB`, `TiB`) and decimal (`kB`, `MB`, `GB`, `TB`)
/// units are both understood; the single letters `K`, `M`, `G`, `T` mean the
/// binary units. A bare number is a count of bytes. The arithmetic is
/// exact; fractions are rounded down to whole bytes.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let (value, unit) = split_number("size", text)?;
    let multiplier: u128 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "ki" | "kib" => 1 << 10,
        "m" | "mi" | "mib" => 1 << 20,
        "g" | "gi" | "gib" => 1 << 30,
        "t" | "ti" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return Err(UnitError::new("size", text, "unknown unit (use B, KiB, MiB, GiB, kB, MB or GB)")),
    };
    value
        .times(multiplier)
        .and_then(|bytes| u64::try_from(bytes).ok())
        .filter(|&bytes| bytes < u64::MAX)
        .ok_or_else(|| UnitError::new("size", text, "the size is too large"))
}

/// Parses a duration such as `"1.5s"`, `"250ms"`, `"2m"` or `"30"` (seconds).
///
/// Units: `ns`, `us`, `ms`, `s`, `m` (minutes) and `h`. A bare number is a
/// count of seconds. The arithmetic is exact, to the nanosecond (rounded
/// down).
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let (value, unit) = split_number("duration", text)?;
    let nanos_per_unit: u128 = match unit {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "" | "s" | "sec" | "secs" => 1_000_000_000,
        "m" | "min" | "mins" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return Err(UnitError::new("duration", text, "unknown unit (use ms, s, m or h)")),
    };
    value
        .times(nanos_per_unit)
        .and_then(duration_of_nanos)
        .ok_or_else(|| UnitError::new("duration", text, "the duration is too large"))
}

/// `nanos` nanoseconds, if a `Duration` holds them.
fn duration_of_nanos(nanos: u128) -> Option<Duration> {
    let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
    Some(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// Formats a byte count in the largest binary unit that divides it exactly,
/// so that the result parses back to the same number (`"64MiB"`, `"1536B"`).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (size, name) in UNITS {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{name}", bytes / size);
        }
    }
    format!("{bytes}B")
}

/// Formats a duration so that it parses back to the same value (`"30s"`,
/// `"1500ms"`).
pub fn format_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos.is_multiple_of(1_000_000_000) {
        format!("{}s", nanos / 1_000_000_000)
    } else if nanos.is_multiple_of(1_000_000) {
        format!("{}ms", nanos / 1_000_000)
    } else if nanos.is_multiple_of(1_000) {
        format!("{}us", nanos / 1_000)
    } else {
        format!("{nanos}ns")
    }
}

/// Wraps a byte count to display it for people: exact when it is a whole
/// number of a unit (`64MiB`), else to one decimal (`2.9 MiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisplaySize(pub u64);

impl fmt::Display for DisplaySize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exact = format_size(self.0);
        if !exact.ends_with("KiB") && exact.ends_with("iB") || self.0 < 1 << 10 {
            return f.write_str(&exact);
        }
        let (unit, name) = [(1u64 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
            .into_iter()
            .find(|(unit, _)| self.0 >= *unit)
            .unwrap_or((1, "B"));
        write!(f, "{:.1} {name}", self.0 as f64 / unit as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_and_decimal_units() {
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("64 MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("512k").unwrap(), 512 << 10);
        assert_eq!(parse_size("2MB").unwrap(), 2_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("1_024B").unwrap(), 1024);
    }

    #[test]
    fn sizes_refuse_junk() {
        for bad in ["", "MiB", "-1MiB", "12parsecs", "1e99GiB", "1.2.3MiB"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert!(parse_duration("5 fortnights").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn display_is_readable() {
        assert_eq!(DisplaySize(64 << 20).to_string(), "64MiB");
        assert_eq!(DisplaySize(3_112_424).to_string(), "3.0 MiB");
        assert_eq!(DisplaySize(161).to_string(), "161B");
        assert_eq!(DisplaySize(1536).to_string(), "1.5 KiB");
    }

    #[test]
    fn numbers_are_exact() {
        assert_eq!(parse_size("9007199254740993").unwrap(), 9_007_199_254_740_993);
        assert_eq!(parse_size("18446744073709551614").unwrap(), u64::MAX - 1);
        assert!(parse_size("18446744073709551615").is_err(), "u64::MAX is refused as too large");
        assert!(parse_size("99999999999999999999999999999999999999999").is_err());
        assert_eq!(parse_size("0.5KiB").unwrap(), 512);
        assert_eq!(parse_size("1.0000000000000000001GiB").unwrap(), 1 << 30, "digits past 18 are dropped");
        assert_eq!(parse_duration("0.1s").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_duration("6981141.123s").unwrap(), Duration::new(6_981_141, 123_000_000));
        assert_eq!(parse_duration("6981141123ms").unwrap(), Duration::from_millis(6_981_141_123));
        assert_eq!(parse_duration(".5").unwrap(), Duration::from_millis(500));
        for bad in [".", "1.2.3", "_", "1e3"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formatting_round_trips() {
        for bytes in [0, 1, 1536, 64 << 20, 3 << 29, 1 << 40] {
            assert_eq!(parse_size(&format_size(bytes)).unwrap(), bytes);
        }
        for d in [Duration::from_secs(30), Duration::from_millis(1500), Duration::from_nanos(7)] {
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
    }
}
