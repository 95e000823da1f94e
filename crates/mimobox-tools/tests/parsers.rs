//! Every public entry of `mimobox-tools` that decodes input, fed random
//! input: request frames, tool schemas and arguments, `http` tool
//! arguments, addresses. Each property asserts that nothing panics, and
//! what else is cheap to state.
//!
//! No case reaches the network. The `http` tool here allows only names
//! under `.invalid`, which no resolver answers (RFC 6761): a URL with any
//! other host is refused before a connection, and one under `.invalid`
//! fails its lookup.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use mimobox_tools::{Request, Tool, ToolLimits, Toolbox, http_tool, is_public};
use proptest::prelude::*;
use serde_json::{Value, json};

const PIECES: &[&str] = &[
    ".", "*", "*.", ":", "::", "[", "]", "{", "}", "\"", ",", "/", "//", "?", "#", "@", "%", "%00", "-", "0",
    "1", "65535", "99999", "é", "İ", "\u{0}", "\r\n", " ", "http", "https", "invalid", "example", "xn--",
];

fn grammar() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![prop::sample::select(PIECES).prop_map(String::from), "[a-zA-Z0-9]{1,6}"],
        0..16,
    )
    .prop_map(|pieces| pieces.concat())
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), grammar()]
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    text(),
                    prop::sample::select(&["v", "id", "op", "tool", "args", "$bytes"][..])
                        .prop_map(String::from)
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Hosts under `.invalid` only, spelt in the ways a URL may spell them,
/// and a few addresses (which the list refuses before any connection).
fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("example.invalid".to_owned()),
        Just("EXAMPLE.INVALID.".to_owned()),
        "[a-z0-9-]{1,8}".prop_map(|l| format!("{l}.example.invalid")),
        "[a-zé]{1,4}".prop_map(|l| format!("{l}.example.invalid")),
        "[a-z0-9]{1,8}".prop_map(|l| format!("{l}.invalid")),
        "[a-z]{1,4}:[a-z]{0,4}".prop_map(|u| format!("{u}@example.invalid")),
        Just("127.0.0.1".to_owned()),
        Just("[::1]".to_owned()),
        Just("169.254.169.254".to_owned()),
    ]
}

fn url() -> impl Strategy<Value = String> {
    let scheme = prop::sample::select(&["http", "https", "HTTP", "ftp", "file", "data", "javascript"][..]);
    let port = prop_oneof![
        3 => Just(String::new()),
        2 => any::<u16>().prop_map(|p| format!(":{p}")),
        1 => grammar().prop_map(|p| format!(":{p}")),
    ];
    prop_oneof![
        4 => (scheme, host(), port, grammar()).prop_map(|(s, h, p, path)| format!("{s}://{h}{p}/{path}")),
        1 => text(),
    ]
}

/// Arguments of the `http` tool's shape, with random contents.
fn http_args() -> impl Strategy<Value = Value> {
    let method = prop_oneof![
        3 => prop::sample::select(&["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"][..])
            .prop_map(String::from),
        1 => text(),
    ];
    let header_name = prop_oneof![
        prop::sample::select(
            &[
                "Authorization",
                "Cookie",
                "Host",
                "HOST",
                "Content-Length",
                "Transfer-Encoding",
                "X-A",
                "Proxy-Authorization",
                "TE"
            ][..]
        )
        .prop_map(String::from),
        text(),
    ];
    let headers = prop::collection::btree_map(header_name, text(), 0..2);
    let body = prop_oneof![
        4 => Just(None),
        1 => text().prop_map(|t| Some(Value::String(t))),
        1 => text().prop_map(|t| Some(json!({"$bytes": t}))),
        1 => "[A-Za-z0-9+/]{0,12}={0,2}".prop_map(|t| Some(json!({"$bytes": t}))),
        1 => json_value().prop_map(Some),
    ];
    (proptest::option::of(method), url(), headers, body).prop_map(|(method, url, headers, body)| {
        let mut args = json!({"url": url, "headers": headers});
        if let Some(method) = method {
            args["method"] = json!(method);
        }
        if let Some(body) = body {
            args["body"] = body;
        }
        args
    })
}

