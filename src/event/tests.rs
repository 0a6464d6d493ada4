//! Parsing and validating events: the shared data's bad and good events,
//! each field's rules, errors of the whole document.

use super::*;
use serde_json::{json, Value};
use std::path::PathBuf;

fn data_file(name: &str) -> Option<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(name);
    match std::fs::read_to_string(&path) {
        Ok(s) => Some(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("skipping: {} not found", path.display());
            None
        }
        Err(e) => panic!("reading {}: {e}", path.display()),
    }
}

pub(super) const GOOD: &str = r#"{"id":"1818e811-892f-402b-923f-0824128b2f33","action":"workflow.job.approve","actor":{"id":"e8e25d94","type":"user","name":"bob"},"target":{"id":"1600a35a","type":"workflow","name":"workflow-444"},"payload":{"build_num":54810,"branch":"main"},"occurred_at":"2026-06-01T00:00:00.000000Z","metadata":{"ip":"10.113.23.68","attempt":2},"version":1,"scope":{"id":"org-01","type":"account","name":"Org 01"},"success":true,"request":{"id":"4ef8aa38"}}"#;

/// GOOD with one top-level field replaced (or removed if `value` is None).
pub(super) fn with(field: &str, value: Option<&str>) -> String {
    let mut map: serde_json::Map<String, Value> = serde_json::from_str(GOOD).unwrap();
    match value {
        Some(v) => {
            map.insert(field.to_string(), serde_json::from_str(v).unwrap());
        }
        None => {
            map.remove(field);
        }
    }
    Value::Object(map).to_string()
}

fn reject(text: &str) -> EventError {
    match Event::from_json(text) {
        Ok(e) => panic!("accepted {text}: {e:?}"),
        Err(e) => e,
    }
}

/// Normalises an input event's Value to what `to_json` must print.
fn expected_output(line: &str) -> Value {
    let mut v: Value = serde_json::from_str(line).unwrap();
    let obj = v.as_object_mut().unwrap();
    obj.retain(|_, v| !v.is_null());
    let at = obj["occurred_at"].as_str().unwrap();
    let at = Timestamp::parse_rfc3339(at).unwrap().to_rfc3339();
    obj.insert("occurred_at".into(), Value::String(at));
    let id = obj["id"].as_str().unwrap().to_ascii_lowercase();
    obj.insert("id".into(), Value::String(id));
    obj.entry("payload").or_insert_with(|| json!({}));
    obj.entry("metadata").or_insert_with(|| json!({}));
    obj.entry("version").or_insert_with(|| json!(1));
    v
}

#[test]
fn bad_events_are_rejected_naming_the_field() {
    let (Some(lines), Some(expected)) = (data_file("bad-events.jsonl"), data_file("bad-events.expected"))
    else {
        return;
    };
    let lines: Vec<&str> = lines.lines().collect();
    let mut checked = 0;
    for row in expected
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (n, reason) = row.split_once('\t').unwrap();
        let n: usize = n.trim().parse().unwrap();
        let line = lines[n - 1];
        if reason.contains("no organization") {
            // Organization is the ingest layer's rule (--org or scope.id):
            // the event itself is valid, it just has no scope.
            let ev = Event::from_json(line).unwrap();
            assert_eq!(ev.scope_id(), None);
            checked += 1;
            continue;
        }
        let err = reject(line);
        let msg = &err.message;
        let (needle, field): (String, Option<String>) = if reason.contains("malformed JSON") {
            ("malformed JSON at column".into(), None)
        } else if reason.contains("not a JSON object") {
            ("not a JSON object (got array)".into(), None)
        } else if reason.contains("larger than 256 KiB") {
            (format!("larger than the {MAX_EVENT_JSON_BYTES}-byte limit"), None)
        } else if let Some(f) = reason.strip_prefix("missing field ") {
            (format!("field `{f}`: missing"), Some(f.into()))
        } else if let Some(f) = reason.strip_prefix("unknown field ") {
            (format!("unknown field `{f}`"), Some(f.into()))
        } else if reason.contains("unsupported version") {
            (
                "field `version`: unsupported version 2".into(),
                Some("version".into()),
            )
        } else if let Some(rest) = reason.strip_prefix("invalid ") {
            let f = rest.split_whitespace().next().unwrap();
            (format!("field `{f}`: "), Some(f.into()))
        } else {
            let f = reason.split_whitespace().next().unwrap();
            (format!("field `{f}`: "), Some(f.into()))
        };
        assert!(
            msg.contains(&needle),
            "line {n} ({reason}): got {msg:?}, want {needle:?}"
        );
        assert_eq!(err.field, field, "line {n} ({reason}): {msg}");
        assert_eq!(err.to_string(), *msg);
        checked += 1;
    }
    assert_eq!(checked, lines.len(), "every bad line has an expected reason");
}

