//! Operation sequences run against a real [`Store`] and checked against a
//! simple in-memory model. The one interpreter behind the `store_ops` fuzz
//! target, its seed-corpus replay (`tests/fuzz_corpus.rs`) and the proptest
//! in `tests/model.rs`.
//!
//! The model: a map id -> (org, content key, first event written). An
//! append of an id already in the model is a `Duplicate` when org and
//! content key are the same (the JSON text may differ: key order,
//! whitespace, escapes, UUID case, time zone spelling) and a `Conflict`
//! otherwise; the first write wins. A scan must equal a brute-force filter
//! of the model, clamped to the organization's retention as of the store's
//! (fixed) clock, sorted by (occurred_at, id). Retention may delete only
//! expired events. A reopen or a crash (a torn or garbage tail appended to
//! the active segment, a lost or damaged index, leftover temporary files)
//! loses nothing, stores nothing twice, and leaves `verify` clean.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use auditstore::codec;
use auditstore::log::{frame, recovery};
use auditstore::{AppendOutcome, Durability, Event, FixedClock, Options, Query, Store, Timestamp};

/// Organizations: plain, with path-like and non-ASCII characters, and the
/// longest allowed name (256 bytes).
pub const NORGS: u8 = 4;
/// Distinct event ids used (small, so that duplicates and conflicts happen).
pub const NSLOTS: u8 = 24;
/// Content variants of an event (action, success and payload differ).
pub const NVARIANTS: u8 = 3;
/// Most operations decoded from one fuzz input.
pub const MAX_OPS: usize = 48;
/// The fixed clock's start: 2026-06-01T00:00:00Z.
pub const START: i64 = 1_780_272_000_000_000_000;
const NANOS_PER_SEC: i64 = 1_000_000_000;
const NANOS_PER_DAY: i64 = 86_400 * NANOS_PER_SEC;
const DEFAULT_RETENTION_DAYS: u32 = 365;
/// Retention settings an op may choose.
pub const RETENTION_DAYS: [u32; 5] = [1, 7, 30, 365, 3650];
/// Timestamps at the ends of the representable range, and around 0.
pub const EXTREME_TS: [i64; 6] = [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX - 1, i64::MAX];
const ACTIONS: [&str; 3] = ["user.logged_in", "project.settings.update", "workflow.job.start"];

/// How the store is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub segment_size: u64,
    pub buffered: bool,
    /// Seal rolled segments on the appending thread instead.
    pub inline_sealing: bool,
}

/// One event to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A new event (its id may already be stored: then a duplicate or a
    /// conflict, depending on org and content).
    New {
        org: u8,
        slot: u8,
        variant: u8,
        /// Payload padding, in 16-byte units (records up to ~4.3 KB, larger
        /// than a 4 KiB segment).
        pad: u8,
        ts: i64,
        /// How the JSON is spelled (content-preserving).
        style: u8,
    },
    /// Re-send the stored event of `slot` (same content, maybe another
    /// spelling), or from another organization (a conflict).
    Resend { slot: u8, style: u8, other_org: bool },
}

/// What a simulated crash does to the files after the store is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Crash {
    /// Garbage appended to the active segment (a torn write of junk).
    Garbage(Vec<u8>),
    /// The first `cut` bytes of a real, never acknowledged frame.
    TornFrame { cut: u16, item: Item },
    /// Zeros appended (preallocated blocks after a power loss).
    ZeroTail(u16),
    /// The newest sealed segment's index is lost.
    DropLastIdx,
    /// One byte of the newest index is damaged.
    FlipIdxByte(u16),
    /// One byte inside the active segment's records is damaged: only the
    /// record holding it may be lost (the ones after it are salvaged).
    FlipActiveByte(u16),
    /// Leftover `*.tmp` and `*.deleted` files from interrupted work.
    Leftovers,
}

/// One step of a sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// One item: `Store::append`; several: `Store::append_batch`.
    Append(Vec<Item>),
    Reopen,
    Crash(Crash),
    Scan {
        org: u8,
        from: i64,
        to: i64,
        limit: Option<u8>,
    },
    Get {
        slot: u8,
    },
    AdvanceDays(u16),
    SetRetention {
        org: u8,
        days: u32,
    },
    ApplyRetention,
    Verify,
}

// ---------------------------------------------------------------------------
// Decoding fuzz bytes into a sequence

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }
}