/// A toolbox with an echo tool and the `http` tool for `.invalid` names.
fn toolbox() -> Toolbox {
    let mut tools =
        Toolbox::with_limits(ToolLimits { max_calls: 8, max_request: 4096, max_response: 1 << 16 });
    tools.add(Tool::new("echo", "Echoes its arguments.", json!({}), Ok)).unwrap();
    let domains = ["example.invalid".parse().unwrap(), "*.example.invalid".parse().unwrap()];
    tools.add(http_tool(&domains)).unwrap();
    tools
}

/// The answer frame to `frame`, running the call if there is one.
fn answer(tools: &Toolbox, frame: &[u8], made: u32) -> Value {
    let bytes = match tools.request(frame, made) {
        Request::Answer(bytes, _) => bytes,
        Request::Call(call) => call.run().0,
    };
    let answer: Value = serde_json::from_slice(&bytes).expect("an answer is JSON");
    assert_eq!(answer["v"], 1, "{answer}");
    assert!(answer["ok"].is_boolean(), "{answer}");
    answer
}

/// Whether the URL's host is one the `http` tool's list allows: only such
/// a URL may get as far as a lookup (which fails).
fn under_the_list(url: &str) -> bool {
    url::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_owned)).is_some_and(|h| {
        let h = h.trim_end_matches('.');
        h == "example.invalid" || h.ends_with(".example.invalid")
    })
}

