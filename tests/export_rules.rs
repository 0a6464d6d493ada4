//! Every rule of `shared/spec/exports.md`, through the library, with a fixed clock.

mod export_common;

use auditstore::export::{
    ExportError, ExportPolicy, Exports, PlanPolicy, Role, Schedule, Status, POLICY_FILE,
};
use auditstore::{Plan, Query};
use export_common::{append_at, code, d, own_row, parse_csv, t, Env};

use serde_json::{json, Value};

const NOW: &str = "2026-08-10T09:31:00Z";

fn rate_limited_at(r: Result<auditstore::export::ExportRequest, ExportError>) -> auditstore::Timestamp {
    match r {
        Err(e @ ExportError::RateLimited { .. }) => e.next_allowed_at().unwrap(),
        other => panic!("expected rate_limited, got {other:?}"),
    }
}

// ---------------------------------------------------------------- plans

#[test]
fn performance_allows_one_request_per_30_days() {
    let env = Env::new("2026-08-01T12:00:00Z");
    env.org("perf", Plan::Performance, None);
    let ex = Exports::new(env.store()).unwrap();
    let first = ex
        .request("perf", "ann", Role::Admin, d("2026-07-01"), d("2026-07-31"))
        .unwrap();
    assert_eq!(first.status, Status::Requested);

    env.set_now("2026-08-01T13:00:00Z");
    let next = rate_limited_at(ex.request("perf", "ann", Role::Admin, d("2026-07-01"), d("2026-07-02")));
    assert_eq!(next, t("2026-08-31T12:00:00Z"));

    // One nanosecond before it is 30 days old, it still counts.
    env.clock.set(auditstore::Timestamp::from_nanos(
        t("2026-08-31T12:00:00Z").as_nanos() - 1,
    ));
    assert_eq!(
        code(ex.request("perf", "ann", Role::Admin, d("2026-08-01"), d("2026-08-02"))),
        "rate_limited"
    );

    // Exactly 30 days old: no longer counts.
    env.set_now("2026-08-31T12:00:00Z");
    ex.request("perf", "ann", Role::Admin, d("2026-08-01"), d("2026-08-02"))
        .unwrap();
    assert_eq!(ex.list("perf").unwrap().len(), 2);
}

