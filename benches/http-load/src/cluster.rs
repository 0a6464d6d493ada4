//! `http-load --cluster NATS_SERVER`: ingest through a cluster of three
//! NATS servers and three `auditstore serve --cluster` nodes, all on
//! loopback on this machine, beside a single `auditstore serve` node, with
//! the same load, in the same run (docs/performance.md, "Cluster ingest").
//!
//! Each run, in a fresh directory per side, the order of the sides
//! alternating from run to run:
//! - **cluster**: three NATS servers (JetStream, `sync_interval: always`,
//!   routes between them), an operator token made on the first node's data
//!   directory and copied to the others with `backup` (tokens are not
//!   replicated yet), three nodes (`--partitions P`, streams R3); request
//!   `i` goes to node `i mod 3` (which forwards it when it does not
//!   apply the organization's partition). After the last `200`, every
//!   node's `/metrics` is polled until it applied each partition assigned
//!   to it up to the stream's last sequence: the apply lag. `auditstore cluster status` then gives the streams' messages and
//!   bytes.
//! - **single**: `auditstore serve` on one data directory, every request to
//!   it.
//!
//! Both sides: `--clients` keep-alive connections post the workload's
//! batches (one organization each, `application/x-ndjson`); only `200`
//! answers count (each is durable by contract: on the single node fsync'd,
//! through the cluster acknowledged by JetStream, R3, fsync'd on a quorum);
//! any other answer fails the run.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::{head, Conn, Res};
use crate::run::{
    cpu_seconds, fresh, ingest_counts, signal, start_server, start_server_with, stop, tool, Server,
};
use crate::{median, Args, Workload};

const NODES: usize = 3;
const CLUSTER_NAME: &str = "bench";

/// What one run measured, both sides.
#[derive(Debug, Clone, Default)]
pub struct ClusterRun {
    /// Acknowledged events per second.
    pub cluster_rate: f64,
    pub single_rate: f64,
    /// Seconds from the last `200` until every node stored every event.
    pub apply_lag: f64,
    /// The streams' messages and bytes, per second of the cluster's ingest.
    pub msgs_rate: f64,
    pub mb_rate: f64,
    /// Request latency medians (seconds).
    pub cluster_p50: f64,
    pub single_p50: f64,
    /// CPU seconds per wall second during the ingest: the NATS servers,
    /// the nodes, the load generator; the single server and its generator.
    pub nats_cpu: f64,
    pub nodes_cpu: f64,
    pub gen_cpu: f64,
    pub single_cpu: f64,
    pub single_gen_cpu: f64,
}

/// A child process stopped with SIGKILL when dropped (error paths).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn free_port() -> Res<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Three NATS servers, one JetStream cluster; their client URLs.
fn start_nats(a: &Args, bin: &Path, root: &Path) -> Res<(Vec<Killed>, Vec<String>)> {
    // The routes' compression, when given (`off`, `s2_fast`, ...): else
    // the server's default.
    let compression = a
        .route_compression
        .as_ref()
        .map(|c| format!(", compression: {c}"))
        .unwrap_or_default();
    let clients: Vec<u16> = (0..3).map(|_| free_port()).collect::<Res<_>>()?;
    let route_ports: Vec<u16> = (0..3).map(|_| free_port()).collect::<Res<_>>()?;
    let routes = route_ports
        .iter()
        .map(|p| format!("nats-route://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut servers = Vec::new();
    for i in 0..3 {
        let conf = root.join(format!("nats{i}.conf"));
        std::fs::write(
            &conf,
            format!(
                "server_name: s{i}\nlisten: 127.0.0.1:{}\n\
                 jetstream {{ store_dir: \"{}\", sync_interval: always }}\n\
                 cluster {{ name: {CLUSTER_NAME}, listen: 127.0.0.1:{}, routes: [{routes}]{compression} }}\n",
                clients[i],
                root.join(format!("js{i}")).display(),
                route_ports[i]
            ),
        )?;
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(root.join(format!("nats{i}.log")))?)
            .spawn()
            .map_err(|e| format!("start {}: {e}", bin.display()))?;
        servers.push(Killed(child));
    }
    let urls = clients.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect();
    Ok((servers, urls))
}

fn operator_token(a: &Args, dir: &Path) -> Res<String> {
    let out = tool(a, dir)
        .args(["token", "create", "--operator", "--name", "bench"])
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("token create --operator: {}", out.status).into());
    }
    let v: Value = serde_json::from_slice(out.stdout.split(|&b| b == b'\n').next().unwrap_or(&[]))?;
    Ok(v["token"]
        .as_str()
        .ok_or("token create printed no token")?
        .to_owned())
}

