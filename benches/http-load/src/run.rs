//! One run: the HTTP side (server, ingest clients, query client) and the
//! admin tool's ingest of the same file, each in a fresh data directory.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::{head, Conn, Res};
use crate::{Args, Workload};

/// One request body: `events` JSON lines of one organization.
pub struct Batch {
    pub org: String,
    pub events: usize,
    pub body: Vec<u8>,
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub struct RunResult {
    pub http_rate: f64,
    pub tool_rate: f64,
    pub q_p50: f64,
    pub q_p99: f64,
    pub q_max: f64,
    pub queries: usize,
    pub full_pages: usize,
    /// CPU seconds per wall second: the server during the HTTP ingest, this
    /// process (ingest and query clients) meanwhile, and the admin tool.
    pub server_cpu: f64,
    pub gen_cpu: f64,
    pub tool_cpu: f64,
    /// The same query after the ingest (nothing else running on the server).
    pub idle_p50: f64,
    pub idle_p99: f64,
    /// Events stored (the same on both sides, or the run fails).
    pub appended: u64,
}

/// (own user+system, waited-for children's user+system) CPU seconds of a process.
pub fn cpu_seconds(pid: &str) -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return (f64::NAN, f64::NAN);
    };
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let at = |field: usize| f.get(field - 3).copied().unwrap_or(0.0);
    ((at(14) + at(15)) / tick, (at(16) + at(17)) / tick)
}

pub fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
    unsafe {
        libc::kill(child.id() as libc::pid_t, sig);
    }
}

pub fn tool(a: &Args, dir: &Path) -> Command {
    let mut c = Command::new(&a.bin);
    c.arg("--data-dir").arg(dir).arg("--json");
    c
}

fn make_token(a: &Args, dir: &Path, org: &str, role: &str) -> Res<String> {
    let out = tool(a, dir)
        .args(["token", "create", "--org", org, "--role", role])
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("token create --org {org} --role {role}: {}", out.status).into());
    }
    let v: Value = serde_json::from_slice(out.stdout.split(|&b| b == b'\n').next().unwrap_or(&[]))?;
    Ok(v["token"]
        .as_str()
        .ok_or("token create printed no token")?
        .to_owned())
}

pub fn fresh(dir: &Path) -> Res<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    Ok(())
}

/// The admin tool's ingest of the file: (events/s, CPU/wall, appended).
fn tool_side(a: &Args, w: &Workload, dir: &Path) -> Res<(f64, f64, u64)> {
    fresh(dir)?;
    let (_, before) = cpu_seconds("self");
    let started = Instant::now();
    let out = tool(a, dir)
        .arg("ingest")
        .arg(&w.file)
        .stderr(Stdio::inherit())
        .output()?;
    let wall = started.elapsed().as_secs_f64();
    let (_, after) = cpu_seconds("self");
    if !out.status.success() {
        return Err(format!("auditstore ingest: {}", out.status).into());
    }
    let v: Value = serde_json::from_slice(&out.stdout)?;
    let appended = v["appended"].as_u64().ok_or("ingest printed no appended count")?;
    Ok((w.lines as f64 / wall, (after - before) / wall, appended))
}

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    // Kept open so the server never writes to a closed pipe.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Drop for Server {
    /// On an error path (a failed check, a hung request): no server left behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn start_server(a: &Args, dir: &Path) -> Res<Server> {
    start_server_with(a, dir, &[])
}