/// A plan moved down keeps the requests made under the old one: the
/// refusal counts them as they are, not as the new limit.
#[test]
fn a_refusal_says_how_many_requests_count_not_the_limit() {
    let env = Env::new("2026-08-01T00:00:00Z");
    env.org("moved", Plan::Server, None);
    let ex = Exports::new(env.store()).unwrap();
    for _ in 0..5 {
        ex.request("moved", "ann", Role::Admin, d("2026-07-01"), d("2026-07-02"))
            .unwrap();
    }
    env.org("moved", Plan::Scale, None);
    let err = ex
        .request("moved", "ann", Role::Admin, d("2026-07-01"), d("2026-07-02"))
        .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(
            err,
            ExportError::RateLimited {
                made: 5,
                limit: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(message.contains("has made 5 export request(s)"), "{message}");
    assert!(message.contains("allows 3"), "{message}");
    // All five must age out below the limit of 3: the third oldest decides.
    assert_eq!(err.next_allowed_at(), Some(t("2026-08-31T00:00:00Z")));
}

#[test]
fn scale_allows_three_per_30_days_and_reports_when_one_ages_out() {
    let env = Env::new("2026-08-01T00:00:00Z");
    env.org("sc", Plan::Scale, None);
    let ex = Exports::new(env.store()).unwrap();
    for day in [
        "2026-08-01T00:00:00Z",
        "2026-08-06T00:00:00Z",
        "2026-08-11T00:00:00Z",
    ] {
        env.set_now(day);
        ex.request("sc", "ann", Role::Admin, d("2026-07-01"), d("2026-07-02"))
            .unwrap();
    }
    env.set_now("2026-08-13T00:00:00Z");
    let next = rate_limited_at(ex.request("sc", "bob", Role::Admin, d("2026-07-01"), d("2026-07-02")));
    assert_eq!(
        next,
        t("2026-08-31T00:00:00Z"),
        "the oldest counting request turns 30 days old"
    );

    // On Aug 31 the Aug 1 request no longer counts: one slot.
    env.set_now("2026-08-31T00:00:00Z");
    ex.request("sc", "ann", Role::Admin, d("2026-08-01"), d("2026-08-02"))
        .unwrap();
    // Now Aug 6, Aug 11, Aug 31 count: the next slot opens when Aug 6 ages out.
    env.set_now("2026-08-31T01:00:00Z");
    let next = rate_limited_at(ex.request("sc", "ann", Role::Admin, d("2026-08-01"), d("2026-08-02")));
    assert_eq!(next, t("2026-09-05T00:00:00Z"));
}

#[test]
fn server_plan_has_no_limit() {
    let env = Env::new(NOW);
    env.org("srv", Plan::Server, None);
    let ex = Exports::new(env.store()).unwrap();
    for _ in 0..25 {
        ex.request("srv", "ann", Role::Admin, d("2026-08-01"), d("2026-08-10"))
            .unwrap();
    }
    assert_eq!(ex.list("srv").unwrap().len(), 25);
}

#[test]
fn free_plan_and_unconfigured_orgs_are_told_to_contact_support() {
    let env = Env::new(NOW);
    env.org("free", Plan::Free, None);
    let ex = Exports::new(env.store()).unwrap();
    for org in ["free", "never-configured"] {
        let err = ex
            .request(org, "ann", Role::Admin, d("2026-08-01"), d("2026-08-02"))
            .unwrap_err();
        assert_eq!(err.code(), "plan_not_eligible");
        assert!(err.to_string().contains("contact support"), "{err}");
    }
    assert!(ex.list("free").unwrap().is_empty());
}

#[test]
fn members_are_forbidden() {
    let env = Env::new(NOW);
    env.org("srv", Plan::Server, None);
    let ex = Exports::new(env.store()).unwrap();
    assert_eq!(
        code(ex.request("srv", "mo", Role::Member, d("2026-08-01"), d("2026-08-02"))),
        "forbidden"
    );
    assert_eq!(code(ex.full("srv", "mo", Role::Member, Vec::new())), "forbidden");
    assert!(ex.list("srv").unwrap().is_empty());
}

// ---------------------------------------------------------------- rate limit details

#[test]
fn pending_requests_count() {
    let env = Env::new(NOW);
    env.org("perf", Plan::Performance, None);
    let ex = Exports::new(env.store()).unwrap();
    let first = ex
        .request("perf", "ann", Role::Admin, d("2026-08-01"), d("2026-08-02"))
        .unwrap();
    assert_eq!(ex.get(first.id).unwrap().status, Status::Requested);
    let next = rate_limited_at(ex.request("perf", "bob", Role::Admin, d("2026-08-01"), d("2026-08-02")));
    assert_eq!(next, t("2026-09-09T09:31:00Z"));
}

/// Flip the last byte of the newest segment: the last appended record fails
/// its checksum when read.
fn corrupt_last_record(env: &Env) {
    let mut logs: Vec<_> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    let log = logs.last().unwrap();
    let mut bytes = std::fs::read(log).unwrap();
    // The active segment may end in space allocated ahead (zeros): flip the
    // last byte of the last record.
    let last = bytes.iter().rposition(|b| *b != 0).unwrap();
    bytes[last] ^= 0xff;
    std::fs::write(log, bytes).unwrap();
}

#[test]
fn failed_requests_give_their_slot_back() {
    let env = Env::new(NOW);
    env.org("perf", Plan::Performance, None);
    let ex = Exports::new(env.store()).unwrap();
    let req = ex
        .request("perf", "ann", Role::Admin, d("2026-08-02"), d("2026-08-05"))
        .unwrap();
    // Appended after the request, whose own audit_log.requested (at NOW,
    // outside the window) is then not the last record: the corrupted
    // record is the Aug 4 event, which the build has to read.
    let events = append_at(
        env.store(),
        "perf",
        &["2026-08-03T10:00:00Z", "2026-08-04T10:00:00Z"],
    );
    corrupt_last_record(&env);
    assert!(
        env.store().get(events[1].id()).is_err(),
        "the Aug 4 event is damaged"
    );
    env.set_now("2026-08-10T10:30:00Z");
    let report = ex.process().unwrap();
    assert_eq!(report.processed_ids(), vec![req.id]);
    let failed = ex.get(req.id).unwrap();
    assert_eq!(failed.status, Status::Failed);
    assert!(
        failed.failure_reason.as_deref().unwrap().contains("corrupt"),
        "{failed:?}"
    );
    assert_eq!(failed.completed_at, Some(t("2026-08-10T10:30:00Z")));
    assert_eq!(
        (failed.expires_at, failed.rows, failed.bytes, failed.has_data),
        (None, None, None, false)
    );
    assert!(
        env.export_files().is_empty(),
        "no file, no temporary file: {:?}",
        env.export_files()
    );
    assert_eq!(code(ex.download(req.id)), "failed");
    // The failed request does not count: a new one is accepted at once.
    let again = ex
        .request("perf", "ann", Role::Admin, d("2026-08-02"), d("2026-08-03"))
        .unwrap();
    assert_eq!(again.status, Status::Requested);
    assert_eq!(
        code(ex.request("perf", "ann", Role::Admin, d("2026-08-02"), d("2026-08-03"))),
        "rate_limited"
    );
}

// ---------------------------------------------------------------- schedule

#[test]
fn a_request_at_0931_is_processed_at_1030_not_0945() {
    let env = Env::new("2026-08-10T09:31:00Z");
    env.org("srv", Plan::Server, None);
    append_at(env.store(), "srv", &["2026-08-09T10:00:00Z"]);
    let ex = Exports::new(env.store()).unwrap();
    let req = ex
        .request("srv", "ann", Role::Admin, d("2026-08-09"), d("2026-08-09"))
        .unwrap();
    assert_eq!(ex.processed_at(req.created_at), t("2026-08-10T10:30:00Z"));

    env.set_now("2026-08-10T09:45:00Z");
    let r = ex.process().unwrap();
    assert_eq!(r.mark, Some(t("2026-08-10T09:30:00Z")));
    assert!(r.processed.is_empty());
    assert_eq!(ex.get(req.id).unwrap().status, Status::Requested);
    assert_eq!(code(ex.download(req.id)), "not_ready");

    env.set_now("2026-08-10T10:29:59Z");
    assert!(ex.process().unwrap().processed.is_empty());
    assert_eq!(ex.get(req.id).unwrap().status, Status::Requested);

    env.set_now("2026-08-10T10:30:00Z");
    let r = ex.process().unwrap();
    assert_eq!(r.processed_ids(), vec![req.id]);
    let done = ex.get(req.id).unwrap();
    assert_eq!(done.status, Status::Success);
    assert_eq!(done.completed_at, Some(t("2026-08-10T10:30:00Z")));
    // A second run has nothing left to do.
    assert!(ex.process().unwrap().processed.is_empty());
}

#[test]
fn a_request_made_exactly_at_a_mark_is_handled_by_that_run() {
    let env = Env::new("2026-08-10T10:30:00Z");
    env.org("srv", Plan::Server, None);
    let ex = Exports::new(env.store()).unwrap();
    let req = ex
        .request("srv", "ann", Role::Admin, d("2026-08-09"), d("2026-08-09"))
        .unwrap();
    assert_eq!(ex.process().unwrap().processed_ids(), vec![req.id]);
}

// ---------------------------------------------------------------- range

#[test]
fn aug_2_to_5_covers_aug_1_through_aug_6() {
    let env = Env::new(NOW);
    env.org("srv", Plan::Server, None);
    let inside = append_at(
        env.store(),
        "srv",
        &[
            "2026-08-01T00:00:00Z",
            "2026-08-03T12:00:00Z",
            "2026-08-06T23:59:59.999999999Z",
        ],
    );
    append_at(
        env.store(),
        "srv",
        &["2026-07-31T23:59:59.999999999Z", "2026-08-07T00:00:00Z"],
    );
    append_at(env.store(), "other", &["2026-08-03T12:00:00Z"]);
    let ex = Exports::new(env.store()).unwrap();
    let req = ex
        .request("srv", "ann", Role::Admin, d("2026-08-02"), d("2026-08-05"))
        .unwrap();
    assert_eq!(req.window_start, t("2026-08-01T00:00:00Z"));
    assert_eq!(req.window_end, t("2026-08-07T00:00:00Z"));
    env.set_now("2026-08-10T10:30:00Z");
    ex.process().unwrap();
    let done = ex.get(req.id).unwrap();
    assert_eq!(done.rows, Some(3));
    let text = std::fs::read_to_string(ex.download(req.id).unwrap().path()).unwrap();
    let ids: Vec<String> = parse_csv(&text)[1..].iter().map(|r| r[0].clone()).collect();
    let want: Vec<String> = inside.iter().map(|e| e.id().to_string()).collect();
    assert_eq!(ids, want);
}

#[test]
fn range_limits_are_one_year_ago_and_today() {
    let env = Env::new("2026-08-10T23:59:59Z");
    env.org("srv", Plan::Server, None);
    let ex = Exports::new(env.store()).unwrap();
    let ok = |f: &str, to: &str| ex.request("srv", "ann", Role::Admin, d(f), d(to));
    ok("2025-08-10", "2026-08-10").unwrap();
    ok("2026-08-10", "2026-08-10").unwrap();
    assert_eq!(code(ok("2025-08-09", "2026-08-10")), "range_too_old");
    assert_eq!(code(ok("2026-08-01", "2026-08-11")), "range_in_future");
    assert_eq!(code(ok("2026-08-05", "2026-08-04")), "invalid_range");
    // The UTC date decides: a minute later it is Aug 11.
    env.set_now("2026-08-11T00:00:00Z");
    ok("2026-08-01", "2026-08-11").unwrap();
    assert_eq!(code(ok("2025-08-10", "2026-08-11")), "range_too_old");
}

#[test]
fn on_feb_29_the_earliest_start_is_feb_28_of_last_year() {
    let env = Env::new("2028-02-29T08:00:00Z");
    env.org("srv", Plan::Server, None);
    let ex = Exports::new(env.store()).unwrap();
    ex.request("srv", "ann", Role::Admin, d("2027-02-28"), d("2028-02-29"))
        .unwrap();
    assert_eq!(
        code(ex.request("srv", "ann", Role::Admin, d("2027-02-27"), d("2028-02-29"))),
        "range_too_old"
    );
    // And the day after, Mar 1 2028 -> Mar 1 2027.
    env.set_now("2028-03-01T00:00:00Z");
    ex.request("srv", "ann", Role::Admin, d("2027-03-01"), d("2027-03-01"))
        .unwrap();
    assert_eq!(
        code(ex.request("srv", "ann", Role::Admin, d("2027-02-28"), d("2027-03-01"))),
        "range_too_old"
    );
}

#[test]
fn checks_run_forbidden_then_plan_then_range_then_rate() {
    let env = Env::new(NOW);
    env.org("free", Plan::Free, None);
    env.org("perf", Plan::Performance, None);
    let ex = Exports::new(env.store()).unwrap();
    ex.request("perf", "ann", Role::Admin, d("2026-08-01"), d("2026-08-02"))
        .unwrap();
    let too_old = (d("2020-01-01"), d("2026-08-02"));
    // Everything wrong: forbidden wins.
    assert_eq!(
        code(ex.request("free", "mo", Role::Member, too_old.0, too_old.1)),
        "forbidden"
    );
    assert_eq!(
        code(ex.request("perf", "mo", Role::Member, too_old.0, too_old.1)),
        "forbidden"
    );
    // Admin of a free org with a bad range: the plan.
    assert_eq!(
        code(ex.request("free", "ann", Role::Admin, too_old.0, too_old.1)),
        "plan_not_eligible"
    );
    // Admin, eligible, bad range and limit reached: the range.
    assert_eq!(
        code(ex.request("perf", "ann", Role::Admin, too_old.0, too_old.1)),
        "range_too_old"
    );
    assert_eq!(
        code(ex.request("perf", "ann", Role::Admin, d("2026-08-01"), d("2026-09-01"))),
        "range_in_future"
    );
    assert_eq!(
        code(ex.request("perf", "ann", Role::Admin, d("2026-08-03"), d("2026-08-02"))),
        "invalid_range"
    );
    // Only then the rate limit.
    assert_eq!(
        code(ex.request("perf", "ann", Role::Admin, d("2026-08-01"), d("2026-08-02"))),
        "rate_limited"
    );
}

// ---------------------------------------------------------------- processing

#[test]
fn retention_is_applied_as_of_completion() {
    let env = Env::new("2026-08-10T09:00:00Z");
    env.org("srv", Plan::Server, Some(10));
    append_at(
        env.store(),
        "srv",
        &["2026-08-01T06:00:00Z", "2026-08-05T06:00:00Z"],
    );
    let ex = Exports::new(env.store()).unwrap();
    let req = ex
        .request("srv", "ann", Role::Admin, d("2026-08-01"), d("2026-08-10"))
        .unwrap();
    // When requested, both events were within the 10 days; by the run
    // (Aug 11 10:30, cutoff Aug 1 10:30) the first one no longer is.
    env.set_now("2026-08-11T10:30:00Z");
    ex.process().unwrap();
    let done = ex.get(req.id).unwrap();
    // The Aug 5 event, and the store's own events of srv made at Aug 10
    // 09:00 (in the padded window, within the 10 days): its
    // org.settings.update and this request's audit_log.requested.
    assert_eq!((done.status, done.rows), (Status::Success, Some(3)));
    let text = std::fs::read_to_string(ex.download(req.id).unwrap().path()).unwrap();
    let rows = parse_csv(&text);
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[1][5], "2026-08-05T06:00:00Z");
    assert!(!own_row(&rows[1]));
    let mut own: Vec<(&str, &str)> = rows[2..]
        .iter()
        .inspect(|r| assert!(own_row(r), "{r:?}"))
        .map(|r| (r[1].as_str(), r[5].as_str()))
        .collect();
    own.sort();
    assert_eq!(
        own,
        [
            ("audit_log.requested", "2026-08-10T09:00:00Z"),
            ("org.settings.update", "2026-08-10T09:00:00Z"),
        ]
    );
}

#[test]
fn success_with_data_has_a_file_and_without_data_has_none() {
    let env = Env::new(NOW);
    env.org("srv", Plan::Server, None);
    append_at(
        env.store(),
        "srv",
        &["2026-08-03T10:00:00Z", "2026-08-03T11:00:00Z"],
    );
    let ex = Exports::new(env.store()).unwrap();
    let with = ex
        .request("srv", "ann", Role::Admin, d("2026-08-03"), d("2026-08-03"))
        .unwrap();
    let without = ex
        .request("srv", "ann", Role::Admin, d("2026-07-10"), d("2026-07-12"))
        .unwrap();
    env.set_now("2026-08-10T10:30:00Z");
    let r = ex.process().unwrap();
    let mut processed = r.processed_ids();
    processed.sort();
    let mut want = vec![with.id, without.id];
    want.sort();
    assert_eq!(processed, want);

    let w = ex.get(with.id).unwrap();
    assert_eq!((w.status, w.has_data, w.rows), (Status::Success, true, Some(2)));
    assert_eq!(w.expires_at, Some(t("2026-08-20T10:30:00Z")));
    let path = ex.download(with.id).unwrap().path().to_path_buf();
    assert_eq!(w.bytes, Some(std::fs::metadata(&path).unwrap().len()));
    assert!(w.download_available());

    let wo = ex.get(without.id).unwrap();
    assert_eq!(
        (wo.status, wo.has_data, wo.rows),
        (Status::Success, false, Some(0))
    );
    assert!(!wo.download_available());
    assert_eq!(code(ex.download(without.id)), "no_data");
    assert_eq!(
        env.export_files(),
        vec![format!("{}.csv", with.id), format!("{}.manifest.json", with.id)]
    );
}

#[test]
fn downloads_expire_at_exactly_10_days_and_their_files_are_deleted() {
    let env = Env::new(NOW);
    env.org("srv", Plan::Server, None);
    append_at(env.store(), "srv", &["2026-08-03T10:00:00Z"]);
    let ex = Exports::new(env.store()).unwrap();
    let req = ex
        .request("srv", "ann", Role::Admin, d("2026-08-03"), d("2026-08-03"))
        .unwrap();
    let empty = ex
        .request("srv", "ann", Role::Admin, d("2026-07-03"), d("2026-07-03"))
        .unwrap();
    env.set_now("2026-08-10T10:30:00Z");
    ex.process().unwrap();
    let file = env.exports_dir().join(format!("{}.csv", req.id));
    assert!(file.exists());

    // One nanosecond before: still downloadable; a run expires nothing.
    env.clock.set(auditstore::Timestamp::from_nanos(
        t("2026-08-20T10:30:00Z").as_nanos() - 1,
    ));
    assert_eq!(ex.get(req.id).unwrap().status, Status::Success);
    ex.download(req.id).unwrap();
    assert!(ex.process().unwrap().expired.is_empty());
    assert!(file.exists());

    // Exactly 10 days: expired, even before a run deletes the file.
    env.set_now("2026-08-20T10:30:00Z");
    let listed = ex.list("srv").unwrap();
    assert!(listed.iter().all(|r| r.status == Status::Expired), "{listed:?}");
    assert_eq!(code(ex.download(req.id)), "expired");
    assert!(file.exists());
    let r = ex.process().unwrap();
    let mut expired = r.expired_ids();
    expired.sort();
    let mut want = vec![req.id, empty.id];
    want.sort();
    assert_eq!(expired, want);
    assert!(!file.exists());
    assert!(env.export_files().is_empty());
    assert_eq!(code(ex.download(req.id)), "expired");
    let after = ex.get(req.id).unwrap();
    assert_eq!((after.status, after.rows), (Status::Expired, Some(1)));
    // Expired requests still count against the rate limit while within 30 days,
    // and a later run expires nothing twice.
    assert!(ex.process().unwrap().expired.is_empty());
}

#[test]
fn leftover_temporary_files_are_removed_when_processing_starts() {
    let env = Env::new(NOW);
    env.org("srv", Plan::Server, None);
    let ex = Exports::new(env.store()).unwrap();
    std::fs::create_dir_all(env.exports_dir()).unwrap();
    let stray = env
        .exports_dir()
        .join(format!("{}.csv.tmp", uuid::Uuid::new_v4()));
    let orphan = env.exports_dir().join(format!("{}.csv", uuid::Uuid::new_v4()));
    std::fs::write(&stray, "id,action\npartial").unwrap();
    std::fs::write(&orphan, "id,action\n").unwrap();
    let r = ex.process().unwrap();
    assert!(!stray.exists());
    assert!(!orphan.exists());
    assert_eq!(r.removed_files.len(), 2);
}

#[test]
fn server_admins_get_the_full_retained_log() {
    let env = Env::new(NOW);
    env.org("srv", Plan::Server, Some(30));
    env.org("sc", Plan::Scale, None);
    let kept = append_at(
        env.store(),
        "srv",
        &[
            "2026-07-20T00:00:00Z",
            "2026-08-09T00:00:00Z",
            "2026-08-10T09:00:00Z",
        ],
    );
    append_at(env.store(), "srv", &["2026-07-01T00:00:00Z"]); // past the 30-day retention
    append_at(env.store(), "sc", &["2026-08-01T00:00:00Z"]);
    let ex = Exports::new(env.store()).unwrap();
    let mut out = Vec::new();
    let full = ex.full("srv", "ann", Role::Admin, &mut out).unwrap();
    // The 3 retained events, then srv's org.settings.update (at NOW, by
    // `env.org`); not this export's own hand-out.
    assert_eq!(full.rows, 4);
    let rows = parse_csv(std::str::from_utf8(&out).unwrap());
    let ids: Vec<&str> = rows[1..4].iter().map(|r| r[0].as_str()).collect();
    let want: Vec<String> = kept.iter().map(|e| e.id().to_string()).collect();
    assert_eq!(ids, want);
    assert!(own_row(&rows[4]), "{:?}", rows[4]);
    assert_eq!(
        (rows[4][1].as_str(), rows[4][5].as_str()),
        ("org.settings.update", NOW)
    );
    assert_eq!(
        code(ex.full("sc", "ann", Role::Admin, Vec::new())),
        "plan_not_eligible"
    );
    assert_eq!(
        code(ex.full("free", "ann", Role::Admin, Vec::new())),
        "plan_not_eligible"
    );
    // Not tracked as a request.
    assert!(ex.list("srv").unwrap().is_empty());
}

// ---------------------------------------------------------------- persistence, policy

#[test]
fn requests_and_files_survive_a_restart() {
    let mut env = Env::new(NOW);
    env.org("perf", Plan::Performance, None);
    append_at(env.store(), "perf", &["2026-08-03T10:00:00Z"]);
    let id = {
        let ex = Exports::new(env.store()).unwrap();
        ex.request("perf", "ann", Role::Admin, d("2026-08-03"), d("2026-08-03"))
            .unwrap()
            .id
    };
    env.reopen();
    {
        let ex = Exports::new(env.store()).unwrap();
        let listed = ex.list("perf").unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].id, listed[0].status), (id, Status::Requested));
        assert_eq!(
            code(ex.request("perf", "ann", Role::Admin, d("2026-08-03"), d("2026-08-03"))),
            "rate_limited"
        );
        env.set_now("2026-08-10T10:30:00Z");
        assert_eq!(ex.process().unwrap().processed_ids(), vec![id]);
    }
    env.reopen();
    let ex = Exports::new(env.store()).unwrap();
    let done = ex.get(id).unwrap();
    assert_eq!((done.status, done.rows), (Status::Success, Some(1)));
    let mut text = String::new();
    std::io::Read::read_to_string(&mut ex.download(id).unwrap(), &mut text).unwrap();
    assert_eq!(parse_csv(&text).len(), 2);
}

