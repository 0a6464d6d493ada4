//! The audit event: validation of the wire JSON (see `shared/spec/events.md`)
//! and its compact stored form.
//!
//! Parsing is built for throughput: the top level is read into borrowed
//! [`RawValue`]s, scalars are decoded straight from their raw text, and nested
//! objects are kept as compact JSON text (whitespace outside strings removed,
//! otherwise byte-for-byte as sent), so numbers keep their exact digits and a
//! stored event is never re-serialised.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write as _;

use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::ser::SerializeStruct;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::time::{quote, Timestamp};

mod fast;

/// Largest accepted JSON text of one event, in bytes.
pub const MAX_EVENT_JSON_BYTES: usize = 256 * 1024;
/// Deepest accepted nesting of arrays and objects inside a nested field
/// (`payload`, `metadata`, ...), counting the field's own object as level 1.
/// Keeps every stored event readable by parsers with a recursion limit
/// (serde_json's default limit is 128 levels for the whole document).
pub const MAX_NESTING_DEPTH: usize = 100;
/// Longest accepted `action`, in characters.
pub const MAX_ACTION_LEN: usize = 128;
/// The only event schema version that exists today.
pub const SUPPORTED_VERSION: u32 = 1;

/// Top-level field names, in spec (and output) order.
const FIELDS: [&str; 11] = [
    "id",
    "action",
    "actor",
    "target",
    "payload",
    "occurred_at",
    "metadata",
    "version",
    "scope",
    "success",
    "request",
];
/// Names longer than this are cut in error messages.
const MAX_NAME_IN_MESSAGE: usize = 64;

/// A validated audit event.
///
/// Nested objects are kept as compact JSON text (whitespace outside strings
/// removed, otherwise byte-for-byte as sent, so numbers keep their exact
/// value and the event is never re-serialised).
///
/// The texts (`action` and the nested objects) share one buffer, in any
/// order, so an event costs one allocation. Equality and `Debug` are those
/// of the fields, as if each text were its own `String`.
#[derive(Clone)]
pub struct Event {
    id: Uuid,
    occurred_at: Timestamp,
    version: u32,
    success: bool,
    has_scope: bool,
    has_request: bool,
    /// The texts, back to back (an absent `scope`/`request` is empty).
    text: String,
    /// Where each text (indexed by `ACTION`..`REQUEST`) lies in `text`.
    spans: [(usize, usize); 7],
    /// Where `scope.id` lies in `text`, when the parser saw it as a string
    /// without escapes (else `scope_id` reads the scope text).
    scope_id: Option<(usize, usize)>,
}

/// Indexes of the texts of an [`Event`] in its `spans`.
const ACTION: usize = 0;
const ACTOR: usize = 1;
const TARGET: usize = 2;
const PAYLOAD: usize = 3;
const METADATA: usize = 4;
const SCOPE: usize = 5;
const REQUEST: usize = 6;

/// Collects the texts of an [`Event`] into one buffer.
struct Texts {
    text: String,
    spans: [(usize, usize); 7],
}

impl Texts {
    fn with_capacity(n: usize) -> Self {
        Texts {
            text: String::with_capacity(n),
            spans: [(0, 0); 7],
        }
    }

    /// Appends the text of `part`.
    fn push(&mut self, part: usize, s: &str) {
        let start = self.text.len();
        self.text.push_str(s);
        self.end(part, start);
    }

    /// Records that the text of `part` is what was appended since `start`.
    fn end(&mut self, part: usize, start: usize) {
        if let Some(span) = self.spans.get_mut(part) {
            *span = (start, self.text.len());
        }
    }
}

impl PartialEq for Event {
    fn eq(&self, other: &Event) -> bool {
        self.id == other.id
            && self.action() == other.action()
            && self.actor_json() == other.actor_json()
            && self.target_json() == other.target_json()
            && self.payload_json() == other.payload_json()
            && self.occurred_at == other.occurred_at
            && self.metadata_json() == other.metadata_json()
            && self.version == other.version
            && self.scope_json() == other.scope_json()
            && self.success == other.success
            && self.request_json() == other.request_json()
    }
}

impl Eq for Event {}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("id", &self.id)
            .field("action", &self.action())
            .field("actor", &self.actor_json())
            .field("target", &self.target_json())
            .field("payload", &self.payload_json())
            .field("occurred_at", &self.occurred_at)
            .field("metadata", &self.metadata_json())
            .field("version", &self.version)
            .field("scope", &self.scope_json())
            .field("success", &self.success)
            .field("request", &self.request_json())
            .finish()
    }
}

/// The parts of an [`Event`], as stored by the record codec. Not validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EventParts<'a> {
    pub(crate) id: Uuid,
    pub(crate) action: &'a str,
    pub(crate) actor: &'a str,
    pub(crate) target: &'a str,
    pub(crate) payload: &'a str,
    pub(crate) occurred_at: Timestamp,
    pub(crate) metadata: &'a str,
    pub(crate) version: u32,
    pub(crate) scope: Option<&'a str>,
    pub(crate) success: bool,
    pub(crate) request: Option<&'a str>,
}

/// The fixed-size fields of a stored event (see [`Event::from_stored_texts`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct StoredHead {
    pub(crate) id: Uuid,
    pub(crate) occurred_at: Timestamp,
    pub(crate) version: u32,
    pub(crate) success: bool,
    pub(crate) has_scope: bool,
    pub(crate) has_request: bool,
}

