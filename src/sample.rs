//! A deterministic generator of realistic (CircleCI-shaped) audit events,
//! for the demo, tests and benchmarks. Same seed, same events.

use crate::error::Result;
use crate::event::Event;
use crate::store::Store;
use crate::time::Timestamp;

const ACTIONS: [&str; 20] = [
    "context.create",
    "context.delete",
    "context.env_var.delete",
    "context.env_var.store",
    "project.env_var.create",
    "project.env_var.delete",
    "project.settings.update",
    "project.ssh_key.create",
    "project.ssh_key.delete",
    "project.api_token.create",
    "user.logged_in",
    "user.logged_out",
    "workflow.job.approve",
    "workflow.job.finish",
    "workflow.job.scheduled",
    "workflow.job.start",
    "workflow.start",
    "workflow.finish",
    "org.settings.update",
    "checkout-key.create",
];
const NAMES: [&str; 8] = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "niaj"];
const BRANCHES: [&str; 4] = ["main", "develop", "release/1.2", "feature/audit"];

/// Generator settings.
#[derive(Debug, Clone)]
pub struct SampleConfig {
    pub seed: u64,
    pub orgs: u32,
    pub start: Timestamp,
    /// Mean gap between consecutive events, in nanoseconds.
    pub step_nanos: i64,
    /// Per-mille of events re-sent (same id and content) later.
    pub duplicate_per_mille: u32,
    /// Per-mille of events whose time is moved up to `max_skew_nanos` back.
    pub out_of_order_per_mille: u32,
    pub max_skew_nanos: i64,
}

impl Default for SampleConfig {
    fn default() -> Self {
        SampleConfig {
            seed: 42,
            orgs: 4,
            start: Timestamp::from_nanos(1_780_272_000_000_000_000), // 2026-06-01T00:00:00Z
            step_nanos: 2_000_000_000,
            duplicate_per_mille: 10,
            out_of_order_per_mille: 10,
            max_skew_nanos: 60_000_000_000,
        }
    }
}

/// The generator; an iterator of `(org, json_line)`.
#[derive(Debug, Clone)]
pub struct SampleGenerator {
    cfg: SampleConfig,
    state: u64,
    now: i64,
    recent: Vec<(String, String)>,
}

impl SampleGenerator {
    pub fn new(cfg: SampleConfig) -> Self {
        SampleGenerator {
            state: cfg.seed ^ 0x9e37_79b9_7f4a_7c15,
            now: cfg.start.as_nanos(),
            cfg,
            recent: Vec::new(),
        }
    }

