//! Replays the committed seed corpus of every fuzz target
//! (`fuzz/corpus/<target>/`) through the very checks the fuzzer runs
//! (`fuzz/common/`, included here with `#[path]`), so `cargo test` exercises
//! each target's logic. Also holds the regression tests of what fuzzing found.
//!
//! Long runs: see docs/reliability.md ("Fuzzing and model checking").

#[allow(dead_code)]
#[path = "../fuzz/common/checks.rs"]
mod checks;
#[allow(dead_code)]
#[path = "../fuzz/common/ops.rs"]
mod ops;

use std::path::{Path, PathBuf};

use auditstore::codec;
use auditstore::index::file as idxfile;
use auditstore::log::frame;

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seed corpus in {}", dir.display());
    files
}

fn replay(target: &str, check: fn(&[u8])) {
    for path in corpus(target) {
        let data = std::fs::read(&path).expect("read corpus file");
        let result = std::panic::catch_unwind(|| check(&data));
        if let Err(e) = result {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{target}: {} fails: {msg}", path.display());
        }
    }
}

#[test]
fn corpus_decode_frames() {
    replay("decode_frames", checks::decode_frames);
}

#[test]
fn corpus_parse_event() {
    replay("parse_event", checks::parse_event);
}

#[test]
fn corpus_csv_roundtrip() {
    replay("csv_roundtrip", checks::csv_roundtrip);
}

#[test]
fn corpus_store_ops() {
    replay("store_ops", ops::run_bytes);
}

/// The corpus stays small enough to commit and to replay quickly.
#[test]
fn corpus_is_small() {
    let mut files = 0;
    let mut bytes = 0;
    for t in ["decode_frames", "parse_event", "csv_roundtrip", "store_ops"] {
        for p in corpus(t) {
            files += 1;
            bytes += std::fs::metadata(&p).expect("stat").len();
        }
    }
    assert!(files < 200, "{files} corpus files");
    assert!(bytes < 1 << 20, "{bytes} corpus bytes");
}

// ---------------------------------------------------------------------------
// Sanity of the checks themselves: they must catch what they claim to.

/// A valid segment with two records, as the fuzzer's segment mode sees it.
fn two_record_segment() -> Vec<u8> {
    let mut seg = auditstore::log::header::encode(1).to_vec();
    for (i, org) in ["org-a", "org-b"].iter().enumerate() {
        let e = ops::make_event(
            i as u8,
            ops::Key {
                variant: i as u8,
                pad: 1,
                ts: ops::START,
            },
            0,
        );
        let start = frame::begin(&mut seg);
        codec::encode(org, &e, &mut seg);
        frame::seal_in_place(&mut seg, start);
    }
    seg
}

#[test]
fn checks_accept_valid_inputs() {
    let seg = two_record_segment();
    for mode in 0..4u8 {
        let mut data = vec![mode];
        data.extend_from_slice(&seg);
        checks::decode_frames(&data);
    }
    let e = ops::make_event(
        3,
        ops::Key {
            variant: 2,
            pad: 0,
            ts: 0,
        },
        1,
    );
    checks::parse_event(e.to_json().as_bytes());
    checks::check_event(&e);
    let mut csv_input = vec![0u8];
    csv_input.extend_from_slice(e.to_json().as_bytes());
    checks::csv_roundtrip(&csv_input);
    for seed in 0..64u8 {
        let data: Vec<u8> = (0..200u32)
            .map(|i| (i as u8).wrapping_mul(seed | 1).wrapping_add(seed))
            .collect();
        checks::csv_roundtrip(&data);
        checks::decode_frames(&data);
        checks::parse_event(&data);
    }
}

#[test]
#[should_panic(expected = "formula cell")]
fn csv_check_catches_a_formula_cell() {
    // The check, not the sink, is under test: feed it a CSV row by hand.
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["=1+1"]).unwrap();
    let bytes = w.into_inner().unwrap();
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(bytes.as_slice());
    for row in r.records() {
        for cell in row.unwrap().iter() {
            if let Some(c) = cell.chars().next() {
                assert!(
                    !auditstore::export::csv::is_formula_start(c),
                    "formula cell {cell:?}"
                );
            }
        }
    }
}

