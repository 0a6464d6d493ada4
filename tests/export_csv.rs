//! The export CSV, parsed back: header, rows, order, JSON blobs equal to what
//! was stored, and no cell a spreadsheet would execute, with hostile input.

mod export_common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use auditstore::export::builder::PROGRESS_EVERY;
use auditstore::export::csv::{is_formula_start, COLUMNS};
use auditstore::export::{Exports, Progress, Role, Status};
use auditstore::{Event, FixedClock, Options, Plan, Store, Timestamp};
use export_common::{d, own_row, parse_csv, Env};
use serde_json::{json, Value};

/// Strings a spreadsheet or a CSV parser might trip on.
const HOSTILE: [&str; 14] = [
    "=cmd|' /C calc'!A0",
    "+1+1",
    "-2-2",
    "@SUM(A1:A9)",
    "=HYPERLINK(\"http://x\",\"y\")",
    "\"quoted\"",
    "a,b,c",
    "line\nbreak\r\nand more",
    "\ttab",
    "\rcarriage",
    "ünïcödé — 日本語 — 🚀",
    "'single",
    "",
    "\\back\\slash",
];

/// A deterministic hostile event; `i` picks the strings.
fn hostile_event(i: usize, at: &str, optional: bool) -> (Value, Event) {
    let h = |k: usize| HOSTILE[(i + k) % HOSTILE.len()];
    let actions = ["user.logged_in", "a.b", "x-1.y_2", "workflow.job.start"];
    let mut v = json!({
        "id": uuid::Uuid::new_v4().to_string(),
        "action": actions[i % actions.len()],
        "actor": {"id": h(0), "type": h(1), "name": h(2)},
        "target": {"id": h(3), "type": "=user", "name": h(4)},
        "payload": {h(5): h(6), "n": -1, "nested": {"list": [h(7), 1.5, null, true], "=k": "@v"}},
        "occurred_at": at,
        "metadata": {"ip": h(8), "user_agent": h(9)},
        "success": !i.is_multiple_of(3),
    });
    if optional {
        v["scope"] = json!({"id": h(10), "type": "account", "name": h(11)});
        v["request"] = json!({"id": h(12)});
    }
    let e = Event::from_json(&v.to_string()).unwrap();
    (v, e)
}

fn check_no_formula_cells(rows: &[Vec<String>]) {
    for (n, row) in rows.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            if let Some(first) = cell.chars().next() {
                assert!(
                    !is_formula_start(first) && !['=', '+', '-', '@'].contains(&first),
                    "row {n} column {} starts with {first:?}: {cell:?}",
                    COLUMNS[c]
                );
            }
        }
    }
}

/// Compare one parsed row with the JSON the event was sent as.
fn check_row(row: &[String], sent: &Value) {
    assert_eq!(row.len(), COLUMNS.len());
    assert_eq!(row[0], sent["id"].as_str().unwrap());
    assert_eq!(row[1], sent["action"].as_str().unwrap());
    for (col, field) in [(2, "actor"), (3, "target"), (4, "payload"), (6, "metadata")] {
        let cell: Value = serde_json::from_str(&row[col]).unwrap();
        assert_eq!(&cell, &sent[field], "column {field}");
        assert!(row[col].starts_with('{'));
        assert_eq!(
            row[col].len(),
            cell.to_string().len(),
            "compact JSON: {}",
            row[col]
        );
    }
    let at = Timestamp::parse_rfc3339(sent["occurred_at"].as_str().unwrap()).unwrap();
    assert_eq!(row[5], at.to_rfc3339());
    assert!(row[5].ends_with('Z'));
    assert_eq!(row[7], "1");
    for (col, field) in [(8, "scope"), (10, "request")] {
        if sent.get(field).is_some() {
            let cell: Value = serde_json::from_str(&row[col]).unwrap();
            assert_eq!(&cell, &sent[field], "column {field}");
        } else {
            assert_eq!(row[col], "", "absent {field} is an empty cell");
        }
    }
    assert_eq!(
        row[9],
        if sent["success"].as_bool().unwrap() {
            "true"
        } else {
            "false"
        }
    );
}