/// A timestamp from one selector byte and 16 bits: 1/16 of the time one of
/// [`EXTREME_TS`], else within about -1024..+341 days of [`START`].
pub fn ts_from(selector: u8, x: u16) -> i64 {
    if selector < 16 {
        EXTREME_TS[usize::from(selector) % EXTREME_TS.len()]
    } else {
        START + (i64::from(x) - 49_152) * 1800 * NANOS_PER_SEC + i64::from(selector)
    }
}

fn read_ts(r: &mut Reader<'_>) -> i64 {
    let s = r.u8();
    ts_from(s, r.u16())
}

fn read_item(r: &mut Reader<'_>) -> Item {
    let tag = r.u8();
    if tag % 4 == 3 {
        Item::Resend {
            slot: r.u8() % NSLOTS,
            style: r.u8() % 2,
            other_org: tag & 0x80 != 0,
        }
    } else {
        Item::New {
            org: r.u8() % NORGS,
            slot: r.u8() % NSLOTS,
            variant: r.u8() % NVARIANTS,
            pad: r.u8(),
            ts: read_ts(r),
            style: r.u8() % 2,
        }
    }
}

/// Decode fuzz bytes: a config byte, then up to [`MAX_OPS`] operations.
pub fn decode(data: &[u8]) -> (Config, Vec<Op>) {
    let mut r = Reader { data, pos: 0 };
    let c = r.u8();
    let config = Config {
        segment_size: [4096, 4096, 8192, 1 << 20][usize::from(c & 3)],
        buffered: c & 4 != 0,
        inline_sealing: c & 8 != 0,
    };
    let mut ops = Vec::new();
    while !r.is_empty() && ops.len() < MAX_OPS {
        let op = match r.u8() % 16 {
            0..=4 => Op::Append(vec![read_item(&mut r)]),
            5 => {
                let n = 2 + usize::from(r.u8() % 4);
                Op::Append((0..n).map(|_| read_item(&mut r)).collect())
            }
            6 => Op::Reopen,
            7 => Op::Crash(match r.u8() % 7 {
                0 => {
                    let n = usize::from(r.u8() % 64);
                    Crash::Garbage((0..n).map(|_| r.u8()).collect())
                }
                1 => Crash::TornFrame {
                    cut: r.u16(),
                    item: read_item(&mut r),
                },
                2 => Crash::ZeroTail(r.u16()),
                3 => Crash::DropLastIdx,
                4 => Crash::FlipIdxByte(r.u16()),
                5 => Crash::FlipActiveByte(r.u16()),
                _ => Crash::Leftovers,
            }),
            8 | 9 => {
                let org = r.u8() % NORGS;
                let (a, b) = (read_ts(&mut r), read_ts(&mut r));
                let l = r.u8();
                Op::Scan {
                    org,
                    from: a.min(b),
                    to: a.max(b),
                    limit: (l & 0x80 != 0).then_some(l & 0x7f),
                }
            }
            10 => Op::Get {
                slot: r.u8() % NSLOTS,
            },
            11 => Op::AdvanceDays(r.u16() % 500),
            12 => Op::SetRetention {
                org: r.u8() % NORGS,
                days: RETENTION_DAYS[usize::from(r.u8()) % RETENTION_DAYS.len()],
            },
            13 | 14 => Op::ApplyRetention,
            _ => Op::Verify,
        };
        ops.push(op);
    }
    (config, ops)
}

// ---------------------------------------------------------------------------
// Events of the model

/// Organization name number `i`.
pub fn org_name(i: u8) -> String {
    match i % NORGS {
        0 => "org-a".to_string(),
        1 => "org-b".to_string(),
        2 => "Org C/../ü \"x\",=1".to_string(),
        _ => "o".repeat(256),
    }
}