#[test]
fn known_sequence_passes_the_model() {
    // A sequence whose model answer is known: append, re-send, conflict.
    use ops::{Item, Op};
    let new = |variant| Item::New {
        org: 0,
        slot: 1,
        variant,
        pad: 0,
        ts: ops::START,
        style: 0,
    };
    let seq = vec![
        Op::Append(vec![new(0)]),
        Op::Append(vec![Item::Resend {
            slot: 1,
            style: 1,
            other_org: false,
        }]),
        Op::Append(vec![new(1), new(0)]),
        Op::Verify,
    ];
    run_with_both_sealings(&seq);
}

/// `seq` through the model with 4 KiB segments, sealed on the sealer thread
/// and on the appending one.
fn run_with_both_sealings(seq: &[ops::Op]) {
    for inline_sealing in [false, true] {
        let config = ops::Config {
            segment_size: 4096,
            buffered: false,
            inline_sealing,
        };
        ops::run(config, seq).unwrap();
    }
}

/// Retention rolls a fully expired active segment and deletes it, leaving an
/// empty segment after the last sealed one; that one's index then goes
/// missing, so the next open takes it for a roll interrupted before its seal
/// and makes it the active segment again. The de-duplication checkpoint
/// written at the last close covered it: kept, it would have described that
/// id once sealed again with more records (a duplicate of them let in after
/// a crash). Found by the model proptest; the open now removes a checkpoint
/// that covers a segment which is not sealed.
#[test]
fn a_checkpoint_covering_a_segment_made_active_again_is_dropped() {
    use ops::{Crash, Item, Op};
    let new = |slot, pad| Item::New {
        org: 0,
        slot,
        variant: 0,
        pad,
        ts: i64::MIN,
        style: 0,
    };
    let seq = vec![
        Op::Append(vec![Item::Resend {
            slot: 3,
            style: 0,
            other_org: false,
        }]),
        Op::Append(vec![new(0, 216)]),
        Op::ApplyRetention,
        Op::Crash(Crash::DropLastIdx),
        Op::Append(vec![new(0, 0), new(1, 205)]),
        Op::Verify,
    ];
    run_with_both_sealings(&seq);
}

// ---------------------------------------------------------------------------
// Regression tests for what fuzzing and writing the checks found. Each
// input is also a corpus file (`regress-*`). Fixed bugs keep their test;
// open ones are `#[ignore = "bug: ..."]` until fixed (and tolerated by the
// checks, see `KNOWN_BUGS` in fuzz/common/checks.rs).

/// `codec::decode` must reject bodies that `codec::encode` can never
/// produce: a non-zero reserved byte (offset 25), or scope/request bytes
/// while the flag saying the field is present is clear. Such a body used to
/// decode, and re-encoding the decoded record gave other bytes (the hidden
/// bytes silently vanished; `verify` could not see them). Found by the
/// `decode_frames` round-trip check; fixed in src/codec.rs (decode).
/// Corpus: decode_frames/regress-noncanonical-*.
#[test]
fn codec_rejects_noncanonical_bodies() {
    let e = ops::make_event(
        5,
        ops::Key {
            variant: 0,
            pad: 0,
            ts: ops::START,
        },
        0,
    );
    let mut body = Vec::new();
    codec::encode("org-a", &e, &mut body);
    assert!(codec::decode(&body).is_ok());

    let mut reserved = body.clone();
    reserved[25] = 1;
    assert!(codec::decode(&reserved).is_err(), "reserved byte 25 must be 0");

    // Scope bytes without the scope flag (bit 1 of byte 24).
    let mut hidden = body.clone();
    let n = 3u32;
    hidden[50..54].copy_from_slice(&n.to_le_bytes());
    let at = hidden.len();
    hidden.splice(at..at, *b"abc");
    assert_eq!(hidden[24] & 2, 0);
    assert!(
        codec::decode(&hidden).is_err(),
        "scope_len must be 0 when scope is absent"
    );

    // Request bytes without the request flag (bit 2).
    let mut hidden = body;
    hidden[54..58].copy_from_slice(&n.to_le_bytes());
    hidden.extend_from_slice(b"xyz");
    assert!(
        codec::decode(&hidden).is_err(),
        "request_len must be 0 when request is absent"
    );
}

