//! The message that carries one state-changing command through a
//! partition's stream, version 1 (byte for byte in docs/cluster.md,
//! "Command messages"), beside the event batch (`AUEB`, [`super::message`]).
//!
//! ```text
//! header   4 bytes  magic "AUCM"
//!          1 byte   version = 1
//!          1 byte   flags = 0 (reserved; a reader refuses others)
//!          1 byte   kind (1 to 6, below)
//!         16 bytes  the command's id (a UUID's 16 bytes)
//!          8 bytes  its instant: nanoseconds since 1970-01-01T00:00:00Z (i64, big-endian)
//!          4 bytes  body length B (u32, big-endian; at most 65,536)
//! body     B bytes  a JSON object, the kind's fields (no others)
//! trailer  4 bytes  CRC-32 (IEEE) of every byte before it (u32, big-endian)
//! ```
//!
//! Kinds: 1 `set_org`, 2 `request_export`, 3 `process`, 4 `create_token`,
//! 5 `revoke_token`, 6 `add_user`. The `Nats-Msg-Id` is `aucm1-` and the
//! lowercase hex SHA-256 of the whole payload: a publish retried with the
//! same command is stored once within the de-duplication window, and the
//! schedule's processing commands, which every node builds alike from
//! (partition, mark), collapse into one.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::time::Timestamp;

pub const MAGIC: &[u8; 4] = b"AUCM";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 4 + 1 + 1 + 1 + 16 + 8 + 4;
const TRAILER_LEN: usize = 4;
/// The largest body: a command is a few hundred bytes.
pub const MAX_BODY: usize = 64 * 1024;

/// Why a message's bytes are not a command of this version.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    #[error("command message: {0}")]
    Malformed(String),
    #[error("command message: unknown version {0} (this build reads version {VERSION})")]
    UnknownVersion(u8),
    #[error("command message: unknown flags {0:#04x} (this build reads 0)")]
    UnknownFlags(u8),
    #[error("command message: unknown kind {0} (this build reads 1 to 6)")]
    UnknownKind(u8),
    #[error("command message: checksum mismatch (stored {stored:08x}, computed {computed:08x})")]
    Checksum { stored: u32, computed: u32 },
    #[error("command message: body length {declared} but {actual} bytes follow the header")]
    BodyLength { declared: u64, actual: usize },
    #[error("command message: body of kind {kind}: {reason}")]
    Body { kind: &'static str, reason: String },
}

/// A field that may be `null` but must be present: a body is exactly
/// the kind's fields (serde would take a missing `Option` as `null`).
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

/// `set_org` (kind 1): `PUT .../settings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetOrg {
    pub org: String,
    pub by: String,
    /// `server`, `scale`, `performance` or `free`; `null`: unchanged.
    #[serde(deserialize_with = "present")]
    pub plan: Option<String>,
    #[serde(deserialize_with = "present")]
    pub retention_days: Option<u32>,
}

/// `request_export` (kind 2): `POST .../exports`; the id is the command's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestExport {
    pub org: String,
    pub requested_by: String,
    /// `admin` or `member`.
    pub role: String,
    /// `YYYY-MM-DD`.
    pub from: String,
    pub to: String,
}

/// `process` (kind 3): process this partition's organizations as of the
/// command's instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Process {
    /// Published by a schedule at a mark (the instant), not on request.
    pub scheduled: bool,
}

/// `create_token` (kind 4): the token's hash, never its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub token_id: String,
    /// `null` for an operator token.
    #[serde(deserialize_with = "present")]
    pub org: Option<String>,
    /// `ingest`, `member`, `admin` or `operator`.
    pub role: String,
    #[serde(deserialize_with = "present")]
    pub name: Option<String>,
    pub by: String,
    /// Lowercase hex SHA-256 of the token's text.
    pub sha256: String,
}

/// `revoke_token` (kind 5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeToken {
    pub token_id: String,
    pub by: String,
}