/// Why an event was rejected. `message` always names the offending field
/// (`field` holds its path, e.g. `actor.id`), except for whole-document
/// problems (malformed JSON, not an object, too large, invalid UTF-8), where
/// `field` is `None`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EventError {
    pub field: Option<String>,
    pub message: String,
}

impl EventError {
    fn at(field: &str, problem: impl fmt::Display) -> Self {
        EventError {
            field: Some(field.to_string()),
            message: format!("field `{field}`: {problem}"),
        }
    }

    fn whole(message: impl Into<String>) -> Self {
        EventError {
            field: None,
            message: message.into(),
        }
    }
}

impl Event {
    /// Parses and validates one JSON object against every rule of the spec.
    pub fn from_json(text: &str) -> Result<Event, EventError> {
        if text.len() > MAX_EVENT_JSON_BYTES {
            return Err(too_large(text.len()));
        }
        // The single-pass parser accepts the valid events it can; everything
        // else (every error among them) goes through the reference parser.
        match fast::parse(text) {
            Some(event) => Ok(event),
            None => Self::from_json_reference(text),
        }
    }

    /// The reference parser: serde_json reads the top level and the party
    /// objects, `compact` the nested objects. Slower than the fast path, and
    /// the source of every error message. Public only so that the fuzz
    /// targets can check [`Event::from_json`] against it (differential).
    #[doc(hidden)]
    pub fn from_json_reference(text: &str) -> Result<Event, EventError> {
        if text.len() > MAX_EVENT_JSON_BYTES {
            return Err(too_large(text.len()));
        }
        match text.bytes().find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
            Some(b'{') => {}
            Some(_) => return Err(not_an_object(text)),
            None => return Err(EventError::whole("malformed JSON: empty input")),
        }
        let top: Top<'_> = serde_json::from_str(text).map_err(|e| malformed(&e))?;
        top.validate()
    }

    /// Like [`Event::from_json`], for bytes that must be UTF-8.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Event, EventError> {
        if bytes.len() > MAX_EVENT_JSON_BYTES {
            return Err(too_large(bytes.len()));
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => Self::from_json(text),
            Err(e) => Err(EventError::whole(format!(
                "invalid UTF-8 at byte {}: event JSON must be UTF-8",
                e.valid_up_to()
            ))),
        }
    }

    /// The spec JSON form (compact, fields in spec order).
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(self.json_len_hint());
        self.write_json(&mut out);
        out
    }

    /// Appends the spec JSON form: `id`, `action`, `actor`, `target`,
    /// `payload`, `occurred_at`, `metadata`, `version`, `scope` (only if
    /// present), `success`, `request` (only if present). Nested objects are
    /// written verbatim.
    pub fn write_json(&self, out: &mut String) {
        out.reserve(self.json_len_hint());
        out.push_str("{\"id\":\"");
        let mut buf = Uuid::encode_buffer();
        out.push_str(self.id.hyphenated().encode_lower(&mut buf));
        out.push_str("\",\"action\":");
        write_json_str(out, self.action());
        out.push_str(",\"actor\":");
        out.push_str(self.actor_json());
        out.push_str(",\"target\":");
        out.push_str(self.target_json());
        out.push_str(",\"payload\":");
        out.push_str(self.payload_json());
        out.push_str(",\"occurred_at\":\"");
        self.occurred_at.write_rfc3339(out);
        out.push_str("\",\"metadata\":");
        out.push_str(self.metadata_json());
        out.push_str(",\"version\":");
        if self.version == 1 {
            out.push('1');
        } else {
            let _ = write!(out, "{}", self.version);
        }
        if let Some(scope) = self.scope_json() {
            out.push_str(",\"scope\":");
            out.push_str(scope);
        }
        out.push_str(if self.success {
            ",\"success\":true"
        } else {
            ",\"success\":false"
        });
        if let Some(request) = self.request_json() {
            out.push_str(",\"request\":");
            out.push_str(request);
        }
        out.push('}');
    }

    fn json_len_hint(&self) -> usize {
        // Absent texts are empty.
        160 + self.text.len()
    }

    pub fn id(&self) -> Uuid {
        self.id
    }
    /// The text `part` (one of `ACTION`..`REQUEST`).
    fn part(&self, part: usize) -> &str {
        self.spans
            .get(part)
            .and_then(|&(start, end)| self.text.get(start..end))
            .unwrap_or_default()
    }

    pub fn action(&self) -> &str {
        self.part(ACTION)
    }
    /// The `actor` object as compact JSON text.
    pub fn actor_json(&self) -> &str {
        self.part(ACTOR)
    }
    /// The `target` object as compact JSON text.
    pub fn target_json(&self) -> &str {
        self.part(TARGET)
    }
    /// The `payload` object as compact JSON text (`{}` if it was absent).
    pub fn payload_json(&self) -> &str {
        self.part(PAYLOAD)
    }
    pub fn occurred_at(&self) -> Timestamp {
        self.occurred_at
    }
    /// The `metadata` object as compact JSON text (`{}` if it was absent).
    pub fn metadata_json(&self) -> &str {
        self.part(METADATA)
    }
    pub fn version(&self) -> u32 {
        self.version
    }
    /// The `scope` object as compact JSON text, if present.
    pub fn scope_json(&self) -> Option<&str> {
        self.has_scope.then(|| self.part(SCOPE))
    }
    pub fn success(&self) -> bool {
        self.success
    }
    /// The `request` object as compact JSON text, if present.
    pub fn request_json(&self) -> Option<&str> {
        self.has_request.then(|| self.part(REQUEST))
    }

    /// `actor.id` (empty only if the stored blob is somehow not valid).
    pub fn actor_id(&self) -> String {
        blob_id(self.actor_json())
    }
    /// `target.id` (empty only if the stored blob is somehow not valid).
    pub fn target_id(&self) -> String {
        blob_id(self.target_json())
    }
    /// `scope.id`, if the event has a scope.
    pub fn scope_id(&self) -> Option<String> {
        let known = self.scope_id.and_then(|(start, end)| self.text.get(start..end));
        match known {
            Some(id) if self.has_scope => Some(id.to_string()),
            _ => self.scope_json().map(blob_id),
        }
    }

    /// Starts building an event in code; [`EventBuilder::build`] validates it
    /// exactly like [`Event::from_json`].
    pub fn builder(id: Uuid, action: &str, occurred_at: Timestamp, success: bool) -> EventBuilder {
        EventBuilder {
            id,
            action: action.to_string(),
            occurred_at,
            success,
            actor: None,
            target: None,
            payload: None,
            metadata: None,
            scope: None,
            request: None,
        }
    }

    /// Builds an event from trusted stored parts, without validation.
    pub(crate) fn from_parts(parts: EventParts<'_>) -> Event {
        let EventParts {
            id,
            action,
            actor,
            target,
            payload,
            occurred_at,
            metadata,
            version,
            scope,
            success,
            request,
        } = parts;
        let len = [
            action,
            actor,
            target,
            payload,
            metadata,
            scope.unwrap_or(""),
            request.unwrap_or(""),
        ]
        .iter()
        .map(|t| t.len())
        .sum();
        let mut texts = Texts::with_capacity(len);
        for (part, t) in [
            (ACTION, action),
            (ACTOR, actor),
            (TARGET, target),
            (PAYLOAD, payload),
        ] {
            texts.push(part, t);
        }
        texts.push(METADATA, metadata);
        texts.push(SCOPE, scope.unwrap_or(""));
        texts.push(REQUEST, request.unwrap_or(""));
        Event::new(
            id,
            occurred_at,
            version,
            success,
            scope.is_some(),
            request.is_some(),
            texts,
        )
    }

    /// Builds an event from a stored record's texts (`action` through
    /// `request`, back to back, as the codec stores them, with an absent
    /// `scope`/`request` empty) and their lengths: one copy, not seven.
    /// Not validated; a `lens` that does not split `text` at character
    /// boundaries gives empty texts, never a panic.
    pub(crate) fn from_stored_texts(head: StoredHead, text: &str, lens: [usize; 7]) -> Event {
        let mut spans = [(0, 0); 7];
        let mut at = 0usize;
        for (span, len) in spans.iter_mut().zip(lens) {
            let end = at.saturating_add(len).min(text.len());
            *span = (at, end);
            at = end;
        }
        Event::new(
            head.id,
            head.occurred_at,
            head.version,
            head.success,
            head.has_scope,
            head.has_request,
            Texts {
                text: text.to_owned(),
                spans,
            },
        )
    }

    /// An event from its (validated or trusted) fields.
    fn new(
        id: Uuid,
        occurred_at: Timestamp,
        version: u32,
        success: bool,
        has_scope: bool,
        has_request: bool,
        texts: Texts,
    ) -> Event {
        Event {
            id,
            occurred_at,
            version,
            success,
            has_scope,
            has_request,
            text: texts.text,
            spans: texts.spans,
            scope_id: None,
        }
    }

    /// Load the event's texts into the cache ahead of use: the store calls
    /// this a few events ahead while encoding a batch, so that events parsed
    /// long before (cold in memory) arrive several at a time, not one miss
    /// after another.
    pub(crate) fn touch(&self) {
        let mut x = 0u8;
        for b in self.text.as_bytes().iter().step_by(64) {
            x ^= *b;
        }
        std::hint::black_box(x);
    }

    /// Whether two events carry the same content, although their nested JSON
    /// may differ in key order, string escapes or formatting. Tells a
    /// re-sent duplicate from a conflicting event with the same `id`.
    ///
    /// Integers compare by their exact digits; other numbers by value.
    pub fn same_content(&self, other: &Event) -> bool {
        self.id == other.id
            && self.action() == other.action()
            && self.occurred_at == other.occurred_at
            && self.version == other.version
            && self.success == other.success
            && json_eq(self.actor_json(), other.actor_json(), 0)
            && json_eq(self.target_json(), other.target_json(), 0)
            && json_eq(self.payload_json(), other.payload_json(), 0)
            && json_eq(self.metadata_json(), other.metadata_json(), 0)
            && match (self.scope_json(), other.scope_json()) {
                (Some(a), Some(b)) => json_eq(a, b, 0),
                (None, None) => true,
                _ => false,
            }
            && match (self.request_json(), other.request_json()) {
                (Some(a), Some(b)) => json_eq(a, b, 0),
                (None, None) => true,
                _ => false,
            }
    }
}

