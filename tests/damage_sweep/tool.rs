//! Running the admin tool, copying stores, and snapshots of a directory
//! (to prove that `verify` changes nothing).

use super::*;

pub struct Outcome {
    /// `None`: killed by a signal (or by the timeout).
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Run the tool on `dir` with `--json --as-of <as_of>`; stdout and stderr
/// go to files in `scratch` (outside the data directory), so a large output
/// cannot block the child and a hang can be timed out.
pub fn run_tool(dir: &Path, scratch: &Path, as_of: &str, args: &[&str], stdin: &[u8]) -> Outcome {
    let out_path = scratch.join("stdout");
    let err_path = scratch.join("stderr");
    let in_path = scratch.join("stdin");
    std::fs::write(&in_path, stdin).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_auditstore"))
        .env_remove("AUDITSTORE_DATA_DIR")
        .env("RUST_BACKTRACE", "0")
        .arg("--data-dir")
        .arg(dir)
        .args(["--json", "--as-of", as_of])
        .args(args)
        .stdin(Stdio::from(std::fs::File::open(&in_path).unwrap()))
        .stdout(Stdio::from(std::fs::File::create(&out_path).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&err_path).unwrap()))
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > TIMEOUT {
            timed_out = true;
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    Outcome {
        code: status.code(),
        signal: status.signal(),
        timed_out,
        stdout: std::fs::read(&out_path).unwrap(),
        stderr: std::fs::read(&err_path).unwrap(),
    }
}

/// Run the tool on a store being built; it must succeed.
pub fn setup_run(dir: &Path, as_of: &str, args: &[&str]) -> Value {
    let scratch = tempfile::tempdir().unwrap();
    let out = run_tool(dir, scratch.path(), as_of, args, b"");
    assert_eq!(
        out.code,
        Some(0),
        "setup: {args:?}: stdout {} stderr {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

// ---------------------------------------------------------------------------
// Directory copies and snapshots

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let ty = entry.file_type().unwrap();
        if ty.is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else if ty.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Every regular file under `dir`, relative to it, sorted.
pub fn regular_files(dir: &Path) -> Vec<PathBuf> {
    pub fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let ty = entry.file_type().unwrap();
            if ty.is_dir() {
                walk(root, &entry.path(), out);
            } else if ty.is_file() {
                out.push(entry.path().strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, dir, &mut v);
    v.sort();
    v
}

/// What `verify` must not change: every entry (directories too) with its
/// type, size, content checksum, inode and modification time (a rewrite
/// with the same bytes, or a replacement by rename, is a change too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub dir: bool,
    pub len: u64,
    pub crc: u32,
    pub ino: u64,
    pub mtime: (i64, i64),
}

pub fn snapshot(dir: &Path) -> BTreeMap<String, Entry> {
    pub fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Entry>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let crc = match meta.is_file() {
                true => crc32fast::hash(&std::fs::read(&path).unwrap()),
                false => 0,
            };
            out.insert(
                rel,
                Entry {
                    dir: meta.is_dir(),
                    len: if meta.is_dir() { 0 } else { meta.len() },
                    crc,
                    ino: meta.ino(),
                    mtime: if meta.is_dir() {
                        (0, 0)
                    } else {
                        (meta.mtime(), meta.mtime_nsec())
                    },
                },
            );
            if meta.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut m = BTreeMap::new();
    walk(dir, dir, &mut m);
    m
}

pub fn snapshot_diff(before: &BTreeMap<String, Entry>, after: &BTreeMap<String, Entry>) -> Vec<String> {
    let mut d = Vec::new();
    for (name, b) in before {
        match after.get(name) {
            None => d.push(format!("removed {name}")),
            Some(a) if a.dir != b.dir => d.push(format!("{name} changed type")),
            Some(a) if (a.len, a.crc) != (b.len, b.crc) => {
                d.push(format!("modified {name} ({} -> {} bytes)", b.len, a.len))
            }
            Some(a) if a.ino != b.ino => d.push(format!("replaced {name} (same bytes, new inode)")),
            Some(a) if a.mtime != b.mtime => d.push(format!("rewrote {name} (same bytes, new mtime)")),
            Some(_) => {}
        }
    }
    for name in after.keys().filter(|n| !before.contains_key(*n)) {
        d.push(format!("created {name}"));
    }
    d
}