/// `add_user` (kind 6): the password as its argon2id PHC string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddUser {
    pub user: String,
    pub org: String,
    /// `member` or `admin`.
    pub role: String,
    pub password_hash: String,
    pub by: String,
}

/// A command's body, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    SetOrg(SetOrg),
    RequestExport(RequestExport),
    Process(Process),
    CreateToken(CreateToken),
    RevokeToken(RevokeToken),
    AddUser(AddUser),
}

impl Body {
    fn kind(&self) -> u8 {
        match self {
            Body::SetOrg(_) => 1,
            Body::RequestExport(_) => 2,
            Body::Process(_) => 3,
            Body::CreateToken(_) => 4,
            Body::RevokeToken(_) => 5,
            Body::AddUser(_) => 6,
        }
    }

    /// The kind's name (`set_org`, ...).
    pub fn name(&self) -> &'static str {
        kind_name(self.kind()).unwrap_or("?")
    }

    fn json(&self) -> Result<Vec<u8>, serde_json::Error> {
        match self {
            Body::SetOrg(b) => serde_json::to_vec(b),
            Body::RequestExport(b) => serde_json::to_vec(b),
            Body::Process(b) => serde_json::to_vec(b),
            Body::CreateToken(b) => serde_json::to_vec(b),
            Body::RevokeToken(b) => serde_json::to_vec(b),
            Body::AddUser(b) => serde_json::to_vec(b),
        }
    }
}

fn kind_name(kind: u8) -> Option<&'static str> {
    Some(match kind {
        1 => "set_org",
        2 => "request_export",
        3 => "process",
        4 => "create_token",
        5 => "revoke_token",
        6 => "add_user",
        _ => return None,
    })
}

/// One command: its id, the instant it was made at, what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub id: Uuid,
    pub at: Timestamp,
    pub body: Body,
}

/// The id of the schedule's processing command of `partition` at `mark`:
/// the first 16 bytes of SHA-256(`auditstore schedule` ‖ partition (u32,
/// big-endian) ‖ mark (i64 nanoseconds, big-endian)). Every node makes the
/// same one, so that JetStream keeps one of them.
pub fn schedule_id(partition: u32, mark: Timestamp) -> Uuid {
    let mut h = Sha256::new();
    h.update(b"auditstore schedule");
    h.update(partition.to_be_bytes());
    h.update(mark.as_nanos().to_be_bytes());
    let digest = h.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    Uuid::from_bytes(id)
}

/// The `Nats-Msg-Id` of a command payload.
pub fn msg_id(payload: &[u8]) -> String {
    format!("aucm1-{}", crate::hex::encode(&Sha256::digest(payload)))
}

/// Is this payload a command message (by its magic)?
pub fn is_command(payload: &[u8]) -> bool {
    payload.starts_with(MAGIC)
}

impl Command {
    /// The message's bytes.
    pub fn encode(&self) -> Result<Vec<u8>, CommandError> {
        let body = self.body.json().map_err(|e| CommandError::Body {
            kind: self.body.name(),
            reason: e.to_string(),
        })?;
        if body.len() > MAX_BODY {
            return Err(CommandError::BodyLength {
                declared: body.len() as u64,
                actual: body.len(),
            });
        }
        let mut out = Vec::with_capacity(HEADER_LEN + body.len() + TRAILER_LEN);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(0);
        out.push(self.body.kind());
        out.extend_from_slice(self.id.as_bytes());
        out.extend_from_slice(&self.at.as_nanos().to_be_bytes());
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        Ok(out)
    }