impl serde::Serialize for Event {
    /// Emits the spec JSON shape; nested objects are written verbatim (with
    /// serde_json, through [`RawValue`]).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        fn raw<E: serde::ser::Error>(blob: &str) -> Result<Box<RawValue>, E> {
            RawValue::from_string(blob.to_string()).map_err(E::custom)
        }
        let len = 9 + usize::from(self.has_scope) + usize::from(self.has_request);
        let mut st = serializer.serialize_struct("Event", len)?;
        let mut buf = Uuid::encode_buffer();
        st.serialize_field("id", &*self.id.hyphenated().encode_lower(&mut buf))?;
        st.serialize_field("action", self.action())?;
        st.serialize_field("actor", &raw::<S::Error>(self.actor_json())?)?;
        st.serialize_field("target", &raw::<S::Error>(self.target_json())?)?;
        st.serialize_field("payload", &raw::<S::Error>(self.payload_json())?)?;
        st.serialize_field("occurred_at", &self.occurred_at)?;
        st.serialize_field("metadata", &raw::<S::Error>(self.metadata_json())?)?;
        st.serialize_field("version", &self.version)?;
        if let Some(scope) = self.scope_json() {
            st.serialize_field("scope", &raw::<S::Error>(scope)?)?;
        }
        st.serialize_field("success", &self.success)?;
        if let Some(request) = self.request_json() {
            st.serialize_field("request", &raw::<S::Error>(request)?)?;
        }
        st.end()
    }
}

