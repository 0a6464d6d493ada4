//! The processes a browser test drives: `chromedriver` (Debian's, found on
//! PATH: nothing is downloaded), `auditstore serve`, the admin tool (the
//! workspace's `target/debug/auditstore`).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The admin tool and server binary: `AUDITSTORE_BIN`, else the one
/// `cargo build` made in the workspace's target directory. It must be at
/// least as new as every source file, so that a stale build is never
/// what the test judges.
pub fn bin() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin = match std::env::var_os("AUDITSTORE_BIN").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => {
            let target =
                std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
            target.join("debug").join("auditstore")
        }
    };
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}: run `cargo build` first (or set AUDITSTORE_BIN)",
                bin.display()
            )
        });
    let newest = newest_source(&root.join("src"));
    assert!(
        newest.is_none_or(|t| t <= built),
        "{} is older than the sources: run `cargo build` first",
        bin.display()
    );
    bin
}

/// The latest modification time of a file under `dir`.
fn newest_source(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            newest_source(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).ok()
        };
        newest = newest.max(time);
    }
    newest
}

/// The first of `names` on PATH (or the path in env var `override_var`).
fn find(override_var: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(override_var).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// (chromedriver, chromium), or `None` when the test may be skipped
/// (`AUDITSTORE_SKIP_BROWSER=1`). Missing tools otherwise fail the test.
pub fn browser_tools() -> Option<(PathBuf, PathBuf)> {
    let driver = find("AUDITSTORE_CHROMEDRIVER", &["chromedriver"]);
    let browser = find("AUDITSTORE_CHROMIUM", &["chromium", "chromium-browser"]);
    match (driver, browser) {
        (Some(d), Some(b)) => Some((d, b)),
        (d, b) => {
            if std::env::var("AUDITSTORE_SKIP_BROWSER").as_deref() == Ok("1") {
                eprintln!("browser test skipped (AUDITSTORE_SKIP_BROWSER=1)");
                return None;
            }
            panic!(
                "the browser test needs Debian's chromium and chromium-driver on PATH \
                 (chromedriver found: {}, chromium found: {}). Install them with \
                 `apt-get install -y chromium chromium-driver` (CI's .ci/run does), \
                 point AUDITSTORE_CHROMEDRIVER / AUDITSTORE_CHROMIUM at them, or set \
                 AUDITSTORE_SKIP_BROWSER=1 to skip this test.",
                d.is_some(),
                b.is_some()
            )
        }
    }
}

/// A free loopback port (a race with another process taking it first is
/// possible but harmless here: chromedriver would fail to start, loudly).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local address").port()
}

/// A child process that is killed when dropped.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running chromedriver: its URL and process.
pub struct Driver {
    pub url: String,
    _child: Guard,
}

pub fn start_chromedriver(path: &Path) -> Driver {
    let port = free_port();
    let child = Command::new(path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", path.display()));
    let guard = Guard(child);
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not listen on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Driver {
        url: format!("http://127.0.0.1:{port}"),
        _child: guard,
    }
}

/// Run the admin tool on `dir` as of `as_of`, with `stdin`; it must succeed.
pub fn tool(dir: &Path, as_of: &str, args: &[&str], stdin: &str) {
    let mut child = Command::new(bin())
        .arg("--data-dir")
        .arg(dir)
        .args(["--as-of", as_of])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the admin tool");
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes()).expect("write the tool's stdin");
    }
    let out = child.wait_with_output().expect("wait for the admin tool");
    assert!(
        out.status.success(),
        "auditstore {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running `auditstore serve`.
pub struct Server {
    pub url: String,
    child: Guard,
}

impl Server {
    /// Serve `dir` on a free port with the clock starting at `as_of`.
    pub fn start(dir: &Path, as_of: &str) -> Server {
        let mut child = Command::new(bin())
            .arg("--data-dir")
            .arg(dir)
            .args(["--as-of", as_of, "serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start auditstore serve");
        let stdout = child.stdout.take().expect("the server's stdout");
        let guard = Guard(child);
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Server { url, child: guard }
    }

    /// SIGTERM, and wait for a clean exit (the store's lock is released).
    pub fn stop(mut self) {
        let pid = self.child.0.id() as libc::pid_t;
        // SAFETY: `kill` on our own child's pid, which has not been reaped.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let status = self.child.0.wait().expect("wait for the server");
        assert!(status.success(), "the server exited with {status}");
    }
}
