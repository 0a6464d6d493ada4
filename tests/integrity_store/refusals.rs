//! Events with no canonical (RFC 8785) form are refused at append: a
//! repeated key in one object. Numbers a double cannot hold exactly are
//! kept as sent; their leaf covers the nearest double.

use super::*;

fn with_payload(payload: &str) -> Result<Event, auditstore::EventError> {
    Event::from_json(&format!(
        r#"{{"id":"5f0c7d8e-1b2a-4c3d-9e8f-001122334455","action":"user.logged_in",
        "actor":{{"id":"u1","type":"user"}},"target":{{"id":"u1","type":"user"}},
        "occurred_at":"2026-06-01T10:00:00Z","success":true,"payload":{payload}}}"#
    ))
}

#[test]
fn a_repeated_key_in_any_nested_object_is_refused_naming_the_key() {
    for payload in [
        r#"{"a":1,"a":2}"#,
        r#"{"a":1, "b": {"k":true,"k":true}}"#,
        r#"{"list":[{"z":1,"y":2,"z":3}]}"#,
        r#"{"a":1,"\u0061":2}"#,
    ] {
        let err = with_payload(payload).expect_err(payload);
        let text = err.to_string();
        assert!(
            text.contains("payload")
                && (text.contains("repeated key") || text.contains("appears more than once")),
            "{payload}: {text}"
        );
        assert_eq!(auditstore::Error::from(err).code(), "invalid_event");
    }
    for payload in [
        r#"{"a":{"a":1}}"#,
        r#"[{"a":1},{"a":2}]"#,
        r#"{"a":1,"A":2,"a ":3}"#,
    ] {
        let payload = format!(r#"{{"p":{payload}}}"#);
        with_payload(&payload).unwrap_or_else(|e| panic!("{payload}: {e}"));
    }
}

#[test]
fn numbers_a_double_cannot_hold_exactly_are_kept_and_hashed() {
    for n in [
        "12345678901234567890",
        "9007199254740993",
        "1152921504606846976",
        "0.10000000000000000000001",
        "1e-400",
    ] {
        let e = with_payload(&format!(r#"{{"n":{n}}}"#)).unwrap_or_else(|e| panic!("{n}: {e}"));
        assert!(e.to_json().contains(&format!(r#""n":{n}}}"#)), "{n}");
        assert!(auditstore::integrity::event_leaf_hash("org-01", &e).is_ok());
    }
    for n in [
        "0",
        "-0",
        "1.5",
        "0.1",
        "1e3",
        "1E+21",
        "123456789012345",
        "9007199254740992",
        "-2.5e-7",
        "1.7976931348623157e308",
    ] {
        let e = with_payload(&format!(r#"{{"n":{n}}}"#)).unwrap_or_else(|e| panic!("{n}: {e}"));
        assert!(auditstore::integrity::event_leaf_hash("org-01", &e).is_ok());
    }
    assert!(with_payload(r#"{"n":1e400}"#)
        .unwrap_err()
        .to_string()
        .contains("out of range"));
}
