//! The fast path's one-sided contract: what it accepts, the reference
//! parser accepts to the same event.

//! The fast path against the reference parser, on generated hostile
//! events: `parse` may only accept what the reference accepts, with the
//! same result, and must accept every valid event without a backslash.

use proptest::prelude::*;

use super::super::{blob_id_reference, Event};

fn pick(items: &'static [&'static str]) -> BoxedStrategy<String> {
    prop::sample::select(items).prop_map(str::to_string).boxed()
}

/// Whitespace between tokens (mostly none).
fn ws() -> BoxedStrategy<String> {
    prop_oneof![
        40 => pick(&["", "", "", "", " ", "\n", "\t", "\r\n  "]),
        1 => pick(&[" \u{b} ", "\u{a0}", "\u{c}"]),
    ]
    .boxed()
}

/// The inside of a string literal: plain text, escapes good and bad,
/// surrogates paired and lone, raw control characters, non-ASCII.
fn string_body() -> BoxedStrategy<String> {
    let piece = pick(&[
        "a",
        "id",
        "type",
        "name",
        "org-01",
        " ",
        "é",
        "😀",
        "\\\"",
        "\\\\",
        "\\/",
        "\\b",
        "\\f",
        "\\n",
        "\\r",
        "\\t",
        "\\u0041",
        "\\u00e9",
        "\\u0000",
        "\\u001f",
        "\\uD83D\\uDE00",
        "\\ud83d\\ude00",
        "\\uD83D",
        "\\uDE00",
        "\\uD83Dx",
        "\\uD83D\\u0041",
        "\\uD83D\\uD83D",
        "\\uDBFF\\uDFFF",
        "\\u12",
        "\\u12G4",
        "\\x",
        "\\a",
        "\\U0041",
        "\\'",
        "\\0",
        "\\",
        "\\u{41}",
        "\u{1}",
        "\t",
        "\u{1f}",
        "\u{7f}",
        "'",
        "`",
        "\\u0069\\u0064",
    ]);
    prop::collection::vec(piece, 0..4)
        .prop_map(|v| v.concat())
        .boxed()
}

fn string() -> BoxedStrategy<String> {
    string_body().prop_map(|s| format!("\"{s}\"")).boxed()
}

fn number() -> BoxedStrategy<String> {
    prop_oneof![
        8 => pick(NUMBERS),
        1 => (1usize..420, any::<bool>()).prop_map(|(n, neg)| format!("{}{}", if neg { "-" } else { "" }, "9".repeat(n))),
    ]
    .boxed()
}

const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "2",
    "10",
    "01",
    "-01",
    "1.",
    ".5",
    "-",
    "+1",
    "1e",
    "1e+",
    "1.5",
    "-1.5e-3",
    "1E+2",
    "1e400",
    "-1e400",
    "1e308",
    "1.7976931348623157e308",
    "1.8e308",
    "2.5e-400",
    "1e-400",
    "123456789012345678901234567890",
    "-98765432109876543210987654321",
    "123456789012345",
    "1234567890123456",
    "0.000000000000000000001",
    "1.0",
    "NaN",
    "Infinity",
    "0x10",
    "1_000",
    "-",
    "-a",
    "1.e5",
    "1e5.5",
    "00",
    "0e0",
    "0E-0",
    "-0.0e+00",
];

fn leaf() -> BoxedStrategy<String> {
    prop_oneof![
        3 => string(),
        3 => number(),
        1 => pick(&["1e400", "-1e400", "1.8e308", "-2e308", "1e-400", "1.7976931348623157e308", "4.9e-324"]),
        1 => pick(&["null", "true", "false", "nul", "True", "nulll", "tru", "falsey"]),
    ]
    .boxed()
}

/// Renders `[a,b]` / `{k:v}` with whitespace, and sometimes a syntax slip.
fn container(items: Vec<(String, String, String, String)>, object: bool, slip: u8) -> String {
    let (open, close) = if object { ('{', '}') } else { ('[', ']') };
    let mut s = String::from(open);
    for (n, (key, w1, w2, value)) in items.iter().enumerate() {
        if n > 0 {
            s.push(if slip == 1 { ';' } else { ',' });
        }
        s.push_str(w1);
        if object {
            s.push_str(key);
            s.push_str(w2);
            s.push(if slip == 2 { '=' } else { ':' });
            s.push_str(w1);
        }
        s.push_str(value);
        s.push_str(w2);
    }
    if slip == 3 && !items.is_empty() {
        s.push(',');
    }
    if slip != 4 {
        s.push(close);
    }
    s
}

