//! Shared by the tests that run real NATS servers and real
//! `auditstore serve --cluster` nodes on loopback (cluster_kill.rs,
//! cluster_commands.rs): the processes (killed on drop), the admin tool,
//! and a blocking HTTP client.
//!
//! The NATS server comes from `AUDITSTORE_NATS_SERVER` (set by .ci/run from
//! scripts/install-nats.sh). Without it a test is skipped loudly, or fails
//! when `AUDITSTORE_REQUIRE_NATS=1`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use ureq::http::Request;

pub const BIN: &str = env!("CARGO_BIN_EXE_auditstore");

/// The nats-server binary, or `None` when the test is to be skipped.
pub fn nats_server(test: &str) -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("AUDITSTORE_NATS_SERVER") {
        return Some(PathBuf::from(bin));
    }
    if std::env::var("AUDITSTORE_REQUIRE_NATS").as_deref() == Ok("1") {
        panic!(
            "AUDITSTORE_REQUIRE_NATS=1 but AUDITSTORE_NATS_SERVER is not set: run \
             `export AUDITSTORE_NATS_SERVER=$(scripts/install-nats.sh)`"
        );
    }
    eprintln!(
        "\n\n*** SKIPPED {test}: AUDITSTORE_NATS_SERVER is not set (the nats-server binary; \
         `export AUDITSTORE_NATS_SERVER=$(scripts/install-nats.sh)`) ***\n\n"
    );
    None
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed (SIGKILL) when dropped.
pub struct Proc(pub Option<Child>);

impl Proc {
    pub fn kill(&mut self) {
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

pub struct Nats {
    pub bin: PathBuf,
    pub conf: PathBuf,
    pub log: PathBuf,
    pub proc: Proc,
}

impl Nats {
    /// One JetStream server on its own (no routes), `sync_interval:
    /// always`, with its files under `root`; started; and its URL.
    pub fn single(bin: &Path, root: &Path) -> (Nats, String) {
        let port = free_port();
        let conf = root.join("nats.conf");
        std::fs::write(
            &conf,
            format!(
                "server_name: solo\nlisten: 127.0.0.1:{port}\n\
                 jetstream {{ store_dir: \"{}\", sync_interval: always }}\n",
                root.join("js").display()
            ),
        )
        .unwrap();
        let mut nats = Nats {
            bin: bin.to_path_buf(),
            conf,
            log: root.join("nats.log"),
            proc: Proc(None),
        };
        nats.start();
        (nats, format!("nats://127.0.0.1:{port}"))
    }

    pub fn start(&mut self) {
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(append_to(&self.log))
            .spawn()
            .expect("start nats-server");
        self.proc = Proc(Some(child));
    }
}

/// Three NATS servers (JetStream with `sync_interval: always`, routes
/// between them) configured in `root`, started; and their client URLs.
pub fn start_nats(bin: &Path, root: &Path, cluster: &str) -> (Vec<Nats>, Vec<String>) {
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
                     cluster {{ name: {cluster}, listen: 127.0.0.1:{}, routes: [{routes}] }}\n",
                    client_ports[i],
                    store.display(),
                    route_ports[i]
                ),
            )
            .unwrap();
            Nats {
                bin: bin.to_path_buf(),
                conf,
                log: root.join(format!("nats{i}.log")),
                proc: Proc(None),
            }
        })
        .collect();
    for n in &mut nats {
        n.start();
    }
    let urls = client_ports
        .iter()
        .map(|p| format!("nats://127.0.0.1:{p}"))
        .collect();
    (nats, urls)
}

pub struct Node {
    pub id: String,
    pub dir: PathBuf,
    pub port: u16,
    pub urls: String,
    pub log: PathBuf,
    pub cluster: String,
    pub partitions: u32,
    /// The node's clock runs this far ahead of the real one (`--as-of`).
    pub clock_offset: Option<chrono::Duration>,
    /// More `serve` options.
    pub extra: Vec<String>,
    pub proc: Proc,
}

impl Node {
    /// Node `i` of `cluster`, in `root`, knowing two of the NATS servers
    /// (different ones for different nodes), or the only one.
    pub fn new(root: &Path, i: usize, urls: &[String], cluster: &str, partitions: u32) -> Node {
        let n = urls.len();
        let mut known = vec![urls[i % n].clone()];
        if n > 1 {
            known.push(urls[(i + 1) % n].clone());
        }
        Node {
            id: format!("n{i}"),
            dir: root.join(format!("node{i}")),
            port: free_port(),
            urls: known.join(","),
            log: root.join(format!("node{i}.log")),
            cluster: cluster.to_owned(),
            partitions,
            clock_offset: None,
            extra: Vec::new(),
            proc: Proc(None),
        }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its `serve --cluster` command line (standard streams not set).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--data-dir").arg(&self.dir);
        if let Some(offset) = self.clock_offset {
            let at = chrono::Utc::now() + offset;
            cmd.args(["--as-of", &at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()]);
        }
        cmd.arg("serve")
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--cluster", &self.urls, "--node", &self.id])
            .args([
                "--cluster-name",
                &self.cluster,
                "--partitions",
                &self.partitions.to_string(),
            ])
            .args(&self.extra)
            .env("AUDITSTORE_LOG", "warn");
        cmd
    }

