//! What the cluster tests share: NATS servers and `serve --cluster` nodes
//! as child processes (SIGKILLed when dropped), the admin tool, and HTTP.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use ureq::http::Request;

pub const BIN: &str = env!("CARGO_BIN_EXE_auditstore");

/// The nats-server binary (`AUDITSTORE_NATS_SERVER`), or `None` after
/// saying loudly that `test` is skipped; with `AUDITSTORE_REQUIRE_NATS=1`
/// a missing server fails instead.
pub fn nats_server_or_skip(test: &str) -> Option<PathBuf> {
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
    /// One JetStream server on its own (no cluster routes), `sync_interval:
    /// always`, with its files under `root`; started.
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

/// A `serve --cluster` node.
pub struct Node {
    pub id: String,
    pub dir: PathBuf,
    pub port: u16,
    pub urls: String,
    /// `serve` options after `--cluster URLS --node ID`.
    pub args: Vec<String>,
    pub log: PathBuf,
    pub proc: Proc,
}

impl Node {
    pub fn new(id: &str, root: &Path, urls: &str, args: &[&str]) -> Node {
        Node {
            id: id.to_owned(),
            dir: root.join(id),
            port: free_port(),
            urls: urls.to_owned(),
            args: args.iter().map(|a| a.to_string()).collect(),
            log: root.join(format!("{id}.log")),
            proc: Proc(None),
        }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Start and wait for its `listening on` line.
    pub fn start(&mut self) {
        let mut child = Command::new(BIN)
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--cluster", &self.urls, "--node", &self.id])
            .args(&self.args)
            .env("AUDITSTORE_LOG", "warn")
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

/// `auditstore --data-dir DIR --json ARGS`, which must succeed.
pub fn tool(dir: &Path, args: &[&str]) -> Value {
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

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

pub fn post(agent: &ureq::Agent, url: &str, token: &str, body: &str) -> Result<(u16, String), ureq::Error> {
    let req = Request::post(url)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    let mut answer = agent.run(req)?;
    let status = answer.status().as_u16();
    Ok((status, answer.body_mut().read_to_string()?))
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
