//! Export manifests: a file checks out offline against its signed
//! manifest; an altered cell, a dropped, added or moved row, a changed
//! manifest field, another key, all fail; manifests chain per organization;
//! a record tampered with in the log fails the export instead of being
//! signed; expiry removes the manifest with the file.

use std::path::{Path, PathBuf};

use auditstore::export::manifest::Manifest;
use auditstore::export::manifest_check::{check_export, CheckError};
use auditstore::export::{ExportError, Exports, Role, Status};
use auditstore::integrity::VerifierKey;
use auditstore::{Clock, FixedClock, Plan, Timestamp};

use super::*;

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    clock: Arc<FixedClock>,
    store: Store,
    key: VerifierKey,
}

/// 3,000 sample events of 4 organizations, interleaved (so an
/// organization's rows are scattered over the tree), all on the server plan.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let clock = Arc::new(FixedClock::new(ts("2026-06-10T09:00:00Z")));
    let store = Store::open_with(
        root.join("store"),
        Options {
            clock: clock.clone(),
            ..opts()
        },
    )
    .unwrap();
    for org in ["org-00", "org-01", "org-02", "org-03"] {
        store.set_org(org, Some(Plan::Server), None).unwrap();
    }
    let events = events(3_000, 7);
    for batch in events.chunks(250) {
        store
            .append_batch(batch.iter().map(|(o, e)| (o.as_str(), e)))
            .unwrap();
    }
    let key = VerifierKey::parse(&store.key_info().unwrap().verifier_key).unwrap();
    Fixture {
        _dir: dir,
        root,
        clock,
        store,
        key,
    }
}

impl Fixture {
    /// Requests `org`'s export of 2026-06-01..=2026-06-09 at the current
    /// time, processes it at the next :30 mark, and returns its id.
    fn export(&self, org: &str) -> uuid::Uuid {
        let exports = Exports::new(&self.store).unwrap();
        let req = exports
            .request(
                org,
                "ann",
                Role::Admin,
                "2026-06-01".parse().unwrap(),
                "2026-06-09".parse().unwrap(),
            )
            .unwrap();
        let now = self.clock.now();
        self.clock.set(exports.processed_at(now));
        let report = exports.process().unwrap();
        assert_eq!(report.processed_ids(), vec![req.id]);
        self.clock.set(Timestamp::from_nanos(
            self.clock.now().as_nanos() + 60_000_000_000,
        ));
        req.id
    }

    /// The export's file and manifest, copied out as an admin would get them.
    fn handed_out(&self, id: uuid::Uuid) -> (PathBuf, Vec<u8>) {
        let exports = Exports::new(&self.store).unwrap();
        let csv = self.root.join(format!("{id}.csv"));
        std::fs::copy(exports.download(id).unwrap().path(), &csv).unwrap();
        (csv, exports.manifest(id).unwrap())
    }
}

fn rewrite(path: &Path, f: impl FnOnce(Vec<String>) -> Vec<String>) -> PathBuf {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let out = path.with_extension(format!("{}.csv", uuid::Uuid::new_v4().simple()));
    std::fs::write(&out, f(lines).join("\n") + "\n").unwrap();
    out
}

