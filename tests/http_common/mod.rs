//! Shared helpers for the black-box HTTP tests: the admin tool, a running
//! `auditstore serve` (started, waited for, killed on drop), a blocking
//! client with a bearer token, and checks of the contract's JSON errors.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use ureq::http::{HeaderMap, Method, Request};

pub const BIN: &str = env!("CARGO_BIN_EXE_auditstore");

/// Every error code of http.md with its status.
pub const CODES: &[(&str, u16)] = &[
    ("invalid_request", 400),
    ("unauthorized", 401),
    ("forbidden", 403),
    ("plan_not_eligible", 403),
    ("not_found", 404),
    ("no_data", 404),
    ("not_ready", 409),
    ("failed", 409),
    ("expired", 410),
    ("too_large", 413),
    ("invalid_range", 422),
    ("range_too_old", 422),
    ("range_in_future", 422),
    ("rate_limited", 429),
    ("corrupt", 500),
    ("io", 500),
    ("unavailable", 503),
];

/// Run the admin tool with `--json` on `dir`; panics unless it exits 0.
pub fn tool(dir: &Path, args: &[&str]) -> Value {
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .arg("--json")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the admin tool");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "auditstore {args:?} failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().next().unwrap_or("null")).expect("JSON output")
}

/// A new token of `org` with `role` (named `name`): (id, token text).
pub fn token_named(dir: &Path, org: &str, role: &str, name: &str) -> (String, String) {
    let v = tool(
        dir,
        &["token", "create", "--org", org, "--role", role, "--name", name],
    );
    assert_eq!(v["org"], org);
    assert_eq!(v["role"], role);
    (
        v["id"].as_str().unwrap().to_owned(),
        v["token"].as_str().unwrap().to_owned(),
    )
}

pub fn token(dir: &Path, org: &str, role: &str) -> String {
    token_named(dir, org, role, &format!("{org}-{role}")).1
}

pub fn operator(dir: &Path) -> String {
    let v = tool(dir, &["token", "create", "--operator", "--name", "ops"]);
    assert_eq!(v["role"], "operator");
    assert!(v["org"].is_null());
    v["token"].as_str().unwrap().to_owned()
}

/// One event in the JSON shape of events.md.
pub fn event(id: uuid::Uuid, action: &str, actor: &str, target: &str, at: &str) -> Value {
    json!({
        "id": id.to_string(),
        "action": action,
        "actor": {"id": actor, "type": "user"},
        "target": {"id": target, "type": "project"},
        "occurred_at": at,
        "success": true,
    })
}

/// How the API prints `e` back: with its defaults filled in.
pub fn stored(e: &Value) -> Value {
    let mut e = e.clone();
    for (k, v) in [
        ("payload", json!({})),
        ("metadata", json!({})),
        ("version", json!(1)),
    ] {
        e.as_object_mut().unwrap().entry(k).or_insert(v);
    }
    e
}

/// An answer: status, headers, body text.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {:?}", self.status, self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `error.code` of a JSON error.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Assert the contract's JSON error with `status` and `code`.
    pub fn expect_error(&self, status: u16, code: &str) -> &Self {
        assert_eq!(self.status, status, "status; body {}", self.body);
        assert!(
            self.header("content-type")
                .unwrap_or_default()
                .starts_with("application/json"),
            "content type of an error: {:?}",
            self.headers
        );
        let v = self.json();
        assert_eq!(v["error"]["code"], code, "code; body {}", self.body);
        assert!(
            v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "a message: {}",
            self.body
        );
        if status == 401 {
            assert_eq!(
                self.header("www-authenticate"),
                Some("Bearer"),
                "401 names the scheme"
            );
        }
        self
    }

    pub fn expect_ok(&self) -> Value {
        assert_eq!(self.status, 200, "body {}", self.body);
        self.json()
    }
}

/// A blocking client that reports every status as an answer.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// A running `auditstore serve`, killed when dropped.
pub struct Server {
    child: Option<Child>,
    _stdout: BufReader<ChildStdout>,
    pub base: String,
    pub dir: PathBuf,
    pub agent: ureq::Agent,
}

