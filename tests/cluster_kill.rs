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

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use ureq::http::Request;
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_auditstore");
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed (SIGKILL) when dropped.
struct Proc(Option<Child>);

impl Proc {
    fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Nats {
    bin: PathBuf,
    conf: PathBuf,
    log: PathBuf,
    proc: Proc,
}

impl Nats {
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        self.proc = Proc(Some(child));
    }
}

struct Node {
    id: String,
    dir: PathBuf,
    port: u16,
    urls: String,
    log: PathBuf,
    proc: Proc,
}

impl Node {
    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Start and wait for its `listening on` line.
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut child = Command::new(BIN)
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--cluster", &self.urls, "--node", &self.id])
            .args([
                "--cluster-name",
                "killtest",
                "--partitions",
                &PARTITIONS.to_string(),
            ])
            .env("AUDITSTORE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start auditstore serve --cluster");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok).unwrap_or_default();
            let _ = tx.send(first);
            for _ in lines {}
        });
        self.proc = Proc(Some(child));
        match rx.recv_timeout(Duration::from_secs(90)) {
            Ok(line) if line.starts_with("listening on ") => {}
            other => panic!("node {} did not start: {other:?}\n{}", self.id, tail(&self.log)),
        }
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn tool(dir: &Path, args: &[&str]) -> Value {
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn post(agent: &ureq::Agent, url: &str, token: &str, body: &str) -> Result<(u16, String), ureq::Error> {
    let req = Request::post(url)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    let mut answer = agent.run(req)?;
    let status = answer.status().as_u16();
    Ok((status, answer.body_mut().read_to_string()?))
}

fn get(agent: &ureq::Agent, url: &str, token: &str) -> Result<(u16, String), ureq::Error> {
    let req = Request::get(url)
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap();
    let mut answer = agent.run(req)?;
    let status = answer.status().as_u16();
    Ok((status, answer.body_mut().read_to_string()?))
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
    let Some(nats_bin) = std::env::var_os("AUDITSTORE_NATS_SERVER").map(PathBuf::from) else {
        if std::env::var("AUDITSTORE_REQUIRE_NATS").as_deref() == Ok("1") {
            panic!(
                "AUDITSTORE_REQUIRE_NATS=1 but AUDITSTORE_NATS_SERVER is not set: run \
                 `export AUDITSTORE_NATS_SERVER=$(scripts/install-nats.sh)`"
            );
        }
        eprintln!(
            "\n\n*** SKIPPED cluster_kill: AUDITSTORE_NATS_SERVER is not set (the nats-server binary; \
             `export AUDITSTORE_NATS_SERVER=$(scripts/install-nats.sh)`) ***\n\n"
        );
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
    let client_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let route_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let routes = route_ports
        .iter()
        .map(|p| format!("nats-route://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut nats: Vec<Nats> = (0..3)
        .map(|i| {
            let conf = root.join(format!("nats{i}.conf"));
            let store = root.join(format!("js{i}"));
            std::fs::write(
                &conf,
                format!(
                    "server_name: s{i}\nlisten: 127.0.0.1:{}\n\
                     jetstream {{ store_dir: \"{}\", sync_interval: always }}\n\
                     cluster {{ name: killtest, listen: 127.0.0.1:{}, routes: [{routes}] }}\n",
                    client_ports[i],
                    store.display(),
                    route_ports[i]
                ),
            )
            .unwrap();
            Nats {
                bin: nats_bin.clone(),
                conf,
                log: root.join(format!("nats{i}.log")),
                proc: Proc(None),
            }
        })
        .collect();
    for n in &mut nats {
        n.start();
    }

    // Three nodes with the same operator token (a copy of one store made
    // before they start: tokens are not replicated through the stream yet).
    let seed_dir = root.join("node0");
    let token = tool(&seed_dir, &["token", "create", "--operator", "--name", "kill"])["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // node3 joins only after the chaos, from an empty store: it catches up
    // from the streams.
    for i in 1..=NODES {
        tool(
            &seed_dir,
            &["backup", root.join(format!("node{i}")).to_str().unwrap()],
        );
    }
    let urls: Vec<String> = client_ports
        .iter()
        .map(|p| format!("nats://127.0.0.1:{p}"))
        .collect();
    let mut nodes: Vec<Node> = (0..=NODES)
        .map(|i| Node {
            id: format!("n{i}"),
            dir: root.join(format!("node{i}")),
            port: free_port(),
            // Each node knows two of the three servers, different ones.
            urls: format!("{},{}", urls[i % 3], urls[(i + 1) % 3]),
            log: root.join(format!("node{i}.log")),
            proc: Proc(None),
        })
        .collect();
    let started = Instant::now();
    for n in &mut nodes[..NODES] {
        n.start();
    }
    eprintln!("cluster_kill: cluster up in {:?}", started.elapsed());
    let mut bases: Vec<String> = nodes[..NODES].iter().map(Node::base).collect();

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
    let status = Command::new(BIN)
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
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["partitions"], PARTITIONS);
    for s in status["streams"].as_array().unwrap() {
        let last = s["last_seq"].as_u64().unwrap();
        let positions: Vec<u64> = s["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["ack_floor"].as_u64().unwrap())
            .collect();
        assert_eq!(positions.len(), NODES + 1, "{s}");
        eprintln!(
            "cluster_kill: {} last_seq {last}, nodes' ack floors {positions:?}",
            s["stream"]
        );
    }
}