#[test]
fn csv_parses_back_to_the_stored_events_with_hostile_content() {
    let env = Env::new("2026-08-10T09:00:00Z");
    env.org("srv", Plan::Server, None);
    // 300 events, many sharing an instant (ties ordered by id), appended
    // out of order, with re-sends, plus another org's events in the window.
    let mut sent = Vec::new();
    for i in 0..300 {
        let at = format!(
            "2026-08-0{}T{:02}:{:02}:00.5Z",
            2 + (i * 7) % 5,
            (i * 13) % 24,
            (i % 4) * 15
        );
        sent.push(hostile_event(i, &at, i % 2 == 0));
    }
    let store = env.store();
    let r = store
        .append_batch(sent.iter().rev().map(|(_, e)| ("srv", e)))
        .unwrap();
    assert_eq!(r.appended, 300);
    let r = store
        .append_batch(sent.iter().take(20).map(|(_, e)| ("srv", e)))
        .unwrap();
    assert_eq!(r.duplicates, 20);
    let (_, foreign) = hostile_event(1, "2026-08-03T00:00:00Z", true);
    store.append("other", &foreign).unwrap();

    let ex = Exports::new(store).unwrap();
    let req = ex
        .request("srv", "ann", Role::Admin, d("2026-08-02"), d("2026-08-06"))
        .unwrap();
    env.set_now("2026-08-10T09:30:00Z");
    ex.process().unwrap();
    let done = ex.get(req.id).unwrap();
    assert_eq!((done.status, done.rows), (Status::Success, Some(300)));
    let bytes = std::fs::read(ex.download(req.id).unwrap().path()).unwrap();
    assert_eq!(done.bytes, Some(bytes.len() as u64));
    let text = String::from_utf8(bytes).unwrap();
    assert!(
        !text.contains(",\r\n") && !text.contains("\"\r\n"),
        "\\n record ends"
    );
    assert!(text.starts_with(&format!("{}\n", COLUMNS.join(","))));
    assert!(text.ends_with('\n'));

    let rows = parse_csv(&text);
    assert_eq!(rows[0], COLUMNS.map(str::to_owned).to_vec(), "header");
    assert_eq!(rows.len(), 301, "one header and one row per stored event");
    check_no_formula_cells(&rows);

    // Order by (occurred_at, id), each id once.
    let mut want: Vec<&(Value, Event)> = sent.iter().collect();
    want.sort_by_key(|(_, e)| (e.occurred_at(), e.id()));
    let mut seen = HashSet::new();
    for (row, (v, _)) in rows[1..].iter().zip(&want) {
        assert!(seen.insert(row[0].clone()), "id {} twice", row[0]);
        check_row(row, v);
    }
    assert!(
        !seen.contains(&foreign.id().to_string()),
        "another org's event leaked"
    );

    // The full export writes the same rows, then (after the window) the
    // store's own events of srv: its org.settings.update and the request's
    // audit_log.requested (both 09:00), its audit_log.processed (09:30).
    let mut out = Vec::new();
    let full = ex.full("srv", "ann", Role::Admin, &mut out).unwrap();
    assert_eq!(full.rows, 300 + 3);
    let out = String::from_utf8(out).unwrap();
    assert!(out.starts_with(&text), "the same bytes for the same rows");
    let tail = parse_csv(&format!("{}\n{}", COLUMNS.join(","), &out[text.len()..]));
    let mut own: Vec<(&str, &str)> = tail[1..]
        .iter()
        .inspect(|r| assert!(own_row(r), "{r:?}"))
        .map(|r| (r[1].as_str(), r[5].as_str()))
        .collect();
    own.sort_by_key(|&(_, at)| at);
    own[..2].sort();
    assert_eq!(
        own,
        [
            ("audit_log.requested", "2026-08-10T09:00:00Z"),
            ("org.settings.update", "2026-08-10T09:00:00Z"),
            ("audit_log.processed", "2026-08-10T09:30:00Z"),
        ]
    );
}

