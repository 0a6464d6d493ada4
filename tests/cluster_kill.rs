//! The cluster under fire (shared/spec/cluster.md, "How it is shown"):
//! three NATS servers (JetStream, R3 streams, `sync_interval: always`) and
//! three `auditstore serve --cluster` nodes on loopback; clients ingest
//! through different nodes for several organizations while, several
//! times, one NATS server and one node are killed with SIGKILL at random
//! moments and restarted on the same directories. Then, through every
//! node, each organization's listing holds every acknowledged event
//! exactly once, in order (`occurred_at`, then `id`), and no event sent
//! for another organization.
//!
//! The NATS server comes from `AUDITSTORE_NATS_SERVER` (set by .ci/run from
//! scripts/install-nats.sh). Without it the test is skipped loudly, or
//! fails when `AUDITSTORE_REQUIRE_NATS=1`. `AUDITSTORE_CLUSTER_KILL_ROUNDS`
//! sets the number of kill rounds (4).
#![cfg(feature = "cluster")]

mod cluster_common;

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cluster_common::{agent, get, post, send, sorted_ids, start_nats, tool, Node, BIN};
use serde_json::{json, Value};
use uuid::Uuid;

const NODES: usize = 3;
const CLIENTS: usize = 4;
const ORGS: usize = 5;
const BATCH: usize = 25;
const PARTITIONS: u32 = 4;

/// A small pseudo-random generator (xorshift) seeded from the clock; the
/// seed is printed, and `AUDITSTORE_CLUSTER_KILL_SEED` replays it.
struct Rng(u64);

impl Rng {
    fn new() -> (Rng, u64) {
        let seed = std::env::var("AUDITSTORE_CLUSTER_KILL_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1);
        (Rng(seed), seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from))
    }
}

/// The organization whose export requests run into its plan's limit
/// (`scale`: 3 per 30 days) through every node, during the chaos.
const EXPORT_ORG: &str = "org-exports";
const EXPORT_LIMIT: usize = 3;

/// Export requests through every node in turn, counted.
struct Exports<'a> {
    token: &'a str,
    bases: Vec<String>,
    /// Ids answered `201`.
    created: Mutex<Vec<String>>,
    /// Answers `429`, and `503` or no answer (outcome unknown).
    limited: AtomicU64,
    unknown: AtomicU64,
}