/// `serve` on `dir` with more options (`extra`, after `--listen`); its
/// address read from its first line.
pub fn start_server_with(a: &Args, dir: &Path, extra: &[String]) -> Res<Server> {
    let log = std::fs::File::create(dir.with_extension("serve.log"))?;
    let mut child = tool(a, dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .env("AUDITSTORE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()?;
    let mut stdout = BufReader::new(child.stdout.take().ok_or("no server stdout")?);
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    let v: Value = serde_json::from_str(&line).map_err(|e| format!("server said {line:?}: {e}"))?;
    let url = v["listening"].as_str().ok_or("no listening address")?;
    let addr = url.trim_start_matches("http://").parse()?;
    Ok(Server {
        child,
        addr,
        _stdout: stdout,
    })
}

pub fn stop(s: &mut Server) -> Res<()> {
    signal(&s.child, libc::SIGTERM);
    let status = s.child.wait()?;
    if !status.success() {
        return Err(format!("the server exited with {status}").into());
    }
    Ok(())
}

/// (appended, duplicates) of an ingest answer that must be a `200`
/// accounting for every one of its `events`.
pub fn ingest_counts(r: &crate::client::Response, events: usize) -> Res<(u64, u64)> {
    if r.status != 200 {
        return Err(format!(
            "ingest: status {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        )
        .into());
    }
    let v: Value = serde_json::from_slice(&r.body)?;
    let count = |k: &str| v[k].as_u64().unwrap_or(u64::MAX);
    let (a, d) = (count("appended"), count("duplicates"));
    if count("rejected") != 0 || count("conflicts") != 0 || a.saturating_add(d) != events as u64 {
        return Err(format!("ingest of {events} events answered {v}").into());
    }
    Ok((a, d))
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Post every batch; (appended, duplicates) over all of them.
fn ingest_client(conn: &mut Conn, requests: &[(Vec<u8>, usize)], next: &AtomicUsize) -> Res<(u64, u64)> {
    let (mut appended, mut duplicates) = (0, 0);
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some((request, events)) = requests.get(i) else {
            return Ok((appended, duplicates));
        };
        let (a, d) = ingest_counts(&conn.send(request)?, *events)?;
        appended += a;
        duplicates += d;
    }
}

/// Query until `stop`: (latencies in seconds, full pages).
fn query_client(conn: &mut Conn, request: &[u8], stop: &AtomicBool, gap: Duration) -> Res<(Vec<f64>, usize)> {
    let (mut lat, mut full) = (Vec::with_capacity(100_000), 0);
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let r = conn.send(request)?;
        lat.push(t.elapsed().as_secs_f64());
        if r.status != 200 {
            return Err(format!("query: status {}: {}", r.status, String::from_utf8_lossy(&r.body)).into());
        }
        let v: Value = serde_json::from_slice(&r.body)?;
        let n = v["events"].as_array().map_or(0, Vec::len);
        if n > 100 {
            return Err(format!("query: a page of {n} events for limit=100").into());
        }
        full += usize::from(n == 100);
        if !gap.is_zero() {
            std::thread::sleep(gap);
        }
    }
    Ok((lat, full))
}

struct HttpSide {
    rate: f64,
    appended: u64,
    latencies: Vec<f64>,
    full_pages: usize,
    server_cpu: f64,
    gen_cpu: f64,
    /// Query latencies after the ingest, sorted.
    idle: Vec<f64>,
}

fn http_side(a: &Args, w: &Workload, dir: &Path, perf: Option<&PathBuf>) -> Res<HttpSide> {
    fresh(dir)?;
    let mut orgs: Vec<&str> = w.batches.iter().map(|b| b.org.as_str()).collect();
    orgs.sort_unstable();
    orgs.dedup();
    let mut ingest_tokens = std::collections::HashMap::new();
    for org in orgs {
        ingest_tokens.insert(org.to_owned(), make_token(a, dir, org, "ingest")?);
    }
    let member = make_token(a, dir, &w.query_org, "member")?;
    let mut server = start_server(a, dir)?;
    let addr = server.addr;
    // Whole requests, formatted before the clock starts.
    let requests: Vec<(Vec<u8>, usize)> = w
        .batches
        .iter()
        .map(|b| {
            let target = format!("/api/v1/orgs/{}/events", b.org);
            let h = head(
                "POST",
                &target,
                &addr,
                &ingest_tokens[&b.org],
                Some(("application/x-ndjson", b.body.len())),
            );
            let mut r = Vec::with_capacity(h.len() + b.body.len());
            r.extend_from_slice(h.as_bytes());
            r.extend_from_slice(&b.body);
            (r, b.events)
        })
        .collect();
    let query_target = format!(
        "/api/v1/orgs/{}/events?from={}&to={}&limit=100",
        w.query_org, w.from, w.to
    );
    let query_request = head("GET", &query_target, &addr, &member, None).into_bytes();
    let perf_child = match perf {
        Some(out) => {
            let c = Command::new("perf")
                .args(["record", "-g", "-o"])
                .arg(out)
                .args(["-p", &server.child.id().to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()?;
            std::thread::sleep(Duration::from_millis(500));
            Some(c)
        }
        None => None,
    };
    let server_pid = server.child.id().to_string();
    let next = AtomicUsize::new(0);
    let stop_queries = AtomicBool::new(false);
    let barrier = Barrier::new(a.clients + 1 + usize::from(a.query));
    let gap = Duration::from_millis(a.query_gap_ms);
    let (started, server_cpu0, gen_cpu0, outcome) = std::thread::scope(|s| {
        let ingest: Vec<_> = (0..a.clients)
            .map(|_| {
                let (requests, next, barrier) = (&requests, &next, &barrier);
                s.spawn(move || -> Res<(u64, u64, Instant)> {
                    let mut conn = Conn::new(addr);
                    conn.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")?;
                    barrier.wait();
                    let (appended, duplicates) = ingest_client(&mut conn, requests, next)?;
                    Ok((appended, duplicates, Instant::now()))
                })
            })
            .collect();
        let query = a.query.then(|| {
            let (request, stop, barrier) = (&query_request, &stop_queries, &barrier);
            s.spawn(move || -> Res<(Vec<f64>, usize)> {
                let mut conn = Conn::new(addr);
                conn.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")?;
                barrier.wait();
                query_client(&mut conn, request, stop, gap)
            })
        });
        let server_cpu0 = cpu_seconds(&server_pid).0;
        let gen_cpu0 = cpu_seconds("self").0;
        barrier.wait();
        let started = Instant::now();
        let mut done = Vec::new();
        for h in ingest {
            done.push(h.join().map_err(|_| "an ingest client panicked")?);
        }
        stop_queries.store(true, Ordering::Relaxed);
        let queried = match query {
            Some(h) => Some(h.join().map_err(|_| "the query client panicked")?),
            None => None,
        };
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((started, server_cpu0, gen_cpu0, (done, queried)))
    })?;
    let (done, queried) = outcome;
    let (mut appended, mut last) = (0u64, started);
    for d in done {
        let (ap, _dup, finished) = d?;
        appended += ap;
        last = last.max(finished);
    }
    let wall = (last - started).as_secs_f64();
    let server_cpu = (cpu_seconds(&server_pid).0 - server_cpu0) / wall;
    let gen_cpu = (cpu_seconds("self").0 - gen_cpu0) / wall;
    if let Some(mut p) = perf_child {
        signal(&p, libc::SIGINT);
        p.wait()?;
    }
    // The same query with the ingest over: what the page costs alone.
    let mut idle = Vec::with_capacity(a.idle_queries);
    if a.query {
        let mut conn = Conn::new(addr);
        for _ in 0..a.idle_queries {
            let t = Instant::now();
            let r = conn.send(&query_request)?;
            idle.push(t.elapsed().as_secs_f64());
            if r.status != 200 {
                return Err(format!("idle query: status {}", r.status).into());
            }
        }
    }
    idle.sort_by(f64::total_cmp);
    stop(&mut server)?;
    let (mut latencies, full_pages) = match queried {
        Some(q) => q?,
        None => (Vec::new(), 0),
    };
    latencies.sort_by(f64::total_cmp);
    Ok(HttpSide {
        rate: w.lines as f64 / wall,
        appended,
        latencies,
        full_pages,
        server_cpu,
        gen_cpu,
        idle,
    })
}

/// Run `i` (0-based): both sides, in an order that alternates with `i`.
pub fn one(a: &Args, w: &Workload, i: usize) -> Res<RunResult> {
    let base = a.dir.join(format!("run-{}", i + 1));
    let (http_dir, tool_dir) = (base.join("http"), base.join("tool"));
    let perf = if i == 0 { a.perf.as_ref() } else { None };
    let (http, tool) = if i.is_multiple_of(2) {
        let h = http_side(a, w, &http_dir, perf)?;
        (h, tool_side(a, w, &tool_dir)?)
    } else {
        let t = tool_side(a, w, &tool_dir)?;
        (http_side(a, w, &http_dir, perf)?, t)
    };
    let (tool_rate, tool_cpu, tool_appended) = tool;
    if http.appended != tool_appended {
        return Err(format!(
            "the sides stored different counts: http appended {}, the tool {}",
            http.appended, tool_appended
        )
        .into());
    }
    if !a.keep {
        std::fs::remove_dir_all(&base)?;
    }
    let l = &http.latencies;
    Ok(RunResult {
        http_rate: http.rate,
        tool_rate,
        q_p50: percentile(l, 0.50),
        q_p99: percentile(l, 0.99),
        q_max: l.last().copied().unwrap_or(f64::NAN),
        queries: l.len(),
        full_pages: http.full_pages,
        server_cpu: http.server_cpu,
        gen_cpu: http.gen_cpu,
        tool_cpu,
        idle_p50: percentile(&http.idle, 0.50),
        idle_p99: percentile(&http.idle, 0.99),
        appended: tool_appended,
    })
}