#[test]
fn the_policy_file_reconfigures_plans_and_schedule() {
    let env = Env::new("2026-08-10T01:00:00Z");
    env.org("perf", Plan::Performance, None);
    env.org("free", Plan::Free, None);
    append_at(env.store(), "perf", &["2026-08-03T10:00:00Z"]);
    std::fs::write(
        env.dir.path().join(POLICY_FILE),
        r#"{
          "schedule": {"period_minutes": 1440, "minute": 120},
          "plans": {
            "performance": {"limit": 2, "window_days": 1, "max_range_days": 30, "download_days": 30},
            "free": {"eligible": true, "limit": 1}
          }
        }"#,
    )
    .unwrap();
    let ex = Exports::new(env.store()).unwrap();
    assert_eq!(
        ex.policy().schedule(),
        Schedule {
            period_minutes: 1440,
            minute: 120
        }
    );
    // Per-day limit of 2.
    let first = ex
        .request("perf", "ann", Role::Admin, d("2026-08-01"), d("2026-08-10"))
        .unwrap();
    env.set_now("2026-08-10T01:10:00Z");
    ex.request("perf", "ann", Role::Admin, d("2026-08-01"), d("2026-08-10"))
        .unwrap();
    let next = rate_limited_at(ex.request("perf", "ann", Role::Admin, d("2026-08-01"), d("2026-08-10")));
    assert_eq!(next, t("2026-08-11T01:00:00Z"));
    // A 30-day maximum range: 31 days is refused.
    assert_eq!(
        code(ex.request("perf", "ann", Role::Admin, d("2026-07-10"), d("2026-08-09"))),
        "invalid_range"
    );
    // Free became eligible.
    ex.request("free", "ann", Role::Admin, d("2026-08-01"), d("2026-08-02"))
        .unwrap();
    // Daily at 02:00: a run at 01:59 handles nothing, one at 02:00 everything.
    env.set_now("2026-08-10T01:59:00Z");
    assert!(ex.process().unwrap().processed.is_empty());
    env.set_now("2026-08-10T02:00:00Z");
    assert_eq!(ex.process().unwrap().processed.len(), 3);
    // 30-day downloads.
    assert_eq!(
        ex.get(first.id).unwrap().expires_at,
        Some(t("2026-09-09T02:00:00Z"))
    );
    env.set_now("2026-09-09T01:59:59Z");
    assert_eq!(ex.get(first.id).unwrap().status, Status::Success);

    // A broken file is damage naming the file (`corrupt`), not silently
    // the defaults.
    std::fs::write(
        env.dir.path().join(POLICY_FILE),
        r#"{"plans": {"scale": {"limit": "three"}}}"#,
    )
    .unwrap();
    let err = Exports::new(env.store()).unwrap_err();
    assert_eq!(err.code(), "corrupt");
    assert!(err.to_string().contains(POLICY_FILE), "{err}");
}

