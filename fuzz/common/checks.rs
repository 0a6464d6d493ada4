//! Per-target checks shared by the cargo-fuzz targets (`fuzz/fuzz_targets/`)
//! and the seed-corpus replay test (`tests/fuzz_corpus.rs`), so that
//! `cargo test` runs exactly the logic the fuzzer runs.
//!
//! Every function takes arbitrary bytes. It panics only when the code under
//! test breaks one of its invariants; the panic message says which.
//!
//! Known `src/` bugs that a check would otherwise trip over on every run are
//! listed in [`KNOWN_BUGS`]; each has an ignored regression test in
//! `tests/fuzz_corpus.rs`. When a bug is fixed, delete its tolerance here and
//! the `#[ignore]` there.

use auditstore::codec;
use auditstore::event::Event;
use auditstore::export::csv::{is_formula_start, CsvSink, COLUMNS};
use auditstore::index::file as idxfile;
use auditstore::index::id::fingerprint;
use auditstore::log::{frame, header, recovery};
use auditstore::Timestamp;

/// Bugs found by fuzzing and not fixed yet (see docs/reliability.md). The
/// checks tolerate exactly these shapes of input and nothing else. Empty:
/// every finding so far is fixed.
pub const KNOWN_BUGS: &[&str] = &[];

/// Parse JSON text that the code under test produced or accepted with
/// serde_json; any error is a failure.
pub fn json_value(text: &[u8], what: &str) -> serde_json::Value {
    serde_json::from_slice(text).unwrap_or_else(|e| {
        panic!(
            "serde_json cannot parse {what}: {e}\n{}",
            String::from_utf8_lossy(text)
        )
    })
}

// ---------------------------------------------------------------------------
// A tiny deterministic reader over fuzz bytes (no `arbitrary` dependency, so
// the same decoding runs under `cargo test`).

/// Reads numbers and strings from fuzz input; yields zeros once exhausted.
pub struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data, pos: 0 }
    }
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }
    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }
    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }
    /// Up to `max` raw bytes (length chosen by the input).
    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let want = usize::from(self.u8()).min(max);
        let start = self.pos.min(self.data.len());
        let end = (start + want).min(self.data.len());
        self.pos = start + want;
        &self.data[start..end]
    }
    /// A string of up to `max` bytes, lossily decoded, with a bias towards
    /// characters that break CSV, JSON and spreadsheets.
    pub fn hostile_string(&mut self, max: usize) -> String {
        const NASTY: [&str; 16] = [
            "=",
            "+",
            "-",
            "@",
            "\t",
            "\r",
            "\n",
            "\"",
            ",",
            "\\",
            "\u{0}",
            "=cmd|' /C calc'!A0",
            "\u{2028}",
            "é",
            "\u{feff}",
            "\"\"",
        ];
        let mut s = String::new();
        let n = usize::from(self.u8()) % 8;
        for _ in 0..n {
            let pick = self.u8();
            if pick < 128 {
                s.push_str(NASTY[usize::from(pick) % NASTY.len()]);
            } else {
                s.push_str(&String::from_utf8_lossy(self.bytes(max)));
            }
            if s.len() > max {
                break;
            }
        }
        s
    }
}

// ---------------------------------------------------------------------------
// decode_frames

/// Modes of [`decode_frames`], chosen by the first input byte.
const MODE_RAW: u8 = 0;
const MODE_SEGMENT: u8 = 1;
const MODE_BODY: u8 = 2;
const MODE_INDEX: u8 = 3;