/// The workload as whole requests, request `i` to `addrs[i mod n]`, or
/// with `serving` (per partition, the nodes serving it) to the serving
/// nodes of its organization's partition in turn.
fn requests(
    w: &Workload,
    addrs: &[SocketAddr],
    token: &str,
    serving: Option<&[Vec<usize>]>,
) -> Vec<(usize, Vec<u8>, usize)> {
    w.batches
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let node = match serving {
                Some(by_partition) => {
                    let nodes = &by_partition[partition_of(&b.org, by_partition.len() as u32) as usize];
                    nodes[i % nodes.len()]
                }
                None => i % addrs.len(),
            };
            let target = format!("/api/v1/orgs/{}/events", b.org);
            let h = head(
                "POST",
                &target,
                &addrs[node],
                token,
                Some(("application/x-ndjson", b.body.len())),
            );
            let mut r = Vec::with_capacity(h.len() + b.body.len());
            r.extend_from_slice(h.as_bytes());
            r.extend_from_slice(&b.body);
            (node, r, b.events)
        })
        .collect()
}

/// docs/cluster.md, "Partitions": the first 8 bytes of SHA-256(org) as a
/// big-endian integer, mod P.
fn partition_of(org: &str, partitions: u32) -> u32 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(org.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % u64::from(partitions.max(1))) as u32
}

/// Once every partition is served by the nodes assigned to it (`cluster
/// status`): per partition, the indexes of those nodes.
fn settled_serving(a: &Args, urls: &str) -> Res<Vec<Vec<usize>>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = cluster_status(a, urls)?;
        let streams = status["streams"].as_array().cloned().unwrap_or_default();
        let list = |s: &Value, k: &str| -> Vec<String> {
            let mut v: Vec<String> = s[k]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect();
            v.sort();
            v
        };
        let settled = streams.len() == a.partitions as usize
            && streams.iter().all(|s| {
                let serving = list(s, "serving");
                !serving.is_empty() && serving == list(s, "assigned")
            });
        if settled {
            return streams
                .iter()
                .map(|s| {
                    list(s, "serving")
                        .iter()
                        .map(|n| {
                            n.strip_prefix('n')
                                .and_then(|i| i.parse().ok())
                                .ok_or_else(|| format!("a node id not of this run: {n}").into())
                        })
                        .collect()
                })
                .collect();
        }
        if Instant::now() > deadline {
            return Err(format!("the assignment did not settle within 60 s: {status}").into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What driving the load measured.
struct Driven {
    started: Instant,
    finished: Instant,
    appended: u64,
    /// Request latencies, sorted.
    latencies: Vec<f64>,
    /// CPU seconds per wall second of each of `pids`, then of this process.
    cpu: Vec<f64>,
}

fn client(
    conns: &mut [Conn],
    requests: &[(usize, Vec<u8>, usize)],
    next: &AtomicUsize,
) -> Res<(u64, Vec<f64>, Instant)> {
    let (mut appended, mut lat) = (0, Vec::new());
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some((node, request, events)) = requests.get(i) else {
            return Ok((appended, lat, Instant::now()));
        };
        let t = Instant::now();
        let r = conns[*node].send(request)?;
        lat.push(t.elapsed().as_secs_f64());
        appended += ingest_counts(&r, *events)?.0;
    }
}

/// Post every request with `a.clients` connections (each with one
/// keep-alive connection per address).
fn drive(a: &Args, addrs: &[SocketAddr], requests: &[(usize, Vec<u8>, usize)], pids: &[u32]) -> Res<Driven> {
    let next = AtomicUsize::new(0);
    let barrier = Barrier::new(a.clients + 1);
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    let cpu_now = || -> Vec<f64> {
        let mut v: Vec<f64> = pids.iter().map(|p| cpu_seconds(p).0).collect();
        v.push(cpu_seconds("self").0);
        v
    };
    let (started, cpu0, done) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..a.clients)
            .map(|_| {
                let (next, barrier) = (&next, &barrier);
                s.spawn(move || -> Res<(u64, Vec<f64>, Instant)> {
                    let mut conns: Vec<Conn> = addrs.iter().map(|&ad| Conn::new(ad)).collect();
                    for c in &mut conns {
                        c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")?;
                    }
                    barrier.wait();
                    client(&mut conns, requests, next)
                })
            })
            .collect();
        let cpu0 = cpu_now();
        barrier.wait();
        let started = Instant::now();
        let done: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
        (started, cpu0, done)
    });
    let (mut appended, mut latencies, mut finished) = (0, Vec::new(), started);
    for d in done {
        let (ap, lat, end) = d.map_err(|_| "an ingest client panicked")??;
        appended += ap;
        latencies.extend(lat);
        finished = finished.max(end);
    }
    let wall = (finished - started).as_secs_f64();
    let cpu = cpu_now().iter().zip(&cpu0).map(|(b, a)| (b - a) / wall).collect();
    latencies.sort_by(f64::total_cmp);
    Ok(Driven {
        started,
        finished,
        appended,
        latencies,
        cpu,
    })
}

