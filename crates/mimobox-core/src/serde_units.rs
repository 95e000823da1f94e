//! Serde adapters for fields that accept a bare number in the key's unit or
//! a string with an explicit unit (see [`crate::units`]).

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

use crate::units::{format_duration, format_size, parse_duration, parse_size};

/// Accepts an integer, a float or a string, and hands it on as it came:
/// an integer stays exact, only a float (TOML's own) is a float.
enum Raw {
    Integer(u64),
    Float(f64),
    Text(String),
}

struct RawVisitor(&'static str);

impl Visitor<'_> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Raw, E> {
        if v < 0 {
            return Err(E::custom(format_args!("must not be negative, got {v}")));
        }
        Ok(Raw::Integer(v as u64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Raw, E> {
        Ok(Raw::Integer(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Raw, E> {
        if !(v.is_finite() && v >= 0.0) {
            return Err(E::custom(format_args!("must be a finite, non-negative number, got {v}")));
        }
        Ok(Raw::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Text(v.to_owned()))
    }
}

fn size_in<'de, D: Deserializer<'de>>(
    deserializer: D,
    unit: u64,
    expecting: &'static str,
) -> Result<u64, D::Error> {
    match deserializer.deserialize_any(RawVisitor(expecting))? {
        Raw::Integer(n) => n
            .checked_mul(unit)
            .filter(|&b| b < u64::MAX)
            .ok_or_else(|| de::Error::custom("the size is too large")),
        Raw::Float(n) => {
            let bytes = n * unit as f64;
            if bytes >= u64::MAX as f64 {
                return Err(de::Error::custom("the size is too large"));
            }
            Ok(bytes as u64)
        }
        Raw::Text(text) => parse_size(&text).map_err(de::Error::custom),
    }
}

/// A size whose bare numbers are MiB (`memory_limit_mb = 64`).
pub mod mebibytes {
    use super::*;

    /// Deserializes a size; bare numbers are MiB.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        size_in(deserializer, 1 << 20, "a number of MiB or a size such as \"64MiB\"")
    }
    /// Serializes a size readably (`"64MiB"`).
    pub fn serialize<S: Serializer>(bytes: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_size(*bytes))
    }
}

/// A size whose bare numbers are bytes (`max_stdout = 4096`).
pub mod bytes {
    use super::*;

    /// Deserializes a size; bare numbers are bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        size_in(deserializer, 1, "a number of bytes or a size such as \"1MiB\"")
    }
    /// Serializes a size readably (`"1MiB"`).
    pub fn serialize<S: Serializer>(bytes: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_size(*bytes))
    }
}

/// A duration whose bare numbers are seconds (`timeout_secs = 1.5`).
pub mod seconds {
    use super::*;

    /// Deserializes a duration; bare numbers are seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        match deserializer
            .deserialize_any(RawVisitor("a number of seconds or a duration such as \"1.5s\""))?
        {
            Raw::Integer(n) => Ok(Duration::from_secs(n)),
            Raw::Float(n) => {
                Duration::try_from_secs_f64(n).map_err(|_| de::Error::custom("the duration is too large"))
            }
            Raw::Text(text) => parse_duration(&text).map_err(de::Error::custom),
        }
    }
    /// Serializes a duration readably (`"1500ms"`).
    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_duration(*duration))
    }
}

/// An optional size whose bare numbers are bytes.
pub mod optional_bytes {
    use super::*;

    /// Deserializes a present size; bare numbers are bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
        bytes::deserialize(deserializer).map(Some)
    }
    /// Serializes a size readably; `None` is skipped by the field.
    pub fn serialize<S: Serializer>(bytes: &Option<u64>, serializer: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => super::bytes::serialize(bytes, serializer),
            None => serializer.serialize_none(),
        }
    }
}

/// Takes a table, and only a table, for a struct: serde's derive would
/// also fill a struct's fields in order from an array (`pool = [4, 99]`),
/// dropping what is left over unseen.
pub fn table<'de, D: Deserializer<'de>, T: serde::Deserialize<'de>>(deserializer: D) -> Result<T, D::Error> {
    struct Table<T>(std::marker::PhantomData<T>);
    impl<'de, T: serde::Deserialize<'de>> Visitor<'de> for Table<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a table")
        }
        fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(de::value::MapAccessDeserializer::new(map))
        }
    }
    deserializer.deserialize_map(Table(std::marker::PhantomData))
}

/// [`table`] for a table that may be left out.
pub fn optional_table<'de, D: Deserializer<'de>, T: serde::Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    table(deserializer).map(Some)
}