impl<'a> Exports<'a> {
    /// Put `EXPORT_ORG` on the scale plan (through node 0, which answers
    /// once it applied the change).
    fn new(bases: &[String], token: &'a str) -> Self {
        let url = format!("{}/api/v1/orgs/{EXPORT_ORG}/settings", bases[0]);
        let agent = agent();
        let (status, text) = cluster_common::wait_for("the scale plan", Duration::from_secs(20), || {
            send(&agent, "PUT", &url, token, r#"{"plan":"scale"}"#)
                .ok()
                .filter(|(status, _)| *status == 200)
        });
        assert_eq!(status, 200, "{text}");
        Exports {
            token,
            bases: bases.to_vec(),
            created: Mutex::default(),
            limited: AtomicU64::new(0),
            unknown: AtomicU64::new(0),
        }
    }

    /// Request an export through the next node every 250 ms until `stop`.
    fn request_until(&self, stop: &AtomicBool) {
        let agent = agent();
        let day = (chrono::Utc::now() - chrono::Duration::days(1))
            .format("%Y-%m-%d")
            .to_string();
        let body = json!({"from": day, "to": day}).to_string();
        for k in 0.. {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let url = format!(
                "{}/api/v1/orgs/{EXPORT_ORG}/exports",
                self.bases[k % self.bases.len()]
            );
            match post(&agent, &url, self.token, &body) {
                Ok((201, text)) => {
                    let v: Value = serde_json::from_str(&text).unwrap();
                    self.created
                        .lock()
                        .unwrap()
                        .push(v["id"].as_str().unwrap().to_owned());
                }
                Ok((429, text)) => {
                    let v: Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(v["error"]["code"], "rate_limited", "{v}");
                    self.limited.fetch_add(1, Ordering::Relaxed);
                }
                Ok((503, _)) | Err(_) => {
                    self.unknown.fetch_add(1, Ordering::Relaxed);
                }
                Ok((status, text)) => panic!("export request through {url}: {status} {text}"),
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Through every node, the organization holds exactly the plan's limit
    /// of requests, the same ones: no node let one more in, whatever node
    /// the requests came through and whichever died meanwhile.
    fn check(&self, bases: &[String]) {
        let created = self.created.lock().unwrap().clone();
        let limited = self.limited.load(Ordering::Relaxed);
        assert!(
            created.len() <= EXPORT_LIMIT,
            "{} requests answered 201",
            created.len()
        );
        assert!(
            limited > 0,
            "no request was refused: the test did not reach the limit"
        );
        let agent = agent();
        let mut lists = Vec::new();
        for base in bases {
            let url = format!("{base}/api/v1/orgs/{EXPORT_ORG}/exports");
            let text = cluster_common::wait_for(&format!("{url} answers"), Duration::from_secs(60), || {
                get(&agent, &url, self.token)
                    .ok()
                    .filter(|(s, _)| *s == 200)
                    .map(|(_, t)| t)
            });
            let ids = sorted_ids(&text);
            assert_eq!(ids.len(), EXPORT_LIMIT, "{base}: {EXPORT_ORG} holds {ids:?}");
            for id in &created {
                assert!(ids.contains(id), "{base}: request {id} answered 201 is missing");
            }
            lists.push(ids);
        }
        assert!(
            lists.windows(2).all(|w| w[0] == w[1]),
            "the nodes disagree: {lists:?}"
        );
        eprintln!(
            "cluster_kill: export requests: {} answered 201, {limited} answered 429, {} unknown (503 or \
             node down); every node holds the same {EXPORT_LIMIT}",
            created.len(),
            self.unknown.load(Ordering::Relaxed)
        );
    }
}

/// The organizations: the first `org-N` of each partition, then more up
/// to `ORGS`, so that every partition's stream carries events.
fn org_names() -> Vec<String> {
    use auditstore::cluster::partition::partition_of;
    let mut covered = HashSet::new();
    let mut names: Vec<String> = (0..1000)
        .map(|n| format!("org-{n}"))
        .filter(|name| covered.insert(partition_of(name, PARTITIONS)))
        .collect();
    assert_eq!(names.len(), PARTITIONS as usize);
    let more: Vec<String> = (0..)
        .map(|n| format!("org-{n}"))
        .filter(|name| !names.contains(name))
        .take(ORGS.saturating_sub(names.len()))
        .collect();
    names.extend(more);
    names
}

/// What the clients sent and what was acknowledged.
#[derive(Default)]
struct Ledger {
    /// org → ids acknowledged with `200`.
    acked: HashMap<String, Vec<Uuid>>,
    /// id → org, for every event ever sent.
    sent: HashMap<Uuid, String>,
    /// id → (occurred_at, id) for ordering checks.
    when: HashMap<Uuid, String>,
}

fn batch(client: usize, n: u64, org: &str, ledger: &Mutex<Ledger>) -> (Vec<Uuid>, String) {
    let now = chrono::Utc::now() - chrono::Duration::hours(1);
    let mut ids = Vec::with_capacity(BATCH);
    let events: Vec<Value> = (0..BATCH)
        .map(|k| {
            let id = Uuid::new_v4();
            // Several events share an instant: order then falls to the id.
            let at = (now - chrono::Duration::seconds(((n as i64 * 7 + k as i64) % 600) / 2))
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
            ids.push(id);
            let mut l = ledger.lock().unwrap();
            l.sent.insert(id, org.to_owned());
            l.when.insert(id, at.clone());
            json!({
                "id": id.to_string(),
                "action": "cluster.test",
                "actor": {"id": format!("client-{client}"), "type": "service"},
                "target": {"id": format!("t-{k}"), "type": "thing"},
                "occurred_at": at,
                "payload": {"n": n, "k": k},
                "success": true,
            })
        })
        .collect();
    (ids, Value::from(events).to_string())
}

/// One client: batches for its organizations through node `start`, moving
/// to the next node when one fails; a failed batch is retried, the same
/// body, until answered `200` (or the test ends).
fn client(
    client: usize,
    orgs: &[String],
    nodes: &[String],
    token: &str,
    stop: &AtomicBool,
    ledger: &Mutex<Ledger>,
    (retries, reads): (&AtomicU64, &[AtomicU64; 3]),
) {
    let agent = agent();
    let mut node = client % nodes.len();
    for n in 0.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let org = orgs[(client + n as usize) % orgs.len()].clone();
        let (ids, body) = batch(client, n, &org, ledger);
        loop {
            let url = format!("{}/api/v1/orgs/{org}/events", nodes[node]);
            match post(&agent, &url, token, &body) {
                Ok((200, text)) => {
                    let v: Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(v["rejected"], 0, "{v}");
                    assert_eq!(v["conflicts"], 0, "{v}");
                    assert_eq!(
                        v["appended"].as_u64().unwrap() + v["duplicates"].as_u64().unwrap(),
                        BATCH as u64,
                        "{v}"
                    );
                    ledger
                        .lock()
                        .unwrap()
                        .acked
                        .entry(org.clone())
                        .or_default()
                        .extend(&ids);
                    // The next node, or the one after when it is down.
                    let status = (1..nodes.len())
                        .map(|k| &nodes[(node + k) % nodes.len()])
                        .map(|other| read_your_write(&agent, other, token, &org, ids[BATCH - 1]))
                        .find(|status| *status != 0)
                        .unwrap_or(0);
                    reads[match status {
                        200 => 0,
                        503 => 1,
                        _ => 2,
                    }]
                    .fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok((503, _)) | Err(_) => {
                    retries.fetch_add(1, Ordering::Relaxed);
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    node = (node + 1) % nodes.len();
                    std::thread::sleep(Duration::from_millis(200));
                }
                Ok((status, text)) => panic!("client {client}: {status} {text}"),
            }
        }
    }
}

/// An event acknowledged through one node, read at once through another:
/// found, or `503` (that node could not catch up in time), or no answer
/// (that node is down); never `404`. The status, 0 for no answer.
fn read_your_write(agent: &ureq::Agent, base: &str, token: &str, org: &str, id: Uuid) -> u16 {
    match get(agent, &format!("{base}/api/v1/orgs/{org}/events/{id}"), token) {
        Ok((status, text)) => {
            assert!(
                status == 200 || status == 503,
                "read-your-writes through {base}: event {id} of {org} acknowledged, then {status} {text}"
            );
            status
        }
        Err(_) => 0,
    }
}

/// Every event of `org` through `base`, page by page, waiting out `503`s.
fn listing(agent: &ureq::Agent, base: &str, token: &str, org: &str) -> Vec<Value> {
    let from = (chrono::Utc::now() - chrono::Duration::days(2)).format("%Y-%m-%d");
    let to = (chrono::Utc::now() + chrono::Duration::days(2)).format("%Y-%m-%d");
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut url = format!("{base}/api/v1/orgs/{org}/events?from={from}&to={to}&limit=1000");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        match get(agent, &url, token) {
            Ok((200, text)) => {
                let v: Value = serde_json::from_str(&text).unwrap();
                out.extend(v["events"].as_array().unwrap().iter().cloned());
                match v["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_owned()),
                    None => return out,
                }
            }
            other => {
                assert!(Instant::now() < deadline, "{base} {org}: still {other:?}");
                std::thread::sleep(Duration::from_millis(300));
            }
        }
    }
}

#[test]
fn acknowledged_events_survive_killed_nats_servers_and_nodes() {
    let Some(nats_bin) = cluster_common::nats_server("cluster_kill") else {
        return;
    };
    let rounds: usize = std::env::var("AUDITSTORE_CLUSTER_KILL_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let (mut rng, seed) = Rng::new();
    eprintln!("cluster_kill: seed {seed} (AUDITSTORE_CLUSTER_KILL_SEED replays it), {rounds} rounds");
    let work = tempfile::tempdir().unwrap();
    let root = work.path();

    // Three NATS servers, one JetStream cluster.
    let (mut nats, urls) = start_nats(&nats_bin, root, "killtest");

    // Nodes with empty stores; node3 joins only after the chaos and
    // catches up from the streams (the operator token included).
    let mut nodes: Vec<Node> = (0..=NODES)
        .map(|i| Node::new(root, i, &urls, "killtest", PARTITIONS))
        .collect();
    let started = Instant::now();
    for n in &mut nodes[..NODES] {
        n.start();
    }
    eprintln!("cluster_kill: cluster up in {:?}", started.elapsed());
    let mut bases: Vec<String> = nodes[..NODES].iter().map(Node::base).collect();
    // The token, made through node 0's admin socket: through the stream
    // to every node (only its hash).
    let token = tool(
        &nodes[0].dir,
        &["token", "create", "--operator", "--name", "kill"],
    )["token"]
        .as_str()
        .unwrap()
        .to_owned();
    for base in &bases {
        let url = format!("{base}/api/v1/orgs/{EXPORT_ORG}/settings");
        let agent = agent();
        cluster_common::wait_for(&format!("the token on {base}"), Duration::from_secs(20), || {
            get(&agent, &url, &token)
                .ok()
                .filter(|(status, _)| *status == 200)
        });
    }
    let exports = Exports::new(&bases, &token);

    let orgs = org_names();
    let stop = AtomicBool::new(false);
    let ledger = Mutex::new(Ledger::default());
    let retries = AtomicU64::new(0);
    // Reads right after an ack through another node: found, 503, no answer.
    let reads: [AtomicU64; 3] = Default::default();
    let chaos_started = Instant::now();
    std::thread::scope(|s| {
        for c in 0..CLIENTS {
            let (orgs, bases, token) = (&orgs, &bases, &token);
            let counts = (&retries, &reads);
            let (stop, ledger) = (&stop, &ledger);
            s.spawn(move || client(c, orgs, bases, token, stop, ledger, counts));
        }
        s.spawn(|| exports.request_until(&stop));
        // A failure below (a node that does not start) stops the clients
        // too, so that the scope ends and the test fails instead of
        // hanging.
        let _stop_clients = StopOnDrop(&stop);
        // The chaos: kill one NATS server and one node at random moments,
        // restart both, several times.
        for round in 0..rounds {
            std::thread::sleep(rng.millis(1500, 4000));
            let server = rng.below(3) as usize;
            nats[server].proc.kill();
            std::thread::sleep(rng.millis(200, 2500));
            let node = rng.below(NODES as u64) as usize;
            nodes[node].proc.kill();
            let acked: usize = ledger.lock().unwrap().acked.values().map(Vec::len).sum();
            eprintln!(
                "cluster_kill: round {round}: killed NATS server s{server} and node n{node} \
                 ({acked} events acknowledged so far)"
            );
            std::thread::sleep(rng.millis(500, 3000));
            nats[server].start();
            std::thread::sleep(rng.millis(0, 1500));
            nodes[node].start();
        }
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, Ordering::Relaxed);
    });
    let chaos = chaos_started.elapsed();
    let late = Instant::now();
    nodes[NODES].start();
    // Checked first: the time to its last listing is its catching up.
    bases.insert(0, nodes[NODES].base());

    // Through every node: each acknowledged event exactly once, in order,
    // nothing of another organization.
    let ledger = ledger.into_inner().unwrap();
    let acked_total: usize = ledger.acked.values().map(Vec::len).sum();
    assert!(acked_total > 0, "no event was acknowledged");
    let agent = agent();
    let mut stored_total = 0;
    let mut caught_up = None;
    for base in &bases {
        for org in &orgs {
            let org = org.clone();
            let events = listing(&agent, base, &token, &org);
            let ids: Vec<Uuid> = events
                .iter()
                .map(|e| Uuid::parse_str(e["id"].as_str().unwrap()).unwrap())
                .collect();
            let unique: HashSet<&Uuid> = ids.iter().collect();
            assert_eq!(unique.len(), ids.len(), "{base} {org}: an event listed twice");
            for id in &ids {
                assert_eq!(
                    ledger.sent.get(id).map(String::as_str),
                    Some(org.as_str()),
                    "{base} {org}: event {id} was not sent for this organization"
                );
            }
            let keys: Vec<(String, Uuid)> = ids.iter().map(|id| (ledger.when[id].clone(), *id)).collect();
            let mut sorted = keys.clone();
            sorted.sort();
            assert!(keys == sorted, "{base} {org}: not in (occurred_at, id) order");
            let acked = ledger.acked.get(&org).map(Vec::as_slice).unwrap_or_default();
            let missing: Vec<&Uuid> = acked.iter().filter(|id| !unique.contains(id)).collect();
            assert!(
                missing.is_empty(),
                "{base} {org}: {} acknowledged events missing, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(5)]
            );
            stored_total += ids.len();
        }
        if caught_up.is_none() && base == &nodes[NODES].base() {
            caught_up = Some(late.elapsed());
        }
    }
    eprintln!(
        "cluster_kill: {rounds} rounds in {chaos:?}; {acked_total} events acknowledged, {} client \
         retries; reads through another node right after each ack: {} found the event, {} \
         answered 503, {} found the other nodes down; through each of {NODES} nodes and a node that joined afterwards \
         (started and caught up in {:?}) all present once, in order ({} listed in all, \
         unacknowledged ones included); 0 lost, 0 duplicated, 0 of another organization",
        retries.load(Ordering::Relaxed),
        reads[0].load(Ordering::Relaxed),
        reads[1].load(Ordering::Relaxed),
        reads[2].load(Ordering::Relaxed),
        caught_up.unwrap_or_default(),
        stored_total
    );
    exports.check(&bases);
    // Every partition is served by as many nodes as it should be (two,
    // every node for partition 0) once the last restarted node caught up.
    let status_now = || {
        let out = Command::new(BIN)
            .args([
                "cluster",
                "status",
                "--cluster",
                &urls.join(","),
                "--cluster-name",
                "killtest",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let served_enough = |status: &Value| {
        status["streams"].as_array().unwrap().iter().all(|s| {
            let want = if s["partition"] == 0 { NODES + 1 } else { 2 };
            s["serving"].as_array().unwrap().len() >= want
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut status = status_now();
    while !served_enough(&status) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        status = status_now();
    }
    assert_eq!(status["partitions"], PARTITIONS);
    for s in status["streams"].as_array().unwrap() {
        let last = s["last_seq"].as_u64().unwrap();
        let positions: Vec<(String, u64)> = s["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["node"].as_str().unwrap().to_owned(),
                    n["ack_floor"].as_u64().unwrap(),
                )
            })
            .collect();
        // Partition 0 is every node's; the others are two nodes' (each
        // node's consumer stays, with its position, when it lets go).
        let serving = s["serving"].as_array().unwrap();
        let want = if s["partition"] == 0 { NODES + 1 } else { 2 };
        assert!(serving.len() >= want, "{s}");
        eprintln!(
            "cluster_kill: {} last_seq {last}, served by {serving:?}, consumers' ack floors {positions:?}",
            s["stream"]
        );
    }
}

/// Sets its flag when dropped, also while unwinding from a panic.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