#[test]
fn bad_event_messages() {
    let Some(lines) = data_file("bad-events.jsonl") else {
        return;
    };
    let msgs: Vec<String> = lines
        .lines()
        .map(|l| Event::from_json(l).err().map(|e| e.message).unwrap_or_default())
        .collect();
    assert_eq!(msgs[0], "malformed JSON at column 57: EOF while parsing a value");
    assert_eq!(msgs[1], "field `id`: missing");
    assert_eq!(msgs[5], "field `actor`: missing");
    assert_eq!(msgs[6], "field `actor.id`: missing");
    assert_eq!(
        msgs[8],
        "field `occurred_at`: missing time zone offset in \"2026-06-01T00:00:00\""
    );
    assert_eq!(msgs[9], "field `success`: must be a boolean, got string");
    assert_eq!(
        msgs[10],
        "field `version`: unsupported version 2 (only 1 is supported)"
    );
    assert_eq!(msgs[11], "unknown field `extra_field`");
    assert_eq!(msgs[12], "field `payload`: must be an object, got array");
    assert_eq!(
        msgs[13],
        "event is 300579 bytes, larger than the 262144-byte limit"
    );
    assert_eq!(msgs[15], "not a JSON object (got array)");
    assert_eq!(msgs[16], "field `request.id`: missing");
    assert_eq!(msgs[17], "field `target`: must be an object, got null");
}

#[test]
fn sample_events_round_trip() {
    let Some(text) = data_file("sample-events.jsonl") else {
        return;
    };
    let mut n = 0;
    let mut by_id: std::collections::HashMap<Uuid, Event> = Default::default();
    for (i, line) in text.lines().enumerate() {
        let ev = Event::from_json(line).unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
        let out = ev.to_json();
        let printed: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(printed, expected_output(line), "line {}", i + 1);
        assert_eq!(Event::from_json(&out).unwrap(), ev, "line {}", i + 1);
        assert_eq!(Event::from_json_bytes(line.as_bytes()).unwrap(), ev);
        // serde paths agree with the hand-written ones.
        assert_eq!(serde_json::to_string(&ev).unwrap(), out);
        assert_eq!(serde_json::from_str::<Event>(line).unwrap(), ev);
        assert!(ev.scope_id().is_some_and(|s| s.starts_with("org-")));
        if let Some(first) = by_id.get(&ev.id()) {
            assert!(first.same_content(&ev), "re-sent duplicate {}", ev.id());
        }
        by_id.insert(ev.id(), ev);
        n += 1;
    }
    assert_eq!(n, 2000);
    assert!(by_id.len() < n, "the sample has duplicates");
}

