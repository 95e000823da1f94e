//! Every public parser and matcher of `mimobox-core`, fed random text:
//! arbitrary Unicode, and strings built from the pieces of each grammar
//! (dots, stars, digits, colons, brackets, units, TOML punctuation). Each
//! property asserts that nothing panics, and what else is cheap to state.

use std::path::Path;
use std::time::Duration;

use mimobox_core::grants::{DomainPattern, valid_tool_name};
use mimobox_core::text::{MAX_MESSAGE, one_line_bounded};
use mimobox_core::units::{format_duration, format_size, parse_duration, parse_size};
use mimobox_core::{ExecRequest, Mount, Profile, TurnRequest};
use proptest::prelude::*;

/// Pieces of host names, addresses, mounts and sizes, with a few
/// characters whose case or width is awkward (`é` is two bytes, `İ`
/// lower-cases to two characters, `\u{212a}` is the Kelvin sign).
const PIECES: &[&str] = &[
    ".", "..", "*", "*.", ":", "::", "[", "]", "-", "_", "/", "0", "1", "127", "255", "ffff", "fe80", "%",
    "é", "İ", "\u{212a}", "ß", "\u{0}", "\n", " ", "\t", "example", "com", "EXAMPLE", "xn--", "1.5", "_000",
    "ms", "s", "µs", "m", "h", "KiB", "MiB", "gb", "e9", "inf", "NaN", "-1",
];

/// A string made of grammar pieces and short alphanumeric runs.
fn grammar() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![prop::sample::select(PIECES).prop_map(String::from), "[a-zA-Z0-9]{1,6}"],
        0..16,
    )
    .prop_map(|pieces| pieces.concat())
}

/// Arbitrary Unicode half of the time, grammar pieces the other half.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), grammar()]
}

/// Host names that end in a pattern's suffix after random (often
/// multi-byte) characters, so that a cut at the suffix's length falls
/// inside a character.
fn host_near(suffix: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>().prop_map(move |head| format!("{head}{suffix}")),
        any::<String>().prop_map(move |head| format!("{head}.{suffix}")),
        "[a-zé]{0,3}".prop_map(move |head| format!("{head}{}", &suffix[1..])),
    ]
}