#[test]
fn an_export_checks_out_and_any_change_to_file_or_manifest_fails() {
    let fx = fixture();
    let id = fx.export("org-01");
    let (csv, manifest) = fx.handed_out(id);
    let good = check_export(&csv, &manifest, &fx.key).unwrap();
    let rows = std::fs::read_to_string(&csv).unwrap().lines().count() as u64 - 1;
    assert!(rows > 500, "{rows}");
    assert_eq!((good.rows, good.org.as_str(), good.sequence), (rows, "org-01", 1));
    // The checkpoint taken after the build: every stored event, the
    // store's own events about the export excepted (they come after).
    assert!(good.tree_size >= 3_000, "{}", good.tree_size);
    assert!(good.tree_size <= fx.store.latest_checkpoint().unwrap().unwrap().tree_size);
    let parsed = Manifest::parse(&manifest).unwrap();
    // The rows are scattered: the leaf indexes are not one run.
    let mut sorted = parsed.leaf_indexes.clone();
    sorted.sort_unstable();
    assert!(sorted.last().unwrap() - sorted[0] > rows, "{sorted:?}");

    let fails = |csv: &Path, manifest: &[u8]| check_export(csv, manifest, &fx.key).unwrap_err();
    // One altered cell, same length, still an event (the action's first
    // letter): the file's hash.
    let altered = rewrite(&csv, |mut l| {
        let comma = l[3].find(',').unwrap();
        let mut row = l[3].clone().into_bytes();
        row[comma + 1] = if row[comma + 1] == b'x' { b'y' } else { b'x' };
        l[3] = String::from_utf8(row).unwrap();
        l
    });
    let err = fails(&altered, &manifest);
    assert!(matches!(err, CheckError::FileHash { .. }), "{err}");
    // A byte that is not UTF-8 in the fourth line (its action's first
    // letter): that line is named.
    let mut bytes = std::fs::read(&csv).unwrap();
    let line4 = bytes
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .nth(2)
        .unwrap()
        .0
        + 1;
    let comma = line4 + bytes[line4..].iter().position(|&b| b == b',').unwrap();
    bytes[comma + 1] = 0xFF;
    let not_utf8 = csv.with_file_name("not-utf8.csv");
    std::fs::write(&not_utf8, &bytes).unwrap();
    match fails(&not_utf8, &manifest) {
        CheckError::Row { line: 4, reason } => assert!(reason.contains("not UTF-8"), "{reason}"),
        other => panic!("{other}"),
    }
    let flipped = rewrite(&csv, |mut l| {
        let cells = l[2].clone();
        l[2] = if cells.contains(",true,") {
            cells.replacen(",true,", ",tru3,", 1)
        } else {
            cells.replacen(",false,", ",fals3,", 1)
        };
        l
    });
    assert!(matches!(
        fails(&flipped, &manifest),
        CheckError::FileHash { .. } | CheckError::Row { .. }
    ));
    // A dropped row, a duplicated row, two rows swapped.
    let dropped = rewrite(&csv, |mut l| {
        l.remove(5);
        l
    });
    assert!(matches!(fails(&dropped, &manifest), CheckError::Size { .. }));
    let swapped = rewrite(&csv, |mut l| {
        l.swap(4, 5);
        l
    });
    assert!(matches!(
        fails(&swapped, &manifest),
        CheckError::Row { .. } | CheckError::FileHash { .. }
    ));

    // A manifest field changed (leaf index, row count, window): the signature.
    for change in [r#""leaf_indexes":["#, r#""rows":"#, r#""covered_from":"2026-0"#] {
        let text = String::from_utf8(manifest.clone()).unwrap();
        let at = text.find(change).unwrap() + change.len();
        let mut bytes = text.into_bytes();
        bytes[at] = if bytes[at] == b'1' { b'2' } else { b'1' };
        assert!(
            matches!(fails(&csv, &bytes), CheckError::Manifest(_)),
            "{change}: {}",
            fails(&csv, &bytes)
        );
    }
    // Another key, even under the store's name.
    let other = auditstore::integrity::Signer::from_seed(fx.key.name(), &[3u8; 32]).unwrap();
    assert!(check_export(&csv, &manifest, &other.verifier()).is_err());
}

/// A file whose hash is put into the manifest, re-signed by another key,
/// still fails: its rows are not the log's (and the key is not the store's).
#[test]
fn a_forged_file_with_a_matching_manifest_is_not_the_logs() {
    let fx = fixture();
    let id = fx.export("org-02");
    let (csv, manifest) = fx.handed_out(id);
    let forged = rewrite(&csv, |mut l| {
        l.remove(7);
        l
    });
    let mut m = Manifest::parse(&manifest).unwrap();
    let bytes = std::fs::read(&forged).unwrap();
    m.file.sha256 = auditstore::export::manifest::hex_sha256(&bytes);
    m.file.bytes = bytes.len() as u64;
    m.file.rows -= 1;
    m.leaf_indexes.remove(6);
    let thief = auditstore::integrity::Signer::from_seed(fx.key.name(), &[5u8; 32]).unwrap();
    m.sign(&thief).unwrap();
    let err = check_export(&forged, &m.to_file_bytes().unwrap(), &fx.key).unwrap_err();
    assert!(matches!(err, CheckError::Manifest(_)), "{err}");
    // Even checked with the thief's key: the checkpoint is the store's,
    // and the remaining rows do not make up its tree's root without the
    // dropped one.
    let err = check_export(&forged, &m.to_file_bytes().unwrap(), &thief.verifier()).unwrap_err();
    assert!(matches!(err, CheckError::Checkpoint(_)), "{err}");
}

