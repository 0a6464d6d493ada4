//! The query API's page cursor: an opaque text that encodes the position
//! after which the next page starts, `(occurred_at, id)` of the last
//! event of the page. A position, not an offset, so pages neither skip nor
//! repeat while appends go on.
//!
//! Text: `c1` then 56 lowercase hex digits of 28 bytes: `occurred_at` in
//! nanoseconds (i64, big endian), the id (16 bytes), and the CRC-32 of
//! those 24 bytes (big endian). Anything else is "not ours" (`400`).

use uuid::Uuid;

use crate::time::Timestamp;

const VERSION: &str = "c1";

/// A position in (`occurred_at`, `id`) order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub occurred_at: Timestamp,
    pub id: Uuid,
}

impl Cursor {
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(28);
        bytes.extend_from_slice(&self.occurred_at.as_nanos().to_be_bytes());
        bytes.extend_from_slice(self.id.as_bytes());
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_be_bytes());
        format!("{VERSION}{}", crate::hex::encode(&bytes))
    }

    /// The cursor this text encodes, if it is one of ours.
    pub fn decode(text: &str) -> Option<Cursor> {
        let hex = text.strip_prefix(VERSION)?;
        if hex.len() != 56 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let bytes: [u8; 28] = crate::hex::decode(hex)?;
        let (body, crc) = bytes.split_at(24);
        if crc32fast::hash(body).to_be_bytes() != crc {
            return None;
        }
        let nanos = i64::from_be_bytes(body[..8].try_into().ok()?);
        let id = Uuid::from_slice(&body[8..24]).ok()?;
        Some(Cursor {
            occurred_at: Timestamp::from_nanos(nanos),
            id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(nanos in any::<i64>(), id in any::<u128>()) {
            let c = Cursor { occurred_at: Timestamp::from_nanos(nanos), id: Uuid::from_u128(id) };
            prop_assert_eq!(Cursor::decode(&c.encode()), Some(c));
        }

        #[test]
        fn foreign_text_is_refused(text in "\\PC{0,80}") {
            // Only a text with a matching CRC decodes; random text almost never does.
            if let Some(c) = Cursor::decode(&text) {
                prop_assert_eq!(c.encode(), text);
            }
        }
    }

    #[test]
    fn a_changed_digit_is_refused() {
        let c = Cursor {
            occurred_at: Timestamp::from_nanos(1_780_000_000_000_000_000),
            id: Uuid::from_u128(42),
        };
        let text = c.encode();
        for i in 2..text.len() {
            let mut b = text.clone().into_bytes();
            b[i] = if b[i] == b'0' { b'1' } else { b'0' };
            assert_eq!(Cursor::decode(&String::from_utf8(b).unwrap()), None);
        }
    }
}
