//! What a profile grants besides files: host tools that are commands
//! (`[tools.NAME]`) and the web hosts of the built-in `http` tool
//! (`allowed_http_domains`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::serde_units;

/// Default bound on one call of a command tool: 10 s.
pub const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(10);
/// The name of the built-in HTTP tool, granted by `allowed_http_domains`.
pub const HTTP_TOOL: &str = "http";

/// A host command granted to the guest as a tool. Table `[tools.NAME]`.
///
/// Each call runs `command` with the JSON arguments on stdin, and takes
/// one JSON value from its stdout as the answer. A non-zero exit status or
/// an answer that is not JSON is a tool error in the guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandTool {
    /// What the tool does, for the guest (and the model that writes its
    /// code). Key `tools.NAME.description`.
    pub description: String,
    /// The program and its arguments; a relative program is relative to
    /// the profile's directory. Key `tools.NAME.command`.
    pub command: Vec<String>,
    /// JSON Schema (written as TOML) that the arguments must match before
    /// the command runs. Key `tools.NAME.input_schema`; by default any
    /// object.
    #[serde(default = "any_object")]
    pub input_schema: serde_json::Value,
    /// Bound on one call; the command (and everything it started) is killed
    /// past it. Key `tools.NAME.timeout`.
    #[serde(default = "default_timeout", with = "serde_units::seconds")]
    pub timeout: Duration,
    /// The command's whole environment: it gets no other variable. Key
    /// `tools.NAME.env`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

fn any_object() -> serde_json::Value {
    serde_json::json!({ "type": "object" })
}

fn default_timeout() -> Duration {
    DEFAULT_TOOL_TIMEOUT
}

impl CommandTool {
    /// Makes a relative program relative to `base`, the profile's
    /// directory.
    pub fn resolve_against(&mut self, base: &Path) {
        if let Some(program) = self.command.first_mut()
            && Path::new(program.as_str()).is_relative()
        {
            *program = base.join(program.as_str()).to_string_lossy().into_owned();
        }
    }

    /// The program to run.
    pub fn program(&self) -> Option<PathBuf> {
        self.command.first().map(PathBuf::from)
    }

    pub(crate) fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if self.command.is_empty() || self.command[0].is_empty() {
            return Err(ConfigError::new(format!("{key}.command"), "names no program"));
        }
        if self.command.iter().any(|a| a.contains('\0')) {
            return Err(ConfigError::new(format!("{key}.command"), "contains a NUL byte"));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::new(format!("{key}.timeout"), "must be greater than zero"));
        }
        if !(self.input_schema.is_object() || self.input_schema.is_boolean()) {
            return Err(ConfigError::new(format!("{key}.input_schema"), "must be a table (a JSON Schema)"));
        }
        for (name, value) in &self.env {
            if let Some(problem) = crate::config::env_var_problem(name, value) {
                return Err(ConfigError::new(format!("{key}.env"), problem));
            }
        }
        Ok(())
    }
}

/// Whether `name` may name a tool: 1 to 64 ASCII letters, digits, `_`
/// and `-`, starting with a letter (a Python keyword argument, say, or a
/// method name).
pub fn valid_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// An entry of `allowed_http_domains`: an exact host name, `*.` and a
/// name (any host below it, not the name itself), or an IP address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainPattern {
    /// Exactly this host (lower case, no trailing dot).
    Exact(String),
    /// Any host that ends in `.` and this suffix.
    Below(String),
    /// This IP address, which may then be private or loopback.
    Ip(std::net::IpAddr),
}

impl DomainPattern {
    /// Parses one entry.
    pub fn parse(entry: &str) -> Result<DomainPattern, String> {
        let lower = entry.trim_end_matches('.').to_ascii_lowercase();
        let bare = lower.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
            return Ok(DomainPattern::Ip(ip));
        }
        let (below, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let label_ok = |l: &str| {
            (1..=63).contains(&l.len())
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(format!("`{entry}` is not a host name, `*.` and a host name, or an IP address"));
        }
        if below && !name.contains('.') {
            return Err(format!("`{entry}` would allow a whole top-level domain"));
        }
        Ok(if below { DomainPattern::Below(name.to_owned()) } else { DomainPattern::Exact(name.to_owned()) })
    }

