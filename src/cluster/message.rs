//! The message that carries a batch of events through a partition's
//! stream, version 1 (byte for byte in docs/cluster.md, "Message format").
//!
//! ```text
//! header   4 bytes  magic "AUEB"
//!          1 byte   version = 1
//!          1 byte   flags: bit 0 `FLAG_LZ4`, bit 1 `FLAG_RECORDS` (below);
//!                   a reader refuses others
//!          4 bytes  N, the number of entries (u32, big-endian)
//! N times  2 bytes  organization length L (u16, big-endian; 1..=256)
//!          L bytes  organization name (UTF-8)
//!          4 bytes  event length E (u32, big-endian)
//!          E bytes  the event's JSON (`Event::to_json`, events.md)
//! trailer  4 bytes  CRC-32 (IEEE) of every byte before it (u32, big-endian)
//! ```
//!
//! With flags = 1 (`FLAG_LZ4`), the bytes between the header and the
//! trailer are instead the entries' length U (u32, big-endian) and the
//! entries compressed as one LZ4 block (no frame) of U bytes. Publishers
//! compress a batch when that makes it smaller ([`Batcher::compressing`]).
//!
//! With `FLAG_RECORDS` (2), each entry is instead a record body's length
//! (u32, big-endian) and the body, in the store's record format
//! (`src/codec.rs`, docs/format.md: it carries the organization): the
//! nodes applying the batch then decode each event without parsing JSON.
//! The publisher validated every event before encoding it; a reader checks
//! the body's structure, UTF-8 and organization name, and trusts the rest
//! as it trusts commands from the stream.
//!
//! The message's `Nats-Msg-Id` is `aueb1-` and the lowercase hex SHA-256 of
//! the whole payload: a publish retried with the same batch is dropped by
//! the stream's de-duplication window; one retried after it, or re-batched
//! differently, is harmless all the same, since the store de-duplicates by
//! event id.

use sha2::{Digest, Sha256};

use crate::codec::MAX_ORG_LEN;
use crate::event::Event;

const MAGIC: &[u8; 4] = b"AUEB";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 10;
/// The flag of a batch whose entries are one LZ4 block.
pub const FLAG_LZ4: u8 = 1;
/// The flag of a batch whose entries are record bodies (`crate::codec`),
/// not JSON.
pub const FLAG_RECORDS: u8 = 2;
/// The largest entries' length a compressed batch may claim: a message is
/// at most 1 MiB, and LZ4 expands at most about 255 times.
const MAX_UNCOMPRESSED: usize = 64 << 20;
const TRAILER_LEN: usize = 4;
/// A batch message grows to about this many bytes (of entries, before any
/// compression) before a new one starts (one event larger than that
/// travels alone). The streams take messages of up to 1 MiB, headers
/// included: 8 KiB are left for the header, trailer and NATS headers.
/// JetStream's cost is per message and per byte: the fewest, biggest
/// messages keep it low (docs/performance.md, "Cluster ingest").
pub const TARGET_MESSAGE_BYTES: usize = 1024 * 1024 - 8 * 1024;

/// Why a message's bytes are not a batch of this version.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageError {
    #[error("batch message: {0}")]
    Malformed(String),
    #[error("batch message: unknown version {0} (this build reads version {VERSION})")]
    UnknownVersion(u8),
    #[error("batch message: unknown flags {0:#04x} (this build reads bits 0, LZ4, and 1, record bodies)")]
    UnknownFlags(u8),
    #[error("batch message: checksum mismatch (stored {stored:08x}, computed {computed:08x})")]
    Checksum { stored: u32, computed: u32 },
    #[error("batch message: entry {index}: {reason}")]
    BadEntry { index: u32, reason: String },
}

/// One encoded batch, ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub payload: Vec<u8>,
    /// `Nats-Msg-Id`: a hash of the payload.
    pub msg_id: String,
    /// Events in it.
    pub count: usize,
}

/// The `Nats-Msg-Id` of a payload.
pub fn msg_id(payload: &[u8]) -> String {
    format!("aueb1-{}", crate::hex::encode(&Sha256::digest(payload)))
}

/// Builds batch messages of at most about [`TARGET_MESSAGE_BYTES`].
#[derive(Debug)]
pub struct Batcher {
    target: usize,
    /// Compress each batch's entries with LZ4 when that makes it smaller.
    compress: bool,
    /// Entries are record bodies ([`FLAG_RECORDS`]).
    records: bool,
    /// One entry's body, encoded before it is known to fit.
    scratch: Vec<u8>,
    buf: Vec<u8>,
    count: u32,
    done: Vec<Batch>,
}