impl<'de> serde::Deserialize<'de> for Event {
    /// Reads one JSON object (through [`RawValue`], so a serde_json
    /// deserializer is required) and validates it like [`Event::from_json`].
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        Event::from_json(raw.get()).map_err(|e| de::Error::custom(e.message))
    }
}

/// Builds an [`Event`] in code. See [`Event::builder`].
#[derive(Clone, Debug)]
#[must_use = "an EventBuilder does nothing until `build` is called"]
pub struct EventBuilder {
    id: Uuid,
    action: String,
    occurred_at: Timestamp,
    success: bool,
    actor: Option<String>,
    target: Option<String>,
    payload: Option<serde_json::Value>,
    metadata: Option<serde_json::Value>,
    scope: Option<String>,
    request: Option<String>,
}

impl EventBuilder {
    /// Sets `actor` to `{"id": id, "type": type_, "name": name}` (no `name` if `None`).
    pub fn actor(mut self, id: &str, type_: &str, name: Option<&str>) -> Self {
        self.actor = Some(party_json(id, type_, name));
        self
    }
    /// Sets `target` to `{"id": id, "type": type_, "name": name}` (no `name` if `None`).
    pub fn target(mut self, id: &str, type_: &str, name: Option<&str>) -> Self {
        self.target = Some(party_json(id, type_, name));
        self
    }
    /// Sets `payload`; it must be a JSON object.
    pub fn payload(mut self, payload: serde_json::Value) -> Self {
        self.payload = Some(payload);
        self
    }
    /// Sets `metadata`; it must be a JSON object.
    pub fn metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = Some(metadata);
        self
    }
    /// Sets `scope` to `{"id": id, "type": type_, "name": name}` (no `name` if `None`).
    pub fn scope(mut self, id: &str, type_: &str, name: Option<&str>) -> Self {
        self.scope = Some(party_json(id, type_, name));
        self
    }
    /// Sets `request` to `{"id": id}`.
    pub fn request(mut self, id: &str) -> Self {
        let mut s = String::from("{\"id\":");
        write_json_str(&mut s, id);
        s.push('}');
        self.request = Some(s);
        self
    }

    /// Validates exactly like [`Event::from_json`] (the builder writes the
    /// event's JSON and parses it).
    pub fn build(self) -> Result<Event, EventError> {
        let mut text = String::with_capacity(512);
        text.push_str("{\"id\":\"");
        let mut buf = Uuid::encode_buffer();
        text.push_str(self.id.hyphenated().encode_lower(&mut buf));
        text.push_str("\",\"action\":");
        write_json_str(&mut text, &self.action);
        if let Some(actor) = &self.actor {
            text.push_str(",\"actor\":");
            text.push_str(actor);
        }
        if let Some(target) = &self.target {
            text.push_str(",\"target\":");
            text.push_str(target);
        }
        if let Some(payload) = &self.payload {
            let _ = write!(text, ",\"payload\":{payload}");
        }
        text.push_str(",\"occurred_at\":\"");
        self.occurred_at.write_rfc3339(&mut text);
        text.push('"');
        if let Some(metadata) = &self.metadata {
            let _ = write!(text, ",\"metadata\":{metadata}");
        }
        if let Some(scope) = &self.scope {
            text.push_str(",\"scope\":");
            text.push_str(scope);
        }
        text.push_str(if self.success {
            ",\"success\":true"
        } else {
            ",\"success\":false"
        });
        if let Some(request) = &self.request {
            text.push_str(",\"request\":");
            text.push_str(request);
        }
        text.push('}');
        Event::from_json(&text)
    }
}

fn party_json(id: &str, type_: &str, name: Option<&str>) -> String {
    let mut s = String::with_capacity(32 + id.len() + type_.len());
    s.push_str("{\"id\":");
    write_json_str(&mut s, id);
    s.push_str(",\"type\":");
    write_json_str(&mut s, type_);
    if let Some(name) = name {
        s.push_str(",\"name\":");
        write_json_str(&mut s, name);
    }
    s.push('}');
    s
}

/// Appends `s` as a JSON string literal.
fn write_json_str(out: &mut String, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        // Serialising a `str` cannot fail.
        let _ = write!(out, "{}", serde_json::Value::from(s));
    }
}

