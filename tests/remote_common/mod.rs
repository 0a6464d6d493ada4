//! Helpers of tests/remote.rs: a running `serve`, the admin tool run from
//! a working directory of its own, and two identical stores (one served)
//! whose answers are compared.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use crate::common::{copy_store_files, shared_data};

pub const T: &str = "2026-08-01T09:31:00Z";
pub const T_RUN: &str = "2026-08-01T10:31:00Z";

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_auditstore"));
    c.env_remove("AUDITSTORE_DATA_DIR").env("USER", "carol");
    c
}

/// `auditstore --data-dir DIR serve --listen 127.0.0.1:0`, once it listens.
pub struct Server {
    child: Child,
    pub url: String,
}

impl Server {
    pub fn start(dir: &Path) -> Server {
        let mut child = bin()
            .arg("--data-dir")
            .arg(dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("listening on http://127.0.0.1:"), "{line:?}");
        Server {
            child,
            url: line.trim_end().to_owned(),
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// SIGTERM, then its exit status.
    pub fn stop(mut self) -> Option<i32> {
        self.signal("-TERM");
        self.child.wait().unwrap().code()
    }

    pub fn kill9(mut self) {
        self.signal("-KILL");
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The admin tool on `dir` from the working directory `cwd`.
pub fn run_in(cwd: &Path, dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = bin()
        .current_dir(cwd)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Two identical stores, the sample ingested into each; one served.
pub struct Pair {
    _tmp: tempfile::TempDir,
    pub served: PathBuf,
    pub local: PathBuf,
    /// A working directory of the clients' own, not the data directory's.
    pub cwd: PathBuf,
    pub server: Option<Server>,
}

impl Pair {
    pub fn new() -> Pair {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("base");
        let sample = shared_data("sample-events.jsonl");
        let out = run_in(
            tmp.path(),
            &base,
            &["--as-of", T, "ingest", sample.to_str().unwrap()],
            None,
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (served, local, cwd) = (
            tmp.path().join("served"),
            tmp.path().join("local"),
            tmp.path().join("cwd"),
        );
        copy_store_files(&base, &served);
        copy_store_files(&base, &local);
        std::fs::create_dir(&cwd).unwrap();
        let server = Some(Server::start(&served));
        Pair {
            _tmp: tmp,
            served,
            local,
            cwd,
            server,
        }
    }

    /// Run `args` against both stores (from the clients' directory); their
    /// outputs with each store's directory (and `names`: values that
    /// differ by nature, such as request ids) replaced by placeholders.
    pub fn both(&self, args: &[&str], stdin: Option<&[u8]>, names: &[(&str, &str)]) -> (Output, Output) {
        let served = self.normal(
            run_in(&self.cwd, &self.served, args, stdin),
            &self.served,
            names,
            0,
        );
        let local = self.normal(run_in(&self.cwd, &self.local, args, stdin), &self.local, names, 1);
        (served, local)
    }

    pub fn normal(&self, mut out: Output, dir: &Path, names: &[(&str, &str)], side: usize) -> Output {
        let fix = |bytes: &[u8]| {
            let mut text = String::from_utf8_lossy(bytes).replace(dir.to_str().unwrap(), "DIR");
            for pair in names {
                let from = if side == 0 { pair.0 } else { pair.1 };
                text = text.replace(from, "NAMED");
            }
            text.into_bytes()
        };
        out.stdout = fix(&out.stdout);
        out.stderr = fix(&out.stderr);
        out
    }

    /// Run `args` against both stores and check they answer alike; the
    /// served store's output.
    pub fn same(&self, args: &[&str], stdin: Option<&[u8]>, names: &[(&str, &str)]) -> Output {
        let (served, local) = self.both(args, stdin, names);
        let show = |o: &Output| {
            format!(
                "{}\n{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        };
        assert_eq!(
            served.status.code(),
            local.status.code(),
            "{args:?}:\nserved: {}\nlocal: {}",
            show(&served),
            show(&local)
        );
        assert_eq!(
            served.stdout,
            local.stdout,
            "{args:?}: stdout\nserved: {}\nlocal: {}",
            show(&served),
            show(&local)
        );
        assert_eq!(served.stderr, local.stderr, "{args:?}: stderr");
        served
    }
}

/// A sample line under a new id.
pub fn fresh(line: &str, n: u32) -> String {
    let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["id"] = format!("00000000-0000-4000-8000-{n:012}").into();
    v.to_string()
}

pub fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
