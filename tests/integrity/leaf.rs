//! Leaf data: RFC 8785 of `{"org", "event"}`, checked byte for byte on the
//! RFC's own examples carried in an event's payload and metadata.

use auditstore::integrity::{event_leaf_hash, leaf_data, leaf_hash};
use auditstore::Event;
use sha2::{Digest, Sha256};

fn event(payload: &str, metadata: &str) -> Event {
    let text = format!(
        r#"{{"id":"8d5f2a3e-0b1c-4d2e-9f30-112233445566","action":"context.create",
        "actor":{{"type":"user","id":"u1","name":"ann"}},"target":{{"id":"c1","type":"context"}},
        "payload":{payload},"occurred_at":"2026-06-01T12:00:00.5+02:00","metadata":{metadata},
        "success":true}}"#
    );
    Event::from_json(&text).expect("test event parses")
}

/// The RFC 8785 §3.2.2 example (numbers, string escapes, literals), with
/// its first number as the double it stands for: appends refuse
/// `333333333.33333329`, whose digits JCS would change (docs/format.md).
const RFC_EXAMPLE: &str = r#"{
  "numbers": [333333333.3333333, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"#;
const RFC_EXAMPLE_JCS: &str = r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#;

/// The RFC 8785 §3.2.3 sorting example: UTF-16 code unit order puts the
/// emoji (U+1F600, surrogates D83D DE00) before U+FB33, unlike UTF-8 order.
const RFC_SORTING: &str = r#"{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}"#;
const RFC_SORTING_JCS: &str = concat!(
    "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",",
    "\"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",",
    "\"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}"
);

#[test]
fn leaf_data_is_the_rfc_8785_form_byte_for_byte() {
    let e = event(RFC_EXAMPLE, RFC_SORTING);
    let got = String::from_utf8(leaf_data("org-01", &e).expect("leaf")).expect("UTF-8");
    // Keys sorted at every level ("event" < "org"; inside the event,
    // "action" < "actor" < ... < "version"); occurred_at as `get` prints it.
    let want = format!(
        concat!(
            r#"{{"event":{{"action":"context.create","actor":{{"id":"u1","name":"ann","type":"user"}},"#,
            r#""id":"8d5f2a3e-0b1c-4d2e-9f30-112233445566","metadata":{sorting},"#,
            r#""occurred_at":"2026-06-01T10:00:00.500Z","payload":{example},"success":true,"#,
            r#""target":{{"id":"c1","type":"context"}},"version":1}},"org":"org-01"}}"#
        ),
        sorting = RFC_SORTING_JCS,
        example = RFC_EXAMPLE_JCS
    );
    assert_eq!(got, want);
}

#[test]
fn the_leaf_hash_is_sha256_of_0x00_and_the_leaf_data() {
    let e = event("{}", "{}");
    let data = leaf_data("org-01", &e).expect("leaf");
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(&data);
    let want: [u8; 32] = h.finalize().into();
    assert_eq!(event_leaf_hash("org-01", &e).expect("hash"), want);
    assert_eq!(leaf_hash(&data), want);
    assert_ne!(
        event_leaf_hash("org-02", &e).expect("hash"),
        want,
        "the organization is hashed"
    );
}

#[test]
fn spelling_of_the_same_json_does_not_change_the_leaf() {
    let a = event(r#"{"b":1.0,"a":[1e2, "x"]}"#, r#"{"k":"\u0041"}"#);
    let b = event(r#"{"a":[100,"x"],"b":1}"#, r#"{"k":"A"}"#);
    assert_eq!(leaf_data("o", &a).expect("a"), leaf_data("o", &b).expect("b"));
    let c = event(r#"{"a":[100,"x"],"b":2}"#, r#"{"k":"A"}"#);
    assert_ne!(leaf_data("o", &a).expect("a"), leaf_data("o", &c).expect("c"));
}

#[test]
fn numbers_are_written_as_ecmascript_does() {
    let e = event(
        r#"{"big":12345678901234567000,"neg":-0,"small":1e-7,"int":1e21,"frac":0.1}"#,
        "{}",
    );
    let text = String::from_utf8(leaf_data("o", &e).expect("leaf")).expect("UTF-8");
    assert!(
        text.contains(
            r#""payload":{"big":12345678901234567000,"frac":0.1,"int":1e+21,"neg":0,"small":1e-7}"#
        ),
        "{text}"
    );
}

#[test]
fn org_strings_are_escaped_per_rfc_8785() {
    let e = event("{}", "{}");
    let text = String::from_utf8(leaf_data("a\"b\\c\u{1}é", &e).expect("leaf")).expect("UTF-8");
    assert!(text.ends_with("\"org\":\"a\\\"b\\\\c\\u0001é\"}"), "{text}");
}

/// JCS has no form for an object with a repeated key, so it has no leaf:
/// the event parser refuses such events (any nested object), and
/// `leaf_data` would too.
#[test]
fn a_repeated_key_is_refused_by_the_event_parser() {
    for payload in [r#"{"a":1,"a":2}"#, r#"{"x":{"a":1,"\u0061":1}}"#] {
        let err = Event::from_json(&event_text(payload)).expect_err(payload);
        assert!(err.to_string().contains("payload"), "{err}");
    }
}

/// Digits a double cannot hold are kept as sent, and the leaf covers the
/// number as RFC 8785 writes it: the nearest double. So two events that
/// differ only in such digits have the same leaf (docs/format.md).
#[test]
fn numbers_beyond_double_precision_are_hashed_as_the_nearest_double() {
    let exact = Event::from_json(&event_text(r#"{"big":12345678901234567000}"#)).expect("exact");
    let long = Event::from_json(&event_text(r#"{"big":12345678901234567890}"#)).expect("kept");
    assert!(long.to_json().contains("12345678901234567890"));
    let data = String::from_utf8(leaf_data("o", &long).expect("leaf")).expect("UTF-8");
    assert!(data.contains(r#""big":12345678901234567000"#), "{data}");
    assert_eq!(
        leaf_data("o", &long).expect("leaf"),
        leaf_data("o", &exact).expect("leaf")
    );
}

/// A number beyond the double range has no JCS form either; the event
/// parser already refuses it, so no stored event can reach `leaf_data` so.
#[test]
fn numbers_beyond_the_double_range_never_reach_the_leaf() {
    assert!(Event::from_json(&event_text(r#"{"huge":1e400}"#)).is_err());
    assert!(Event::from_json(&event_text(r#"{"fine":1e300}"#)).is_ok());
}

fn event_text(payload: &str) -> String {
    format!(
        r#"{{"id":"8d5f2a3e-0b1c-4d2e-9f30-112233445566","action":"a","actor":{{"id":"u","type":"user"}},
        "target":{{"id":"t","type":"x"}},"payload":{payload},"occurred_at":"2026-06-01T12:00:00Z","success":true}}"#
    )
}

mod fast_path {
    //! The fast path (`integrity::canon`, straight from the texts) gives
    //! the general path's leaf data byte for byte whenever it answers, and
    //! answers for ordinary events.
    use auditstore::integrity::leaf::{fast_leaf_data, leaf_data_of_json, LeafParts};
    use auditstore::Event;
    use proptest::prelude::*;

    fn both(org: &str, e: &Event) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
        let mut fast = Vec::new();
        let fast = fast_leaf_data(&LeafParts::of_event(org, e), &mut fast)
            .ok()
            .map(|()| fast);
        let slow = leaf_data_of_json(org, e, &e.to_json()).ok();
        (fast, slow)
    }

    #[test]
    fn every_sample_event_takes_the_fast_path_to_the_same_bytes() {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/sample-events.jsonl"),
        )
        .unwrap();
        let mut n = 0;
        for line in text.lines() {
            let Ok(e) = Event::from_json(line) else { continue };
            let (fast, slow) = both("org-01", &e);
            assert!(fast.is_some(), "{line}");
            assert_eq!(fast, slow, "{line}");
            n += 1;
        }
        assert!(n > 1000);
    }

    /// JSON text of arbitrary values: keys in any order (some repeated,
    /// some non-ASCII or escaped), numbers in many spellings, white space.
    fn json_text() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            "[a-e]{1,2}",
            Just("\u{e9}".to_owned()),
            Just("\u{1F600}".to_owned()),
            Just("\u{E000}".to_owned()),
            Just("\\u0061".to_owned()),
            Just("q\\\"".to_owned()),
        ];
        let leaf = prop_oneof![
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just("false".to_owned()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            (-1e20f64..1e20).prop_map(|f| format!("{f}")),
            (-1e20f64..1e20).prop_map(|f| format!("{f:e}")),
            Just("-0".to_owned()),
            Just("1.50".to_owned()),
            Just("1E+2".to_owned()),
            Just("123456789012345".to_owned()),
            Just("1234567890123456".to_owned()),
            "[ -~]{0,8}".prop_map(|s| serde_json::to_string(&s).unwrap()),
            Just("\"tab\\t nl\\n \\u00e9 \\ud83d\\ude00 \\/\"".to_owned()),
            Just("\"\u{7f}\u{2028}\u{e9}\"".to_owned()),
        ];
        leaf.prop_recursive(4, 32, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(|v| format!("[{}]", v.join(" , "))),
                prop::collection::vec((key.clone(), inner), 0..5).prop_map(|m| {
                    let members: Vec<String> = m.into_iter().map(|(k, v)| format!("\"{k}\" :{v}")).collect();
                    format!("{{ {} }}", members.join(","))
                }),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        #[test]
        fn the_fast_path_agrees_with_the_general_one(payload in json_text(), metadata in json_text()) {
            // Payload and metadata must be objects.
            let text = format!(
                r#"{{"id":"8d5f2a3e-0b1c-4d2e-9f30-112233445566","action":"a.b","actor":{{"id":"u","type":"user"}},
                "target":{{"type":"t","id":"x"}},"payload":{{"p":{payload}}},"occurred_at":"2026-06-01T12:00:00.123Z",
                "metadata":{{"m":{metadata},"z":1}},"success":false,"scope":{{"id":"o","type":"org"}}}}"#
            );
            let Ok(e) = Event::from_json(&text) else { return Ok(()) };
            let (fast, slow) = both("org-\u{e9}", &e);
            if let Some(fast) = &fast {
                prop_assert_eq!(Some(fast), slow.as_ref(), "{}", text);
            }
            if slow.is_some() {
                // An event with a leaf takes the fast path.
                prop_assert!(fast.is_some(), "{}", text);
            }
        }
    }
}
