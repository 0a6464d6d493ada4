//! The record body: our own hand-specified little-endian layout (format
//! version [`RECORD_FORMAT_VERSION`]). This module only turns events into
//! bytes and back; framing and files live in [`crate::log`].
//!
//! ```text
//! offset size field
//!      0    8 occurred_at        i64, nanoseconds since the Unix epoch (UTC)
//!      8   16 id                 UUID bytes (RFC 4122 order)
//!     24    1 flags              bit 0 success, bit 1 scope present, bit 2 request present
//!     25    1 reserved           0
//!     26    2 org_len            u16
//!     28    2 action_len         u16
//!     30    4 version            u32 (event schema version)
//!     34    4 actor_len          u32
//!     38    4 target_len         u32
//!     42    4 payload_len        u32
//!     46    4 metadata_len       u32
//!     50    4 scope_len          u32 (0 when absent)
//!     54    4 request_len        u32 (0 when absent)
//!     58    .. org, action, actor, target, payload, metadata, scope, request (UTF-8, no separators)
//! ```
//! Nested objects are stored as compact JSON text, so export and printing
//! copy them verbatim.

use crate::event::{Event, StoredHead};
use crate::time::Timestamp;

/// Version of the record body layout above.
pub const RECORD_FORMAT_VERSION: u32 = 1;
/// Size of the fixed part of a record body.
pub const FIXED_LEN: usize = 58;
/// Longest accepted organization name, in bytes.
pub const MAX_ORG_LEN: usize = 256;

const FLAG_SUCCESS: u8 = 1;
const FLAG_SCOPE: u8 = 2;
const FLAG_REQUEST: u8 = 4;

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// Append the body of `event` owned by `org` to `out`.
///
/// The caller guarantees `org.len() <= MAX_ORG_LEN` (checked by the store)
/// and the event was validated (action <= 128 bytes, JSON <= 256 KiB).
pub fn encode(org: &str, event: &Event, out: &mut Vec<u8>) {
    let scope = event.scope_json().unwrap_or("");
    let request = event.request_json().unwrap_or("");
    let mut flags = 0u8;
    if event.success() {
        flags |= FLAG_SUCCESS;
    }
    if event.scope_json().is_some() {
        flags |= FLAG_SCOPE;
    }
    if event.request_json().is_some() {
        flags |= FLAG_REQUEST;
    }
    let parts: [&str; 8] = [
        org,
        event.action(),
        event.actor_json(),
        event.target_json(),
        event.payload_json(),
        event.metadata_json(),
        scope,
        request,
    ];
    out.reserve(FIXED_LEN + parts.iter().map(|p| p.len()).sum::<usize>());
    out.extend_from_slice(&event.occurred_at().as_nanos().to_le_bytes());
    out.extend_from_slice(event.id().as_bytes());
    out.push(flags);
    out.push(0);
    out.extend_from_slice(&(org.len() as u16).to_le_bytes());
    out.extend_from_slice(&(event.action().len() as u16).to_le_bytes());
    out.extend_from_slice(&event.version().to_le_bytes());
    for p in &parts[2..] {
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
    }
    for p in parts {
        out.extend_from_slice(p.as_bytes());
    }
}

/// A decoded body borrowing the stored bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub occurred_at: Timestamp,
    pub id: [u8; 16],
    pub success: bool,
    pub version: u32,
    pub org: &'a str,
    pub action: &'a str,
    pub actor: &'a str,
    pub target: &'a str,
    pub payload: &'a str,
    pub metadata: &'a str,
    pub scope: Option<&'a str>,
    pub request: Option<&'a str>,
    /// `action` through `request`, back to back as stored: what an owned
    /// [`Event`] copies, at once.
    texts: &'a str,
}

/// The occurred_at and id of a body, without decoding the rest.
pub fn peek_key(body: &[u8]) -> Result<(Timestamp, [u8; 16]), DecodeError> {
    if body.len() < FIXED_LEN {
        return Err(DecodeError(format!(
            "record body is {} bytes, shorter than the {FIXED_LEN}-byte fixed part",
            body.len()
        )));
    }
    Ok((Timestamp::from_nanos(read_i64(body, 0)), read_id(body)))
}