/// The id of slot `slot` (a version-4 UUID).
pub fn slot_id(slot: u8) -> uuid::Uuid {
    let mut z = u64::from(slot).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5bd1_e995;
    let mut bytes = [0u8; 16];
    for chunk in bytes.chunks_mut(8) {
        z = (z ^ (z >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z ^= z >> 32;
        chunk.copy_from_slice(&z.to_le_bytes());
    }
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// What decides an event's content (besides its id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub variant: u8,
    pub pad: u8,
    pub ts: i64,
}

/// The event of `slot` with content `key`, spelled in `style`.
pub fn make_event(slot: u8, key: Key, style: u8) -> Event {
    let id = slot_id(slot);
    let action = ACTIONS[usize::from(key.variant % NVARIANTS)];
    let ts = Timestamp::from_nanos(key.ts);
    let success = key.variant != 1;
    let pad = "p".repeat(usize::from(key.pad) * 16);
    let built = if style.is_multiple_of(2) {
        Event::builder(id, action, ts, success)
            .actor("u-1", "user", Some("Ann \"=1+1\""))
            .target(&format!("t-{slot}"), "project", None)
            .payload(serde_json::json!({ "v": key.variant, "pad": pad }))
            .build()
    } else {
        // Same content, other spelling: key order, whitespace, escapes,
        // upper-case UUID, an explicit +00:00 offset.
        let at = ts.to_rfc3339().replace('Z', "+00:00");
        let id = id.hyphenated().to_string().to_uppercase();
        Event::from_json(&format!(
            "{{ \"success\" : {success},\n \"payload\": {{\"pad\":\"{pad}\", \"v\": {v}}},\
             \"target\":{{\"type\":\"project\",\"id\":\"t-{slot}\"}}, \"occurred_at\":\"{at}\",\
             \"actor\": {{\"name\":\"Ann \\\"=1+1\\\"\",\"type\":\"\\u0075ser\",\"id\":\"u-1\"}},\
             \"action\":\"{action}\", \"id\":\"{id}\", \"version\": 1, \"scope\": null }}",
            v = key.variant,
        ))
    };
    built.unwrap_or_else(|e| panic!("model event of slot {slot} {key:?} style {style} is invalid: {e}"))
}

#[derive(Debug, Clone)]
struct Stored {
    org: String,
    key: Key,
    event: Event,
}

#[derive(Debug, Clone, Default)]
struct Model {
    events: HashMap<uuid::Uuid, Stored>,
    retention: HashMap<String, u32>,
}

impl Model {
    fn days(&self, org: &str) -> u32 {
        self.retention.get(org).copied().unwrap_or(DEFAULT_RETENTION_DAYS)
    }

    fn cutoff(&self, org: &str, now: i64) -> i64 {
        now.saturating_sub(i64::from(self.days(org)) * NANOS_PER_DAY)
    }

    /// Resolve an item to (org, slot, key, event).
    fn resolve(&self, item: &Item) -> (String, u8, Key, Event) {
        match *item {
            Item::New {
                org,
                slot,
                variant,
                pad,
                ts,
                style,
            } => {
                let key = Key { variant, pad, ts };
                (org_name(org), slot, key, make_event(slot, key, style))
            }
            Item::Resend {
                slot,
                style,
                other_org,
            } => {
                let (org, key) = match self.events.get(&slot_id(slot)) {
                    Some(s) => (s.org.clone(), s.key),
                    None => (
                        org_name(slot),
                        Key {
                            variant: 0,
                            pad: 0,
                            ts: START,
                        },
                    ),
                };
                let org = if other_org {
                    let i = (0..NORGS).find(|i| org_name(*i) == org).unwrap_or(0);
                    org_name(i + 1)
                } else {
                    org
                };
                (org, slot, key, make_event(slot, key, style))
            }
        }
    }

    /// First write wins.
    fn append(&mut self, org: &str, key: Key, event: &Event) -> AppendOutcome {
        match self.events.get(&event.id()) {
            Some(s) if s.org == org && s.key == key => AppendOutcome::Duplicate,
            Some(_) => AppendOutcome::Conflict,
            None => {
                self.events.insert(
                    event.id(),
                    Stored {
                        org: org.to_string(),
                        key,
                        event: event.clone(),
                    },
                );
                AppendOutcome::Appended
            }
        }
    }

    /// Brute force: the org's events in [from, to) and not older than
    /// `cutoff`, sorted by (occurred_at, id).
    fn query(&self, org: &str, from: i64, to: i64, cutoff: i64) -> Vec<Event> {
        let from = from.max(cutoff);
        let mut hits: BTreeMap<(i64, [u8; 16]), Event> = BTreeMap::new();
        for s in self.events.values() {
            let ts = s.event.occurred_at().as_nanos();
            if s.org == org && from <= ts && ts < to {
                hits.insert((ts, *s.event.id().as_bytes()), s.event.clone());
            }
        }
        hits.into_values().collect()
    }

    fn orgs(&self) -> Vec<String> {
        let mut v: Vec<String> = self.events.values().map(|s| s.org.clone()).collect();
        v.extend((0..NORGS).map(org_name));
        v.sort();
        v.dedup();
        v
    }
}

// ---------------------------------------------------------------------------
// The interpreter

/// Where the stores live: tmpfs when there is one (the sequences fsync a
/// lot), else the system's temporary directory.
fn scratch_dir() -> tempfile::TempDir {
    let base = Path::new("/dev/shm");
    let builder = tempfile::Builder::new().prefix("auditstore-ops-").clone();
    if base.is_dir() {
        if let Ok(d) = builder.tempdir_in(base) {
            return d;
        }
    }
    builder.tempdir().expect("temporary directory")
}

struct Harness {
    dir: tempfile::TempDir,
    config: Config,
    clock: Arc<FixedClock>,
    store: Option<Store>,
    model: Model,
    /// Indexes damaged on purpose: the open that rebuilds one reports it.
    flipped_indexes: Vec<std::path::PathBuf>,
    /// (segment, offset) of records damaged on purpose with records after
    /// them: `verify` reports each while its quarantine file is there.
    damaged_records: Vec<(std::path::PathBuf, u64)>,
}

type Check = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

fn fail<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{what} failed: {e}")
}

/// Run `ops` on a fresh store opened with `config`; `Err` names the first
/// operation whose result disagrees with the model, and how.
pub fn run(config: Config, ops: &[Op]) -> Check {
    let clock = Arc::new(FixedClock::new(Timestamp::from_nanos(START)));
    let mut h = Harness {
        dir: scratch_dir(),
        config,
        clock,
        store: None,
        model: Model::default(),
        flipped_indexes: Vec::new(),
        damaged_records: Vec::new(),
    };
    h.open()?;
    for (i, op) in ops.iter().enumerate() {
        h.apply(op).map_err(|e| format!("op #{i} {op:?}: {e}"))?;
    }
    h.check_all().map_err(|e| format!("after the last op: {e}"))?;
    h.close();
    h.open()?;
    h.check_all().map_err(|e| format!("after a final reopen: {e}"))
}

/// [`decode`] then [`run`]; panics with the failure (for the fuzzer).
pub fn run_bytes(data: &[u8]) {
    let (config, ops) = decode(data);
    if let Err(e) = run(config, &ops) {
        panic!("store_ops: {e}\nconfig: {config:?}\nops: {ops:#?}");
    }
}

impl Harness {
    fn options(&self) -> Options {
        Options {
            durability: if self.config.buffered {
                Durability::Buffered
            } else {
                Durability::Sync
            },
            segment_size: self.config.segment_size,
            clock: self.clock.clone(),
            background_sealing: !self.config.inline_sealing,
            // The model's crashes flip and cut bytes of the active segment
            // and expect recovery to treat them as a crash would; with the
            // tamper-evidence tree, damage to records a signed checkpoint
            // covers is refused instead (tests/integrity_store).
            integrity: false,
            ..Options::default()
        }
    }

    fn open(&mut self) -> Check {
        let store = Store::open_with(self.dir.path(), self.options()).map_err(fail("open"))?;
        self.store = Some(store);
        Ok(())
    }

    fn close(&mut self) {
        self.store = None;
    }

    fn store(&self) -> &Store {
        self.store.as_ref().expect("store is open")
    }

    fn now(&self) -> i64 {
        use auditstore::Clock as _;
        self.clock.now().as_nanos()
    }

    fn apply(&mut self, op: &Op) -> Check {
        match op {
            Op::Append(items) => self.append(items),
            Op::Reopen => {
                self.close();
                self.open()?;
                self.check_all()
            }
            Op::Crash(c) => self.crash(c),
            Op::Scan { org, from, to, limit } => {
                self.scan(&org_name(*org), *from, *to, limit.map(usize::from))
            }
            Op::Get { slot } => {
                let id = slot_id(*slot);
                let got = self.store().get(id).map_err(fail("get"))?;
                let now = self.now();
                let want = self.model.events.get(&id).and_then(|s| {
                    (s.event.occurred_at().as_nanos() >= self.model.cutoff(&s.org, now))
                        .then(|| s.event.clone())
                });
                ensure!(got == want, "get({id}) = {got:?}, model says {want:?}");
                Ok(())
            }
            Op::AdvanceDays(d) => {
                self.clock.advance_secs(i64::from(*d) * 86_400);
                Ok(())
            }
            Op::SetRetention { org, days } => {
                let org = org_name(*org);
                let s = self
                    .store()
                    .set_org(&org, None, Some(*days))
                    .map_err(fail("set_org"))?;
                ensure!(s.retention_days == *days, "set_org returned {s:?}");
                // A change is recorded in the org's own log (the store's
                // own audit event), as an append the model expects.
                let old = self.model.days(&org);
                if old != *days {
                    let now = auditstore::Clock::now(&*self.clock);
                    let event = auditstore::org::settings_update_event(
                        &org,
                        (auditstore::Plan::Free, old),
                        (auditstore::Plan::Free, *days),
                        auditstore::store::own_events::Actor::SYSTEM,
                        now,
                    )
                    .map_err(fail("settings_update_event"))?;
                    let key = Key {
                        variant: u8::MAX,
                        pad: u8::MAX,
                        ts: now.as_nanos(),
                    };
                    self.model.append(&org, key, &event);
                }
                self.model.retention.insert(org, *days);
                Ok(())
            }
            Op::ApplyRetention => self.apply_retention(),
            Op::Verify => self.check_all(),
        }
    }

    fn append(&mut self, items: &[Item]) -> Check {
        let resolved: Vec<(String, u8, Key, Event)> = items.iter().map(|i| self.model.resolve(i)).collect();
        let mut expected = Vec::new();
        let mut next = self.model.clone();
        for (org, _, key, event) in &resolved {
            expected.push(next.append(org, *key, event));
        }
        let got = if resolved.len() == 1 {
            let (org, _, _, event) = &resolved[0];
            vec![self.store().append(org, event).map_err(fail("append"))?]
        } else {
            let batch: Vec<(&str, &Event)> = resolved.iter().map(|(o, _, _, e)| (o.as_str(), e)).collect();
            let report = self.store().append_batch(batch).map_err(fail("append_batch"))?;
            let count = |o| report.outcomes.iter().filter(|x| **x == o).count() as u64;
            ensure!(
                report.appended == count(AppendOutcome::Appended)
                    && report.duplicates == count(AppendOutcome::Duplicate)
                    && report.conflicts == count(AppendOutcome::Conflict),
                "batch report counts disagree with its outcomes: {report:?}"
            );
            report.outcomes
        };
        ensure!(got == expected, "outcomes {got:?}, model says {expected:?}");
        self.model = next;
        Ok(())
    }

    fn scan(&self, org: &str, from: i64, to: i64, limit: Option<usize>) -> Check {
        let mut q = Query::new(org, Timestamp::from_nanos(from), Timestamp::from_nanos(to));
        if let Some(n) = limit {
            q = q.limit(n);
        }
        let got: Vec<Event> = self
            .store()
            .scan(&q)
            .map_err(fail("scan"))?
            .collect::<Result<_, _>>()
            .map_err(fail("scan iteration"))?;
        let mut want = self
            .model
            .query(org, from, to, self.model.cutoff(org, self.now()));
        if let Some(n) = limit {
            want.truncate(n);
        }
        ensure!(
            got == want,
            "scan({org:?}, {from}, {to}, limit {limit:?}) returned {} events {:?}, model says {} {:?}",
            got.len(),
            ids(&got),
            want.len(),
            ids(&want)
        );
        // The same scan split into time slices, read one after another:
        // the same events in the same order, no timestamp in two slices.
        let parts = 2 + (from ^ to).rem_euclid(7) as usize;
        let slices = self.store().scan(&q).map_err(fail("scan"))?.split(parts);
        ensure!(
            slices.len() <= parts && (limit.is_none() || slices.len() == 1),
            "split({parts}) made {} slices (limit {limit:?})",
            slices.len()
        );
        let mut joined: Vec<Event> = Vec::new();
        for slice in slices {
            let part: Vec<Event> = slice
                .collect::<Result<_, _>>()
                .map_err(fail("split scan iteration"))?;
            if let (Some(last), Some(first)) = (joined.last(), part.first()) {
                ensure!(
                    last.occurred_at() < first.occurred_at(),
                    "split({parts}): a slice starts at or before the previous one's last timestamp"
                );
            }
            joined.extend(part);
        }
        ensure!(
            joined == want,
            "split({parts}) of scan({org:?}, {from}, {to}, limit {limit:?}) returned {:?}, model says {:?}",
            ids(&joined),
            ids(&want)
        );
        Ok(())
    }

    fn apply_retention(&mut self) -> Check {
        let report = self.store().apply_retention().map_err(fail("apply_retention"))?;
        let now = self.now();
        let mut vanished = Vec::new();
        for (id, s) in &self.model.events {
            let there = self
                .store()
                .get_as_of(*id, Timestamp::MIN)
                .map_err(fail("get_as_of"))?;
            match there {
                Some(e) => ensure!(e == s.event, "{id} changed under retention: {e:?}"),
                None => {
                    let ts = s.event.occurred_at().as_nanos();
                    let cutoff = self.model.cutoff(&s.org, now);
                    ensure!(
                        ts < cutoff,
                        "retention deleted unexpired event {id} of {:?} at {ts} (cutoff {cutoff})",
                        s.org
                    );
                    vanished.push(*id);
                }
            }
        }
        ensure!(
            report.events_deleted == vanished.len() as u64,
            "retention reports {} events deleted, {} vanished: {report:?}",
            report.events_deleted,
            vanished.len()
        );
        for id in vanished {
            self.model.events.remove(&id);
        }
        Ok(())
    }

    /// Every stored event exactly once, nothing else, `verify` clean (but
    /// for the indexes damaged on purpose that this open rebuilt).
    fn check_all(&self) -> Check {
        let store = self.store();
        let mut report = store.verify().map_err(fail("verify"))?;
        let rebuilt = &store.recovery_report().rebuilt_indexes;
        report.problems.retain(|p| {
            let rebuilt_index = p.message.starts_with("damaged index")
                && rebuilt.contains(&p.file)
                && self.flipped_indexes.contains(&p.file);
            let salvaged = p.message.starts_with("damaged record in")
                && self.damaged_records.contains(&(p.file.clone(), p.offset));
            !(rebuilt_index || salvaged)
        });
        ensure!(
            report.problems.is_empty(),
            "verify found problems: {:?}",
            report.problems
        );
        let n = self.model.events.len() as u64;
        ensure!(
            report.records == n,
            "verify counted {} records, model holds {n}",
            report.records
        );
        let stats = store.stats().map_err(fail("stats"))?;
        ensure!(
            stats.events == n,
            "stats counts {} events, model holds {n}",
            stats.events
        );
        for org in self.model.orgs() {
            let q = Query::new(org.as_str(), Timestamp::MIN, Timestamp::MAX).as_of(Timestamp::MIN);
            let got: Vec<Event> = store
                .scan(&q)
                .map_err(fail("full scan"))?
                .collect::<Result<_, _>>()
                .map_err(fail("full scan iteration"))?;
            let want = self.model.query(&org, i64::MIN, i64::MAX, i64::MIN);
            ensure!(
                got == want,
                "full scan of {org:?}: {} events {:?}, model says {} {:?}",
                got.len(),
                ids(&got),
                want.len(),
                ids(&want)
            );
        }
        for (id, s) in &self.model.events {
            let got = store.get_as_of(*id, Timestamp::MIN).map_err(fail("get_as_of"))?;
            ensure!(got.as_ref() == Some(&s.event), "get_as_of({id}) = {got:?}");
        }
        Ok(())
    }

    fn files(&self, ext: &str) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().and_then(|e| e.to_str()) == Some(ext))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    fn crash(&mut self, crash: &Crash) -> Check {
        // Resolve before closing (a torn frame of a re-send needs the model).
        let torn = match crash {
            Crash::TornFrame { cut, item } => {
                let (org, _, _, event) = self.model.resolve(item);
                let mut bytes = Vec::new();
                let start = frame::begin(&mut bytes);
                codec::encode(&org, &event, &mut bytes);
                frame::seal_in_place(&mut bytes, start);
                let cut = usize::from(*cut) % bytes.len();
                bytes.truncate(cut);
                Some(bytes)
            }
            _ => None,
        };
        self.close();
        let active = self.files("log").pop().ok_or("no segment file")?;
        let mut expect_cut = None;
        let mut expect_salvaged = None;
        let mut leftovers = Vec::new();
        match crash {
            Crash::Garbage(bytes) => {
                let mut bytes = bytes.clone();
                // A fuzzer can forge a checksum; a valid frame would be a
                // real record, not a torn write. Keep the first frame broken.
                if bytes.len() >= frame::FRAME_HEADER_LEN && frame::decode(&bytes).is_ok() {
                    bytes[4] ^= 0xff;
                }
                append_to(&active, &bytes)?;
                expect_cut = Some(reported_cut(&bytes));
            }
            Crash::TornFrame { .. } => {
                let bytes = torn.unwrap_or_default();
                append_to(&active, &bytes)?;
                expect_cut = Some(reported_cut(&bytes));
            }
            Crash::ZeroTail(n) => {
                // Space allocated ahead of the data: trimmed, never
                // reported as cut.
                let n = usize::from(*n % 4096) + 1;
                append_to(&active, &vec![0u8; n])?;
                expect_cut = Some(0);
            }
            Crash::DropLastIdx => {
                if let Some(idx) = self.files("idx").pop() {
                    std::fs::remove_file(&idx).map_err(fail("remove index"))?;
                }
            }
            Crash::FlipIdxByte(at) => {
                if let Some(idx) = self.files("idx").pop() {
                    // Every byte of an index is checked on open (magic,
                    // version, footer, CRC), and a bad index is rebuilt.
                    let mut bytes = std::fs::read(&idx).map_err(fail("read index"))?;
                    let at = usize::from(*at) % bytes.len();
                    bytes[at] ^= 0x5a;
                    std::fs::write(&idx, &bytes).map_err(fail("write index"))?;
                    self.flipped_indexes.push(idx);
                }
            }
            Crash::FlipActiveByte(at) => {
                let mut bytes = std::fs::read(&active).map_err(fail("read active segment"))?;
                let start = auditstore::log::header::SEGMENT_HEADER_LEN;
                let mut frames: Vec<(usize, uuid::Uuid)> = Vec::new();
                let walk = recovery::walk(&bytes, start.min(bytes.len()), |off, v| {
                    frames.push((off as usize, uuid::Uuid::from_bytes(v.id)))
                });
                let end = walk.valid_end as usize;
                if !frames.is_empty() && !active.with_extension("idx").exists() {
                    let at = start + usize::from(*at) % (end - start);
                    let k = frames.iter().rposition(|(off, _)| *off <= at).unwrap_or(0);
                    bytes[at] ^= 0x5a;
                    std::fs::write(&active, &bytes).map_err(fail("write active segment"))?;
                    let (damaged_at, lost) = frames[k];
                    self.model.events.remove(&lost);
                    expect_cut = Some(reported_cut(&bytes[damaged_at..]));
                    let after = frames.len() - k - 1;
                    expect_salvaged = Some(after as u64);
                    if after > 0 {
                        self.damaged_records.push((active.clone(), damaged_at as u64));
                    }
                }
            }
            Crash::Leftovers => {
                for name in [
                    "0000000000000001.idx.tmp",
                    "0000000000000099.log.deleted",
                    "x.tmp",
                ] {
                    let p = self.dir.path().join(name);
                    std::fs::write(&p, b"junk").map_err(fail("write leftover"))?;
                    leftovers.push(p);
                }
            }
        }
        self.open()?;
        if let Some(n) = expect_cut {
            let r = self.store().recovery_report();
            ensure!(
                r.truncated_bytes == n,
                "recovery cut {} bytes, the torn tail was {n}: {r:?}",
                r.truncated_bytes
            );
        }
        if let Some(n) = expect_salvaged {
            let got = self.store().recovery_report().salvaged_records;
            ensure!(
                got == n,
                "{got} records salvaged after the damaged one, {n} were there"
            );
        }
        for p in leftovers {
            ensure!(!p.exists(), "leftover {} not removed on open", p.display());
        }
        self.check_all()
    }
}

/// How much of a torn tail recovery reports as cut: up to its last
/// non-zero byte (trailing zeros are indistinguishable from space allocated
/// ahead, docs/format.md "Recovery").
fn reported_cut(tail: &[u8]) -> u64 {
    tail.iter().rposition(|b| *b != 0).map_or(0, |p| p as u64 + 1)
}

fn append_to(path: &Path, bytes: &[u8]) -> Check {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(fail("open segment for a torn write"))?;
    f.write_all(bytes).map_err(fail("torn write"))
}

fn ids(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| format!("{}@{}", &e.id().to_string()[..8], e.occurred_at().as_nanos()))
        .collect()
}