#[test]
fn the_policy_can_be_changed_through_the_api_and_saved() {
    let env = Env::new(NOW);
    env.org("sc", Plan::Scale, None);
    let mut policy = ExportPolicy::default();
    assert_eq!(policy.plan(Plan::Scale).limit, Some(3));
    policy
        .set_plan(
            Plan::Scale,
            PlanPolicy {
                limit: Some(1),
                ..PlanPolicy::default_for(Plan::Scale)
            },
        )
        .unwrap();
    assert!(
        policy
            .set_schedule(Schedule {
                period_minutes: 50,
                minute: 0
            })
            .is_err(),
        "50 minutes does not divide a day"
    );
    assert!(policy
        .set_schedule(Schedule {
            period_minutes: 60,
            minute: 60
        })
        .is_err());
    let mut ex = Exports::with_policy(env.store(), policy.clone());
    ex.request("sc", "ann", Role::Admin, d("2026-08-01"), d("2026-08-02"))
        .unwrap();
    assert_eq!(
        code(ex.request("sc", "ann", Role::Admin, d("2026-08-01"), d("2026-08-02"))),
        "rate_limited"
    );
    ex.set_policy(ExportPolicy::default());
    ex.request("sc", "ann", Role::Admin, d("2026-08-01"), d("2026-08-02"))
        .unwrap();
    // Saved, it is what the next handle loads.
    policy.save(env.dir.path()).unwrap();
    let reloaded = Exports::new(env.store()).unwrap();
    assert_eq!(reloaded.policy(), &policy);
    assert_eq!(
        code(reloaded.request("sc", "ann", Role::Admin, d("2026-08-01"), d("2026-08-02"))),
        "rate_limited"
    );
}