#[test]
fn manifests_chain_per_organization() {
    let fx = fixture();
    let first = fx.export("org-00");
    let other = fx.export("org-03");
    let second = fx.export("org-00");
    let (_, m1) = fx.handed_out(first);
    let (_, m3) = fx.handed_out(other);
    let (csv2, m2) = fx.handed_out(second);
    let p1 = Manifest::parse(&m1).unwrap();
    let p2 = Manifest::parse(&m2).unwrap();
    assert_eq!((p1.sequence, p1.previous_manifest_sha256.as_deref()), (1, None));
    assert_eq!(Manifest::parse(&m3).unwrap().sequence, 1);
    assert_eq!(p2.sequence, 2);
    assert_eq!(
        p2.previous_manifest_sha256.as_deref(),
        Some(auditstore::export::manifest::hex_sha256(&m1).as_str())
    );
    check_export(&csv2, &m2, &fx.key).unwrap();
}

#[test]
fn a_record_changed_in_the_log_fails_the_export_instead_of_being_signed() {
    let fx = fixture();
    let exports = Exports::new(&fx.store).unwrap();
    let req = exports
        .request(
            "org-02",
            "ann",
            Role::Admin,
            "2026-06-01".parse().unwrap(),
            "2026-06-09".parse().unwrap(),
        )
        .unwrap();
    fx.store.checkpoint().unwrap();
    // Change one org-02 event's action in the log, the frame's CRC
    // recomputed: the tree still holds the original leaf.
    let log = std::fs::read_dir(fx.root.join("store"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .min()
        .unwrap();
    let mut bytes = std::fs::read(&log).unwrap();
    let mut at = 32;
    loop {
        let (body, len) = auditstore::log::frame::decode(&bytes[at..]).unwrap();
        let view = auditstore::codec::decode(body).unwrap();
        if view.org == "org-02" {
            let json = view.to_event().to_json();
            let i = json.find("\"action\":\"").unwrap() + 10;
            let mut text = json.into_bytes();
            text[i] = if text[i] == b'x' { b'y' } else { b'x' };
            let event = Event::from_json(std::str::from_utf8(&text).unwrap()).unwrap();
            let mut body = Vec::new();
            auditstore::codec::encode("org-02", &event, &mut body);
            let mut frame = Vec::new();
            auditstore::log::frame::encode(&body, &mut frame);
            assert_eq!(frame.len(), len);
            bytes.splice(at..at + len, frame);
            break;
        }
        at += len;
    }
    std::fs::write(&log, bytes).unwrap();
    fx.clock.set(exports.processed_at(fx.clock.now()));
    let report = exports.process().unwrap();
    let done = &report.processed[0];
    assert_eq!(done.id, req.id);
    assert_eq!(done.status, Status::Failed, "{done:?}");
    assert!(matches!(
        exports.manifest(req.id),
        Err(ExportError::Failed { .. })
    ));
}

#[test]
fn expiry_removes_the_manifest_with_the_file() {
    let fx = fixture();
    let id = fx.export("org-01");
    let dir = fx.root.join("store").join(auditstore::export::EXPORTS_DIR);
    let manifest = dir.join(format!("{id}.manifest.json"));
    assert!(manifest.exists());
    fx.clock.set(Timestamp::from_nanos(
        fx.clock.now().as_nanos() + 11 * 86_400_000_000_000,
    ));
    let exports = Exports::new(&fx.store).unwrap();
    assert_eq!(exports.process().unwrap().expired_ids(), vec![id]);
    assert!(!manifest.exists());
    assert!(matches!(exports.manifest(id), Err(ExportError::Expired { .. })));
}