// ---------------------------------------------------------------------------
// Top level

/// The top-level object: each known field's raw JSON text, plus the first
/// unknown or repeated key (reported after the whole text parsed, so syntax
/// errors win and messages carry no parser position).
struct Top<'a> {
    fields: [Option<&'a RawValue>; 11],
    unknown: Option<String>,
    duplicate: Option<usize>,
}

/// A top-level key: the index of a known field, or an unknown name.
enum TopKey {
    Known(usize),
    Unknown(String),
}

impl<'de> serde::Deserialize<'de> for TopKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = TopKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TopKey, E> {
                Ok(match FIELDS.iter().position(|f| *f == v) {
                    Some(i) => TopKey::Known(i),
                    None => TopKey::Unknown(v.to_string()),
                })
            }
        }
        deserializer.deserialize_identifier(V)
    }
}

impl<'de> serde::Deserialize<'de> for Top<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Top<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top<'de>, A::Error> {
                let mut top = Top {
                    fields: [None; 11],
                    unknown: None,
                    duplicate: None,
                };
                while let Some(key) = map.next_key::<TopKey>()? {
                    match key {
                        TopKey::Known(i) => {
                            let value: &'de RawValue = map.next_value()?;
                            match top.fields.get_mut(i) {
                                Some(slot @ None) => *slot = Some(value),
                                _ => {
                                    top.duplicate.get_or_insert(i);
                                }
                            }
                        }
                        TopKey::Unknown(name) => {
                            map.next_value::<IgnoredAny>()?;
                            top.unknown.get_or_insert(name);
                        }
                    }
                }
                Ok(top)
            }
        }
        deserializer.deserialize_map(V)
    }
}

impl Top<'_> {
    fn validate(self) -> Result<Event, EventError> {
        if let Some(name) = self.unknown {
            let shown = short_name(&name);
            return Err(EventError {
                message: format!("unknown field `{shown}`"),
                field: Some(name),
            });
        }
        if let Some(i) = self.duplicate {
            let name = FIELDS.get(i).copied().unwrap_or("?");
            return Err(EventError::at(name, "appears more than once"));
        }
        let [id, action, actor, target, payload, occurred_at, metadata, version, scope, success, request] =
            self.fields;

        let id = {
            let text = string(required(id, "id")?, "id")?;
            parse_uuid(&text).ok_or_else(|| {
                EventError::at("id", format_args!("not a hyphenated UUID: {}", quote(&text)))
            })?
        };
        let action = {
            let text = string(required(action, "action")?, "action")?;
            check_action(&text).map_err(|problem| EventError::at("action", problem))?;
            text.into_owned()
        };
        let actor = party(required(actor, "actor")?, Kind::Actor)?;
        let target = party(required(target, "target")?, Kind::Target)?;
        let payload = match present(payload) {
            Some(raw) => object(raw, "payload")?,
            None => "{}".to_string(),
        };
        let occurred_at = {
            let text = string(required(occurred_at, "occurred_at")?, "occurred_at")?;
            Timestamp::parse_rfc3339(&text).map_err(|e| EventError::at("occurred_at", e.0))?
        };
        let metadata = match present(metadata) {
            Some(raw) => object(raw, "metadata")?,
            None => "{}".to_string(),
        };
        let version = match present(version) {
            Some(raw) => parse_version(raw)?,
            None => SUPPORTED_VERSION,
        };
        let scope = present(scope).map(|raw| party(raw, Kind::Scope)).transpose()?;
        let success = match required(success, "success")?.get() {
            "true" => true,
            "false" => false,
            _ => return Err(type_error("success", "a boolean", success)),
        };
        let request = present(request)
            .map(|raw| party(raw, Kind::Request))
            .transpose()?;

        Ok(Event::from_parts(EventParts {
            id,
            action: &action,
            actor: &actor,
            target: &target,
            payload: &payload,
            occurred_at,
            metadata: &metadata,
            version,
            scope: scope.as_deref(),
            success,
            request: request.as_deref(),
        }))
    }
}

fn too_large(len: usize) -> EventError {
    EventError::whole(format!(
        "event is {len} bytes, larger than the {MAX_EVENT_JSON_BYTES}-byte limit"
    ))
}

fn not_an_object(text: &str) -> EventError {
    match serde_json::from_str::<&RawValue>(text) {
        Err(e) => malformed(&e),
        Ok(raw) => EventError::whole(format!("not a JSON object (got {})", json_type(raw))),
    }
}

/// "malformed JSON at column 52: EOF while parsing an object".
fn malformed(e: &serde_json::Error) -> EventError {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let what = full.strip_suffix(&suffix).unwrap_or(&full);
    let message = if e.line() == 0 {
        format!("malformed JSON: {what}")
    } else if e.line() == 1 {
        format!("malformed JSON at column {}: {what}", e.column())
    } else {
        format!(
            "malformed JSON at line {} column {}: {what}",
            e.line(),
            e.column()
        )
    };
    EventError::whole(message)
}

fn short_name(name: &str) -> String {
    let cut = name
        .char_indices()
        .nth(MAX_NAME_IN_MESSAGE)
        .map_or(name, |(i, _)| &name[..i]);
    let mut s: String = cut.escape_debug().collect();
    if cut.len() < name.len() {
        s.push_str("...");
    }
    s
}

// ---------------------------------------------------------------------------
// Field helpers