impl Server {
    /// `serve` on `dir` on a free port; `global` goes before `serve`
    /// (`--as-of T`), `extra` after it (`--body-limit N`).
    pub fn start_with(dir: &Path, global: &[&str], extra: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .arg("--data-dir")
            .arg(dir)
            .args(global)
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start auditstore serve");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read the listening line");
        let Some(base) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            panic!("serve did not start: {line:?}, {:?}", child.wait());
        };
        assert!(base.starts_with("http://127.0.0.1:"), "{base}");
        Server {
            base: base.to_owned(),
            child: Some(child),
            _stdout: stdout,
            dir: dir.to_owned(),
            agent: agent(),
        }
    }

    pub fn start(dir: &Path) -> Server {
        Self::start_with(dir, &[], &[])
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// Send `signal` without waiting.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0);
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .expect("started")
            .try_wait()
            .unwrap()
            .is_none()
    }

    /// Wait (at most 30 s) for the exit.
    pub fn wait_exit(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("serve did not exit within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Send `signal`, then wait (at most 30 s) for the exit.
    pub fn stop(self, signal: i32) -> ExitStatus {
        self.signal(signal);
        self.wait_exit()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Any request; `body` `None` sends none.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Option<&[u8]>,
    ) -> Resp {
        let mut builder = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(if path.starts_with("http") {
                path.to_owned()
            } else {
                self.url(path)
            });
        if let Some(t) = token {
            builder = builder.header("authorization", format!("Bearer {t}"));
        }
        if let Some(ct) = content_type {
            builder = builder.header("content-type", ct);
        }
        let answer = match body {
            Some(b) => self.agent.run(builder.body(b).unwrap()),
            None => self.agent.run(builder.body(()).unwrap()),
        };
        let mut answer = answer.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = answer.status().as_u16();
        let headers = answer.headers().clone();
        let body = answer
            .body_mut()
            .with_config()
            .limit(512 * 1024 * 1024)
            .read_to_string()
            .expect("read the body");
        Resp {
            status,
            headers,
            body,
        }
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> Resp {
        self.call("GET", path, token, None, None)
    }

    /// A raw `Authorization` header value.
    pub fn get_auth(&self, path: &str, authorization: &str) -> Resp {
        let req = Request::builder()
            .uri(self.url(path))
            .header("authorization", authorization)
            .body(())
            .unwrap();
        let mut answer = self.agent.run(req).expect("GET");
        Resp {
            status: answer.status().as_u16(),
            headers: answer.headers().clone(),
            body: answer.body_mut().read_to_string().unwrap(),
        }
    }

    pub fn post_json(&self, path: &str, token: Option<&str>, body: &Value) -> Resp {
        let text = body.to_string();
        self.call(
            "POST",
            path,
            token,
            Some("application/json"),
            Some(text.as_bytes()),
        )
    }

    pub fn put_json(&self, path: &str, token: Option<&str>, body: &Value) -> Resp {
        let text = body.to_string();
        self.call(
            "PUT",
            path,
            token,
            Some("application/json"),
            Some(text.as_bytes()),
        )
    }

    /// Append `events` to `org`; asserts a `200`.
    pub fn ingest(&self, org: &str, token: &str, events: &[Value]) -> Value {
        self.post_json(
            &format!("/api/v1/orgs/{org}/events"),
            Some(token),
            &Value::from(events.to_vec()),
        )
        .expect_ok()
    }

    /// Every event of `org` in `[from, to)` by following `next_cursor`
    /// with pages of `limit`.
    pub fn all_events(&self, org: &str, token: &str, from: &str, to: &str, limit: u32) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/orgs/{org}/events?from={from}&to={to}&limit={limit}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page = self.get(&path, Some(token)).expect_ok();
            out.extend(page["events"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// POST `body` (JSON) to `url` without panicking on a transport error
/// (for servers killed on purpose): (status, body).
pub fn try_post(
    agent: &ureq::Agent,
    url: &str,
    token: &str,
    body: &str,
) -> Result<(u16, String), ureq::Error> {
    let req = Request::post(url)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    let mut answer = agent.run(req)?;
    let status = answer.status().as_u16();
    Ok((status, answer.body_mut().read_to_string()?))
}

/// The ids of a list of events, in order.
pub fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

/// A store in `dir` whose clock stands at `instant`, for the in-process
/// tests of `server::app`.
pub fn store_at(dir: &Path, instant: &str) -> std::sync::Arc<auditstore::Store> {
    let clock = std::sync::Arc::new(auditstore::FixedClock::new(
        auditstore::Timestamp::parse_instant_or_date(instant).expect("an instant"),
    ));
    let options = auditstore::Options {
        clock,
        ..auditstore::Options::default()
    };
    std::sync::Arc::new(auditstore::Store::open_with(dir, options).expect("open the store"))
}