impl Default for Batcher {
    fn default() -> Self {
        Self::with_target(TARGET_MESSAGE_BYTES)
    }
}

impl Batcher {
    /// A batcher that starts a new message past `target` bytes.
    pub fn with_target(target: usize) -> Self {
        Batcher {
            target,
            compress: false,
            records: false,
            scratch: Vec::new(),
            buf: Vec::new(),
            count: 0,
            done: Vec::new(),
        }
    }

    /// A batcher of [`TARGET_MESSAGE_BYTES`] (of entries, before
    /// compression) that compresses each batch with LZ4 when that makes it
    /// smaller (the streams then carry, replicate and store fewer bytes),
    /// with the events as record bodies ([`FLAG_RECORDS`]: the appliers
    /// parse no JSON). What the publisher uses.
    pub fn compressing() -> Self {
        Batcher {
            compress: true,
            records: true,
            ..Self::with_target(TARGET_MESSAGE_BYTES)
        }
    }

    /// Add one event of `org` (a valid organization name: 1 to 256 bytes).
    pub fn push(&mut self, org: &str, event: &Event) {
        self.scratch.clear();
        if self.records {
            crate::codec::encode(org, event, &mut self.scratch);
        } else {
            self.scratch.extend_from_slice(&(org.len() as u16).to_be_bytes());
            self.scratch.extend_from_slice(org.as_bytes());
            let json = event.to_json();
            self.scratch.extend_from_slice(&(json.len() as u32).to_be_bytes());
            self.scratch.extend_from_slice(json.as_bytes());
        }
        let entry_len = self.scratch.len() + if self.records { 4 } else { 0 };
        if self.count > 0 && self.buf.len() + entry_len + TRAILER_LEN > self.target {
            self.finish_one();
        }
        if self.count == 0 {
            self.buf.clear();
            self.buf.extend_from_slice(MAGIC);
            self.buf.push(VERSION);
            self.buf.push(if self.records { FLAG_RECORDS } else { 0 });
            self.buf.extend_from_slice(&0u32.to_be_bytes());
        }
        if self.records {
            self.buf
                .extend_from_slice(&(self.scratch.len() as u32).to_be_bytes());
        }
        self.buf.extend_from_slice(&self.scratch);
        self.count += 1;
    }

    fn finish_one(&mut self) {
        if self.count == 0 {
            return;
        }
        self.buf[6..10].copy_from_slice(&self.count.to_be_bytes());
        if self.compress {
            let entries = &self.buf[HEADER_LEN..];
            let packed = lz4_flex::block::compress(entries);
            if packed.len() + 4 < entries.len() {
                let mut out = Vec::with_capacity(HEADER_LEN + 4 + packed.len() + TRAILER_LEN);
                out.extend_from_slice(&self.buf[..HEADER_LEN]);
                out[5] |= FLAG_LZ4;
                out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
                out.extend_from_slice(&packed);
                self.buf = out;
            }
        }
        let crc = crc32fast::hash(&self.buf);
        self.buf.extend_from_slice(&crc.to_be_bytes());
        let payload = std::mem::take(&mut self.buf);
        self.done.push(Batch {
            msg_id: msg_id(&payload),
            payload,
            count: self.count as usize,
        });
        self.count = 0;
    }

    /// The messages, in the order the events were pushed.
    pub fn finish(mut self) -> Vec<Batch> {
        self.finish_one();
        self.done
    }
}

