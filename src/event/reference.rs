//! The reference parser: serde_json reads the top level and the parties
//! (actor, target, scope, request) into borrowed raw values; every error
//! message of events.md comes from here.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::*;

// ---------------------------------------------------------------------------
// Top level

/// The top-level object: each known field's raw JSON text, plus the first
/// unknown or repeated key (reported after the whole text parsed, so syntax
/// errors win and messages carry no parser position).
pub(super) struct Top<'a> {
    fields: [Option<&'a RawValue>; 11],
    unknown: Option<String>,
    duplicate: Option<usize>,
}

/// A top-level key: the index of a known field, or an unknown name.
pub(super) enum TopKey {
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
    pub(super) fn validate(self) -> Result<Event, EventError> {
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

pub(super) fn too_large(len: usize) -> EventError {
    EventError::whole(format!(
        "event is {len} bytes, larger than the {MAX_EVENT_JSON_BYTES}-byte limit"
    ))
}

pub(super) fn not_an_object(text: &str) -> EventError {
    match serde_json::from_str::<&RawValue>(text) {
        Err(e) => malformed(&e),
        Ok(raw) => EventError::whole(format!("not a JSON object (got {})", json_type(raw))),
    }
}

/// "malformed JSON at column 52: EOF while parsing an object".
pub(super) fn malformed(e: &serde_json::Error) -> EventError {
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

pub(super) fn short_name(name: &str) -> String {
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
// actor, target, scope, request

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
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
pub(super) struct Party<'a> {
    id: Option<&'a RawValue>,
    type_: Option<&'a RawValue>,
    name: Option<&'a RawValue>,
    duplicate: Option<&'static str>,
}

pub(super) enum PartyKey {
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
pub(super) fn party(raw: &RawValue, kind: Kind) -> Result<String, EventError> {
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
pub(super) fn blob_id(blob: &str) -> String {
    match fast::blob_id(blob) {
        Some(id) => id.to_string(),
        None => blob_id_reference(blob),
    }
}

/// [`blob_id`] through serde_json.
pub(super) fn blob_id_reference(blob: &str) -> String {
    serde_json::from_str::<Party<'_>>(blob)
        .ok()
        .and_then(|p| p.id)
        .and_then(|raw| string(raw, "id").ok())
        .map(Cow::into_owned)
        .unwrap_or_default()
}
