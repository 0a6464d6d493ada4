//! Leaf data: what the tree commits to for one stored event.
//!
//! Leaf data is the RFC 8785 (JCS) serialization of
//! `{"org": ORG, "event": EVENT}`, EVENT being the event as
//! [`Event::to_json`] prints it. Anyone holding an event as served and its
//! organization can recompute it without knowing the store's files.
//!
//! JCS (done by [`super::jcs`]) sorts object keys by UTF-16 code
//! units, writes strings with the minimal escaping of RFC 8785 §3.2.2.2 and
//! numbers as ECMAScript does (IEEE 754 double, shortest round-trip form).
//! Two consequences worth knowing:
//! - an integer beyond 2^53 in `payload`/`metadata` is hashed as the double
//!   nearest to it (`12345678901234567890` becomes `12345678901234567000`), as
//!   every JCS implementation does;
//! - JCS has no form for a number beyond the double range (`1e400`) nor for
//!   an object with a repeated key (RFC 8785 requires I-JSON): such an event
//!   has no leaf and [`leaf_data`] refuses it with a [`LeafError`].

use std::fmt;
use std::io::Write as _;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::canon::{self, NotFast, Scratch};
use super::hash::{leaf_hash, Hash};
use crate::event::Event;

/// Why an event has no canonical leaf.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeafError {
    /// The event's JSON is outside what JCS can represent (a number beyond
    /// the IEEE 754 double range, a lone surrogate, ...).
    #[error("event {id} has no RFC 8785 form: {reason}")]
    NotCanonicalizable { id: String, reason: String },
    /// An object in the event repeats a key; JCS (I-JSON) forbids it, and a
    /// hash of either value would misrepresent what was stored.
    #[error("event {id} repeats the key {key:?} in one object; it has no RFC 8785 form")]
    DuplicateKey { id: String, key: String },
}

/// The RFC 8785 bytes of `{"org": org, "event": event}`.
pub fn leaf_data(org: &str, event: &Event) -> Result<Vec<u8>, LeafError> {
    let mut out = Vec::with_capacity(512);
    if fast_leaf_data(&LeafParts::of_event(org, event), &mut out).is_ok() {
        return Ok(out);
    }
    leaf_data_of_json(org, event, &event.to_json())
}

/// What an event's leaf data is made of, borrowed from a stored record or
/// an [`Event`].
pub struct LeafParts<'a> {
    pub org: &'a str,
    pub id: uuid::Uuid,
    pub action: &'a str,
    pub actor: &'a str,
    pub target: &'a str,
    pub payload: &'a str,
    pub occurred_at: crate::time::Timestamp,
    pub metadata: &'a str,
    pub version: u32,
    pub scope: Option<&'a str>,
    pub success: bool,
    pub request: Option<&'a str>,
}

impl<'a> LeafParts<'a> {
    pub fn of_event(org: &'a str, e: &'a Event) -> LeafParts<'a> {
        LeafParts {
            org,
            id: e.id(),
            action: e.action(),
            actor: e.actor_json(),
            target: e.target_json(),
            payload: e.payload_json(),
            occurred_at: e.occurred_at(),
            metadata: e.metadata_json(),
            version: e.version(),
            scope: e.scope_json(),
            success: e.success(),
            request: e.request_json(),
        }
    }
}

/// The leaf data of `p` written straight from its texts (module
/// [`super::canon`]): the members of `{"event": EVENT, "org": ORG}` in
/// their RFC 8785 order, each nested object canonicalized. [`NotFast`] for
/// what only the general path answers (a repeated key, say); `out` is then
/// left as it was.
pub fn fast_leaf_data(p: &LeafParts<'_>, out: &mut Vec<u8>) -> Result<(), NotFast> {
    Scratch::with(|scratch| fast_leaf_data_in(scratch, p, out))
}