    /// Decode a command message, refusing anything not exactly version 1.
    pub fn decode(payload: &[u8]) -> Result<Command, CommandError> {
        let malformed = |m: &str| CommandError::Malformed(m.to_owned());
        if payload.len() < HEADER_LEN + TRAILER_LEN {
            return Err(malformed("shorter than a header and a trailer"));
        }
        if &payload[..4] != MAGIC {
            return Err(malformed("no AUCM magic"));
        }
        // The checksum first: a version, flags or kind this build does not
        // know is then a newer writer's, not damage (the applier stops
        // rather than skip it).
        let (body, trailer) = payload.split_at(payload.len() - TRAILER_LEN);
        let stored = u32::from_be_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        let computed = crc32fast::hash(body);
        if stored != computed {
            return Err(CommandError::Checksum { stored, computed });
        }
        if payload[4] != VERSION {
            return Err(CommandError::UnknownVersion(payload[4]));
        }
        if payload[5] != 0 {
            return Err(CommandError::UnknownFlags(payload[5]));
        }
        let kind = payload[6];
        let name = kind_name(kind).ok_or(CommandError::UnknownKind(kind))?;
        let mut id = [0u8; 16];
        id.copy_from_slice(&payload[7..23]);
        let mut at = [0u8; 8];
        at.copy_from_slice(&payload[23..31]);
        let mut len = [0u8; 4];
        len.copy_from_slice(&payload[31..35]);
        let declared = u32::from_be_bytes(len);
        let json = &body[HEADER_LEN..];
        if declared as usize != json.len() || json.len() > MAX_BODY {
            return Err(CommandError::BodyLength {
                declared: u64::from(declared),
                actual: json.len(),
            });
        }
        let bad = |e: serde_json::Error| CommandError::Body {
            kind: name,
            reason: e.to_string(),
        };
        let body = match kind {
            1 => Body::SetOrg(serde_json::from_slice(json).map_err(bad)?),
            2 => Body::RequestExport(serde_json::from_slice(json).map_err(bad)?),
            3 => Body::Process(serde_json::from_slice(json).map_err(bad)?),
            4 => Body::CreateToken(serde_json::from_slice(json).map_err(bad)?),
            5 => Body::RevokeToken(serde_json::from_slice(json).map_err(bad)?),
            _ => Body::AddUser(serde_json::from_slice(json).map_err(bad)?),
        };
        Ok(Command {
            id: Uuid::from_bytes(id),
            at: Timestamp::from_nanos(i64::from_be_bytes(at)),
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Command {
        Command {
            id: Uuid::from_u128(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10),
            at: Timestamp::from_nanos(1_000_000_000),
            body: Body::RequestExport(RequestExport {
                org: "org-a".into(),
                requested_by: "ann".into(),
                role: "admin".into(),
                from: "2026-07-01".into(),
                to: "2026-07-02".into(),
            }),
        }
    }

    #[test]
    fn round_trips_every_kind() {
        let bodies = [
            Body::SetOrg(SetOrg {
                org: "o".into(),
                by: "op".into(),
                plan: Some("scale".into()),
                retention_days: None,
            }),
            sample().body,
            Body::Process(Process { scheduled: true }),
            Body::CreateToken(CreateToken {
                token_id: Uuid::nil().to_string(),
                org: None,
                role: "operator".into(),
                name: Some("n".into()),
                by: "root".into(),
                sha256: "ab".repeat(32),
            }),
            Body::RevokeToken(RevokeToken {
                token_id: "t".into(),
                by: "root".into(),
            }),
            Body::AddUser(AddUser {
                user: "ann".into(),
                org: "o".into(),
                role: "admin".into(),
                password_hash: "$argon2id$x".into(),
                by: "root".into(),
            }),
        ];
        for body in bodies {
            let c = Command {
                id: Uuid::new_v4(),
                at: Timestamp::from_nanos(-5),
                body,
            };
            let bytes = c.encode().unwrap();
            assert!(is_command(&bytes));
            assert_eq!(Command::decode(&bytes).unwrap(), c);
        }
    }

    #[test]
    fn the_documented_bytes() {
        let bytes = sample().encode().unwrap();
        let body =
            br#"{"org":"org-a","requested_by":"ann","role":"admin","from":"2026-07-01","to":"2026-07-02"}"#;
        let mut want = b"AUCM\x01\x00\x02".to_vec();
        want.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
        want.extend_from_slice(&[0, 0, 0, 0, 0x3b, 0x9a, 0xca, 0x00]);
        want.extend_from_slice(&(body.len() as u32).to_be_bytes());
        want.extend_from_slice(body);
        want.extend_from_slice(&crc32fast::hash(&want).to_be_bytes());
        assert_eq!(bytes, want);
        assert_eq!(msg_id(&bytes).len(), 6 + 64);
        assert!(msg_id(&bytes).starts_with("aucm1-"));
    }

    #[test]
    fn refuses_bad_input_precisely() {
        let good = sample().encode().unwrap();
        let with = |i: usize, v: u8| {
            let mut b = good.clone();
            b[i] = v;
            let n = b.len() - 4;
            let crc = crc32fast::hash(&b[..n]);
            b[n..].copy_from_slice(&crc.to_be_bytes());
            b
        };
        assert_eq!(
            Command::decode(&good[..20]),
            Err(CommandError::Malformed(
                "shorter than a header and a trailer".into()
            ))
        );
        assert!(matches!(
            Command::decode(&with(0, b'X')),
            Err(CommandError::Malformed(_))
        ));
        assert_eq!(Command::decode(&with(4, 2)), Err(CommandError::UnknownVersion(2)));
        assert_eq!(Command::decode(&with(5, 1)), Err(CommandError::UnknownFlags(1)));
        assert_eq!(Command::decode(&with(6, 7)), Err(CommandError::UnknownKind(7)));
        assert_eq!(Command::decode(&with(6, 0)), Err(CommandError::UnknownKind(0)));
        // The kind says `set_org` but the body is an export request.
        assert!(matches!(
            Command::decode(&with(6, 1)),
            Err(CommandError::Body { kind: "set_org", .. })
        ));
        // A declared length that is not what follows.
        assert!(matches!(
            Command::decode(&with(34, good[34] + 1)),
            Err(CommandError::BodyLength { .. })
        ));
        // Every flipped bit is caught (the checksum, or a field's check).
        for i in 0..good.len() {
            let mut b = good.clone();
            b[i] ^= 0x10;
            assert!(Command::decode(&b).is_err(), "byte {i}");
        }
        // A truncated message.
        assert!(Command::decode(&good[..good.len() - 1]).is_err());
        // Bytes after the body are counted in the length check.
        let mut longer = good[..good.len() - 4].to_vec();
        longer.push(b' ');
        let crc = crc32fast::hash(&longer);
        longer.extend_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            Command::decode(&longer),
            Err(CommandError::BodyLength { .. })
        ));
        // A missing field, even one that may be null.
        let c = Command {
            body: Body::SetOrg(SetOrg {
                org: "o".into(),
                by: "op".into(),
                plan: None,
                retention_days: None,
            }),
            ..sample()
        };
        let mut b = c.encode().unwrap();
        b.truncate(HEADER_LEN);
        let json = br#"{"org":"o","by":"op","plan":null}"#;
        b[31..35].copy_from_slice(&(json.len() as u32).to_be_bytes());
        b.extend_from_slice(json);
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        match Command::decode(&b) {
            Err(CommandError::Body {
                kind: "set_org",
                reason,
            }) => {
                assert!(reason.contains("missing field `retention_days`"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        // An unknown field in the body.
        let c = Command {
            body: Body::Process(Process { scheduled: false }),
            ..sample()
        };
        let mut b = c.encode().unwrap();
        let n = b.len() - 4;
        b.truncate(n);
        let json = br#"{"scheduled":false,"x":1}"#;
        b.truncate(HEADER_LEN);
        b[31..35].copy_from_slice(&(json.len() as u32).to_be_bytes());
        b.extend_from_slice(json);
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            Command::decode(&b),
            Err(CommandError::Body { kind: "process", .. })
        ));
    }

    #[test]
    fn schedule_ids_are_the_same_everywhere() {
        let m = Timestamp::from_nanos(1_800_000_000_000_000_000);
        assert_eq!(schedule_id(3, m), schedule_id(3, m));
        assert_ne!(schedule_id(3, m), schedule_id(4, m));
        assert_ne!(schedule_id(3, m), schedule_id(3, Timestamp::from_nanos(1)));
    }
}
