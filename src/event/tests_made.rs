//! Events made in code, compared and (de)serialized: the builder against
//! the parser, content equality, verbatim parts, serde.

use super::*;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::collections::BTreeMap;

use super::tests::{with, GOOD};

#[test]
fn builder_matches_from_json() {
    let id: Uuid = "1818e811-892f-402b-923f-0824128b2f33".parse().unwrap();
    let at = Timestamp::parse_rfc3339("2026-06-01T00:00:00Z").unwrap();
    let built = Event::builder(id, "workflow.job.approve", at, true)
        .actor("e8e25d94", "user", Some("bob"))
        .target("1600a35a", "workflow", Some("workflow-444"))
        .payload(json!({"build_num": 54810, "branch": "main"}))
        .metadata(json!({"ip": "10.113.23.68", "attempt": 2}))
        .scope("org-01", "account", Some("Org 01"))
        .request("4ef8aa38")
        .build()
        .unwrap();
    let parsed = Event::from_json(GOOD).unwrap();
    assert!(built.same_content(&parsed));
    // With the keys in serde_json's (sorted) order, the bytes agree too.
    let sorted = GOOD
        .replace(
            r#"{"build_num":54810,"branch":"main"}"#,
            r#"{"branch":"main","build_num":54810}"#,
        )
        .replace(
            r#"{"ip":"10.113.23.68","attempt":2}"#,
            r#"{"attempt":2,"ip":"10.113.23.68"}"#,
        );
    assert_eq!(built, Event::from_json(&sorted).unwrap());

    let minimal = Event::builder(id, "a", at, false)
        .actor("x", "user", None)
        .target("y\"q", "t", None)
        .build()
        .unwrap();
    assert_eq!(minimal.payload_json(), "{}");
    assert_eq!(minimal.target_id(), "y\"q");
    assert_eq!(minimal.scope_json(), None);

    // Validation is the same as from_json.
    let b = || {
        Event::builder(id, "a", at, true)
            .actor("x", "u", None)
            .target("y", "t", None)
    };
    assert_eq!(
        b().payload(json!([1])).build().unwrap_err().message,
        "field `payload`: must be an object, got array"
    );
    assert_eq!(b().metadata(json!(null)).build().unwrap().metadata_json(), "{}");
    assert_eq!(
        Event::builder(id, "Bad Action", at, true)
            .actor("x", "u", None)
            .target("y", "t", None)
            .build()
            .unwrap_err()
            .field
            .as_deref(),
        Some("action")
    );
    assert_eq!(
        Event::builder(id, "a", at, true)
            .target("y", "t", None)
            .build()
            .unwrap_err()
            .message,
        "field `actor`: missing"
    );
    let huge = "x".repeat(MAX_EVENT_JSON_BYTES);
    assert!(b()
        .payload(json!({ "h": huge }))
        .build()
        .unwrap_err()
        .message
        .contains("limit"));
}

#[test]
fn same_content_ignores_order_and_format_only() {
    let a = Event::from_json(GOOD).unwrap();
    let reordered = GOOD
        .replace(
            r#"{"build_num":54810,"branch":"main"}"#,
            r#"{ "branch" : "m\u0061in", "build_num": 54810 }"#,
        )
        .replace(
            r#"{"id":"e8e25d94","type":"user","name":"bob"}"#,
            r#"{"name":"bob","type":"user","id":"e8e25d94"}"#,
        )
        .replace("\"success\":true", "\"success\":true ");
    let b = Event::from_json(&reordered).unwrap();
    assert_ne!(a, b, "stored bytes differ");
    assert!(a.same_content(&b) && b.same_content(&a));

    let differs = |from: &str, to: &str| {
        assert!(GOOD.contains(from), "{from}");
        let other = Event::from_json(&GOOD.replace(from, to)).unwrap();
        assert!(!a.same_content(&other), "{from} -> {to}");
        assert!(!other.same_content(&a), "{from} -> {to}");
    };
    differs("54810", "54811");
    differs("54810", "54810.0");
    differs("\"attempt\":2", "\"attempt\":\"2\"");
    differs("\"attempt\":2", "\"attempt\":2,\"x\":null");
    differs("\"name\":\"bob\"", "\"name\":\"Bob\"");
    differs("\"success\":true", "\"success\":false");
    differs(
        ",\"scope\":{\"id\":\"org-01\",\"type\":\"account\",\"name\":\"Org 01\"}",
        "",
    );
    differs("00:00:00.000000Z", "00:00:00.000001Z");
    differs(
        "\"action\":\"workflow.job.approve\"",
        "\"action\":\"workflow.job.start\"",
    );
    differs(",\"request\":{\"id\":\"4ef8aa38\"}", "");

    // Exact integers: no float rounding.
    let p = |n: &str| Event::from_json(&GOOD.replace("54810", n)).unwrap();
    assert!(!p("9007199254740992").same_content(&p("9007199254740994")));
    assert!(!p("12345678901234567890123").same_content(&p("12345678901234567890124")));
    assert!(p("1.50").same_content(&p("1.5")));
    assert!(p("1e2").same_content(&p("100.0")));
    assert!(!p("100").same_content(&p("1e2")));
    // Arrays keep their order.
    assert!(!p("[1,2]").same_content(&p("[2,1]")));
    assert!(p("[1, {\"a\":1,\"b\":2}]").same_content(&p("[1,{\"b\":2,\"a\":1}]")));
}