    /// Whether `host` (as in a URL) matches, ignoring ASCII case. Any
    /// string may be given: one that is not a host name matches nothing
    /// it is not below.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match self {
            DomainPattern::Exact(name) => host.eq_ignore_ascii_case(name),
            DomainPattern::Below(suffix) => {
                // Compared as bytes: the suffix's length may fall inside a
                // character of `host` (`aéxample.com`).
                let (host, suffix) = (host.as_bytes(), suffix.as_bytes());
                host.len() > suffix.len() + 1
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                    && host[host.len() - suffix.len() - 1] == b'.'
            }
            DomainPattern::Ip(ip) => bare.parse::<std::net::IpAddr>().is_ok_and(|h| h == *ip),
        }
    }
}

impl std::fmt::Display for DomainPattern {
    /// The entry as it is matched: lower case, no trailing dot.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DomainPattern::Exact(name) => f.write_str(name),
            DomainPattern::Below(suffix) => write!(f, "*.{suffix}"),
            DomainPattern::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl std::str::FromStr for DomainPattern {
    type Err = String;

    fn from_str(entry: &str) -> Result<DomainPattern, String> {
        DomainPattern::parse(entry)
    }
}

/// Parsed once, where the config is read: an entry that is not a pattern
/// is an error at its key (with its line and column in a profile).
impl<'de> serde::Deserialize<'de> for DomainPattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<DomainPattern, D::Error> {
        let entry = String::deserialize(deserializer)?;
        DomainPattern::parse(&entry).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for DomainPattern {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Checks the grants of a config: tool names, each tool.
pub(crate) fn validate(
    tools: &BTreeMap<String, CommandTool>,
    domains: &[DomainPattern],
) -> Result<(), ConfigError> {
    for (name, tool) in tools {
        let key = format!("tools.{name}");
        if !valid_tool_name(name) {
            return Err(ConfigError::new(
                key,
                "a tool name is 1 to 64 letters, digits, `_` and `-`, starting with a letter",
            ));
        }
        if name == HTTP_TOOL && !domains.is_empty() {
            return Err(ConfigError::new(key, "`http` is the built-in tool of allowed_http_domains"));
        }
        tool.validate(&key)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_exact_names_and_subdomains_only() {
        let exact = DomainPattern::parse("API.example.com.").unwrap();
        assert!(exact.matches("api.example.com"));
        assert!(!exact.matches("x.api.example.com"));
        assert!(!exact.matches("api.example.com.evil.net"));
        let below = DomainPattern::parse("*.example.com").unwrap();
        assert!(below.matches("a.example.com") && below.matches("a.b.example.com"));
        assert!(!below.matches("example.com"));
        assert!(!below.matches("badexample.com"));
        assert!(!below.matches("example.com.evil.net"));
        let ip = DomainPattern::parse("127.0.0.1").unwrap();
        assert!(ip.matches("127.0.0.1") && !ip.matches("127.0.0.2"));
        assert!(DomainPattern::parse("[::1]").unwrap().matches("[::1]"));
        for bad in ["", "*.com", "exa mple.com", "*", "a..b", "-a.com", "http://x.com"] {
            assert!(DomainPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_non_ascii_host_neither_matches_nor_panics() {
        // The suffix's length cuts `aéxample.com` inside the `é`.
        for pattern in ["*.example.com", "example.com"] {
            let pattern = DomainPattern::parse(pattern).unwrap();
            assert!(!pattern.matches("aéxample.com"), "{pattern:?}");
            assert!(!pattern.matches("é.com"), "{pattern:?}");
        }
        assert!(DomainPattern::parse("*.example.com").unwrap().matches("A.EXAMPLE.COM"));
    }

    #[test]
    fn tool_names_are_identifiers() {
        assert!(valid_tool_name("lookup") && valid_tool_name("get-weather_2"));
        for bad in ["", "2x", "a b", "é", &"x".repeat(65)] {
            assert!(!valid_tool_name(bad), "{bad:?}");
        }
    }
}
