//! The workload (deterministic sample events and queries) and the
//! range-query bookkeeping, identical for every system.

use std::collections::HashSet;
use std::time::Instant;

use auditstore::sample::{SampleConfig, SampleGenerator};
use auditstore::{codec, Event, Timestamp};
use serde_json::{json, Value};

use crate::*;

pub(crate) struct Item {
    pub(crate) org: u8,
    pub(crate) id: [u8; 16],
    pub(crate) ts: i64,
    pub(crate) json: String,
}

pub(crate) struct Workload {
    pub(crate) orgs: Vec<String>,
    /// For every system but auditstore: the JSON lines with their keys.
    pub(crate) items: Vec<Item>,
    /// For the raw ceiling: auditstore's own record body of every offered
    /// event (the bytes auditstore writes, minus its frame).
    pub(crate) records: Vec<Vec<u8>>,
    pub(crate) offered_record_bytes: u64,
    /// For auditstore: the parsed events (parsing is not part of the timing
    /// of any system; peers get the id and time pre-extracted).
    pub(crate) events: Vec<(u8, Event)>,
    pub(crate) offered: u64,
    pub(crate) offered_json_bytes: u64,
    pub(crate) unique: u64,
    pub(crate) unique_json_bytes: u64,
    pub(crate) unique_record_bytes: u64,
    pub(crate) min_ts: i64,
    pub(crate) max_ts: i64,
    pub(crate) gen_secs: f64,
}

pub(crate) fn sample_config(seed: u64, start: Timestamp) -> SampleConfig {
    SampleConfig {
        seed,
        orgs: ORGS,
        start,
        step_nanos: STEP_NANOS,
        duplicate_per_mille: 10,
        out_of_order_per_mille: 10,
        max_skew_nanos: 60_000_000_000,
    }
}

pub(crate) fn org_no(org: &str) -> u8 {
    org.strip_prefix("org-")
        .and_then(|n| n.parse().ok())
        .expect("generator org names are org-NN")
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keep {
    Json,
    Records,
    Events,
}

pub(crate) fn generate(n: usize, seed: u64, keep: Keep) -> Workload {
    let t = Instant::now();
    let mut gen = SampleGenerator::new(sample_config(seed, SampleConfig::default().start));
    let mut seen: HashSet<[u8; 16]> = HashSet::with_capacity(n);
    let mut scratch = Vec::with_capacity(2048);
    let mut wl = Workload {
        orgs: (0..ORGS).map(|i| format!("org-{i:02}")).collect(),
        items: Vec::new(),
        records: Vec::new(),
        offered_record_bytes: 0,
        events: Vec::new(),
        offered: 0,
        offered_json_bytes: 0,
        unique: 0,
        unique_json_bytes: 0,
        unique_record_bytes: 0,
        min_ts: i64::MAX,
        max_ts: i64::MIN,
        gen_secs: 0.0,
    };
    for _ in 0..n {
        let (org, line) = gen.next_line();
        let event = Event::from_json(&line).expect("generated events are valid");
        let id = *event.id().as_bytes();
        let ts = event.occurred_at().as_nanos();
        wl.offered += 1;
        wl.offered_json_bytes += line.len() as u64;
        scratch.clear();
        codec::encode(&org, &event, &mut scratch);
        wl.offered_record_bytes += scratch.len() as u64;
        if seen.insert(id) {
            wl.unique += 1;
            wl.unique_json_bytes += line.len() as u64;
            wl.unique_record_bytes += scratch.len() as u64;
            wl.min_ts = wl.min_ts.min(ts);
            wl.max_ts = wl.max_ts.max(ts);
        }
        let o = org_no(&org);
        match keep {
            Keep::Events => wl.events.push((o, event)),
            Keep::Records => wl.records.push(scratch.clone()),
            Keep::Json => wl.items.push(Item {
                org: o,
                id,
                ts,
                json: line,
            }),
        }
    }
    wl.gen_secs = t.elapsed().as_secs_f64();
    wl
}

/// SplitMix64, for the query mix.
pub(crate) struct Rng(u64);
impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// `count` random (organization, 1-day) ranges inside the data.
pub(crate) fn queries(wl: &Workload, count: usize, seed: u64) -> Vec<(String, i64, i64)> {
    let mut rng = Rng(seed ^ 0x5151_5151);
    let span = (wl.max_ts - wl.min_ts - DAY).max(1) as u64;
    (0..count)
        .map(|_| {
            let org = wl.orgs[(rng.next() % ORGS as u64) as usize].clone();
            let from = wl.min_ts + (rng.next() % span) as i64;
            (org, from, from + DAY)
        })
        .collect()
}

/// Sortable key `org|ts|id` (the sign bit of ts flipped, big endian).
pub(crate) fn time_key(org: &str, ts: i64, id: Option<&[u8; 16]>) -> Vec<u8> {
    let mut k = Vec::with_capacity(org.len() + 25);
    k.extend_from_slice(org.as_bytes());
    k.push(b'|');
    k.extend_from_slice(&((ts as u64) ^ (1 << 63)).to_be_bytes());
    if let Some(id) = id {
        k.extend_from_slice(id);
    }
    k
}

// ---------------------------------------------------------------------------
// Range-query bookkeeping, identical for every system

#[derive(Default)]
pub(crate) struct ScanStats {
    pub(crate) events: u64,
    /// XOR of the first 8 id bytes of every event returned (order-free).
    pub(crate) checksum: u64,
    pub(crate) first_us: Vec<f64>,
    pub(crate) secs: f64,
}

impl ScanStats {
    pub(crate) fn to_json(&self) -> Value {
        let mut f = self.first_us.clone();
        f.sort_by(|a, b| a.total_cmp(b));
        let pct = |p: f64| {
            if f.is_empty() {
                0.0
            } else {
                f[((f.len() - 1) as f64 * p).round() as usize]
            }
        };
        json!({
            "scan_events": self.events,
            "scan_checksum": format!("{:016x}", self.checksum),
            "scan_secs": self.secs,
            "scan_events_per_sec": self.events as f64 / self.secs.max(1e-9),
            "first_event_us_p50": pct(0.5),
            "first_event_us_p99": pct(0.99),
            "first_event_us_max": pct(1.0),
        })
    }
}

/// Run every query: `run(org, from, to, on_event)` must call `on_event`
/// with each decoded event, in order.
pub(crate) fn run_queries(
    qs: &[(String, i64, i64)],
    mut run: impl FnMut(&str, i64, i64, &mut dyn FnMut(&Event)) -> Res<()>,
) -> Res<ScanStats> {
    let mut st = ScanStats::default();
    let all = Instant::now();
    for (org, from, to) in qs {
        let t = Instant::now();
        let mut first = true;
        let mut stats_events = 0u64;
        let mut checksum = 0u64;
        let mut first_us = None;
        run(org, *from, *to, &mut |e: &Event| {
            if first {
                first_us = Some(t.elapsed().as_secs_f64() * 1e6);
                first = false;
            }
            stats_events += 1;
            checksum ^= u64::from_le_bytes(e.id().as_bytes()[..8].try_into().unwrap());
        })?;
        st.events += stats_events;
        st.checksum ^= checksum;
        st.first_us
            .push(first_us.unwrap_or(t.elapsed().as_secs_f64() * 1e6));
    }
    st.secs = all.elapsed().as_secs_f64();
    Ok(st)
}

pub(crate) fn parse_stored(bytes: &[u8]) -> Res<Event> {
    Ok(Event::from_json(std::str::from_utf8(bytes)?)?)
}