/// Arbitrary bytes through the segment header check, `recovery::walk`,
/// `frame::decode`, `codec::decode` and `index::file::parse`. None may panic;
/// whatever decodes must re-encode to the same bytes.
///
/// The first byte picks a mode; the rest is the payload. Every mode also
/// runs the raw checks on the payload. The non-raw modes repair checksums
/// (segment header and frame CRCs, or the index CRC and magics) so the
/// fuzzer reaches the code behind them instead of dying at a CRC.
pub fn decode_frames(data: &[u8]) {
    let Some((&mode, payload)) = data.split_first() else {
        return;
    };
    check_raw(payload);
    match mode % 4 {
        MODE_RAW => {}
        MODE_SEGMENT => {
            let seg = fix_segment(payload);
            assert_eq!(header::check(&seg, 1), Ok(()), "repaired header must check");
            check_walk(&seg, header::SEGMENT_HEADER_LEN);
        }
        MODE_BODY => {
            check_body(payload);
            let mut framed = Vec::new();
            frame::encode(payload.get(..frame::MAX_BODY_LEN).unwrap_or(payload), &mut framed);
            check_frame(&framed);
            check_walk(&framed, 0);
        }
        MODE_INDEX => {
            let idx = fix_index(payload);
            check_index(&idx);
        }
        _ => unreachable!(),
    }
}

