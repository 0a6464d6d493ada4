//! Helpers shared by the export tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use auditstore::export::{Date, ExportError};
use auditstore::sample::{SampleConfig, SampleGenerator};
use auditstore::{Durability, Event, FixedClock, Options, Plan, Store, Timestamp};
use uuid::Uuid;

/// An instant from RFC 3339 or `YYYY-MM-DD`.
pub fn t(s: &str) -> Timestamp {
    Timestamp::parse_instant_or_date(s).unwrap()
}

/// A calendar date.
pub fn d(s: &str) -> Date {
    s.parse().unwrap()
}

/// A store in a temporary directory with a fixed clock.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub clock: Arc<FixedClock>,
    pub store: Option<Store>,
}

impl Env {
    pub fn new(now: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(FixedClock::new(t(now)));
        let store = open(dir.path(), &clock);
        Env {
            dir,
            clock,
            store: Some(store),
        }
    }

    pub fn store(&self) -> &Store {
        self.store.as_ref().unwrap()
    }

    pub fn set_now(&self, now: &str) {
        self.clock.set(t(now));
    }

    /// Close and reopen the store (a restart).
    pub fn reopen(&mut self) {
        self.store = None;
        self.store = Some(open(self.dir.path(), &self.clock));
    }

    pub fn org(&self, org: &str, plan: Plan, retention_days: Option<u32>) {
        self.store().set_org(org, Some(plan), retention_days).unwrap();
    }

    pub fn exports_dir(&self) -> PathBuf {
        self.dir.path().join("exports")
    }

    /// Names of the files in the exports directory, sorted.
    pub fn export_files(&self) -> Vec<String> {
        let mut names: Vec<String> = match std::fs::read_dir(self.exports_dir()) {
            Ok(rd) => rd
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        names
    }
}

pub fn open(dir: &Path, clock: &Arc<FixedClock>) -> Store {
    Store::open_with(
        dir,
        Options {
            clock: clock.clone(),
            ..Options::default()
        },
    )
    .unwrap()
}

/// A store in `dir` (buffered appends, segments of `segment_size` bytes)
/// holding `n` generated events of `org-00` (server plan), about 1 s apart
/// from 2026-06-01, with out-of-order times; re-sent duplicates too when
/// `resends`.
pub fn one_org_store(
    dir: &Path,
    clock: &Arc<FixedClock>,
    segment_size: u64,
    resends: bool,
    n: usize,
) -> Store {
    let store = Store::open_with(
        dir,
        Options {
            clock: clock.clone(),
            segment_size,
            durability: Durability::Buffered,
            ..Options::default()
        },
    )
    .unwrap();
    store.set_org("org-00", Some(Plan::Server), None).unwrap();
    let defaults = SampleConfig::default();
    let mut gen = SampleGenerator::new(SampleConfig {
        orgs: 1,
        step_nanos: 1_000_000_000,
        duplicate_per_mille: if resends { defaults.duplicate_per_mille } else { 0 },
        ..defaults
    });
    gen.append_to(&store, n, 20_000).unwrap();
    store
}

/// A valid event at `at`.
pub fn event(at: &str) -> Event {
    Event::builder(Uuid::new_v4(), "user.logged_in", t(at), true)
        .actor("u1", "user", Some("ann"))
        .target("t1", "user", None)
        .build()
        .unwrap()
}

/// Append events of `org` at these instants.
pub fn append_at(store: &Store, org: &str, instants: &[&str]) -> Vec<Event> {
    let events: Vec<Event> = instants.iter().map(|a| event(a)).collect();
    let report = store.append_batch(events.iter().map(|e| (org, e))).unwrap();
    assert_eq!(report.appended, events.len() as u64);
    events
}

/// The error's code; panics on success.
pub fn code<T: std::fmt::Debug>(r: Result<T, ExportError>) -> &'static str {
    match r {
        Ok(v) => panic!("expected a refusal, got {v:?}"),
        Err(e) => e.code(),
    }
}

/// Parse CSV text into rows (header included).
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes());
    reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

/// Whether `action` is one of the store's own actions (events.md, "The
/// store's own actions"): `org.settings.update` and `audit_log.*`.
pub fn own_action(action: &str) -> bool {
    action == "org.settings.update" || action.starts_with("audit_log.")
}

/// Whether a CSV row (`id`, `action`, ...) is one of the store's own
/// events: an own action with the store's derived (UUID v5) id. The sample
/// generator's events have random (v4) ids, and some of them are
/// `org.settings.update` too.
pub fn own_row(row: &[String]) -> bool {
    own_action(&row[1]) && Uuid::parse_str(&row[0]).is_ok_and(|u| u.get_version_num() == 5)
}

/// Whether `e` is one of the store's own events (see [`own_row`]).
pub fn own_event(e: &Event) -> bool {
    own_action(e.action()) && e.id().get_version_num() == 5
}

// ---- the admin tool ----

pub const BIN: &str = env!("CARGO_BIN_EXE_auditstore");
/// The `--as-of` of [`tool`].
pub const AS_OF: &str = "2026-06-10T10:31:00Z";

/// The admin tool on `dir` at [`AS_OF`].
pub fn tool(dir: &Path, args: &[&str]) -> Output {
    tool_at(dir, AS_OF, args)
}

/// The admin tool on `dir` with `--as-of as_of`.
pub fn tool_at(dir: &Path, as_of: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .env_remove("AUDITSTORE_DATA_DIR")
        .arg("--data-dir")
        .arg(dir)
        .args(["--as-of", as_of])
        .args(args)
        .output()
        .unwrap()
}

/// [`tool`], which must succeed.
pub fn ok(dir: &Path, args: &[&str]) -> Output {
    exits_with(dir, args, 0)
}

/// [`tool`], which must exit with `code`.
pub fn exits_with(dir: &Path, args: &[&str], code: i32) -> Output {
    let out = tool(dir, args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Its standard output as one JSON value.
pub fn json(out: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}