fn read_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_le_bytes(a)
}
fn read_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}
fn read_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn read_id(b: &[u8]) -> [u8; 16] {
    let mut id = [0u8; 16];
    id.copy_from_slice(&b[8..24]);
    id
}

/// Decode a body; every length is checked against the buffer, every text is
/// checked to be UTF-8. Never panics on arbitrary input.
pub fn decode(body: &[u8]) -> Result<RecordView<'_>, DecodeError> {
    let (occurred_at, id) = peek_key(body)?;
    let flags = body[24];
    if flags & !(FLAG_SUCCESS | FLAG_SCOPE | FLAG_REQUEST) != 0 {
        return Err(DecodeError(format!("unknown flag bits {flags:#04x}")));
    }
    if body[25] != 0 {
        return Err(DecodeError(format!("reserved byte is {:#04x}, not 0", body[25])));
    }
    let lens: [usize; 8] = [
        read_u16(body, 26) as usize,
        read_u16(body, 28) as usize,
        read_u32(body, 34) as usize,
        read_u32(body, 38) as usize,
        read_u32(body, 42) as usize,
        read_u32(body, 46) as usize,
        read_u32(body, 50) as usize,
        read_u32(body, 54) as usize,
    ];
    // Only the canonical encoding is accepted: an absent field has length 0.
    if flags & FLAG_SCOPE == 0 && lens[6] != 0 {
        return Err(DecodeError(
            "scope bytes present but the scope flag is clear".into(),
        ));
    }
    if flags & FLAG_REQUEST == 0 && lens[7] != 0 {
        return Err(DecodeError(
            "request bytes present but the request flag is clear".into(),
        ));
    }
    let total = lens
        .iter()
        .try_fold(FIXED_LEN, |acc, l| acc.checked_add(*l))
        .ok_or_else(|| DecodeError("field lengths overflow".into()))?;
    if total != body.len() {
        return Err(DecodeError(format!(
            "field lengths add up to {total} bytes but the body is {} bytes",
            body.len()
        )));
    }
    const NAMES: [&str; 8] = [
        "org", "action", "actor", "target", "payload", "metadata", "scope", "request",
    ];
    // One validation of all texts together, then splits that must fall on
    // character boundaries: equivalent to validating each field (UTF-8 is
    // self-synchronising) and much cheaper than eight calls. On failure the
    // per-field pass names the field.
    let per_field_error = || {
        let mut at = FIXED_LEN;
        for (i, len) in lens.iter().enumerate() {
            if let Err(e) = std::str::from_utf8(&body[at..at + len]) {
                return DecodeError(format!("{} is not UTF-8: {e}", NAMES[i]));
            }
            at += len;
        }
        DecodeError("texts are not UTF-8".into())
    };
    // simdutf8: the check costs a scan ~1/6 of its time with the standard
    // library's validation, which stays for naming the field.
    let all = simdutf8::basic::from_utf8(&body[FIXED_LEN..]).map_err(|_| per_field_error())?;
    let mut texts = [""; 8];
    let mut at = 0;
    for (i, len) in lens.iter().enumerate() {
        texts[i] = all.get(at..at + len).ok_or_else(per_field_error)?;
        at += len;
    }
    Ok(RecordView {
        occurred_at,
        id,
        success: flags & FLAG_SUCCESS != 0,
        version: read_u32(body, 30),
        org: texts[0],
        action: texts[1],
        actor: texts[2],
        target: texts[3],
        payload: texts[4],
        metadata: texts[5],
        scope: (flags & FLAG_SCOPE != 0).then_some(texts[6]),
        request: (flags & FLAG_REQUEST != 0).then_some(texts[7]),
        texts: all.get(lens[0]..).ok_or_else(per_field_error)?,
    })
}

