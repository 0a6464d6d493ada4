//! The store every damage starts from.

use super::*;

pub fn build_pristine(dir: &Path) -> Fixture {
    // Sealed segments with indexes need small segments: the library.
    {
        let events = sample_events();
        let store = Store::open_with(
            dir,
            Options {
                segment_size: SEGMENT_SIZE,
                clock: Arc::new(FixedClock::new(ts("2026-08-01"))),
                ..Options::default()
            },
        )
        .unwrap();
        for c in events.chunks(50) {
            store
                .append_batch(c.iter().map(|(o, e)| (o.as_str(), e)))
                .unwrap();
        }
    }
    // The rest as an operator would.
    setup_run(
        dir,
        REQUEST_AT,
        &[
            "org",
            "set",
            "org-01",
            "--plan",
            "scale",
            "--retention-days",
            "30",
        ],
    );
    setup_run(dir, REQUEST_AT, &["org", "set", "org-02", "--plan", "server"]);
    let req = setup_run(
        dir,
        REQUEST_AT,
        &[
            "export",
            "request",
            "--org",
            "org-01",
            "--user",
            "ann",
            "--from",
            "2026-07-01",
            "--to",
            "2026-07-31",
        ],
    );
    let request_id = req["id"].as_str().expect("request id").to_owned();
    let processed = setup_run(dir, PROCESS_AT, &["export", "process"]);
    assert_eq!(processed["processed"][0], request_id.as_str(), "{processed}");

    // An event of org-01 that `get` returns: one from the middle of what a
    // query returns (within retention).
    let scratch = tempfile::tempdir().unwrap();
    let q = run_tool(dir, scratch.path(), AS_OF, &Fixture::query_args(), b"");
    let ids = listed_ids(&q.stdout);
    assert!(ids.len() > 10, "org-01 has events within retention");
    let get_id = ids[ids.len() / 2].clone();

    // One new valid event: a sample line with a new id, on the day before.
    let line = std::fs::read_to_string(shared_data("sample-events.jsonl"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned();
    let mut ev: Value = serde_json::from_str(&line).unwrap();
    ev["id"] = Value::from(NEW_EVENT_ID);
    ev["occurred_at"] = Value::from("2026-08-09T12:00:00.000000Z");
    let new_event = format!("{ev}\n");

    let fixture = Fixture {
        get_id,
        request_id,
        new_event,
    };
    let files = regular_files(dir);
    let has = |pred: &dyn Fn(&str) -> bool| files.iter().any(|f| pred(&f.to_string_lossy()));
    assert!(
        files
            .iter()
            .filter(|f| f.to_string_lossy().ends_with(".idx"))
            .count()
            >= 2,
        "several sealed segments: {files:?}"
    );
    assert!(active_segment(dir).is_some(), "an active segment: {files:?}");
    assert!(has(&|f| f == "dedup.fp"), "{files:?}");
    assert!(has(&|f| f == "meta.redb"), "{files:?}");
    let csv = format!("exports/{}.csv", fixture.request_id);
    assert!(has(&|f| f == csv), "{files:?}");
    fixture
}

/// The pristine store plus a `quarantine/*.cut` file: a byte flipped a
/// third of the way into the active segment (records before and after it),
/// then an open (format.md, Recovery step 4).
pub fn build_quarantined(pristine: &Path, dir: &Path) {
    copy_dir(pristine, dir);
    // Salvage is for damage no signed checkpoint covers (with the tree, an
    // open refuses a covered record that is damaged): this variant starts
    // as a store from before the tree, whose next open builds it.
    std::fs::remove_file(dir.join("checkpoints")).unwrap();
    std::fs::remove_file(dir.join("signing.key")).unwrap();
    std::fs::remove_dir_all(dir.join("tree")).unwrap();
    let active = dir.join(active_segment(dir).unwrap());
    let mut bytes = std::fs::read(&active).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x5a;
    std::fs::write(&active, &bytes).unwrap();
    setup_run(dir, AS_OF, &["stats"]);
    let cut = regular_files(dir)
        .into_iter()
        .any(|f| f.starts_with("quarantine") && f.to_string_lossy().ends_with(".cut"));
    assert!(cut, "a quarantine/*.cut file: {:?}", regular_files(dir));
}