/// Decode a batch message into (organization, event) pairs, in order.
pub fn decode(payload: &[u8]) -> Result<Vec<(String, Event)>, MessageError> {
    let malformed = |m: &str| MessageError::Malformed(m.to_owned());
    if payload.len() < HEADER_LEN + TRAILER_LEN {
        return Err(malformed("shorter than a header and a trailer"));
    }
    if &payload[..4] != MAGIC {
        return Err(malformed("no AUEB magic"));
    }
    // The checksum first: a version or flags this build does not know are
    // then a newer writer's, not damage (the applier stops rather than
    // skip the message).
    let (body, trailer) = payload.split_at(payload.len() - TRAILER_LEN);
    let stored = u32::from_be_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(MessageError::Checksum { stored, computed });
    }
    if payload[4] != VERSION {
        return Err(MessageError::UnknownVersion(payload[4]));
    }
    let flags = payload[5];
    if flags & !(FLAG_LZ4 | FLAG_RECORDS) != 0 {
        return Err(MessageError::UnknownFlags(flags));
    }
    let count = u32::from_be_bytes([body[6], body[7], body[8], body[9]]);
    let entries = match flags & FLAG_RECORDS {
        0 => json_entries,
        _ => record_entries,
    };
    if flags & FLAG_LZ4 == 0 {
        return entries(count, &body[HEADER_LEN..]);
    }
    let (len, packed) = take_u32(&body[HEADER_LEN..]).ok_or_else(|| malformed("no entries' length"))?;
    let len = len as usize;
    if len > MAX_UNCOMPRESSED {
        return Err(malformed("entries' length over 64 MiB"));
    }
    let mut unpacked = vec![0u8; len];
    match lz4_flex::block::decompress_into(packed, &mut unpacked) {
        Ok(n) if n == len => entries(count, &unpacked),
        Ok(_) => Err(malformed("the LZ4 block is shorter than its entries' length")),
        Err(e) => Err(MessageError::Malformed(format!("the LZ4 block: {e}"))),
    }
}

/// The `count` record-body entries that make up `rest`, exactly.
fn record_entries(count: u32, mut rest: &[u8]) -> Result<Vec<(String, Event)>, MessageError> {
    // Every entry takes at least 4 + FIXED_LEN bytes.
    let mut out = Vec::with_capacity((count as usize).min(rest.len() / (4 + crate::codec::FIXED_LEN)));
    for index in 0..count {
        let bad = |reason: &str| MessageError::BadEntry {
            index,
            reason: reason.to_owned(),
        };
        let (len, r) = take_u32(rest).ok_or_else(|| bad("truncated record length"))?;
        let (body, r) = take(r, len as usize).ok_or_else(|| bad("truncated record"))?;
        let record = crate::codec::decode(body).map_err(|e| bad(&e.0))?;
        if record.org.is_empty() || record.org.len() > MAX_ORG_LEN {
            return Err(bad("organization length out of 1..=256"));
        }
        crate::org::validate_org_name(record.org).map_err(|e| bad(&e.to_string()))?;
        out.push((record.org.to_owned(), record.to_event()));
        rest = r;
    }
    if !rest.is_empty() {
        return Err(MessageError::Malformed("bytes after the last entry".to_owned()));
    }
    Ok(out)
}

/// The `count` JSON entries that make up `rest`, exactly.
fn json_entries(count: u32, mut rest: &[u8]) -> Result<Vec<(String, Event)>, MessageError> {
    let malformed = |m: &str| MessageError::Malformed(m.to_owned());
    // Every entry takes at least 7 bytes: no allocation beyond the input.
    let mut out = Vec::with_capacity((count as usize).min(rest.len() / 7));
    for index in 0..count {
        let bad = |reason: &str| MessageError::BadEntry {
            index,
            reason: reason.to_owned(),
        };
        let (org_len, r) = take_u16(rest).ok_or_else(|| bad("truncated organization length"))?;
        if org_len == 0 || org_len as usize > MAX_ORG_LEN {
            return Err(bad("organization length out of 1..=256"));
        }
        let (org, r) = take(r, org_len as usize).ok_or_else(|| bad("truncated organization"))?;
        let org = std::str::from_utf8(org).map_err(|_| bad("organization is not UTF-8"))?;
        crate::org::validate_org_name(org).map_err(|e| bad(&e.to_string()))?;
        let (event_len, r) = take_u32(r).ok_or_else(|| bad("truncated event length"))?;
        let (json, r) = take(r, event_len as usize).ok_or_else(|| bad("truncated event"))?;
        let event = Event::from_json_bytes(json).map_err(|e| bad(&e.to_string()))?;
        out.push((org.to_owned(), event));
        rest = r;
    }
    if !rest.is_empty() {
        return Err(malformed("bytes after the last entry"));
    }
    Ok(out)
}

fn take(b: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    (b.len() >= n).then(|| b.split_at(n))
}

fn take_u16(b: &[u8]) -> Option<(u16, &[u8])> {
    let (h, r) = take(b, 2)?;
    Some((u16::from_be_bytes([h[0], h[1]]), r))
}