/// `None` for an absent field or an explicit `null`.
fn present(raw: Option<&RawValue>) -> Option<&RawValue> {
    raw.filter(|r| r.get() != "null")
}

fn required<'a>(raw: Option<&'a RawValue>, field: &str) -> Result<&'a RawValue, EventError> {
    raw.ok_or_else(|| EventError::at(field, "missing"))
}

fn json_type(raw: &RawValue) -> &'static str {
    match raw.get().as_bytes().first() {
        Some(b'{') => "object",
        Some(b'[') => "array",
        Some(b'"') => "string",
        Some(b't' | b'f') => "boolean",
        Some(b'n') => "null",
        _ => "number",
    }
}

fn type_error(field: &str, expected: &str, raw: Option<&RawValue>) -> EventError {
    let got = raw.map_or("nothing", json_type);
    EventError::at(field, format_args!("must be {expected}, got {got}"))
}

/// Decodes a JSON string, borrowing when it has no escapes.
fn string<'a>(raw: &'a RawValue, field: &str) -> Result<Cow<'a, str>, EventError> {
    let text = raw.get();
    let inner = match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) if text.len() >= 2 => inner,
        _ => return Err(type_error(field, "a string", Some(raw))),
    };
    if !inner.contains('\\') {
        return Ok(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(text)
        .map(Cow::Owned)
        .map_err(|e| EventError::at(field, format_args!("invalid string: {e}")))
}

/// A UUID in the hyphenated 8-4-4-4-12 form, any version, any hex case.
fn parse_uuid(s: &str) -> Option<Uuid> {
    if s.len() != 36 {
        return None;
    }
    Uuid::try_parse(s).ok()
}

fn check_action(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".to_string());
    }
    if let Some((i, c)) = s
        .char_indices()
        .find(|(_, c)| !matches!(c, 'a'..='z' | '0'..='9' | '_' | '.' | '-'))
    {
        return Err(format!(
            "invalid character {c:?} at byte {i} in {} (allowed: a-z, 0-9, '_', '-', '.')",
            quote(s)
        ));
    }
    if s.len() > MAX_ACTION_LEN {
        return Err(format!(
            "{} characters long, longer than the {MAX_ACTION_LEN}-character limit",
            s.len()
        ));
    }
    if !s.as_bytes()[0].is_ascii_lowercase() {
        return Err(format!("must start with a letter a-z: {}", quote(s)));
    }
    if s.split('.').any(str::is_empty) {
        return Err(format!("empty segment between dots in {}", quote(s)));
    }
    Ok(())
}

fn parse_version(raw: &RawValue) -> Result<u32, EventError> {
    let text = raw.get();
    if json_type(raw) != "number" {
        return Err(type_error("version", "an integer", Some(raw)));
    }
    if text.contains(['.', 'e', 'E']) {
        return Err(EventError::at(
            "version",
            format_args!("must be an integer, got {}", short_name(text)),
        ));
    }
    if text == "1" {
        return Ok(SUPPORTED_VERSION);
    }
    Err(EventError::at(
        "version",
        format_args!(
            "unsupported version {} (only {SUPPORTED_VERSION} is supported)",
            short_name(text)
        ),
    ))
}

/// Checks that `raw` is an object and returns its compact text.
fn object(raw: &RawValue, field: &str) -> Result<String, EventError> {
    if !raw.get().starts_with('{') {
        return Err(type_error(field, "an object", Some(raw)));
    }
    compact(raw.get(), field)
}