fn key() -> BoxedStrategy<String> {
    prop_oneof![
        12 => pick(&["\"id\"", "\"type\"", "\"name\"", "\"x\"", "\"\"", "\"i\\u0064\"", "\"ID\"", "\"id \""]),
        4 => string(),
        1 => pick(&["id", "1", "null"]),
    ]
    .boxed()
}

/// Any JSON-ish value, nested a few levels.
fn value() -> BoxedStrategy<String> {
    leaf()
        .prop_recursive(5, 48, 6, |inner| {
            let member = (key(), ws(), ws(), inner);
            (prop::collection::vec(member, 0..6), any::<bool>(), 0u8..25)
                .prop_map(|(items, object, slip)| container(items, object, slip))
        })
        .boxed()
}

/// Deep nesting around the depth limit.
fn deep() -> BoxedStrategy<String> {
    (90usize..=103, any::<bool>(), any::<bool>())
        .prop_map(|(n, arrays, balanced)| {
            let (open, close) = if arrays { ("[", "]") } else { ("{\"a\":", "}") };
            let inner = if arrays { "1" } else { "2" };
            let closes = if balanced { n } else { n - 1 };
            format!("{{\"x\":{}{inner}{}}}", open.repeat(n), close.repeat(closes))
        })
        .boxed()
}

/// An actor/target/scope/request-like object: `id`, `type`, `name` and
/// other members, in any order, maybe repeated, maybe of the wrong type.
fn party() -> BoxedStrategy<String> {
    let member = prop_oneof![
        4 => (Just("\"id\"".to_string()), prop_oneof![4 => string(), 1 => value()].boxed()),
        3 => (Just("\"type\"".to_string()), prop_oneof![4 => string(), 1 => value()].boxed()),
        2 => (Just("\"name\"".to_string()), prop_oneof![3 => string(), 1 => Just("null".to_string()), 1 => value()].boxed()),
        3 => (key(), value()),
    ];
    (prop::collection::vec((member, ws(), ws()), 0..5), 0u8..40)
        .prop_map(|(members, slip)| {
            let items = members
                .into_iter()
                .map(|((k, v), w1, w2)| (k, w1, w2, v))
                .collect();
            container(items, true, slip)
        })
        .boxed()
}

fn nested() -> BoxedStrategy<String> {
    prop_oneof![6 => party(), 2 => value(), 1 => deep(), 1 => Just("null".to_string())].boxed()
}

const UUIDS: &[&str] = &[
    "\"1818e811-892f-402b-923f-0824128b2f33\"",
    "\"1818E811-892F-402B-923F-0824128B2F33\"",
    "\"00000000-0000-0000-0000-000000000000\"",
    "\"\\u0031818e811-892f-402b-923f-0824128b2f33\"",
    "\"1818e811892f402b923f0824128b2f33\"",
    "\"{1818e811-892f-402b-923f-0824128b2f33}\"",
    "\"1818e811-892f-402b-923f-0824128b2f3g\"",
    "\"1818e811-892f-402b-923f-0824128b2f3\"",
    "12",
    "null",
];