/// Index bytes with a valid checksum whose counts overflow the arithmetic
/// in `index::file::parse` (src/index/file.rs). `2 * entries_len` and
/// `first_entry + entry_count` used to be unchecked: in debug builds `parse`
/// panicked ("attempt to add/multiply with overflow"); in release it
/// accepted the file, and `SealedSegment::fingerprints`/`time_entry` then
/// indexed past the end of the mapping (a panic in `Store::open`) instead of
/// the index being rebuilt or refused as `Corrupt`. Found while writing the
/// `decode_frames` index check; fixed in src/index/file.rs (parse).
/// Corpus: decode_frames/regress-index-overflow-event-count,
/// decode_frames/regress-index-wrapping-entry-count.
fn overflowing_index(event_count: u64, orgs: &[(u64, u64)]) -> Vec<u8> {
    let mut table = Vec::new();
    for (first, count) in orgs {
        table.extend_from_slice(&1u16.to_le_bytes());
        table.push(b'o');
        table.extend_from_slice(&first.to_le_bytes());
        table.extend_from_slice(&count.to_le_bytes());
        table.extend_from_slice(&0i64.to_le_bytes());
        table.extend_from_slice(&0i64.to_le_bytes());
    }
    let mut b = Vec::new();
    b.extend_from_slice(&idxfile::INDEX_MAGIC);
    b.extend_from_slice(&idxfile::INDEX_FORMAT_VERSION.to_le_bytes());
    b.extend_from_slice(&(idxfile::INDEX_HEADER_LEN as u32).to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes());
    b.extend_from_slice(&32u64.to_le_bytes());
    b.extend_from_slice(&event_count.to_le_bytes());
    b.extend_from_slice(&(orgs.len() as u32).to_le_bytes());
    b.extend_from_slice(&(table.len() as u32).to_le_bytes());
    b.extend_from_slice(&0i64.to_le_bytes());
    b.extend_from_slice(&0i64.to_le_bytes());
    b.extend_from_slice(&table);
    // Sized so that the (wrapping) section sum matches the file length.
    let entries = (event_count as usize)
        .wrapping_mul(idxfile::ENTRY_LEN)
        .wrapping_mul(2);
    if entries < 4096 {
        b.resize(b.len() + entries, 0);
    }
    let crc = checks::crc32(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&idxfile::INDEX_FOOTER_MAGIC);
    b
}

#[test]
fn index_parse_rejects_overflowing_event_count() {
    // event_count * 12 fits in usize, twice that does not (wraps to 8).
    let count = 768_614_336_404_564_651u64;
    let idx = overflowing_index(count, &[(0, count)]);
    let r = std::panic::catch_unwind(|| idxfile::parse(&idx, 1).map(|l| l.event_count));
    assert!(matches!(r, Ok(Err(_))), "parse must return an error, got {r:?}");
}

#[test]
fn index_parse_rejects_wrapping_org_entry_counts() {
    // Two orgs whose entry counts wrap around u64 to the event count (1).
    let idx = overflowing_index(1, &[(0, 2), (2, u64::MAX)]);
    let r = std::panic::catch_unwind(|| idxfile::parse(&idx, 1).map(|l| l.event_count));
    assert!(matches!(r, Ok(Err(_))), "parse must return an error, got {r:?}");
}

/// Sanity: the hand-built index above is otherwise well-formed (a small
/// count parses), so the two tests above fail only on the overflow.
#[test]
fn overflowing_index_builder_is_well_formed() {
    let idx = overflowing_index(2, &[(0, 2)]);
    let l = idxfile::parse(&idx, 1).expect("well-formed index");
    assert_eq!(l.event_count, 2);
}

/// `Event::from_json` used to accept a number outside the f64 range
/// (`1e400`, or an integer of 400 digits) inside a nested object: RawValue
/// only checks the syntax. The event was stored and exported verbatim, but
/// serde_json (`Value`), and any consumer with the same limit, could not
/// parse the event's own `to_json()` ("number out of range"). Found by the
/// `parse_event` seed corpus; fixed in src/event.rs (compact). Corpus:
/// parse_event/hostile-float-1e400, parse_event/regress-bigint-400-digits.
#[test]
fn accepted_events_print_json_that_serde_json_parses() {
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/parse_event/sample-0"),
    )
    .unwrap();
    let big_int = format!("1{}", "0".repeat(400));
    for number in ["1e400", "-1e400", big_int.as_str()] {
        let text = base.replace("\"build_num\":54810", &format!("\"build_num\":{number}"));
        assert_ne!(text, base);
        if let Ok(e) = auditstore::Event::from_json(&text) {
            let printed = e.to_json();
            assert!(
                serde_json::from_str::<serde_json::Value>(&printed).is_ok(),
                "accepted {number}, but serde_json cannot parse to_json()"
            );
        }
    }
}