    /// Start and wait for its `listening on` line.
    pub fn start(&mut self) {
        let mut child = self
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(append_to(&self.log))
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

/// A log file opened for appending (a restarted process adds to it).
pub fn append_to(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

/// The last 30 lines of a log.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// The admin tool with `--json` on `dir` (through its server's admin
/// socket when one is running): (exit status, stdout as JSON, stderr).
pub fn tool_status(dir: &Path, args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .arg("--json")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// [`tool_status`], which must succeed.
pub fn tool(dir: &Path, args: &[&str]) -> Value {
    let (code, out, err) = tool_status(dir, args);
    assert_eq!(code, 0, "{args:?}: {err}");
    out
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

pub fn send(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    token: &str,
    body: &str,
) -> Result<(u16, String), ureq::Error> {
    let req = Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .unwrap();
    let mut answer = agent.run(req)?;
    let status = answer.status().as_u16();
    Ok((status, answer.body_mut().read_to_string()?))
}

pub fn post(agent: &ureq::Agent, url: &str, token: &str, body: &str) -> Result<(u16, String), ureq::Error> {
    send(agent, "POST", url, token, body)
}

pub fn get(agent: &ureq::Agent, url: &str, token: &str) -> Result<(u16, String), ureq::Error> {
    let req = Request::get(url)
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap();
    let mut answer = agent.run(req)?;
    let status = answer.status().as_u16();
    Ok((status, answer.body_mut().read_to_string()?))
}

/// The bytes of a `GET`.
pub fn get_bytes(agent: &ureq::Agent, url: &str, token: &str) -> (u16, Vec<u8>) {
    let req = Request::get(url)
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap();
    let mut answer = agent.run(req).unwrap();
    let status = answer.status().as_u16();
    (status, answer.body_mut().read_to_vec().unwrap())
}

/// Poll `f` until it returns `Some`, at most `patience`.
pub fn wait_for<T>(what: &str, patience: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {patience:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `id`s of a JSON array of objects (an answer's text), sorted.
pub fn sorted_ids(text: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(text).unwrap();
    let mut ids: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// `user add --org ORG --role admin NAME` through `dir`'s server, the
/// password on stdin: whether it succeeded, and what it printed.
pub fn user_add(dir: &Path, org: &str, name: &str, password: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(["--json", "user", "add", "--org", org, "--role", "admin", name])
        .arg("--password-stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(password.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// An answer: status, the node that served it when forwarded, body.
pub fn call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Option<String>, String) {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut answer = agent
        .run(req.body(body.to_owned()).unwrap())
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let served_by = answer
        .headers()
        .get("x-auditstore-node")
        .map(|v| v.to_str().unwrap().to_owned());
    let status = answer.status().as_u16();
    (status, served_by, answer.body_mut().read_to_string().unwrap())
}

pub fn status(root: &Path, url: &str, cluster: &str) -> Value {
    tool(
        root,
        &["cluster", "status", "--cluster", url, "--cluster-name", cluster],
    )
}

/// (assigned, serving) of partition `p`, sorted.
pub fn who(status: &Value, p: u32) -> (Vec<String>, Vec<String>) {
    let s = &status["streams"][p as usize];
    let list = |k: &str| {
        let mut v: Vec<String> = s[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v
    };
    (list("assigned"), list("serving"))
}

/// The members applying partition `p`, sorted.
pub fn applying(status: &Value, p: u32) -> Vec<String> {
    let mut v: Vec<String> = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["applying"].as_array().unwrap().contains(&json!(p)))
        .map(|m| m["node"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

/// Every partition served and applied by exactly its assigned nodes, and
/// those are all three for partition 0 and two for the others.
pub fn settled(status: &Value, members: usize, partitions: u32) -> bool {
    status["members"].as_array().unwrap().len() == members
        && (0..partitions).all(|p| {
            let (assigned, serving) = who(status, p);
            let want = if p == 0 {
                members
            } else {
                auditstore::cluster::assign::APPLIERS.min(members)
            };
            assigned.len() == want && serving == assigned && applying(status, p) == assigned
        })
}

/// `n` events of `org` as a JSON array, for `k` in `from..from + n`: the
/// id `00000000-0000-4000-8000-PPPPKKKKKKKK` (the organization's
/// partition, then `k`), one a second from 2026-01-01T00:00:00Z.
pub fn numbered_events(org: &str, partitions: u32, action: &str, from: usize, n: usize) -> String {
    let p = auditstore::partitions::partition_of(org, partitions);
    let list: Vec<Value> = (from..from + n)
        .map(|k| {
            json!({
                "id": format!("00000000-0000-4000-8000-{p:04}{k:08}"),
                "action": action,
                "actor": {"id": "u", "type": "user"},
                "target": {"id": format!("{org}-{k}"), "type": "thing"},
                "occurred_at": format!("2026-01-01T00:{:02}:{:02}Z", k / 60 % 60, k % 60),
                "success": true,
            })
        })
        .collect();
    Value::from(list).to_string()
}

/// Three nodes of `cluster` on the one NATS server at `url` (R1 streams,
/// reads waiting up to 15 s), started; returned once every partition is
/// applied and served by exactly its assigned nodes, with that status.
pub fn three_settled_nodes(root: &Path, url: &str, cluster: &str, partitions: u32) -> (Vec<Node>, Value) {
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| {
            let mut n = Node::new(root, i, &[url.to_owned()], cluster, partitions);
            n.extra = ["--replicas", "1", "--read-wait-ms", "15000"]
                .map(String::from)
                .to_vec();
            n
        })
        .collect();
    for n in &mut nodes {
        n.start();
    }
    let st = wait_for("the assignment to settle", Duration::from_secs(60), || {
        Some(status(root, url, cluster)).filter(|s| settled(s, 3, partitions))
    });
    (nodes, st)
}