fn frame() -> impl Strategy<Value = Vec<u8>> {
    let structured = (
        prop_oneof![Just(json!(1)), json_value()],
        json_value(),
        prop_oneof![Just(json!("list")), Just(json!("call")), json_value()],
        prop_oneof![Just(json!("echo")), Just(json!("http")), json_value()],
        prop_oneof![json_value(), http_args()],
    )
        .prop_map(|(v, id, op, tool, args)| {
            serde_json::to_vec(&json!({"v": v, "id": id, "op": op, "tool": tool, "args": args})).unwrap()
        });
    prop_oneof![
        3 => structured,
        1 => any::<Vec<u8>>(),
        1 => text().prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn request_frames_are_answered_without_panicking(frame in frame(), made in 0u32..10) {
        let tools = toolbox();
        let answer = answer(&tools, &frame, made);
        if serde_json::from_slice::<Value>(&frame).map_or(true, |v| !v.is_object()) {
            prop_assert!(answer["error"]["kind"] == "protocol" || answer["error"]["kind"] == "too_large", "{answer}");
        }
        if answer["ok"] == true {
            prop_assert!(answer.get("tools").is_some() || answer.get("value").is_some(), "{answer}");
        }
    }

    #[test]
    fn tools_with_random_names_and_schemas_are_added_or_refused(
        name in text(),
        schema in json_value(),
        args in json_value(),
    ) {
        let mut tools = Toolbox::default();
        if tools.add(Tool::new(name.clone(), "", schema, Ok)).is_ok() {
            let frame = serde_json::to_vec(&json!({"v": 1, "id": 1, "op": "call", "tool": name, "args": args})).unwrap();
            answer(&tools, &frame, 0);
        }
    }

    #[test]
    fn random_domain_entries_parse_or_are_refused_and_a_parsed_one_reads_back_as_itself(entry in text()) {
        use mimobox_core::grants::DomainPattern;
        if let Ok(pattern) = DomainPattern::parse(&entry) {
            prop_assert_eq!(DomainPattern::parse(&pattern.to_string()), Ok(pattern.clone()));
            let tool = http_tool(std::slice::from_ref(&pattern));
            prop_assert!(tool.description().contains(&pattern.to_string()));
        }
    }

    #[test]
    fn addresses_are_classified_without_panicking(
        v4 in any::<[u8; 4]>(),
        prefix in prop::sample::select(&[
            [0u16, 0], [0, 0xffff], [0x64, 0xff9b], [0x2001, 0], [0x2001, 0xdb8], [0x2002, 0x0a00],
            [0x2002, 0x0808], [0xfe80, 0], [0xfc00, 0], [0xff02, 0], [0x2a00, 0x1450], [0x3fff, 0],
        ][..]),
        rest in any::<[u16; 6]>(),
        random in any::<[u16; 8]>(),
    ) {
        let v4 = Ipv4Addr::from(v4);
        let public = is_public(IpAddr::V4(v4));
        prop_assert_eq!(is_public(IpAddr::V6(v4.to_ipv6_mapped())), public, "mapped {}", v4);
        let [a, b, c, d] = v4.octets();
        let nat64 = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
        prop_assert_eq!(is_public(IpAddr::V6(nat64)), public, "NAT64 {}", v4);
        if v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified() {
            prop_assert!(!public, "{}", v4);
        }
        for segments in [[prefix[0], prefix[1], rest[0], rest[1], rest[2], rest[3], rest[4], rest[5]], random] {
            let v6 = Ipv6Addr::from(segments);
            if is_public(IpAddr::V6(v6)) {
                prop_assert!(!v6.is_loopback() && !v6.is_unspecified() && !v6.is_multicast(), "{}", v6);
                let global_unicast = segments[0] & 0xe000 == 0x2000;
                prop_assert!(global_unicast || v6.to_ipv4_mapped().is_some() || segments[..2] == [0x64, 0xff9b], "{}", v6);
            }
        }
    }
}

proptest! {
    // Each case that gets as far as a lookup of an `.invalid` name waits
    // for the resolver to say no: a modest count keeps this quick.
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn http_arguments_are_decoded_without_panicking_or_connecting(args in http_args()) {
        let tools = toolbox();
        let url = args["url"].as_str().unwrap_or_default().to_owned();
        let frame = serde_json::to_vec(&json!({"v": 1, "id": 1, "op": "call", "tool": "http", "args": args})).unwrap();
        let answer = answer(&tools, &frame, 0);
        prop_assert_eq!(&answer["ok"], false, "nothing answers: {}", answer);
        let kind = answer["error"]["kind"].as_str().unwrap_or_default();
        if under_the_list(&url) {
            prop_assert!(["denied", "invalid_arguments", "tool_error", "too_large"].contains(&kind), "{answer}");
        } else {
            // Refused before any lookup or connection.
            prop_assert!(["denied", "invalid_arguments", "too_large"].contains(&kind), "{answer}");
        }
    }
}

#[test]
fn fixed_http_arguments_are_refused_before_a_connection() {
    let tools = toolbox();
    for args in [
        json!({"url": "http://aéxample.com/"}),
        json!({"url": "http://127.0.0.1/"}),
        json!({"url": "http://[::ffff:0:127.0.0.1]/"}),
        json!({"url": "http://user:pw@example.invalid/"}),
        json!({"url": "gopher://example.invalid/"}),
        json!({"url": "http://example.invalid/", "headers": {"host": "x"}}),
        json!({"url": "http://example.invalid/", "body": {"$bytes": "!!"}}),
        json!({"url": "http://example.invalid/", "method": "GET POST"}),
        json!({"url": ""}),
    ] {
        let frame = serde_json::to_vec(&json!({"v": 1, "id": 1, "op": "call", "tool": "http", "args": args}))
            .unwrap();
        let answer = answer(&tools, &frame, 0);
        let kind = answer["error"]["kind"].as_str().unwrap_or_default();
        assert!(["denied", "invalid_arguments"].contains(&kind), "{args}: {answer}");
    }
    // A name on the list gets as far as its lookup, which fails.
    let frame = br#"{"v":1,"id":1,"op":"call","tool":"http","args":{"url":"http://a.example.invalid/"}}"#;
    assert_eq!(answer(&tools, frame, 0)["error"]["kind"], "tool_error");
}