#[test]
fn a_cell_that_would_execute_is_refused_by_the_writer() {
    // Defence in depth: if validation ever let one through, the writer stops.
    let body = {
        let e = Event::from_json(
            r#"{"id":"8d5f2a3e-0b1c-4d2e-9f30-112233445566","action":"a.b","actor":{"id":"u","type":"user"},
                "target":{"id":"t","type":"x"},"occurred_at":"2026-08-01T00:00:00Z","success":true}"#,
        )
        .unwrap();
        let mut buf = Vec::new();
        auditstore::codec::encode("org", &e, &mut buf);
        buf
    };
    let mut view = auditstore::codec::decode(&body).unwrap();
    view.action = "=1+1";
    let mut sink = auditstore::export::csv::CsvSink::new(Vec::new()).unwrap();
    assert!(sink.write_record(&view).is_err());
    view.action = "a.b";
    sink.write_record(&view).unwrap();
    let out = String::from_utf8(sink.finish().unwrap()).unwrap();
    assert_eq!(parse_csv(&out).len(), 2);
}

#[test]
fn hostile_actions_are_rejected_before_they_reach_a_file() {
    for action in ["=cmd", "+x", "-x", "@x", "\"x\"", "a,b", "a\nb", "é.x"] {
        let v = json!({"id": uuid::Uuid::new_v4().to_string(), "action": action,
            "actor": {"id": "u", "type": "user"}, "target": {"id": "t", "type": "x"},
            "occurred_at": "2026-08-01T00:00:00Z", "success": true});
        assert!(
            Event::from_json(&v.to_string()).is_err(),
            "action {action:?} accepted"
        );
    }
}

/// A store of `n` generated events of `org-00` in ~1 MiB segments (most of
/// them sealed, the last one active), with out-of-order times and re-sends.
fn long_store(dir: &std::path::Path, clock: &Arc<FixedClock>, n: usize) -> Store {
    let store = export_common::one_org_store(dir, clock, 1 << 20, true, n);
    assert!(store.stats().unwrap().segments > 10, "test needs sealed segments");
    store
}