/// `auditstore_store_events` from a node's `/metrics`.
/// Node `conn`'s applied position of each partition (its
/// `auditstore_cluster_applied_sequence` gauges).
fn applied_positions(conn: &mut Conn) -> Res<Vec<(u32, u64)>> {
    let r = conn.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")?;
    let text = String::from_utf8_lossy(&r.body);
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("auditstore_cluster_applied_sequence{partition=\""))
        .filter_map(|rest| {
            let (p, value) = rest.split_once("\"} ")?;
            Some((p.parse().ok()?, value.trim().parse::<f64>().ok()? as u64))
        })
        .collect())
}

/// Poll every node until it applied each partition assigned to it up to
/// the stream's last sequence (`cluster status`, read once the last `200`
/// came): the instant they all did.
fn applied_everywhere(a: &Args, urls: &str, addrs: &[SocketAddr]) -> Res<Instant> {
    let status = cluster_status(a, urls)?;
    let streams = status["streams"]
        .as_array()
        .ok_or("cluster status printed no streams")?;
    // Per node, the (partition, last sequence) it must reach.
    let mut want: Vec<Vec<(u32, u64)>> = vec![Vec::new(); addrs.len()];
    for s in streams {
        let (Some(p), Some(last)) = (s["partition"].as_u64(), s["last_seq"].as_u64()) else {
            return Err(format!("a stream without partition or last_seq: {s}").into());
        };
        for n in s["assigned"].as_array().into_iter().flatten() {
            let i: usize = n
                .as_str()
                .and_then(|id| id.strip_prefix('n'))
                .and_then(|i| i.parse().ok())
                .ok_or_else(|| format!("a node id not of this run: {n}"))?;
            want.get_mut(i)
                .ok_or_else(|| format!("node {i} is not of this run"))?
                .push((p as u32, last));
        }
    }
    let mut conns: Vec<Conn> = addrs.iter().map(|&ad| Conn::new(ad)).collect();
    let deadline = Instant::now()
        + Duration::from_secs(
            std::env::var("HTTP_LOAD_APPLY_PATIENCE")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(300),
        );
    let mut done = vec![false; addrs.len()];
    loop {
        for ((c, d), want) in conns.iter_mut().zip(done.iter_mut()).zip(&want) {
            if !*d {
                let have = applied_positions(c)?;
                *d = want
                    .iter()
                    .all(|(p, last)| have.iter().any(|(q, v)| q == p && v >= last));
            }
        }
        if done.iter().all(|d| *d) {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            let mut behind = Vec::new();
            for (i, (c, want)) in conns.iter_mut().zip(&want).enumerate() {
                let have = applied_positions(c)?;
                behind.push(format!("n{i}: wants {want:?}, has {have:?}"));
            }
            return Err(format!(
                "the nodes did not all apply their partitions within 300 s: {}",
                behind.join("; ")
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn cluster_status(a: &Args, urls: &str) -> Res<Value> {
    let out = Command::new(&a.bin)
        .args([
            "cluster",
            "status",
            "--cluster",
            urls,
            "--cluster-name",
            CLUSTER_NAME,
        ])
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("cluster status: {}", out.status).into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The streams' messages and bytes, from `auditstore cluster status`.
fn stream_totals(a: &Args, urls: &str) -> Res<(u64, u64, usize)> {
    let v = cluster_status(a, urls)?;
    let streams = v["streams"]
        .as_array()
        .ok_or("cluster status printed no streams")?;
    let sum = |k: &str| streams.iter().filter_map(|s| s[k].as_u64()).sum::<u64>();
    let used = streams
        .iter()
        .filter(|s| s["messages"].as_u64() > Some(0))
        .count();
    Ok((sum("messages"), sum("bytes"), used))
}

struct ClusterSide {
    rate: f64,
    lag: f64,
    msgs: u64,
    bytes: u64,
    wall: f64,
    p50: f64,
    nats_cpu: f64,
    nodes_cpu: f64,
    gen_cpu: f64,
}

/// The distinct event ids of the workload: what every store holds at the end.
pub fn unique_events(w: &Workload) -> Res<u64> {
    let mut ids = std::collections::HashSet::with_capacity(w.lines);
    for b in &w.batches {
        for line in b.body.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
            let v: Value = serde_json::from_slice(line)?;
            ids.insert(v["id"].as_str().ok_or("an event without id")?.to_owned());
        }
    }
    Ok(ids.len() as u64)
}

fn cluster_side(a: &Args, nats_bin: &Path, w: &Workload, unique: u64, root: &Path) -> Res<ClusterSide> {
    fresh(root)?;
    let (mut servers, urls) = start_nats(a, nats_bin, root)?;
    let dirs: Vec<PathBuf> = (0..NODES).map(|i| root.join(format!("node{i}"))).collect();
    let token = operator_token(a, &dirs[0])?;
    for d in &dirs[1..] {
        let out = tool(a, &dirs[0])
            .arg("backup")
            .arg(d)
            .stdout(Stdio::null())
            .status()?;
        if !out.success() {
            return Err(format!("backup to {}: {out}", d.display()).into());
        }
    }
    let urls = urls.join(",");
    let mut nodes: Vec<Server> = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        let extra = [
            "--cluster",
            &urls,
            "--node",
            &format!("n{i}"),
            "--cluster-name",
            CLUSTER_NAME,
            "--partitions",
            &a.partitions.to_string(),
        ]
        .map(str::to_owned);
        nodes.push(start_server_with(a, d, &extra)?);
    }
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let serving = match a.direct {
        true => Some(settled_serving(a, &urls)?),
        false => None,
    };
    let reqs = requests(w, &addrs, &token, serving.as_deref());
    let mut pids: Vec<u32> = servers.iter().map(|s| s.0.id()).collect();
    pids.extend(nodes.iter().map(|n| n.child.id()));
    // `--perf FILE`: the whole machine's profile during the first
    // cluster ingest (NATS servers, nodes, this generator).
    let perf = match (&a.perf, root.parent().and_then(Path::file_name)) {
        (Some(out), Some(run)) if run == "cluster-run-1" => Some(Killed(
            Command::new("perf")
                .args(["record", "-a", "-g", "-o"])
                .arg(out)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()?,
        )),
        _ => None,
    };
    if perf.is_some() {
        std::thread::sleep(Duration::from_millis(500));
    }
    let d = drive(a, &addrs, &reqs, &pids)?;
    if let Some(mut p) = perf {
        signal(&p.0, libc::SIGINT);
        p.0.wait()?;
    }
    // An event sent twice in different requests counts as appended twice
    // when the second comes before its node applied the first.
    if d.appended < unique {
        return Err(format!("the cluster appended {} of {unique} distinct events", d.appended).into());
    }
    let all = applied_everywhere(a, &urls, &addrs)?;
    let (msgs, bytes, used) = stream_totals(a, &urls)?;
    eprintln!(
        "  cluster: {msgs} messages, {bytes} bytes in {used} of {} streams",
        a.partitions
    );
    for n in &mut nodes {
        stop(n)?;
    }
    for s in &mut servers {
        signal(&s.0, libc::SIGTERM);
        s.0.wait()?;
    }
    let wall = (d.finished - d.started).as_secs_f64();
    Ok(ClusterSide {
        rate: w.lines as f64 / wall,
        lag: (all - d.finished).as_secs_f64(),
        msgs,
        bytes,
        wall,
        p50: crate::run::percentile(&d.latencies, 0.5),
        nats_cpu: d.cpu[..3].iter().sum(),
        nodes_cpu: d.cpu[3..3 + NODES].iter().sum(),
        gen_cpu: d.cpu[3 + NODES],
    })
}

/// (events/s, request p50, server CPU, generator CPU).
fn single_side(a: &Args, w: &Workload, unique: u64, dir: &Path) -> Res<(f64, f64, f64, f64)> {
    fresh(dir)?;
    let token = operator_token(a, dir)?;
    let mut server = start_server(a, dir)?;
    let reqs = requests(w, &[server.addr], &token, None);
    let d = drive(a, &[server.addr], &reqs, &[server.child.id()])?;
    stop(&mut server)?;
    if d.appended != unique {
        return Err(format!(
            "the single node appended {} of {unique} distinct events",
            d.appended
        )
        .into());
    }
    let wall = (d.finished - d.started).as_secs_f64();
    Ok((
        w.lines as f64 / wall,
        crate::run::percentile(&d.latencies, 0.5),
        d.cpu[0],
        d.cpu[1],
    ))
}

/// Run `i` (0-based): both sides, in an order that alternates with `i`.
pub fn one(a: &Args, nats_bin: &Path, w: &Workload, unique: u64, i: usize) -> Res<ClusterRun> {
    let base = a.dir.join(format!("cluster-run-{}", i + 1));
    let (cdir, sdir) = (base.join("cluster"), base.join("single"));
    let (c, s) = if i.is_multiple_of(2) {
        let c = cluster_side(a, nats_bin, w, unique, &cdir)?;
        (c, single_side(a, w, unique, &sdir)?)
    } else {
        let s = single_side(a, w, unique, &sdir)?;
        (cluster_side(a, nats_bin, w, unique, &cdir)?, s)
    };
    if !a.keep {
        std::fs::remove_dir_all(&base)?;
    }
    Ok(ClusterRun {
        cluster_rate: c.rate,
        single_rate: s.0,
        apply_lag: c.lag,
        msgs_rate: c.msgs as f64 / c.wall,
        mb_rate: c.bytes as f64 / c.wall / 1e6,
        cluster_p50: c.p50,
        single_p50: s.1,
        nats_cpu: c.nats_cpu,
        nodes_cpu: c.nodes_cpu,
        gen_cpu: c.gen_cpu,
        single_cpu: s.2,
        single_gen_cpu: s.3,
    })
}

pub fn report(a: &Args, w: &Workload, runs: &[ClusterRun]) {
    println!();
    println!(
        "{} events ({:.0} MB of JSON Lines, {} orgs, {} partitions), batches of {}, {} clients; \
         cluster: 3 NATS servers (R3, sync_interval: always) + 3 nodes, requests round-robin over the nodes",
        w.lines,
        w.bytes as f64 / 1e6,
        a.orgs,
        a.partitions,
        a.batch,
        a.clients
    );
    println!(
        "{:>4} {:>11} {:>11} {:>6} {:>8} {:>8} {:>7} {:>8} {:>8} {:>6} {:>6} {:>6} {:>6} {:>6}",
        "run",
        "cluster/s",
        "single/s",
        "ratio",
        "lag s",
        "msgs/s",
        "MB/s",
        "c p50ms",
        "s p50ms",
        "nats",
        "nodes",
        "gen",
        "single",
        "s gen"
    );
    let row = |label: String, r: &ClusterRun| {
        println!(
            "{:>4} {:>11.0} {:>11.0} {:>6.3} {:>8.3} {:>8.0} {:>7.1} {:>8.1} {:>8.1} {:>6.2} {:>6.2} {:>6.2} {:>6.2} {:>6.2}",
            label,
            r.cluster_rate,
            r.single_rate,
            r.cluster_rate / r.single_rate,
            r.apply_lag,
            r.msgs_rate,
            r.mb_rate,
            r.cluster_p50 * 1e3,
            r.single_p50 * 1e3,
            r.nats_cpu,
            r.nodes_cpu,
            r.gen_cpu,
            r.single_cpu,
            r.single_gen_cpu
        );
    };
    for (i, r) in runs.iter().enumerate() {
        row((i + 1).to_string(), r);
    }
    let col = |f: &dyn Fn(&ClusterRun) -> f64| median(runs.iter().map(f).collect());
    let med = ClusterRun {
        cluster_rate: col(&|r| r.cluster_rate),
        single_rate: col(&|r| r.single_rate),
        apply_lag: col(&|r| r.apply_lag),
        msgs_rate: col(&|r| r.msgs_rate),
        mb_rate: col(&|r| r.mb_rate),
        cluster_p50: col(&|r| r.cluster_p50),
        single_p50: col(&|r| r.single_p50),
        nats_cpu: col(&|r| r.nats_cpu),
        nodes_cpu: col(&|r| r.nodes_cpu),
        gen_cpu: col(&|r| r.gen_cpu),
        single_cpu: col(&|r| r.single_cpu),
        single_gen_cpu: col(&|r| r.single_gen_cpu),
    };
    row("med".into(), &med);
    println!(
        "cluster: median {:.0} events/s acknowledged (target >= 100,000); ratio to the single node: median {:.3}",
        med.cluster_rate,
        col(&|r| r.cluster_rate / r.single_rate)
    );
    println!(
        "lag: seconds from the last 200 until every node's store held every event; msgs/s, MB/s: \
         the streams' messages and bytes per second of ingest"
    );
    println!(
        "cpu columns: CPU seconds per wall second during the ingest (2.00 = both cores): the 3 NATS \
         servers, the 3 nodes, this generator; the single server, its generator"
    );
}
