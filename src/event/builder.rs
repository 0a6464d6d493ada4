//! [`EventBuilder`]: an event made in code, and the JSON of its parties.

use std::fmt::Write as _;

use uuid::Uuid;

use super::*;

/// Builds an [`Event`] in code. See [`Event::builder`].
#[derive(Clone, Debug)]
#[must_use = "an EventBuilder does nothing until `build` is called"]
pub struct EventBuilder {
    pub(super) id: Uuid,
    pub(super) action: String,
    pub(super) occurred_at: Timestamp,
    pub(super) success: bool,
    pub(super) actor: Option<String>,
    pub(super) target: Option<String>,
    pub(super) payload: Option<serde_json::Value>,
    pub(super) metadata: Option<serde_json::Value>,
    pub(super) scope: Option<String>,
    pub(super) request: Option<String>,
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

pub(super) fn party_json(id: &str, type_: &str, name: Option<&str>) -> String {
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
pub(super) fn write_json_str(out: &mut String, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        // Serialising a `str` cannot fail.
        let _ = write!(out, "{}", serde_json::Value::from(s));
    }
}