fn take_u32(b: &[u8]) -> Option<(u32, &[u8])> {
    let (h, r) = take(b, 4)?;
    Some((u32::from_be_bytes([h[0], h[1], h[2], h[3]]), r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: u128, pad: usize) -> Event {
        Event::from_json(&format!(
            r#"{{"id":"{}","action":"a.b","actor":{{"id":"u","type":"user"}},"target":{{"id":"t","type":"x"}},"occurred_at":"2026-06-01T10:00:00Z","payload":{{"p":"{}"}},"success":true}}"#,
            uuid::Uuid::from_u128(i + 1),
            "x".repeat(pad)
        ))
        .unwrap()
    }

    #[test]
    fn round_trip_in_order() {
        let mut b = Batcher::default();
        let events: Vec<Event> = (0..10).map(|i| event(i, 10)).collect();
        for (i, e) in events.iter().enumerate() {
            b.push(if i % 2 == 0 { "org-a" } else { "org-é" }, e);
        }
        let batches = b.finish();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].count, 10);
        let back = decode(&batches[0].payload).unwrap();
        assert_eq!(back.len(), 10);
        for (i, ((org, e), orig)) in back.iter().zip(&events).enumerate() {
            assert_eq!(org, if i % 2 == 0 { "org-a" } else { "org-é" });
            assert_eq!(e.to_json(), orig.to_json());
        }
    }

    #[test]
    fn the_documented_bytes() {
        let e = event(0, 0);
        let mut b = Batcher::default();
        b.push("o", &e);
        let payload = b.finish().remove(0).payload;
        let json = e.to_json();
        let mut want = b"AUEB\x01\x00\x00\x00\x00\x01\x00\x01o".to_vec();
        want.extend_from_slice(&(json.len() as u32).to_be_bytes());
        want.extend_from_slice(json.as_bytes());
        let crc = crc32fast::hash(&want);
        want.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(payload, want);
        assert_eq!(msg_id(&payload).len(), 6 + 64);
    }

    #[test]
    fn splits_by_size_and_ids_follow_content() {
        let mut b = Batcher::with_target(4096);
        let events: Vec<Event> = (0..40).map(|i| event(i, 500)).collect();
        for e in &events {
            b.push("org", e);
        }
        let batches = b.finish();
        assert!(batches.len() > 5);
        assert!(batches.iter().all(|m| m.payload.len() <= 4096));
        assert_eq!(batches.iter().map(|m| m.count).sum::<usize>(), 40);
        let all: Vec<String> = batches
            .iter()
            .flat_map(|m| decode(&m.payload).unwrap())
            .map(|(_, e)| e.id().to_string())
            .collect();
        let want: Vec<String> = events.iter().map(|e| e.id().to_string()).collect();
        assert_eq!(all, want);
        // The same events make the same messages: a retry is de-duplicated.
        let mut again = Batcher::with_target(4096);
        for e in &events {
            again.push("org", e);
        }
        assert_eq!(again.finish(), batches);
        // One event larger than the target travels alone.
        let mut big = Batcher::with_target(100);
        big.push("org", &events[0]);
        big.push("org", &events[1]);
        assert_eq!(big.finish().len(), 2);
        assert!(Batcher::default().finish().is_empty());
    }

    #[test]
    fn compressed_round_trip_and_damage() {
        let events: Vec<Event> = (0..200).map(|i| event(i, 40)).collect();
        let mut b = Batcher::compressing();
        for e in &events {
            b.push("org-a", e);
        }
        let batches = b.finish();
        assert_eq!(batches.len(), 1);
        let payload = &batches[0].payload;
        assert_eq!(payload[5], FLAG_LZ4 | FLAG_RECORDS);
        let mut plain = Batcher::default();
        for e in &events {
            plain.push("org-a", e);
        }
        let plain = plain.finish().remove(0).payload;
        assert!(
            payload.len() < plain.len() / 2,
            "{} of {}",
            payload.len(),
            plain.len()
        );
        let back = decode(payload).unwrap();
        assert_eq!(back, decode(&plain).unwrap());
        // Never larger than plain: compressed only when that saves bytes.
        for pad in [0, 1, 5] {
            let mut one = Batcher::compressing();
            let mut plain = Batcher::default();
            one.push("o", &event(7, pad));
            plain.push("o", &event(7, pad));
            let (one, plain) = (one.finish().remove(0).payload, plain.finish().remove(0).payload);
            assert!(one.len() <= plain.len());
            assert_eq!(decode(&one).unwrap(), decode(&plain).unwrap());
        }
        for i in (0..payload.len()).step_by(7) {
            let mut bad = payload.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad).is_err(), "flip at {i}");
        }
        // A CRC-valid message whose block or length lies is refused.
        let relabel = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut m = payload[..payload.len() - 4].to_vec();
            f(&mut m);
            let crc = crc32fast::hash(&m);
            m.extend_from_slice(&crc.to_be_bytes());
            decode(&m)
        };
        assert!(relabel(&|m| m[10..14].copy_from_slice(&u32::MAX.to_be_bytes())).is_err());
        assert!(relabel(&|m| m[13] ^= 1).is_err());
        assert!(relabel(&|m| m.truncate(m.len() - 5)).is_err());
        assert!(relabel(&|m| m[5] = 4).is_err());
        assert!(
            relabel(&|m| m[5] = FLAG_LZ4).is_err(),
            "record bodies read as JSON"
        );
    }

    #[test]
    fn record_entries_round_trip_and_damage() {
        let events: Vec<Event> = (0..50).map(|i| event(i, 10)).collect();
        let mut records = Batcher {
            records: true,
            ..Batcher::default()
        };
        let mut plain = Batcher::default();
        for (i, e) in events.iter().enumerate() {
            let org = if i % 2 == 0 { "org-a" } else { "org-é" };
            records.push(org, e);
            plain.push(org, e);
        }
        let records = records.finish().remove(0).payload;
        let plain = plain.finish().remove(0).payload;
        assert_eq!(records[5], FLAG_RECORDS);
        let back = decode(&records).unwrap();
        assert_eq!(back, decode(&plain).unwrap());
        for (i, (org, e)) in back.iter().enumerate() {
            assert_eq!(e.to_json(), events[i].to_json());
            assert_eq!(org, if i % 2 == 0 { "org-a" } else { "org-é" });
        }
        // CRC-valid but wrong inside: a record length past the end, a body
        // cut short, an organization with a control character.
        let resealed = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut m = records[..records.len() - 4].to_vec();
            f(&mut m);
            let crc = crc32fast::hash(&m);
            m.extend_from_slice(&crc.to_be_bytes());
            decode(&m)
        };
        assert!(resealed(&|m| m[10..14].copy_from_slice(&u32::MAX.to_be_bytes())).is_err());
        assert!(resealed(&|m| m[10..14].copy_from_slice(&10u32.to_be_bytes())).is_err());
        let org_at = 14 + crate::codec::FIXED_LEN;
        assert_eq!(&records[org_at..org_at + 5], b"org-a");
        let err = resealed(&|m| m[org_at + 3] = 0x07).unwrap_err();
        assert!(matches!(err, MessageError::BadEntry { index: 0, .. }), "{err}");
        assert!(resealed(&|m| m.truncate(m.len() - 1)).is_err());
    }

    #[test]
    fn refuses_damage() {
        let mut b = Batcher::default();
        b.push("org", &event(0, 3));
        let good = b.finish().remove(0).payload;
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            assert!(decode(&bad).is_err(), "flip at {i}");
        }
        for n in 0..good.len() {
            assert!(decode(&good[..n]).is_err(), "cut at {n}");
        }
        // A version or flags this build does not know, under a good
        // checksum: a newer writer's message (the applier stops at it); the
        // same bytes with the old checksum: damage (skipped).
        let resealed = |change: &dyn Fn(&mut Vec<u8>)| {
            let mut m = good[..good.len() - 4].to_vec();
            change(&mut m);
            let crc = crc32fast::hash(&m);
            m.extend_from_slice(&crc.to_be_bytes());
            m
        };
        let v2 = resealed(&|m| m[4] = 2);
        assert_eq!(decode(&v2), Err(MessageError::UnknownVersion(2)));
        let f7 = resealed(&|m| m[5] = 7);
        assert_eq!(decode(&f7), Err(MessageError::UnknownFlags(7)));
        for newer in [&v2, &f7] {
            assert!(crate::cluster::ClusterError::from(decode(newer).unwrap_err()).from_newer_build());
        }
        let mut damaged = good.clone();
        damaged[4] = 2;
        let err = decode(&damaged).unwrap_err();
        assert!(matches!(err, MessageError::Checksum { .. }), "{err}");
        assert!(!crate::cluster::ClusterError::from(err).from_newer_build());
        // A count larger than the entries is refused, not trusted.
        let mut lying = good[..good.len() - 4].to_vec();
        lying[6..10].copy_from_slice(&u32::MAX.to_be_bytes());
        let crc = crc32fast::hash(&lying);
        lying.extend_from_slice(&crc.to_be_bytes());
        assert!(matches!(decode(&lying), Err(MessageError::BadEntry { .. })));
    }
}