impl RecordView<'_> {
    /// The owned event this record stores.
    pub fn to_event(&self) -> Event {
        let head = StoredHead {
            id: uuid::Uuid::from_bytes(self.id),
            occurred_at: self.occurred_at,
            version: self.version,
            success: self.success,
            has_scope: self.scope.is_some(),
            has_request: self.request.is_some(),
        };
        let lens = [
            self.action.len(),
            self.actor.len(),
            self.target.len(),
            self.payload.len(),
            self.metadata.len(),
            self.scope.map_or(0, str::len),
            self.request.map_or(0, str::len),
        ];
        Event::from_stored_texts(head, self.texts, lens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_with_texts(org: &[u8], action: &[u8]) -> Vec<u8> {
        let e = Event::from_json(
            r#"{"id":"6f1c3a52-8d1e-4c2b-9a57-3e0b8f1d2c4a","action":"a","actor":{"id":"u","type":"user"},
            "target":{"id":"t","type":"x"},"occurred_at":"2026-06-01T10:00:00Z","success":true}"#,
        )
        .expect("valid event");
        let mut good = Vec::new();
        encode("o", &e, &mut good);
        // Rebuild with the given org and action bytes (lengths at 26 and 28).
        let mut b = good[..FIXED_LEN].to_vec();
        b[26..28].copy_from_slice(&(org.len() as u16).to_le_bytes());
        b[28..30].copy_from_slice(&(action.len() as u16).to_le_bytes());
        b.extend_from_slice(org);
        b.extend_from_slice(action);
        b.extend_from_slice(&good[FIXED_LEN + 2..]);
        b
    }

    #[test]
    fn multibyte_texts_decode_and_a_character_split_between_fields_is_refused() {
        let ok = body_with_texts("orgé".as_bytes(), "dé".as_bytes());
        let v = decode(&ok).expect("valid multi-byte texts");
        assert_eq!((v.org, v.action), ("orgé", "dé"));
        // "é" is C3 A9: the org ends after C3 and the action starts with A9.
        // The concatenation is valid UTF-8, each field on its own is not.
        let split = body_with_texts(b"org\xC3", b"\xA9d");
        let err = decode(&split).expect_err("split character");
        assert!(err.0.starts_with("org is not UTF-8"), "{}", err.0);
        let bad = body_with_texts(b"org", b"d\xFF");
        let err = decode(&bad).expect_err("invalid byte");
        assert!(err.0.starts_with("action is not UTF-8"), "{}", err.0);
    }

    /// The owned event built from a record (one copy of its texts) is the
    /// event encoded, with and without the optional objects, with
    /// multi-byte texts in every field.
    #[test]
    fn records_decode_to_the_event_encoded() {
        let optional = [
            "",
            r#","scope":{"id":"orgé-1","type":"organization","name":"Åcme"}"#,
            r#","request":{"id":"réq-7"}"#,
            r#","scope":{"id":"o","type":"organization"},"request":{"id":"r"}"#,
        ];
        for extra in optional {
            let json = format!(
                r#"{{"id":"6f1c3a52-8d1e-4c2b-9a57-3e0b8f1d2c4a","action":"workflow.job.start",
                "actor":{{"id":"ü1","type":"user","name":"Zoë"}},"target":{{"id":"t→1","type":"job"}},
                "payload":{{"n":[1,2.5,"日本"]}},"metadata":{{"ip":"10.0.0.1"}},
                "occurred_at":"2026-06-01T10:00:00.123Z","success":false{extra}}}"#
            );
            let event = Event::from_json(&json).expect("valid event");
            let mut body = Vec::new();
            encode("orgé", &event, &mut body);
            let view = decode(&body).expect("decodes");
            assert_eq!(view.org, "orgé");
            let back = view.to_event();
            assert_eq!(back, event, "{extra}");
            assert_eq!(back.scope_json(), event.scope_json());
            assert_eq!(back.request_json(), event.request_json());
            assert_eq!(back.to_json(), event.to_json());
        }
    }
}