/// One top-level member: a known field with a mostly plausible value,
/// or something else.
fn member() -> BoxedStrategy<(String, String)> {
    let k = |name: &'static str| Just(format!("\"{name}\""));
    prop_oneof![
        3 => (k("id"), pick(UUIDS)),
        3 => (k("action"), prop_oneof![
            4 => pick(&["\"a\"", "\"user.logged_in\"", "\"workflow.job.approve\"", "\"a1.2-_\"", "\"\"",
                "\"Context.create\"", "\"1a\"", "\"_a\"", "\".a\"", "\"a.\"", "\"a..b\"", "\"contéxt\"",
                "\"workflow\\u002ejob\"", "\"a\\nb\"", "true"]),
            1 => (1usize..140).prop_map(|n| format!("\"a{}\"", "b".repeat(n - 1))),
        ].boxed()),
        3 => (k("actor"), nested()),
        3 => (k("target"), nested()),
        2 => (k("payload"), nested()),
        3 => (k("occurred_at"), pick(&["\"2026-06-01T00:00:00Z\"", "\"2026-06-01T02:00:00.123+02:00\"",
            "\"2026-06-01T00:00:00\"", "\"2026-02-29T00:00:00Z\"", "\"2026-06-01T00:00:60Z\"",
            "\"2026-06-01T00:00:00.0000000001Z\"", "1780000000", "\"2026-06-01T00:00:00\\u005a\""])),
        2 => (k("metadata"), nested()),
        2 => (k("version"), pick(&["1", "null", "0", "-1", "1.0", "1e0", "10", "01", "\"1\"", "2",
            "123456789012345678901234567890", "true"])),
        2 => (k("scope"), nested()),
        3 => (k("success"), pick(&["true", "false", "null", "1", "\"true\"", "tru", "truee"])),
        2 => (k("request"), nested()),
        1 => (pick(&["\"occurred\\u005fat\"", "\"Success\"", "\"extra\"", "\"a`\\nb\"", "\"\""]), value()),
    ]
    .boxed()
}