// ---------------------------------------------------------------- own events

/// The store's own actions are events of the organization (events.md, "The
/// store's own actions"), with the right actor, target and scope, recorded
/// once: a repeated download at the same instant or a reopen adds no second
/// copy, and setting unchanged settings records nothing.
#[test]
fn the_stores_own_actions_are_events_of_the_organization_recorded_once() {
    let mut env = Env::new("2026-08-10T09:00:00Z");
    let org = "srv";
    env.store()
        .set_org_as("alice", org, Some(Plan::Server), Some(30))
        .unwrap();
    append_at(env.store(), org, &["2026-08-03T10:00:00Z"]);
    env.set_now("2026-08-10T09:31:00Z");
    let id = {
        let ex = Exports::new(env.store()).unwrap();
        let req = ex
            .request(org, "bob", Role::Admin, d("2026-08-02"), d("2026-08-05"))
            .unwrap();
        env.clock.set(ex.processed_at(req.created_at));
        ex.process().unwrap();
        assert_eq!(ex.get(req.id).unwrap().status, Status::Success);
        env.set_now("2026-08-10T11:00:00Z");
        ex.download_by(req.id, "carol").unwrap();
        req.id
    };
    let processed_at = Exports::new(env.store())
        .unwrap()
        .get(id)
        .unwrap()
        .completed_at
        .unwrap();
    // The own events of the org, over the day they were made (the one
    // appended event is on Aug 3).
    let own = |env: &Env| -> Vec<Value> {
        env.store()
            .scan(&Query::new(org, t("2026-08-10"), t("2026-08-11")))
            .unwrap()
            .map(|e| serde_json::from_str(&e.unwrap().to_json()).unwrap())
            .collect()
    };
    let events = own(&env);
    let summary: Vec<(&str, &str, &str, &str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["occurred_at"].as_str().unwrap(),
                e["actor"]["id"].as_str().unwrap(),
                e["actor"]["type"].as_str().unwrap(),
                e["target"]["type"].as_str().unwrap(),
            )
        })
        .collect();
    let processed_at = processed_at.to_string();
    assert_eq!(
        summary,
        [
            (
                "org.settings.update",
                "2026-08-10T09:00:00Z",
                "alice",
                "user",
                "organization"
            ),
            (
                "audit_log.requested",
                "2026-08-10T09:31:00Z",
                "bob",
                "user",
                "audit_log_request"
            ),
            (
                "audit_log.processed",
                processed_at.as_str(),
                "auditstore",
                "system",
                "audit_log_request"
            ),
            (
                "audit_log.download_url.generated",
                "2026-08-10T11:00:00Z",
                "carol",
                "user",
                "audit_log_request"
            ),
        ]
    );
    assert_eq!(events[0]["target"]["id"], org);
    for e in &events[1..] {
        assert_eq!(e["target"]["id"], id.to_string(), "{e}");
    }
    for e in &events {
        assert_eq!(e["scope"], json!({"id": org, "type": "organization"}), "{e}");
        assert_eq!(e["success"], true, "{e}");
    }
    assert_eq!(
        events[0]["payload"],
        json!({"old": {"plan": "free", "retention_days": 365}, "new": {"plan": "server", "retention_days": 30}})
    );

    // The same download at the same instant is the same event.
    Exports::new(env.store())
        .unwrap()
        .download_by(id, "carol")
        .unwrap();
    assert_eq!(own(&env), events);
    // Setting what is already set records nothing.
    let stored = env.store().stats().unwrap().events;
    env.store()
        .set_org_as("alice", org, Some(Plan::Server), Some(30))
        .unwrap();
    env.store().set_org(org, None, None).unwrap();
    assert_eq!(env.store().stats().unwrap().events, stored);
    assert_eq!(own(&env), events);
    // A reopen adds nothing either.
    env.reopen();
    assert_eq!(own(&env), events);
    assert_eq!(env.store().stats().unwrap().events, stored);
    // Another user's download is another event.
    Exports::new(env.store())
        .unwrap()
        .download_by(id, "dave")
        .unwrap();
    assert_eq!(own(&env).len(), events.len() + 1);
}