    fn next_u64(&mut self) -> u64 {
        // SplitMix64.
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    fn uuid(&mut self) -> String {
        let a = self.next_u64();
        let b = self.next_u64();
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&a.to_le_bytes());
        bytes[8..].copy_from_slice(&b.to_le_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
    }

    fn note(&mut self) -> String {
        let len = 4 + self.below(40) as usize;
        (0..len)
            .map(|_| {
                const CH: &[u8] = b"abcdefghijklmnop ,'\"";
                CH[self.below(CH.len() as u64) as usize] as char
            })
            .collect()
    }

    /// The next `(org, JSON line)`.
    pub fn next_line(&mut self) -> (String, String) {
        if !self.recent.is_empty() && self.below(1000) < self.cfg.duplicate_per_mille as u64 {
            let i = self.below(self.recent.len() as u64) as usize;
            return self.recent[i].clone();
        }
        self.now += 1 + self.below(2 * self.cfg.step_nanos.max(1) as u64) as i64;
        let mut ts = self.now;
        if self.below(1000) < self.cfg.out_of_order_per_mille as u64 {
            ts -= self.below(self.cfg.max_skew_nanos.max(1) as u64) as i64;
        }
        // Whole milliseconds, like most producers.
        ts -= ts.rem_euclid(1_000_000);
        let org_no = self.below(self.cfg.orgs.max(1) as u64);
        let org = format!("org-{org_no:02}");
        let action = ACTIONS[self.below(ACTIONS.len() as u64) as usize];
        let actor_name = NAMES[self.below(NAMES.len() as u64) as usize];
        let branch = BRANCHES[self.below(BRANCHES.len() as u64) as usize];
        let note = serde_json::Value::String(self.note()).to_string();
        let (id, actor_id, target_id, request_id) = (self.uuid(), self.uuid(), self.uuid(), self.uuid());
        let line = format!(
            concat!(
                r#"{{"id":"{id}","action":"{action}","actor":{{"id":"{actor_id}","type":"user","name":"{actor_name}"}},"#,
                r#""target":{{"id":"{target_id}","type":"project","name":"project-{target_no}"}},"#,
                r#""payload":{{"build_num":{build},"branch":"{branch}","note":{note}}},"#,
                r#""occurred_at":"{ts}","metadata":{{"ip":"10.{a}.{b}.{c}","user_agent":"circleci-cli/0.1","attempt":{attempt}}},"#,
                r#""version":1,"scope":{{"id":"{org}","type":"account","name":"Org {org_no:02}"}},"success":{success},"#,
                r#""request":{{"id":"{request_id}"}}}}"#
            ),
            id = id,
            action = action,
            actor_id = actor_id,
            actor_name = actor_name,
            target_id = target_id,
            target_no = self.below(1000),
            build = self.below(100_000),
            branch = branch,
            note = note,
            ts = Timestamp::from_nanos(ts),
            a = self.below(256),
            b = self.below(256),
            c = self.below(256),
            attempt = 1 + self.below(3),
            org = org,
            org_no = org_no,
            success = self.below(20) != 0,
            request_id = request_id,
        );
        if self.recent.len() < 1024 {
            self.recent.push((org.clone(), line.clone()));
        } else {
            let i = self.below(1024) as usize;
            self.recent[i] = (org.clone(), line.clone());
        }
        (org, line)
    }

    /// The next `(org, event)`.
    pub fn next_event(&mut self) -> (String, Event) {
        loop {
            let (org, line) = self.next_line();
            // Generated lines are valid by construction; skip defensively.
            if let Ok(e) = Event::from_json(&line) {
                return (org, e);
            }
        }
    }
}

impl SampleGenerator {
    /// Append the next `n` events to `store`, `batch` at a time (each batch
    /// generated just before it is appended, so memory stays bounded), then
    /// [`Store::flush`]. Returns the latest `occurred_at` appended, if any.
    pub fn append_to(&mut self, store: &Store, n: usize, batch: usize) -> Result<Option<Timestamp>> {
        let mut latest: Option<Timestamp> = None;
        let mut left = n;
        while left > 0 {
            let events: Vec<(String, Event)> = self.by_ref().take(left.min(batch.max(1))).collect();
            left -= events.len();
            for (_, e) in &events {
                latest = latest.max(Some(e.occurred_at()));
            }
            store.append_batch(events.iter().map(|(o, e)| (o.as_str(), e)))?;
        }
        store.flush()?;
        Ok(latest)
    }
}

impl Iterator for SampleGenerator {
    type Item = (String, Event);
    fn next(&mut self) -> Option<Self::Item> {
        Some(self.next_event())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_to_stores_the_next_n_events_in_batches_and_reports_the_latest_time() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open");
        let cfg = SampleConfig {
            duplicate_per_mille: 0,
            ..SampleConfig::default()
        };
        let expected: Vec<(String, Event)> = SampleGenerator::new(cfg.clone()).take(120).collect();
        let mut gen = SampleGenerator::new(cfg);
        let latest = gen.append_to(&store, 120, 50).expect("append");
        assert_eq!(store.stats().expect("stats").events, 120);
        assert_eq!(latest, expected.iter().map(|(_, e)| e.occurred_at()).max());
        // The generator moved past what it appended.
        assert_eq!(
            gen.next_event().1.id(),
            SampleGenerator::new(SampleConfig {
                duplicate_per_mille: 0,
                ..SampleConfig::default()
            })
            .nth(120)
            .expect("endless")
            .1
            .id()
        );
        assert_eq!(gen.append_to(&store, 0, 50).expect("nothing"), None);
    }
}