/// An 80-byte index with a valid checksum, no organizations in its table,
/// and `org_count = u32::MAX`.
fn huge_org_count_index() -> Vec<u8> {
    let mut idx = overflowing_index(0, &[]);
    idx[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
    let foot = idx.len() - idxfile::FOOTER_LEN;
    let crc = checks::crc32(&idx[..foot]);
    idx[foot..foot + 4].copy_from_slice(&crc.to_le_bytes());
    idx
}

/// Found by the `decode_frames` fuzzer (out-of-memory, 53-byte input,
/// corpus: decode_frames/regress-oom-org-count and
/// decode_frames/regress-index-huge-org-count). `index::file::parse`
/// (src/index/file.rs, `Vec::with_capacity(org_count)`) trusted `org_count`
/// from the file before checking that the org table can hold that many
/// entries: 4 G x 56 bytes were requested, the allocation failed and the
/// process aborted, so `Store::open` on such an index died instead of
/// rebuilding the index or returning `Corrupt`. Fixed in src/index/file.rs
/// (the capacity is bounded by the table length). The parse runs in a child
/// process with its address space capped at 1 GiB, so the abort is
/// observed whatever the machine's overcommit policy.
#[test]
fn index_parse_does_not_allocate_by_untrusted_org_count() {
    const CHILD: &str = "AUDITSTORE_FUZZ_CHILD_PARSE";
    let idx = huge_org_count_index();
    if std::env::var_os(CHILD).is_some() {
        assert!(idxfile::parse(&idx, 1).is_err());
        return;
    }
    let name = "index_parse_does_not_allocate_by_untrusted_org_count";
    // The shell caps the address space (`ulimit -v`, KiB), then becomes
    // the test binary.
    let out = std::process::Command::new("sh")
        .args(["-c", "ulimit -v 1048576 && exec \"$0\" \"$@\""])
        .arg(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            name,
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .expect("spawn the test binary");
    assert!(
        out.status.success(),
        "parsing an 80-byte index with org_count = u32::MAX crashed: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sanity: that index is otherwise well-formed (the same bytes with
/// `org_count = 0` parse), so the test above fails only on the allocation.
#[test]
fn huge_org_count_index_is_otherwise_well_formed() {
    let idx = overflowing_index(0, &[]);
    assert_eq!(idxfile::parse(&idx, 1).expect("well-formed").event_count, 0);
    checks::decode_frames(&[[3u8].as_slice(), &huge_org_count_index()].concat());
}

/// Found by the `parse_event` fuzzer (corpus:
/// parse_event/regress-lone-surrogate-*). `Event::from_json` used to accept
/// a JSON string escape of a lone UTF-16 surrogate (`"\ud800"`) wherever it
/// does not decode the string itself: payload and metadata values and keys,
/// and extra members of actor/target/scope/request (RawValue and IgnoredAny
/// only check that four hex digits follow `\u`). The event was stored and
/// exported verbatim, but its `to_json()` was not valid Unicode: serde_json
/// refused it ("unexpected end of hex escape"), and `Event::same_content`
/// called two spellings of it different (a re-sent duplicate became a
/// `Conflict`). Fixed in src/event.rs (compact).
#[test]
fn accepted_events_have_no_lone_surrogates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/parse_event");
    let mut accepted = Vec::new();
    for name in [
        "regress-lone-surrogate-payload",
        "regress-lone-surrogate-key",
        "regress-lone-surrogate-actor-extra",
    ] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        if let Ok(e) = auditstore::Event::from_json(&text) {
            if let Err(err) = serde_json::from_str::<serde_json::Value>(&e.to_json()) {
                accepted.push(format!("{name}: serde_json cannot parse to_json(): {err}"));
            }
        }
    }
    assert!(
        accepted.is_empty(),
        "accepted lone surrogates:\n{}",
        accepted.join("\n")
    );
}