#[test]
fn from_parts_is_verbatim() {
    let ev = Event::from_json(GOOD).unwrap();
    let parts = EventParts {
        id: ev.id(),
        action: ev.action(),
        actor: ev.actor_json(),
        target: ev.target_json(),
        payload: ev.payload_json(),
        occurred_at: ev.occurred_at(),
        metadata: ev.metadata_json(),
        version: ev.version(),
        scope: ev.scope_json(),
        success: ev.success(),
        request: ev.request_json(),
    };
    assert_eq!(Event::from_parts(parts.clone()), ev);
    // Stored garbage never panics the accessors.
    let broken = Event::from_parts(EventParts {
        actor: "not json",
        scope: Some("{\"id\":3}"),
        ..parts
    });
    assert_eq!(broken.actor_id(), "");
    assert_eq!(broken.scope_id().as_deref(), Some(""));
    assert!(!broken.same_content(&ev));
}

/// The texts share one buffer in input order; equality and `Debug` are
/// still those of the fields (as when each was its own `String`).
#[test]
fn equality_and_debug_are_by_field() {
    let ev = Event::from_json(GOOD).unwrap();
    // The same fields (same bytes) in reverse order.
    let raw: BTreeMap<String, &RawValue> = serde_json::from_str(GOOD).unwrap();
    let members: Vec<String> = FIELDS
        .iter()
        .rev()
        .map(|f| format!("\"{f}\":{}", raw[*f].get()))
        .collect();
    let other = Event::from_json(&format!("{{{}}}", members.join(","))).unwrap();
    assert_eq!(other, ev);
    assert_eq!(format!("{other:?}"), format!("{ev:?}"));
    assert_eq!(other.to_json(), ev.to_json());
    assert_ne!(ev, ev.clone_with_scope(r#"{"id":"org-02","type":"account"}"#));
    let mut no_scope = ev.parts();
    no_scope.scope = None;
    let mut empty_scope = ev.parts();
    empty_scope.scope = Some("");
    assert_ne!(Event::from_parts(no_scope), Event::from_parts(empty_scope));

    // `Debug` prints what the derived impl of the old all-fields struct printed.
    mod old {
        #[allow(dead_code)]
        #[derive(Debug)]
        pub struct Event {
            pub id: uuid::Uuid,
            pub action: String,
            pub actor: String,
            pub target: String,
            pub payload: String,
            pub occurred_at: crate::time::Timestamp,
            pub metadata: String,
            pub version: u32,
            pub scope: Option<String>,
            pub success: bool,
            pub request: Option<String>,
        }
    }
    let old = old::Event {
        id: ev.id(),
        action: ev.action().into(),
        actor: ev.actor_json().into(),
        target: ev.target_json().into(),
        payload: ev.payload_json().into(),
        occurred_at: ev.occurred_at(),
        metadata: ev.metadata_json().into(),
        version: ev.version(),
        scope: ev.scope_json().map(Into::into),
        success: ev.success(),
        request: ev.request_json().map(Into::into),
    };
    assert_eq!(format!("{ev:?}"), format!("{old:?}"));
    assert_eq!(format!("{ev:#?}"), format!("{old:#?}"));
}

#[test]
fn serde_impls() {
    let ev = Event::from_json(GOOD).unwrap();
    let wrapped = serde_json::to_string(&vec![&ev]).unwrap();
    assert_eq!(wrapped, format!("[{}]", ev.to_json()));
    let back: Vec<Event> = serde_json::from_str(&wrapped).unwrap();
    assert_eq!(back, vec![ev.clone()]);
    let err = serde_json::from_str::<Event>(&with("version", Some("2"))).unwrap_err();
    assert!(
        err.to_string().contains("field `version`: unsupported version 2"),
        "{err}"
    );
    let from_reader: Event = serde_json::from_reader(GOOD.as_bytes()).unwrap();
    assert_eq!(from_reader, ev);
    let value: Value = serde_json::from_str(GOOD).unwrap();
    // Through a Value, key order is normalised: same content, other bytes.
    assert!(serde_json::from_value::<Event>(value).unwrap().same_content(&ev));
}