#[test]
fn a_non_ascii_host_matches_no_pattern_it_is_not_below() {
    for pattern in ["*.example.com", "example.com"] {
        let pattern = DomainPattern::parse(pattern).unwrap();
        assert!(!pattern.matches("aéxample.com"), "{pattern:?}");
        assert!(!pattern.matches("éxample.com"), "{pattern:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn domain_patterns_parse_and_match_without_panicking(entry in text(), host in text()) {
        let upper = DomainPattern::parse(&entry.to_ascii_uppercase());
        match DomainPattern::parse(&entry) {
            Ok(pattern) => {
                prop_assert_eq!(upper.as_ref().ok(), Some(&pattern), "parsing ignores ASCII case");
                let matched = pattern.matches(&host);
                prop_assert_eq!(pattern.matches(&host.to_ascii_uppercase()), matched);
                prop_assert_eq!(pattern.matches(&host.to_ascii_lowercase()), matched);
                match &pattern {
                    DomainPattern::Exact(name) => {
                        prop_assert!(pattern.matches(name));
                        let below = format!("a.{name}");
                        prop_assert!(!pattern.matches(&below));
                    }
                    DomainPattern::Below(suffix) => {
                        let below = format!("a.{suffix}");
                        prop_assert!(pattern.matches(&below));
                        prop_assert!(!pattern.matches(suffix));
                    }
                    DomainPattern::Ip(ip) => prop_assert!(pattern.matches(&ip.to_string())),
                }
            }
            Err(message) => {
                prop_assert!(upper.is_err(), "parsing ignores ASCII case");
                prop_assert!(!message.is_empty());
            }
        }
    }

    #[test]
    fn patterns_built_by_hand_match_any_host_without_panicking(name in text(), host in text()) {
        for pattern in [DomainPattern::Exact(name.clone()), DomainPattern::Below(name.clone())] {
            let matched = pattern.matches(&host);
            prop_assert_eq!(pattern.matches(&host.to_ascii_uppercase()), matched);
        }
    }

    #[test]
    fn hosts_cut_inside_a_character_do_not_panic(host in host_near("example.com")) {
        let below = DomainPattern::parse("*.example.com").unwrap();
        let exact = DomainPattern::parse("example.com").unwrap();
        let matched = below.matches(&host);
        prop_assert_eq!(matched, host.len() > 12 && host.to_ascii_lowercase().ends_with(".example.com"));
        prop_assert_eq!(exact.matches(&host), host.eq_ignore_ascii_case("example.com"));
    }

    #[test]
    fn tool_names_are_short_ascii_identifiers(name in text()) {
        if valid_tool_name(&name) {
            prop_assert!((1..=64).contains(&name.len()));
            prop_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
        }
    }

    #[test]
    fn mounts_parse_without_panicking(spec in text()) {
        if let Ok(mount) = Mount::parse(&spec) {
            prop_assert!(!mount.host.as_os_str().is_empty() && !mount.guest.is_empty());
            if !spec.contains("::") {
                prop_assert_eq!(mount.host.as_os_str().to_str(), Some(spec.as_str()));
                prop_assert_eq!(mount.guest, spec);
            }
        }
    }

    #[test]
    fn units_parse_without_panicking(text in text()) {
        let _ = parse_size(&text).map_err(|e| e.to_string());
        let _ = parse_duration(&text).map_err(|e| e.to_string());
    }

    #[test]
    fn formatted_units_parse_back(bytes in 0u64..u64::MAX, secs in 0u64..1 << 40, nanos in 0u64..u64::MAX) {
        // Parsing is exact: every formatted value comes back to the unit.
        prop_assert_eq!(parse_size(&format_size(bytes)), Ok(bytes));
        let whole = Duration::from_secs(secs);
        prop_assert_eq!(parse_duration(&format_duration(whole)), Ok(whole));
        let duration = Duration::from_nanos(nanos);
        prop_assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        let millis = Duration::from_millis(nanos >> 20);
        prop_assert_eq!(parse_duration(&format_duration(millis)), Ok(millis));
    }

    #[test]
    fn messages_are_one_bounded_line_without_controls(text in text()) {
        let shown = one_line_bounded(&text);
        prop_assert!(!shown.chars().any(char::is_control), "{shown:?}");
        prop_assert!(shown.len() <= MAX_MESSAGE + '…'.len_utf8(), "{}", shown.len());
        prop_assert!(!shown.chars().any(|c| c.is_whitespace() && c != ' '), "{shown:?}");
    }

    #[test]
    fn long_messages_stay_bounded(text in prop::collection::vec(text(), 0..64)) {
        let text = text.concat().repeat(40);
        let shown = one_line_bounded(&text);
        prop_assert!(!shown.chars().any(char::is_control));
        prop_assert!(shown.len() <= MAX_MESSAGE + '…'.len_utf8(), "{}", shown.len());
    }

    #[test]
    fn command_lines_become_requests(cmd in prop::collection::vec(text(), 0..4)) {
        match ExecRequest::from_command(&cmd) {
            Ok(request) => prop_assert_eq!(&request.args[..], &cmd[1..]),
            Err(_) => prop_assert!(cmd.is_empty()),
        }
        let _ = TurnRequest::new(cmd.concat());
    }
}

/// Lines of profile text: known keys and tables, values of every type
/// (sizes and durations as strings too), and TOML punctuation.
fn profile_text() -> impl Strategy<Value = String> {
    let key = prop::sample::select(
        &[
            "timeout_secs",
            "memory_limit_mb",
            "fuel",
            "max_stdout",
            "max_open_files",
            "max_disk_write",
            "module",
            "args",
            "env",
            "fs_readonly",
            "fs_readwrite",
            "deny_network",
            "allowed_http_domains",
            "backend",
            "command",
            "description",
            "input_schema",
            "timeout",
            "enabled",
            "dir",
            "max_size",
            "size",
            "idle_timeout_secs",
            "preload",
            "unknown",
        ][..],
    );
    let value = prop_oneof![
        text().prop_map(|t| format!("{t:?}")),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| n.to_string()),
        Just("true".to_owned()),
        Just("inf".to_owned()),
        Just("-0.0".to_owned()),
        Just("\"1.5s\"".to_owned()),
        Just("\"64MiB\"".to_owned()),
        Just("[\"*.example.com\", \"127.0.0.1\", \"[::1]\", \"aéxample.com\"]".to_owned()),
        Just("{ host = \"a\", guest = \"/b\" }".to_owned()),
        Just("[\"a::/b\", \"::\"]".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        grammar(),
    ];
    let line = prop_oneof![
        4 => (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => prop::sample::select(&["[cache]", "[pool]", "[session]", "[tools.t]", "[tools.http]", "[tools.\"é\"]", "[env]", "[[x]]"][..])
            .prop_map(String::from),
        1 => text(),
    ];
    prop::collection::vec(line, 0..10).prop_map(|lines| lines.join("\n"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn profiles_parse_without_panicking(source in prop_oneof![profile_text(), text()]) {
        let lines = source.lines().count().max(1);
        match Profile::parse(Path::new("random.toml"), source, Path::new("/profiles")) {
            Ok(profile) => {
                let _ = format!("{:?}", profile.config());
            }
            Err(error) => {
                let shown = error.to_string();
                prop_assert!(shown.starts_with("random.toml"), "{shown}");
                if let Some((line, _)) = error.position {
                    prop_assert!((1..=lines + 1).contains(&line), "line {line} of {lines}");
                }
            }
        }
    }
}
