//! The audit event: validation of the wire JSON (see `shared/spec/events.md`)
//! and its compact stored form.
//!
//! Parsing is built for throughput: the top level is read into borrowed
//! [`RawValue`]s, scalars are decoded straight from their raw text, and nested
//! objects are kept as compact JSON text (whitespace outside strings removed,
//! otherwise byte-for-byte as sent), so numbers keep their exact digits and a
//! stored event is never re-serialised.

use std::fmt;
use std::fmt::Write as _;

use serde::de;
use serde::ser::SerializeStruct;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::time::{quote, Timestamp};

mod builder;
mod fast;
mod fields;
mod json_eq;
mod reference;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_made;

pub use builder::EventBuilder;
use builder::*;
use fields::*;
use json_eq::*;
use reference::*;

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