#[test]
fn accessors_and_output_shape() {
    let ev = Event::from_json(GOOD).unwrap();
    assert_eq!(ev.id().to_string(), "1818e811-892f-402b-923f-0824128b2f33");
    assert_eq!(ev.action(), "workflow.job.approve");
    assert_eq!(ev.actor_json(), r#"{"id":"e8e25d94","type":"user","name":"bob"}"#);
    assert_eq!(ev.actor_id(), "e8e25d94");
    assert_eq!(ev.target_id(), "1600a35a");
    assert_eq!(ev.scope_id().as_deref(), Some("org-01"));
    assert_eq!(ev.request_json(), Some(r#"{"id":"4ef8aa38"}"#));
    assert_eq!(ev.version(), 1);
    assert!(ev.success());
    assert_eq!(ev.occurred_at().to_rfc3339(), "2026-06-01T00:00:00Z");
    assert_eq!(
        ev.to_json(),
        GOOD.replace("00:00:00.000000Z", "00:00:00Z"),
        "fields print in spec order"
    );
    let mut out = String::from("[");
    ev.write_json(&mut out);
    assert!(out.starts_with("[{\"id\""));
}

#[test]
fn optional_fields_default_and_null_means_absent() {
    let minimal = r#"{"id":"1818E811-892F-402B-923F-0824128B2F33","action":"a","actor":{"id":"x","type":"user"},"target":{"id":"y","type":"t"},"occurred_at":"2026-06-01T02:00:00+02:00","success":false}"#;
    let ev = Event::from_json(minimal).unwrap();
    assert_eq!(
        ev.to_json(),
        r#"{"id":"1818e811-892f-402b-923f-0824128b2f33","action":"a","actor":{"id":"x","type":"user"},"target":{"id":"y","type":"t"},"payload":{},"occurred_at":"2026-06-01T00:00:00Z","metadata":{},"version":1,"success":false}"#
    );
    assert_eq!(ev.scope_id(), None);
    let nulls = minimal.replace(
        "\"success\":false",
        r#""success":false,"payload":null,"metadata":null,"version":null,"scope":null,"request":null"#,
    );
    assert_eq!(Event::from_json(&nulls).unwrap(), ev);
    // Explicit defaults give the same event.
    let explicit = minimal.replace(
        "\"success\":false",
        r#""success":false,"payload":{},"metadata":{ },"version":1"#,
    );
    assert_eq!(Event::from_json(&explicit).unwrap(), ev);
    // Optional `name` may be null; other members are kept.
    let extra = GOOD.replace(r#""name":"bob""#, r#""name":null,"email":"x@y""#);
    let ev = Event::from_json(&extra).unwrap();
    assert_eq!(
        ev.actor_json(),
        r#"{"id":"e8e25d94","type":"user","name":null,"email":"x@y"}"#
    );
    assert_eq!(ev.actor_id(), "e8e25d94");
}

#[test]
fn field_rules() {
    let cases: &[(&str, Option<&str>, &str)] = &[
        ("id", Some("12"), "field `id`: must be a string, got number"),
        ("id", Some("null"), "field `id`: must be a string, got null"),
        (
            "id",
            Some(r#""1818e811892f402b923f0824128b2f33""#),
            "field `id`: not a hyphenated UUID",
        ),
        (
            "id",
            Some(r#""{1818e811-892f-402b-923f-0824128b2f33}""#),
            "field `id`: not a hyphenated UUID",
        ),
        (
            "id",
            Some(r#""1818e811-892f-402b-923f-0824128b2f3g""#),
            "field `id`: not a hyphenated UUID",
        ),
        ("action", None, "field `action`: missing"),
        ("action", Some(r#""""#), "field `action`: must not be empty"),
        (
            "action",
            Some(r#""Context.create""#),
            "field `action`: invalid character 'C'",
        ),
        (
            "action",
            Some(r#""context create""#),
            "field `action`: invalid character ' '",
        ),
        (
            "action",
            Some(r#""1context""#),
            "field `action`: must start with a letter",
        ),
        (
            "action",
            Some(r#""_context""#),
            "field `action`: must start with a letter",
        ),
        ("action", Some(r#""context.""#), "field `action`: empty segment"),
        (
            "action",
            Some(r#""context..create""#),
            "field `action`: empty segment",
        ),
        (
            "action",
            Some(r#"".context""#),
            "field `action`: must start with a letter",
        ),
        (
            "action",
            Some(r#""contéxt""#),
            "field `action`: invalid character 'é'",
        ),
        (
            "action",
            Some("true"),
            "field `action`: must be a string, got boolean",
        ),
        ("actor", Some("[]"), "field `actor`: must be an object, got array"),
        ("actor", Some(r#"{"id":"x"}"#), "field `actor.type`: missing"),
        (
            "actor",
            Some(r#"{"id":1,"type":"user"}"#),
            "field `actor.id`: must be a string, got number",
        ),
        (
            "actor",
            Some(r#"{"id":null,"type":"user"}"#),
            "field `actor.id`: must be a string, got null",
        ),
        (
            "actor",
            Some(r#"{"id":"x","type":"user","name":5}"#),
            "field `actor.name`: must be a string, got number",
        ),
        ("target", None, "field `target`: missing"),
        ("target", Some(r#"{"type":"t"}"#), "field `target.id`: missing"),
        (
            "target",
            Some(r#""x""#),
            "field `target`: must be an object, got string",
        ),
        (
            "payload",
            Some("3"),
            "field `payload`: must be an object, got number",
        ),
        (
            "metadata",
            Some(r#""m""#),
            "field `metadata`: must be an object, got string",
        ),
        ("occurred_at", None, "field `occurred_at`: missing"),
        (
            "occurred_at",
            Some("1780000000"),
            "field `occurred_at`: must be a string, got number",
        ),
        (
            "occurred_at",
            Some(r#""2026-02-29T00:00:00Z""#),
            "field `occurred_at`: invalid date",
        ),
        (
            "occurred_at",
            Some(r#""2026-06-01T00:00:60Z""#),
            "field `occurred_at`: leap second",
        ),
        (
            "version",
            Some("0"),
            "field `version`: unsupported version 0 (only 1 is supported)",
        ),
        ("version", Some("-1"), "field `version`: unsupported version -1"),
        (
            "version",
            Some("1.0"),
            "field `version`: must be an integer, got 1.0",
        ),
        (
            "version",
            Some(r#""1""#),
            "field `version`: must be an integer, got string",
        ),
        ("scope", Some(r#"{"id":"org"}"#), "field `scope.type`: missing"),
        (
            "scope",
            Some(r#"{"type":"account"}"#),
            "field `scope.id`: missing",
        ),
        (
            "scope",
            Some("[1]"),
            "field `scope`: must be an object, got array",
        ),
        ("success", None, "field `success`: missing"),
        (
            "success",
            Some("null"),
            "field `success`: must be a boolean, got null",
        ),
        (
            "success",
            Some("1"),
            "field `success`: must be a boolean, got number",
        ),
        (
            "request",
            Some(r#"{"id":7}"#),
            "field `request.id`: must be a string, got number",
        ),
        (
            "request",
            Some("true"),
            "field `request`: must be an object, got boolean",
        ),
    ];
    for (field, value, want) in cases {
        let text = with(field, *value);
        let err = reject(&text);
        assert!(
            err.message.starts_with(want),
            "{field}={value:?}: got {:?}, want {want:?}",
            err.message
        );
        assert!(err.field.is_some());
    }
    let huge = GOOD.replace("\"version\":1", "\"version\":123456789012345678901234567890");
    assert_eq!(
        reject(&huge).message,
        "field `version`: unsupported version 123456789012345678901234567890 (only 1 is supported)"
    );
    let long = format!("\"a{}\"", "b".repeat(MAX_ACTION_LEN - 1));
    assert!(Event::from_json(&with("action", Some(&long))).is_ok());
    let too_long = format!("\"a{}\"", "b".repeat(MAX_ACTION_LEN));
    assert!(reject(&with("action", Some(&too_long))).message.contains("limit"));
    for ok in [
        "a",
        "a.b",
        "checkout-key.create",
        "context.env_var.store",
        "a1.2-_",
    ] {
        let ev = Event::from_json(&with("action", Some(&format!("\"{ok}\"")))).unwrap();
        assert_eq!(ev.action(), ok);
    }
    // Any UUID version, including nil.
    let nil = with("id", Some(r#""00000000-0000-0000-0000-000000000000""#));
    assert_eq!(Event::from_json(&nil).unwrap().id(), Uuid::nil());
}

#[test]
fn escaped_strings_are_decoded() {
    let text = GOOD
        .replace("\"1818e811-892f", "\"\\u0031818e811-892f")
        .replace("\"workflow.job.approve\"", "\"workflow\\u002ejob.approve\"")
        .replace("\"occurred_at\"", "\"occurred\\u005fat\"")
        .replace(r#""id":"org-01""#, r#""id":"org\u002d01""#);
    let ev = Event::from_json(&text).unwrap();
    assert_eq!(
        ev,
        Event::from_json(GOOD)
            .unwrap()
            .clone_with_scope(r#"{"id":"org\u002d01","type":"account","name":"Org 01"}"#)
    );
    assert_eq!(ev.action(), "workflow.job.approve");
    assert_eq!(ev.scope_id().as_deref(), Some("org-01"));
    assert!(ev.same_content(&Event::from_json(GOOD).unwrap()));
    // A bad escape in an id is malformed JSON.
    let bad = GOOD.replace("\"1818e811-892f", "\"\\x1818e811-892f");
    assert!(reject(&bad).message.starts_with("malformed JSON"));
    // Action with an escaped disallowed character.
    let bad = GOOD.replace("\"workflow.job.approve\"", "\"workflow\\njob\"");
    assert!(reject(&bad)
        .message
        .starts_with("field `action`: invalid character '\\n'"));
}

impl Event {
    pub(super) fn clone_with_scope(&self, scope: &str) -> Event {
        Event::from_parts(EventParts {
            scope: Some(scope),
            ..self.parts()
        })
    }

    pub(super) fn parts(&self) -> EventParts<'_> {
        EventParts {
            id: self.id(),
            action: self.action(),
            actor: self.actor_json(),
            target: self.target_json(),
            payload: self.payload_json(),
            occurred_at: self.occurred_at(),
            metadata: self.metadata_json(),
            version: self.version(),
            scope: self.scope_json(),
            success: self.success(),
            request: self.request_json(),
        }
    }
}

#[test]
fn whole_document_errors() {
    assert_eq!(reject("").message, "malformed JSON: empty input");
    assert_eq!(reject("  \n").message, "malformed JSON: empty input");
    assert_eq!(reject("[1]").message, "not a JSON object (got array)");
    assert_eq!(reject("null").message, "not a JSON object (got null)");
    assert_eq!(reject("\"x\"").message, "not a JSON object (got string)");
    assert_eq!(reject("12").message, "not a JSON object (got number)");
    assert!(reject("nope").message.starts_with("malformed JSON at column 2: "));
    assert_eq!(
        reject(r#"{"id": "00000000-0000-4000-8000-000000000001", "#).message,
        "malformed JSON at column 47: EOF while parsing a value"
    );
    assert!(reject("{\n\"id\": x}")
        .message
        .starts_with("malformed JSON at line 2 column 7: expected value"));
    assert!(reject(&format!("{GOOD} x"))
        .message
        .starts_with("malformed JSON at column"));
    assert!(reject(&format!("{GOOD}{{}}"))
        .message
        .starts_with("malformed JSON at column"));
    // Surrounding whitespace (e.g. CRLF line ends) is fine.
    assert!(Event::from_json(&format!(" {GOOD}\r\n")).is_ok());
    let err = Event::from_json_bytes(b"{\"id\": \"\xff\"}").unwrap_err();
    assert_eq!(err.message, "invalid UTF-8 at byte 8: event JSON must be UTF-8");
    assert_eq!(err.field, None);
    // Size limit is checked before parsing (even for garbage).
    let big = "x".repeat(MAX_EVENT_JSON_BYTES + 1);
    assert_eq!(
        reject(&big).message,
        "event is 262145 bytes, larger than the 262144-byte limit"
    );
    assert!(Event::from_json_bytes(big.as_bytes())
        .unwrap_err()
        .message
        .contains("limit"));
    // Exactly at the limit is accepted.
    let pad = MAX_EVENT_JSON_BYTES - GOOD.len() - r#","metadata":{"p":""}"#.len()
        + r#","metadata":{"ip":"10.113.23.68","attempt":2}"#.len();
    let at_limit = with("metadata", Some(&format!(r#"{{"p":"{}"}}"#, "x".repeat(pad))));
    assert_eq!(at_limit.len(), MAX_EVENT_JSON_BYTES);
    assert!(Event::from_json(&at_limit).is_ok());
}

#[test]
fn unknown_and_duplicate_keys() {
    let extra = GOOD.replace("\"success\"", "\"Success\":1,\"success\"");
    let err = reject(&extra);
    assert_eq!(err.message, "unknown field `Success`");
    assert_eq!(err.field.as_deref(), Some("Success"));
    let weird = GOOD.replace("\"success\"", "\"a`\\nb\":1,\"success\"");
    assert_eq!(reject(&weird).message, "unknown field `a`\\nb`");
    let dup = GOOD.replace("\"success\":true", "\"success\":true,\"success\":false");
    let err = reject(&dup);
    assert_eq!(err.message, "field `success`: appears more than once");
    assert_eq!(err.field.as_deref(), Some("success"));
    let dup_null = GOOD.replace("\"success\":true", "\"success\":true,\"scope\":null");
    assert_eq!(reject(&dup_null).message, "field `scope`: appears more than once");
    let dup_nested =
        with("actor", None).replace("\"action\"", r#""actor":{"id":"a","id":"b","type":"u"},"action""#);
    assert_eq!(
        reject(&dup_nested).message,
        "field `actor.id`: appears more than once"
    );
    // Syntax errors win over unknown fields.
    let broken = GOOD.replace("\"success\"", "\"zzz\":1,\"success\"");
    let broken = &broken[..broken.len() - 1];
    assert!(reject(broken).message.starts_with("malformed JSON"));
}

#[test]
fn compact_form_keeps_strings_and_numbers() {
    let payload = "{ \"a b\" : \"x \\\" \\\\ y\\n\" ,\n\t\"n\":  12345.678e-7 , \"big\" : -9007199254740992 , \"arr\" : [ 1 , { } , [ ] , \"\\u00e9 \" ] , \"é\":\"ü \"}";
    let text = with("payload", Some("{}")).replace("\"payload\":{}", &format!("\"payload\":{payload}"));
    let ev = Event::from_json(&text).unwrap();
    assert_eq!(
        ev.payload_json(),
        "{\"a b\":\"x \\\" \\\\ y\\n\",\"n\":12345.678e-7,\"big\":-9007199254740992,\"arr\":[1,{},[],\"\\u00e9 \"],\"é\":\"ü \"}"
    );
    assert!(ev.to_json().contains("-9007199254740992"));
    assert!(ev.to_json().contains("12345.678e-7"));
    // Digits a double cannot hold are kept as sent (RFC 8785, and so
    // the leaf hash, reads them as the nearest double).
    for n in [
        "123456789012345678901234567890.5e-7",
        "-98765432109876543210987654321",
        "1152921504606846976",
    ] {
        let text =
            with("payload", Some("{}")).replace("\"payload\":{}", &format!("\"payload\":{{\"n\":{n}}}"));
        let kept = Event::from_json(&text).unwrap();
        assert!(kept.to_json().contains(&format!("\"n\":{n}}}")), "{n}");
    }
    let v: Value = serde_json::from_str(&ev.to_json()).unwrap();
    assert_eq!(v["payload"]["a b"], "x \" \\ y\n");
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = "[".repeat(100_000);
    assert!(reject(&deep).message.starts_with("malformed JSON"));
    let deep_obj = "{\"a\":".repeat(50_000);
    assert!(reject(&deep_obj).message.starts_with("malformed JSON"));
    let text = with("payload", Some("{}")).replace("\"payload\":{}", &format!("\"payload\":{{\"x\":{deep}"));
    assert!(reject(&text).message.starts_with("malformed JSON"));
    let unknown = GOOD.replace("\"success\"", &format!("\"zz\":{deep}"));
    assert!(reject(&unknown).message.starts_with("malformed JSON"));
    // Well-formed but too deep: rejected, naming the field.
    let n = 10_000;
    let nested = format!("{{\"x\":{}{}}}", "[".repeat(n), "]".repeat(n));
    let text = with("metadata", Some("{}")).replace("\"metadata\":{}", &format!("\"metadata\":{nested}"));
    assert_eq!(
        reject(&text).message,
        format!("field `metadata`: nested deeper than {MAX_NESTING_DEPTH} levels")
    );
    // At the limit: accepted, and the printed event is readable by serde_json.
    let n = MAX_NESTING_DEPTH - 1;
    let nested = format!("{{\"x\":{}{}}}", "[".repeat(n), "]".repeat(n));
    let text = with("payload", Some("{}")).replace("\"payload\":{}", &format!("\"payload\":{nested}"));
    let ev = Event::from_json(&text).unwrap();
    let v: Value = serde_json::from_str(&ev.to_json()).unwrap();
    assert!(v["payload"]["x"].is_array());
    assert!(ev.same_content(&ev.clone()));
    let other = Event::from_json(&text.replace("[]", "[1]")).unwrap();
    assert!(!ev.same_content(&other));
}