fn fast_leaf_data_in(scratch: &mut Scratch, p: &LeafParts<'_>, out: &mut Vec<u8>) -> Result<(), NotFast> {
    let start = out.len();
    let mut object = |text: &str, out: &mut Vec<u8>| canon::canonicalize_in(scratch, text, out);
    let written = (|| {
        out.extend_from_slice(b"{\"event\":{\"action\":");
        canon::string(p.action, out);
        out.extend_from_slice(b",\"actor\":");
        object(p.actor, out)?;
        out.extend_from_slice(b",\"id\":\"");
        let mut buf = uuid::Uuid::encode_buffer();
        out.extend_from_slice(p.id.hyphenated().encode_lower(&mut buf).as_bytes());
        out.extend_from_slice(b"\",\"metadata\":");
        object(p.metadata, out)?;
        out.extend_from_slice(b",\"occurred_at\":\"");
        p.occurred_at.write_rfc3339_bytes(out);
        out.extend_from_slice(b"\",\"payload\":");
        object(p.payload, out)?;
        if let Some(request) = p.request {
            out.extend_from_slice(b",\"request\":");
            object(request, out)?;
        }
        if let Some(scope) = p.scope {
            out.extend_from_slice(b",\"scope\":");
            object(scope, out)?;
        }
        out.extend_from_slice(if p.success {
            b",\"success\":true,\"target\":"
        } else {
            b",\"success\":false,\"target\":"
        });
        object(p.target, out)?;
        out.extend_from_slice(b",\"version\":");
        let _ = write!(out, "{}", p.version);
        out.extend_from_slice(b"},\"org\":");
        canon::string(p.org, out);
        out.push(b'}');
        Ok(())
    })();
    if written.is_err() {
        out.truncate(start);
    }
    written
}

/// [`leaf_data`] of `event` whose `get` JSON text (`event.to_json()`) the
/// caller has already.
pub fn leaf_data_of_json(org: &str, event: &Event, text: &str) -> Result<Vec<u8>, LeafError> {
    let id = || event.id().hyphenated().to_string();
    let parsed: Strict = serde_json::from_str(text).map_err(|e| classify(&id(), e))?;
    let id = id();
    let mut top = Map::new();
    top.insert("org".to_owned(), Value::String(org.to_owned()));
    top.insert("event".to_owned(), parsed.0);
    let mut out = Vec::with_capacity(text.len() + org.len() + 24);
    super::jcs::write(&Value::Object(top), &mut out)
        .map_err(|reason| LeafError::NotCanonicalizable { id, reason })?;
    Ok(out)
}

/// `SHA-256(0x00 || leaf_data(org, event))`.
pub fn event_leaf_hash(org: &str, event: &Event) -> Result<Hash, LeafError> {
    if let Some(hash) = fast_leaf_hash(&LeafParts::of_event(org, event)) {
        return Ok(hash);
    }
    Ok(leaf_hash(&leaf_data_of_json(org, event, &event.to_json())?))
}

/// The leaf hash of `p` by [`fast_leaf_data`], in a buffer kept per thread
/// (the integrator, the export formatters and `export verify` hash millions
/// of leaves one after another); `None` where only the general path answers.
pub fn fast_leaf_hash(p: &LeafParts<'_>) -> Option<Hash> {
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(1024));
    }
    BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        buf.clear();
        fast_leaf_data(p, &mut buf).ok()?;
        Some(leaf_hash(&buf))
    })
}

/// Marker prefix by which the strict parser reports a repeated key through
/// serde's string-only custom errors.
const DUPLICATE: &str = "duplicate key: ";

fn classify(id: &str, e: serde_json::Error) -> LeafError {
    let message = e.to_string();
    match message.strip_prefix(DUPLICATE) {
        Some(rest) => LeafError::DuplicateKey {
            id: id.to_owned(),
            // serde_json appends " at line L column C"; the key is before it.
            key: rest.rsplit_once(" at line ").map_or(rest, |(k, _)| k).to_owned(),
        },
        None => LeafError::NotCanonicalizable {
            id: id.to_owned(),
            reason: message,
        },
    }
}

/// A JSON value parsed like `serde_json::Value`, except that an object with
/// a repeated key is an error instead of silently keeping the last value.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!("{DUPLICATE}{key}")));
            }
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}