/// Long exports are formatted on several threads (a scan split in time
/// slices): the file, the full export and the progress reports must be
/// those of one thread, byte for byte.
#[test]
fn a_long_export_formatted_on_several_threads_is_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    // The store's own events (org-00's org.settings.update, each request's
    // audit_log.* and the full exports' hand-outs) are all made on July 3,
    // after the padded window [May 31, Jul 2) of the June requests: every
    // round's file holds the same events.
    let clock = Arc::new(FixedClock::new(export_common::t("2026-07-03T09:00:00Z")));
    let n = 70_000; // past one progress report (every 65,536 rows)
    assert!(n > 2 * auditstore::export::rows::PARALLEL_MIN_ROWS);
    let store = long_store(dir.path(), &clock, n);
    // Stored: the generated events and org-00's org.settings.update (set to
    // server at 2026-07-03T09:00, after the window of the requests).
    let stored = store.stats().unwrap().events;
    let events = stored - 1;
    let all = auditstore::Query::new("org-00", Timestamp::MIN, Timestamp::MAX);
    assert!(
        store.scan(&all).unwrap().split(16).len() > 8,
        "the threads get slices"
    );

    let mut files = Vec::new();
    let mut fulls = Vec::new();
    for (round, threads) in [1, 2, 4].into_iter().enumerate() {
        let reports = Arc::new(Mutex::new(Vec::new()));
        let sink = reports.clone();
        let ex = Exports::new(&store)
            .unwrap()
            .with_threads(threads)
            .with_progress(Arc::new(move |p: &Progress<'_>| {
                sink.lock().unwrap().push((p.rows, p.done));
            }));
        clock.set(export_common::t("2026-07-03T09:00:00Z"));
        let req = ex
            .request("org-00", "ann", Role::Admin, d("2026-06-01"), d("2026-06-30"))
            .unwrap();
        clock.set(export_common::t("2026-07-03T09:30:00Z"));
        ex.process().unwrap();
        let done = ex.get(req.id).unwrap();
        assert_eq!(
            (done.status, done.rows),
            (Status::Success, Some(events)),
            "{threads} threads"
        );
        files.push(std::fs::read(ex.download(req.id).unwrap().path()).unwrap());
        let reports = reports.lock().unwrap().clone();
        assert_eq!(reports.last(), Some(&(events, true)), "{threads} threads");
        let ticks: Vec<u64> = reports.iter().filter(|r| !r.1).map(|r| r.0).collect();
        assert_eq!(
            ticks.len(),
            (events / PROGRESS_EVERY) as usize,
            "{threads} threads: {ticks:?}"
        );
        assert!(ticks.iter().all(|&r| r >= PROGRESS_EVERY && r < events));
        let mut out = Vec::new();
        let full = ex.full("org-00", "ann", Role::Admin, &mut out).unwrap();
        // The full export also holds the own events after the window: the
        // settings update, each request so far's audit_log.requested and
        // audit_log.processed, and (from the second round) the earlier full
        // exports' hand-out: by ann at 09:30 each time, so one event.
        let own = 1 + 2 * (round as u64 + 1) + u64::from(round > 0);
        assert_eq!(full.rows, events + own, "{threads} threads");
        fulls.push((out, own));
    }
    assert_eq!(files[0], files[1], "2 threads");
    assert_eq!(files[0], files[2], "4 threads");
    for (full, own) in &fulls {
        assert!(
            full.starts_with(&files[0]),
            "the full export writes the same bytes"
        );
        let tail = std::str::from_utf8(&full[files[0].len()..]).unwrap();
        let tail = parse_csv(&format!("{}\n{tail}", COLUMNS.join(",")));
        assert_eq!(tail.len() as u64 - 1, *own);
        assert!(tail[1..].iter().all(|r| own_row(r)), "{tail:?}");
    }
    // An output that fails part way stops every formatter, with the error.
    let err = Exports::new(&store)
        .unwrap()
        .with_threads(3)
        .full("org-00", "ann", Role::Admin, FailsAfter(1 << 20))
        .unwrap_err();
    assert_eq!(err.code(), "io", "{err}");
    // And the file is every stored event once, in (occurred_at, id) order.
    let rows = parse_csv(std::str::from_utf8(&files[0]).unwrap());
    assert_eq!(rows.len() as u64, events + 1);
    let keys: Vec<(Timestamp, uuid::Uuid)> = rows[1..]
        .iter()
        .map(|r| (Timestamp::parse_rfc3339(&r[5]).unwrap(), r[0].parse().unwrap()))
        .collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "ordered, each id once");
}

/// A damaged record in the middle of a long export fails it, whichever
/// formatter thread meets it: no file, and the request says why.
#[test]
fn a_damaged_record_fails_a_long_export_on_several_threads() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::new(export_common::t("2026-07-01T09:00:00Z")));
    let store = long_store(dir.path(), &clock, 40_000);
    drop(store);
    // Flip one byte in the middle of the records of the 5th sealed segment.
    let mut logs: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    let log = &logs[4];
    let mut bytes = std::fs::read(log).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(log, &bytes).unwrap();

    let store = Store::open_with(
        dir.path(),
        Options {
            clock: clock.clone(),
            ..Options::default()
        },
    )
    .unwrap();
    let ex = Exports::new(&store).unwrap().with_threads(3);
    let err = ex
        .full("org-00", "ann", Role::Admin, std::io::sink())
        .unwrap_err();
    assert_eq!(err.code(), "corrupt", "{err}");
    let req = ex
        .request("org-00", "ann", Role::Admin, d("2026-06-01"), d("2026-06-30"))
        .unwrap();
    clock.set(export_common::t("2026-07-01T09:30:00Z"));
    ex.process().unwrap();
    let failed = ex.get(req.id).unwrap();
    assert_eq!(failed.status, Status::Failed);
    assert!(
        std::fs::read_dir(ex.dir()).unwrap().next().is_none(),
        "no file, not even a temporary one"
    );
}

/// A writer that takes this many bytes, then fails every write.
struct FailsAfter(usize);

impl std::io::Write for FailsAfter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0 == 0 {
            return Err(std::io::Error::other("disk on fire"));
        }
        let n = buf.len().min(self.0);
        self.0 -= n;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