/// Removes whitespace outside strings in one pass, checking the nesting
/// depth, refusing a repeated key in one object (which has no RFC 8785
/// form, so no leaf hash) and a number outside the double range.
/// `s` is valid JSON (serde_json checked it while reading the top level).
fn compact(s: &str, field: &str) -> Result<String, EventError> {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut run_start = 0;
    let mut depth = 0usize;
    // The keys of each open object (`None` for an array), and whether the
    // next string is a key.
    let mut keys: Vec<Option<Vec<Cow<'_, str>>>> = Vec::new();
    let mut expect_key = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                // Skip the string, honouring escapes.
                let start = i;
                i += 1;
                loop {
                    i = find_quote_or_backslash(b, i);
                    match b.get(i) {
                        Some(b'\\') if b.get(i + 1) == Some(&b'u') => {
                            i = check_unicode_escape(b, i).map_err(|why| EventError::at(field, why))?;
                        }
                        Some(b'\\') => i += 2,
                        _ => break,
                    }
                }
                if let (true, Some(Some(seen))) = (expect_key, keys.last_mut()) {
                    let raw = s.get(start + 1..i).unwrap_or_default();
                    let key: Cow<'_, str> = match raw.contains('\\') {
                        false => Cow::Borrowed(raw),
                        true => Cow::Owned(
                            serde_json::from_str::<String>(s.get(start..=i).unwrap_or_default())
                                .unwrap_or_else(|_| raw.to_owned()),
                        ),
                    };
                    if seen.contains(&key) {
                        let shown: String = key.chars().take(40).collect();
                        // A member of the field's own object is named as
                        // the top level's repeated fields are.
                        if depth == 1 {
                            return Err(EventError::at(
                                &format!("{field}.{shown}"),
                                "appears more than once",
                            ));
                        }
                        return Err(EventError::at(
                            field,
                            format_args!(
                                "repeated key {shown:?} in one nested object: JSON with a repeated key has \
                                 no canonical form (RFC 8785), and readers disagree on which value counts"
                            ),
                        ));
                    }
                    seen.push(key);
                    expect_key = false;
                }
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_NESTING_DEPTH {
                    return Err(EventError::at(
                        field,
                        format_args!("nested deeper than {MAX_NESTING_DEPTH} levels"),
                    ));
                }
                expect_key = b[i] == b'{';
                keys.push(expect_key.then(Vec::new));
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                keys.pop();
                expect_key = false;
            }
            b',' => expect_key = matches!(keys.last(), Some(Some(_))),
            b'-' | b'0'..=b'9' => {
                // A number: refuse one outside the f64 range, which common
                // JSON parsers (serde_json among them) cannot read back.
                let end = b[i..]
                    .iter()
                    .position(|c| !matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .map_or(b.len(), |n| i + n);
                let token = s.get(i..end).unwrap_or_default();
                if token.len() > 15 || token.bytes().any(|c| c == b'e' || c == b'E') {
                    let finite = token.parse::<f64>().map(f64::is_finite).unwrap_or(false);
                    if !finite {
                        let shown: String = token.chars().take(40).collect();
                        return Err(EventError::at(
                            field,
                            format_args!("number out of range: {shown}"),
                        ));
                    }
                }
                i = end;
                continue;
            }
            b' ' | b'\t' | b'\n' | b'\r' => {
                // Whitespace bytes are ASCII, so both ends are char boundaries.
                out.push_str(s.get(run_start..i).unwrap_or_default());
                run_start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push_str(s.get(run_start..).unwrap_or_default());
    Ok(out)
}

/// `b[i..]` starts with a `\u` escape (syntax already checked by
/// serde_json). A UTF-16 surrogate must come as a high-low pair: a lone one
/// is not Unicode, and most JSON readers (serde_json among them) refuse it.
/// Returns the index after the escape (or after the pair).
fn check_unicode_escape(b: &[u8], i: usize) -> Result<usize, &'static str> {
    let unit = |at: usize| -> Option<u16> {
        let hex = b.get(at + 2..at + 6)?;
        u16::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
    };
    let first = unit(i).ok_or("invalid \\u escape")?;
    match first {
        0xD800..=0xDBFF => {
            let pair = (b.get(i + 6) == Some(&b'\\') && b.get(i + 7) == Some(&b'u'))
                .then(|| unit(i + 6))
                .flatten();
            match pair {
                Some(0xDC00..=0xDFFF) => Ok(i + 12),
                _ => Err("lone UTF-16 surrogate in a \\u escape"),
            }
        }
        0xDC00..=0xDFFF => Err("lone UTF-16 surrogate in a \\u escape"),
        _ => Ok(i + 6),
    }
}

/// Index of the first `"` or `\` in `b` at or after `i` (`b.len()` if none),
/// eight bytes at a time.
fn find_quote_or_backslash(b: &[u8], mut i: usize) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const QUOTES: u64 = LO * b'"' as u64;
    const BACKSLASHES: u64 = LO * b'\\' as u64;
    while let Some(chunk) = b.get(i..i + 8).and_then(|c| <[u8; 8]>::try_from(c).ok()) {
        let x = u64::from_le_bytes(chunk);
        let q = x ^ QUOTES;
        let e = x ^ BACKSLASHES;
        // A byte of `q` or `e` is zero where `x` has a quote or a backslash;
        // the lowest flagged byte is always a true match.
        let found = ((q.wrapping_sub(LO) & !q) | (e.wrapping_sub(LO) & !e)) & HI;
        if found != 0 {
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' {
            return i;
        }
        i += 1;
    }
    b.len()
}

// ---------------------------------------------------------------------------
// actor, target, scope, request

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Actor,
    Target,
    Scope,
    Request,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Actor => "actor",
            Kind::Target => "target",
            Kind::Scope => "scope",
            Kind::Request => "request",
        }
    }

    /// Paths of the `id`, `type` and `name` members, for error messages.
    fn member_paths(self) -> [&'static str; 3] {
        match self {
            Kind::Actor => ["actor.id", "actor.type", "actor.name"],
            Kind::Target => ["target.id", "target.type", "target.name"],
            Kind::Scope => ["scope.id", "scope.type", "scope.name"],
            Kind::Request => ["request.id", "request.type", "request.name"],
        }
    }
}

/// The `id`, `type` and `name` members of a nested object (raw), and the
/// first of them that appears twice. Other members are skipped.
struct Party<'a> {
    id: Option<&'a RawValue>,
    type_: Option<&'a RawValue>,
    name: Option<&'a RawValue>,
    duplicate: Option<&'static str>,
}

enum PartyKey {
    Id,
    Type,
    Name,
    Other,
}

impl<'de> serde::Deserialize<'de> for PartyKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PartyKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PartyKey, E> {
                Ok(match v {
                    "id" => PartyKey::Id,
                    "type" => PartyKey::Type,
                    "name" => PartyKey::Name,
                    _ => PartyKey::Other,
                })
            }
        }
        deserializer.deserialize_identifier(V)
    }
}