/// A whole event: the required fields (valid), then generated members,
/// whitespace, maybe a byte-level mutation.
fn event() -> BoxedStrategy<String> {
    let base = Just(vec![
        ("\"id\"", "\"1818e811-892f-402b-923f-0824128b2f33\""),
        ("\"action\"", "\"user.logged_in\""),
        ("\"actor\"", "{\"id\":\"u1\",\"type\":\"user\",\"name\":\"bob\"}"),
        ("\"target\"", "{\"id\":\"p1\",\"type\":\"project\"}"),
        ("\"occurred_at\"", "\"2026-06-01T00:00:00Z\""),
        ("\"success\"", "true"),
        ("\"scope\"", "{\"id\":\"org-01\",\"type\":\"account\"}"),
    ]);
    let extra = prop::collection::vec(member(), 0..4);
    let mutation = (0u8..24, any::<prop::sample::Index>(), any::<u8>());
    let drop = (0u8..10, any::<prop::sample::Index>());
    (base, extra, ws(), ws(), 0u8..8, drop, mutation)
        .prop_map(|(base, extra, w1, w2, repeat, (drop, which), (kind, at, byte))| {
            let mut members: Vec<(String, String)> = base
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            if drop == 0 {
                members.remove(which.index(members.len()));
            }
            for (k, v) in extra {
                // Mostly replace the field (one value each), sometimes repeat it.
                match members.iter_mut().find(|(mk, _)| *mk == k) {
                    Some(slot) if repeat != 0 => slot.1 = v,
                    _ => members.push((k, v)),
                }
            }
            let items = members
                .into_iter()
                .map(|(k, v)| (k, w1.clone(), w2.clone(), v))
                .collect();
            let text = format!("{w1}{}{w2}", container(items, true, 0));
            let mut bytes = text.into_bytes();
            let i = at.index(bytes.len() + 1);
            match kind {
                0 => bytes.truncate(i),
                1 if i < bytes.len() => {
                    bytes.remove(i);
                }
                2 => bytes.insert(i, byte),
                3 if i < bytes.len() => bytes[i] = byte,
                _ => {}
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
        .boxed()
}

fn check(text: &str) -> Result<(), TestCaseError> {
    let reference = Event::from_json_reference(text);
    let fast = super::parse(text);
    if let Some(event) = &fast {
        prop_assert_eq!(&reference, &Ok(event.clone()), "fast path accepted {:?}", text);
        // The scope id the parser remembered, and the fast blob reader.
        prop_assert_eq!(event.scope_id(), event.scope_json().map(blob_id_reference));
        prop_assert_eq!(event.actor_id(), blob_id_reference(event.actor_json()));
        prop_assert_eq!(event.target_id(), blob_id_reference(event.target_json()));
    }
    if reference.is_ok() && !text.contains('\\') {
        prop_assert!(
            fast.is_some(),
            "fast path refused a plain valid event: {:?}",
            text
        );
    }
    prop_assert_eq!(Event::from_json(text), reference);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn fast_path_agrees_with_reference(text in event()) {
        check(&text)?;
    }

    /// One generated value in an otherwise valid event, so that it alone
    /// decides.
    #[test]
    fn nested_values_agree_with_reference(v in value(), party in party(), w in ws(), at in 0u8..6) {
        let user = "{\"id\":\"u\",\"type\":\"user\"}".to_string();
        let (payload, actor, scope) = match at {
            0 => (format!("{{\"v\":{w}{v}}}"), user, "null".to_string()),
            1 => (v, user, "null".to_string()),
            2 => (format!("{{\"a\":[{v},{w}{v}]}}"), party, "null".to_string()),
            3 => ("{}".to_string(), party, "null".to_string()),
            4 => ("{}".to_string(), user, party),
            // Without whitespace (the scope id is then remembered by position).
            _ => ("{}".to_string(), user, party.replace([' ', '\n', '\t', '\r'], "")),
        };
        let text = format!(
            "{{\"id\":\"1818e811-892f-402b-923f-0824128b2f33\",\"action\":\"a\",\"actor\":{actor},\
             \"target\":{{\"id\":\"t\",\"type\":\"t\"}},\"payload\":{payload},\
             \"occurred_at\":\"2026-06-01T00:00:00Z\",\"success\":true,\"scope\":{scope}}}"
        );
        check(&text)?;
    }

    #[test]
    fn blob_id_agrees_with_reference(blob in nested(), lead in ws()) {
        let blob = format!("{lead}{blob}");
        if let Some(id) = super::blob_id(&blob) {
            prop_assert_eq!(id, blob_id_reference(&blob));
        }
    }
}

/// Hand-picked edge cases, each in an otherwise valid event, through the
/// same check as the generated ones.
#[test]
fn tricky_inputs_agree_with_reference() {
    let valid = r#"{"id":"1818e811-892f-402b-923f-0824128b2f33","action":"a","actor":{"id":"u","type":"user"},"target":{"id":"t","type":"t"},"payload":PAYLOAD,"occurred_at":"2026-06-01T00:00:00Z","success":true}"#;
    let deep = |n: usize| format!("{{\"x\":{}1{}}}", "[".repeat(n - 1), "]".repeat(n - 1));
    let payloads = [
        "{}",
        "{ }",
        "{\"a\":[1;2]}",
        "{\"a\":[1,]}",
        "{\"a\":1,}",
        "{\"a\" 1}",
        "{\"a\":1 \"b\":2}",
        "{,}",
        "{\"a\":[,1]}",
        "{\"a\":01}",
        "{\"a\":-01}",
        "{\"a\":1.}",
        "{\"a\":.5}",
        "{\"a\":-}",
        "{\"a\":+1}",
        "{\"a\":1e}",
        "{\"a\":1e+}",
        "{\"a\":1E+2}",
        "{\"a\":-0.0e-0}",
        "{\"a\":1e400}",
        "{\"a\":-1e400}",
        "{\"a\":1e-400}",
        "{\"a\":1.7976931348623157e308}",
        "{\"a\":1.8e308}",
        "{\"a\":\"\\a\"}",
        "{\"a\":\"\\u12\"}",
        "{\"a\":\"\\uD800\"}",
        "{\"a\":\"\\uDC00\"}",
        "{\"a\":\"\\uD800\\uDC00\"}",
        "{\"a\":\"\\uD800\\u0041\"}",
        "{\"\\uD800\":1}",
        "{\"a\":\"\u{1}\"}",
        "{\"a\":\"\t\"}",
        "{\"a\":\"\u{7f}\"}",
        "{\"a\":tru}",
        "{\"a\":nul}",
        "{\"a\":truex}",
        "{\"a\":[true,false,null]}",
        "{\"a\":{\"a\":1,\"a\":2}}",
        "{\"a\"\u{b}:1}",
        "{\"a\":1}x",
        "{\"a\":1}}",
        "{\"a\":[1]]}",
        "{\"a\":{]}",
        "{\"a\":[}",
        "null",
        "[]",
        "1",
    ];
    let mut cases: Vec<String> = payloads.iter().map(|p| valid.replace("PAYLOAD", p)).collect();
    for n in [99, 100, 101, 102] {
        cases.push(valid.replace("PAYLOAD", &deep(n)));
    }
    let good = valid.replace("PAYLOAD", "{}");
    for (from, to) in [
        ("true}", "true} "),
        ("true}", "true}x"),
        ("true}", "true},"),
        ("true}", "true,}"),
        ("true}", "true"),
        ("true}", "true}}"),
        ("{\"id\"", " \r\n{\"id\""),
        ("{\"id\"", "\u{feff}{\"id\""),
        (r#""type":"user""#, r#""type":"user","type":"x""#),
        (r#""type":"user""#, r#""type":"user","name":null"#),
        (r#""type":"user""#, r#""type":"user","name":1"#),
        (r#""type":"user""#, r#""type":"user","i\u0064":"v""#),
        (r#""type":"t""#, r#""type":null"#),
        (r#""success":true"#, r#""success":true,"version":1"#),
        (r#""success":true"#, r#""success":true,"version":10"#),
        (r#""success":true"#, r#""success":true,"version":null"#),
        (r#""success":true"#, r#""success":true,"scope":null"#),
        (
            r#""success":true"#,
            r#""success":true,"scope":{"id":"\u0041","type":"x"}"#,
        ),
        (
            r#""success":true"#,
            r#""success":true,"scope":{"type":"x", "id":"a\"b"}"#,
        ),
        (
            r#""success":true"#,
            r#""success":true,"scope":{"type":"x","id":"org-1"}"#,
        ),
        (
            r#""success":true"#,
            r#""success":true,"scope":{ "id":"org-1","type":"x"}"#,
        ),
        (r#""success":true"#, r#""success":true,"scope":null,"scope":null"#),
        (
            r#""success":true"#,
            r#""success":true,"request":{"id":"r","type":[]}"#,
        ),
        (
            r#""success":true"#,
            r#""success":true,"request":{"id":"r","id":"s"}"#,
        ),
        (r#""success":true"#, r#""success":true,"request":{"type":"r"}"#),
        (r#""success":true"#, r#""success":truex"#),
        (r#""action":"a""#, r#""action":"ab""#),
        (r#""action":"a""#, "\"action\":\"a\u{1}\""),
    ] {
        assert!(good.contains(from), "{from}");
        cases.push(good.replacen(from, to, 1));
    }
    for text in &cases {
        check(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    }
}

/// The parse_event fuzz corpus and the shared sample files, line by line.
#[test]
fn corpus_and_samples_agree_with_reference() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut texts = Vec::new();
    if let Ok(dir) = std::fs::read_dir(root.join("fuzz/corpus/parse_event")) {
        for entry in dir.flatten() {
            let bytes = std::fs::read(entry.path()).unwrap();
            texts.push(String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    for name in ["sample-events.jsonl", "bad-events.jsonl"] {
        if let Ok(text) = std::fs::read_to_string(root.join("../shared/data").join(name)) {
            texts.extend(text.lines().map(str::to_string));
        }
    }
    let mut fast = 0;
    for text in &texts {
        check(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        fast += usize::from(super::parse(text).is_some());
    }
    assert!(
        texts.len() < 50 || fast > 0,
        "the fast path took none of {} inputs",
        texts.len()
    );
}

#[test]
fn fast_path_takes_the_usual_events() {
    let good = r#"{"id":"1818e811-892f-402b-923f-0824128b2f33","action":"a","actor":{"id":"x","type":"user","name":null},"target":{"id":"y\u00e9","type":"t","extra":[1,{"id":3}]},"payload":{ "a b" : "x \" y" , "n": [1e5, -0.5, {}] },"occurred_at":"2026-06-01T02:00:00+02:00","metadata":null,"version":1,"scope":null,"success":false,"request":{"id":"r","type":5}}"#;
    let event = super::parse(good).expect("fast path");
    assert_eq!(Ok(event.clone()), Event::from_json_reference(good));
    assert_eq!(event.payload_json(), r#"{"a b":"x \" y","n":[1e5,-0.5,{}]}"#);
    assert_eq!(
        super::blob_id(event.target_json()),
        None,
        "escaped id: left to serde_json"
    );
    assert_eq!(event.target_id(), "yé");
    assert_eq!(super::blob_id(event.actor_json()), Some("x"));
}