fn check_raw(buf: &[u8]) {
    let seg_id = buf
        .get(16..24)
        .map_or(1, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    let _ = header::check(buf, seg_id);
    let _ = header::check(buf, 1);
    check_frame(buf);
    check_body(buf);
    check_walk(buf, 0);
    check_walk(buf, header::SEGMENT_HEADER_LEN.min(buf.len()));
    check_index(buf);
}

/// One frame at the start of `buf`.
fn check_frame(buf: &[u8]) {
    match frame::decode(buf) {
        Ok((body, len)) => {
            assert_eq!(len, frame::FRAME_HEADER_LEN + body.len(), "frame length");
            assert!(len <= buf.len(), "frame longer than its buffer");
            assert!(
                !body.is_empty() && body.len() <= frame::MAX_BODY_LEN,
                "body length bounds"
            );
            let mut again = Vec::new();
            frame::encode(body, &mut again);
            assert_eq!(again.as_slice(), &buf[..len], "frame must re-encode to its bytes");
            check_body(body);
        }
        Err(frame::FrameError::Truncated { needed, available }) => {
            assert_eq!(available, buf.len(), "Truncated.available");
            assert!(needed > available, "Truncated with enough bytes");
        }
        Err(_) => {}
    }
}

/// One record body: `codec::decode`, then re-encode and compare bytes.
fn check_body(body: &[u8]) {
    let peek = codec::peek_key(body);
    let Ok(view) = codec::decode(body) else {
        return;
    };
    let (ts, id) = peek.expect("decode Ok but peek_key Err");
    assert_eq!(
        (ts, id),
        (view.occurred_at, view.id),
        "peek_key agrees with decode"
    );
    let event = view.to_event();
    let mut again = Vec::new();
    codec::encode(view.org, &event, &mut again);
    assert_eq!(
        again.as_slice(),
        body,
        "a decoded record body must re-encode to its bytes (decode accepts only the canonical form)"
    );
    assert_eq!(
        codec::decode(&again),
        Ok(view),
        "decode(encode(decode(b))) == decode(b)"
    );
}

/// `recovery::walk` from `start`: offsets in order, each visited record
/// re-decodes at its offset, the stop is where the valid prefix ends.
fn check_walk(buf: &[u8], start: usize) {
    let mut seen: Vec<u64> = Vec::new();
    let walk = recovery::walk(buf, start, |off, view| {
        let at = off as usize;
        let (body, _) = frame::decode(&buf[at..]).expect("walk visited an invalid frame");
        assert_eq!(
            codec::decode(body).as_ref(),
            Ok(view),
            "walk's view is the frame's body"
        );
        seen.push(off);
    });
    let end = walk.valid_end as usize;
    assert!(
        end >= start && end <= buf.len().max(start),
        "valid_end {end} out of [{start}, len]"
    );
    match &walk.stop {
        None => assert_eq!(end, buf.len().max(start), "a walk without a stop reaches the end"),
        Some(stop) => {
            assert_eq!(stop.offset, walk.valid_end, "stop offset is the valid end");
            assert!(end < buf.len(), "a stop needs bytes left");
            let first = frame::decode(&buf[end..]);
            if matches!(first, Err(frame::FrameError::Truncated { .. })) {
                assert!(stop.torn, "a truncated frame is a torn tail");
            }
        }
    }
    let mut at = start as u64;
    for off in &seen {
        assert_eq!(*off, at, "frames are contiguous");
        let (_, len) = frame::decode(&buf[*off as usize..]).expect("visited frame decodes");
        at += len as u64;
    }
    assert_eq!(
        at,
        walk.valid_end.max(start as u64),
        "valid_end is the end of the last frame"
    );
    if walk.stop.is_some() {
        check_salvage(buf, end);
    }
    check_survey(buf, start, &seen, walk.stop.is_some());
}

/// `recovery::survey` (what `verify` reads a segment with): its valid
/// frames and damaged stretches tile `buf[start..]` exactly, in order; it
/// agrees with the walk up to the walk's stop, and no stretch begins where
/// a valid frame does.
fn check_survey(buf: &[u8], start: usize, walked: &[u64], walk_stopped: bool) {
    let mut frames: Vec<(u64, u64)> = Vec::new();
    let damage = recovery::survey(buf, start, |off, view| {
        let (body, len) = frame::decode(&buf[off as usize..]).expect("survey visited an invalid frame");
        assert_eq!(
            codec::decode(body).as_ref(),
            Ok(view),
            "survey's view is the frame's body"
        );
        frames.push((off, off + len as u64));
    });
    assert_eq!(
        !damage.is_empty(),
        walk_stopped,
        "damage found exactly when the walk stops"
    );
    assert_eq!(
        frames.iter().take(walked.len()).map(|f| f.0).collect::<Vec<_>>(),
        walked,
        "the survey starts as the walk"
    );
    let mut pieces: Vec<(u64, u64, bool)> = frames.iter().map(|&(a, b)| (a, b, false)).collect();
    pieces.extend(damage.iter().map(|d| (d.offset, d.end, true)));
    pieces.sort();
    let mut at = start as u64;
    for (a, b, damaged) in &pieces {
        assert_eq!(*a, at, "pieces tile the buffer without gap or overlap");
        assert!(b > a, "empty piece at {a}");
        if *damaged {
            let valid = frame::decode(&buf[*a as usize..])
                .ok()
                .is_some_and(|(body, _)| codec::decode(body).is_ok());
            assert!(!valid, "a damaged stretch begins with a valid frame at {a}");
        }
        at = *b;
    }
    assert_eq!(at, buf.len().max(start) as u64, "the survey reaches the end");
}

/// `recovery::salvage` after a walk's stop: in bounds, in order, never
/// overlapping, each range exactly one frame whose record decodes, none
/// starting at the damaged frame itself.
fn check_salvage(buf: &[u8], from: usize) {
    let mut at = from + 1;
    for r in recovery::salvage(buf, from) {
        assert!(
            r.start >= at && r.end <= buf.len(),
            "salvaged {r:?} out of order or bounds"
        );
        let (body, len) = frame::decode(&buf[r.start..]).expect("salvaged frame decodes");
        assert_eq!(len, r.len(), "a salvaged range is one frame");
        assert!(codec::decode(body).is_ok(), "a salvaged frame's record decodes");
        at = r.end;
    }
}

/// `index::file::parse`, and on Ok every accessor over every entry.
fn check_index(buf: &[u8]) {
    let seg_id = buf
        .get(16..24)
        .map_or(1, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    let Ok(layout) = idxfile::parse(buf, seg_id) else {
        return;
    };
    let count = layout.event_count;
    let sections = (count as u128) * (2 * idxfile::ENTRY_LEN as u128);
    assert_eq!(
        layout.time_at as u128 + sections + idxfile::FOOTER_LEN as u128,
        buf.len() as u128,
        "parsed sections cover the file"
    );
    let mut next = 0u64;
    for org in &layout.orgs {
        assert_eq!(org.first_entry, next, "org table contiguous");
        next = org
            .first_entry
            .checked_add(org.entry_count)
            .filter(|n| *n <= count)
            .unwrap_or_else(|| panic!("org {:?} covers entries past event_count {count}", org.name));
    }
    assert_eq!(next, count, "org table covers every entry");
    for i in 0..count {
        let _ = idxfile::time_entry(buf, &layout, i);
        let (fp, _) = idxfile::id_entry(buf, &layout, i);
        assert!(
            !idxfile::offsets_with_fingerprint(buf, &layout, fp).is_empty() || !is_sorted_ids(buf, &layout),
            "a fingerprint in a sorted id table is found"
        );
    }
    let _ = idxfile::offsets_with_fingerprint(buf, &layout, fingerprint(&[0; 16]));
    for org in &layout.orgs {
        for ts in [i64::MIN, org.min_ts, org.max_ts, i64::MAX] {
            let lb = idxfile::lower_bound(buf, &layout, org, ts);
            assert!(lb >= org.first_entry && lb <= org.first_entry + org.entry_count);
        }
    }
}

fn is_sorted_ids(buf: &[u8], layout: &idxfile::IndexLayout) -> bool {
    (1..layout.event_count)
        .all(|i| idxfile::id_entry(buf, layout, i - 1).0 <= idxfile::id_entry(buf, layout, i).0)
}

/// A valid segment header for segment 1, then `payload` (its own first 32
/// bytes replaced) with every frame's checksum repaired in sequence.
fn fix_segment(payload: &[u8]) -> Vec<u8> {
    let mut seg = header::encode(1).to_vec();
    seg.extend_from_slice(payload.get(header::SEGMENT_HEADER_LEN..).unwrap_or(&[]));
    let mut at = header::SEGMENT_HEADER_LEN;
    while at + frame::FRAME_HEADER_LEN <= seg.len() {
        let len = u32::from_le_bytes([seg[at], seg[at + 1], seg[at + 2], seg[at + 3]]) as usize;
        let end = at + frame::FRAME_HEADER_LEN + len;
        if len == 0 || len > frame::MAX_BODY_LEN || end > seg.len() {
            break;
        }
        let mut h = crc32fast_hash(&seg[at..at + 4], &seg[at + frame::FRAME_HEADER_LEN..end]);
        // Leave a frame broken when its stored CRC's low bit says so, so
        // that stops in the middle of a segment are reached too.
        if seg[at + 4] == 0xEE {
            h ^= 1;
        }
        seg[at + 4..at + 8].copy_from_slice(&h.to_le_bytes());
        at = end;
    }
    seg
}

/// `payload` with the index magic, version, header length, footer magic and
/// CRC repaired (when long enough to have them).
fn fix_index(payload: &[u8]) -> Vec<u8> {
    let mut idx = payload.to_vec();
    let min = idxfile::INDEX_HEADER_LEN + idxfile::FOOTER_LEN;
    if idx.len() < min {
        idx.resize(min, 0);
    }
    idx[0..8].copy_from_slice(&idxfile::INDEX_MAGIC);
    idx[8..12].copy_from_slice(&idxfile::INDEX_FORMAT_VERSION.to_le_bytes());
    idx[12..16].copy_from_slice(&(idxfile::INDEX_HEADER_LEN as u32).to_le_bytes());
    let foot = idx.len() - idxfile::FOOTER_LEN;
    idx[foot + 8..].copy_from_slice(&idxfile::INDEX_FOOTER_MAGIC);
    let crc = crc32(&idx[..foot]);
    idx[foot..foot + 4].copy_from_slice(&crc.to_le_bytes());
    idx
}

/// CRC-32 (IEEE), bitwise: the checks need no extra dependency.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32_update(0xFFFF_FFFF, bytes) ^ 0xFFFF_FFFF
}

fn crc32_update(mut crc: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    crc
}

fn crc32fast_hash(len: &[u8], body: &[u8]) -> u32 {
    crc32_update(crc32_update(0xFFFF_FFFF, len), body) ^ 0xFFFF_FFFF
}

// ---------------------------------------------------------------------------
// parse_event

/// Arbitrary bytes through `Event::from_json_bytes`. On Ok: `to_json()` is
/// JSON that serde_json parses, it parses back to an equal Event, serde's
/// `Serialize` prints the same text, and the record codec round-trips it.
pub fn parse_event(data: &[u8]) {
    let parsed = Event::from_json_bytes(data);
    // Differential: the single-pass parser must agree with the reference
    // (serde_json) parser on every input, accepted or not, message and all.
    if let Ok(text) = std::str::from_utf8(data) {
        assert_eq!(
            parsed,
            Event::from_json_reference(text),
            "fast and reference parsers disagree on {text:?}"
        );
    }
    let Ok(event) = parsed else {
        return;
    };
    check_event(&event);
    // The input itself was JSON: serde_json agrees it parses.
    let input = json_value(data, "an accepted event's input");
    assert!(input.is_object(), "accepted input is an object");
}

/// The invariants every valid event keeps.
pub fn check_event(event: &Event) {
    let text = event.to_json();
    assert!(json_value(text.as_bytes(), "to_json()").is_object());
    let again =
        Event::from_json(&text).unwrap_or_else(|e| panic!("to_json() does not parse back: {e}\n{text}"));
    assert_eq!(&again, event, "to_json() parses back to an equal event");
    assert!(
        again.same_content(event),
        "an event has the same content as itself"
    );
    assert_eq!(again.to_json(), text, "to_json is a fixed point");
    let via_serde = serde_json::to_string(event).expect("Serialize never fails on a valid event");
    assert_eq!(via_serde, text, "serde Serialize and to_json agree");
    // Through the record codec.
    let mut body = Vec::new();
    codec::encode("org", event, &mut body);
    let view = codec::decode(&body).expect("an encoded event decodes");
    assert_eq!(&view.to_event(), event, "codec round trip");
    assert_eq!(view.org, "org");
}

// ---------------------------------------------------------------------------
// csv_roundtrip

const ACTIONS: [&str; 4] = ["user.logged_in", "a", "x-1.y_2", "context.env_var.store"];

/// Events built from hostile strings (or parsed from the input as JSON),
/// written through `CsvSink` and read back with the `csv` crate: one row per
/// event, 11 cells each, every cell as written, every JSON cell equal as a
/// `serde_json::Value` to the stored blob, no cell a spreadsheet formula.
pub fn csv_roundtrip(data: &[u8]) {
    let mut input = Input::new(data);
    let mut events = Vec::new();
    if input.u8().is_multiple_of(4) {
        // The rest of the input is one JSON event.
        if let Ok(e) = Event::from_json_bytes(data.get(1..).unwrap_or_default()) {
            events.push(e);
        }
    } else {
        let n = 1 + usize::from(input.u8() % 3);
        for _ in 0..n {
            if let Some(e) = hostile_event(&mut input) {
                events.push(e);
            }
        }
    }
    if events.is_empty() {
        return;
    }
    let mut sink = CsvSink::new(Vec::new()).expect("CSV header");
    let mut bodies = Vec::new();
    for e in &events {
        let mut body = Vec::new();
        codec::encode("org-1", e, &mut body);
        bodies.push(body);
    }
    for body in &bodies {
        let view = codec::decode(body).expect("encoded event decodes");
        if let Err(err) = sink.write_record(&view) {
            panic!(
                "CsvSink refused a valid event: {err}\n{}",
                view.to_event().to_json()
            );
        }
    }
    assert_eq!(sink.rows(), events.len() as u64);
    let bytes = sink.finish().expect("flush");
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(bytes.as_slice());
    let headers = reader.headers().expect("header row").clone();
    assert_eq!(headers.iter().collect::<Vec<_>>(), COLUMNS.to_vec(), "header row");
    let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>().unwrap_or_else(|e| {
        panic!(
            "csv reader rejects our CSV: {e}\n{}",
            String::from_utf8_lossy(&bytes)
        )
    });
    assert_eq!(rows.len(), events.len(), "one row per event");
    for (row, e) in rows.iter().zip(&events) {
        assert_eq!(row.len(), COLUMNS.len(), "cells per row");
        for cell in row.iter() {
            if let Some(c) = cell.chars().next() {
                assert!(!is_formula_start(c), "formula cell {cell:?}");
                assert!(!matches!(c, '=' | '+' | '-' | '@'), "formula cell {cell:?}");
            }
        }
        assert_eq!(&row[0], e.id().hyphenated().to_string(), "id");
        assert_eq!(&row[1], e.action(), "action");
        assert_eq!(
            Timestamp::parse_rfc3339(&row[5]).ok(),
            Some(e.occurred_at()),
            "occurred_at"
        );
        assert_eq!(&row[7], e.version().to_string(), "version");
        assert_eq!(&row[9], if e.success() { "true" } else { "false" }, "success");
        let blobs: [(usize, Option<&str>); 6] = [
            (2, Some(e.actor_json())),
            (3, Some(e.target_json())),
            (4, Some(e.payload_json())),
            (6, Some(e.metadata_json())),
            (8, e.scope_json()),
            (10, e.request_json()),
        ];
        for (i, blob) in blobs {
            let cell = &row[i];
            match blob {
                None => assert_eq!(cell, "", "absent {} is an empty cell", COLUMNS[i]),
                Some(blob) => {
                    assert_eq!(cell, blob, "{} copied verbatim", COLUMNS[i]);
                    let a = json_value(cell.as_bytes(), COLUMNS[i]);
                    let b = json_value(blob.as_bytes(), "a stored blob");
                    assert_eq!(a, b, "{} equal as JSON", COLUMNS[i]);
                }
            }
        }
    }
}

/// An event whose every free-text member is chosen by the fuzzer.
fn hostile_event(input: &mut Input<'_>) -> Option<Event> {
    let id = uuid::Uuid::from_u64_pair(input.u64(), input.u64());
    let action = if input.u8() < 230 {
        ACTIONS[usize::from(input.u8()) % ACTIONS.len()].to_string()
    } else {
        input.hostile_string(40)
    };
    let ts = Timestamp::from_nanos(input.u64() as i64);
    let mut b = Event::builder(id, &action, ts, input.bool());
    let name = |input: &mut Input<'_>| input.bool().then(|| input.hostile_string(64));
    let (aid, aty, an) = (input.hostile_string(64), input.hostile_string(16), name(input));
    b = b.actor(&aid, &aty, an.as_deref());
    let (tid, tty, tn) = (input.hostile_string(64), input.hostile_string(16), name(input));
    b = b.target(&tid, &tty, tn.as_deref());
    if input.bool() {
        let (sid, sty, sn) = (input.hostile_string(64), input.hostile_string(16), name(input));
        b = b.scope(&sid, &sty, sn.as_deref());
    }
    if input.bool() {
        b = b.request(&input.hostile_string(64));
    }
    let mut payload = serde_json::Map::new();
    for _ in 0..input.u8() % 4 {
        let key = input.hostile_string(32);
        let value = match input.u8() % 5 {
            0 => serde_json::Value::String(input.hostile_string(64)),
            1 => serde_json::Value::from(input.u64() as i64),
            2 => serde_json::Value::from(f64::from(input.u32()) / 7.0),
            3 => serde_json::json!([input.hostile_string(16), null, true]),
            _ => serde_json::json!({ input.hostile_string(16): input.hostile_string(16) }),
        };
        payload.insert(key, value);
    }
    b = b.payload(serde_json::Value::Object(payload));
    if input.bool() {
        b = b.metadata(serde_json::json!({ "ip": input.hostile_string(16), "n": input.u8() }));
    }
    b.build().ok()
}