impl<'de> serde::Deserialize<'de> for Party<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Party<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Party<'de>, A::Error> {
                let mut p = Party {
                    id: None,
                    type_: None,
                    name: None,
                    duplicate: None,
                };
                while let Some(key) = map.next_key::<PartyKey>()? {
                    let (slot, name) = match key {
                        PartyKey::Id => (&mut p.id, "id"),
                        PartyKey::Type => (&mut p.type_, "type"),
                        PartyKey::Name => (&mut p.name, "name"),
                        PartyKey::Other => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    let value: &'de RawValue = map.next_value()?;
                    if slot.is_some() {
                        p.duplicate.get_or_insert(name);
                    } else {
                        *slot = Some(value);
                    }
                }
                Ok(p)
            }
        }
        deserializer.deserialize_map(V)
    }
}

/// Validates a nested `actor`/`target`/`scope`/`request` object and returns
/// its compact text.
fn party(raw: &RawValue, kind: Kind) -> Result<String, EventError> {
    let field = kind.name();
    let text = object(raw, field)?;
    let p: Party<'_> = serde_json::from_str(&text)
        .map_err(|e| EventError::at(field, format_args!("invalid object: {e}")))?;
    if let Some(member) = p.duplicate {
        return Err(EventError::at(
            &format!("{field}.{member}"),
            "appears more than once",
        ));
    }
    let [id_path, type_path, name_path] = kind.member_paths();
    string(required(p.id, id_path)?, id_path)?;
    if kind != Kind::Request {
        string(required(p.type_, type_path)?, type_path)?;
        if let Some(name) = present(p.name) {
            string(name, name_path)?;
        }
    }
    Ok(text)
}

/// The `id` member of a stored nested object; empty if it cannot be read.
fn blob_id(blob: &str) -> String {
    match fast::blob_id(blob) {
        Some(id) => id.to_string(),
        None => blob_id_reference(blob),
    }
}

/// [`blob_id`] through serde_json.
fn blob_id_reference(blob: &str) -> String {
    serde_json::from_str::<Party<'_>>(blob)
        .ok()
        .and_then(|p| p.id)
        .and_then(|raw| string(raw, "id").ok())
        .map(Cow::into_owned)
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Semantic comparison of stored JSON

/// JSON value equality ignoring key order and formatting. Integers compare by
/// their exact digits (no float rounding), other numbers by value. On
/// objects with repeated keys the last one counts, as in serde_json.
fn json_eq(a: &str, b: &str, depth: usize) -> bool {
    if a == b {
        return true;
    }
    // Stored blobs are at most MAX_NESTING_DEPTH deep; never recurse without bound.
    if depth > MAX_NESTING_DEPTH + 1 {
        return false;
    }
    match (a.as_bytes().first(), b.as_bytes().first()) {
        (Some(b'{'), Some(b'{')) => {
            let (Ok(ma), Ok(mb)) = (
                serde_json::from_str::<BTreeMap<String, &RawValue>>(a),
                serde_json::from_str::<BTreeMap<String, &RawValue>>(b),
            ) else {
                return false;
            };
            ma.len() == mb.len()
                && ma
                    .iter()
                    .all(|(k, va)| mb.get(k).is_some_and(|vb| json_eq(va.get(), vb.get(), depth + 1)))
        }
        (Some(b'['), Some(b'[')) => {
            let (Ok(va), Ok(vb)) = (
                serde_json::from_str::<Vec<&RawValue>>(a),
                serde_json::from_str::<Vec<&RawValue>>(b),
            ) else {
                return false;
            };
            va.len() == vb.len()
                && va
                    .iter()
                    .zip(&vb)
                    .all(|(x, y)| json_eq(x.get(), y.get(), depth + 1))
        }
        (Some(b'"'), Some(b'"')) => {
            match (
                serde_json::from_str::<Cow<'_, str>>(a),
                serde_json::from_str::<Cow<'_, str>>(b),
            ) {
                (Ok(x), Ok(y)) => x == y,
                _ => false,
            }
        }
        (Some(x), Some(y)) if is_number_start(*x) && is_number_start(*y) => {
            let is_int = |s: &str| !s.contains(['.', 'e', 'E']);
            if is_int(a) || is_int(b) {
                // Text differs: for integers that means a different value
                // (JSON forbids leading zeros), or a float vs an integer.
                false
            } else {
                matches!((a.parse::<f64>(), b.parse::<f64>()), (Ok(x), Ok(y)) if x == y)
            }
        }
        _ => false,
    }
}

fn is_number_start(b: u8) -> bool {
    b == b'-' || b.is_ascii_digit()
}

#[cfg(test)]
mod tests {
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

    const GOOD: &str = r#"{"id":"1818e811-892f-402b-923f-0824128b2f33","action":"workflow.job.approve","actor":{"id":"e8e25d94","type":"user","name":"bob"},"target":{"id":"1600a35a","type":"workflow","name":"workflow-444"},"payload":{"build_num":54810,"branch":"main"},"occurred_at":"2026-06-01T00:00:00.000000Z","metadata":{"ip":"10.113.23.68","attempt":2},"version":1,"scope":{"id":"org-01","type":"account","name":"Org 01"},"success":true,"request":{"id":"4ef8aa38"}}"#;

    /// GOOD with one top-level field replaced (or removed if `value` is None).
    fn with(field: &str, value: Option<&str>) -> String {
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
        fn clone_with_scope(&self, scope: &str) -> Event {
            Event::from_parts(EventParts {
                scope: Some(scope),
                ..self.parts()
            })
        }

        fn parts(&self) -> EventParts<'_> {
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
        let text =
            with("payload", Some("{}")).replace("\"payload\":{}", &format!("\"payload\":{{\"x\":{deep}"));
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
}
