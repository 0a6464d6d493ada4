//! What each outcome must be: the contract, per file kind, damage and
//! command.

use super::*;

/// Whether redb itself finds a (damaged) `meta.redb` intact: it opens with
/// the integrity check on (every page of the committed trees has its
/// checksum verified), on a copy, and the check passes without repair.
/// Used only to tell damage that touches no live byte of the database
/// (slack at the end of a page, a freed page) from damage that does.
pub fn redb_intact(bytes: &[u8]) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.redb");
    std::fs::write(&path, bytes).unwrap();
    std::panic::catch_unwind(|| {
        let mut builder = redb::Builder::new();
        builder.set_check_integrity_on_open(true);
        let Ok(mut db) = builder.open(&path) else {
            return false;
        };
        matches!(db.check_integrity(), Ok(true))
    })
    .unwrap_or(false)
}

/// `meta.redb` gone or empty while segments exist: refused by every command
/// with `corrupt` naming `meta.redb`, never replaced by defaults.
pub fn meta_lost(kind: Kind, damage: Damage) -> bool {
    kind == Kind::Meta && matches!(damage, Damage::Delete | Damage::TruncZero)
}

/// Damages `verify` may accept (exit 0). Everything else is damage that it
/// must report (exit 1, `corrupt`). `redb_intact`: redb's own integrity
/// check finds nothing wrong with the damaged `meta.redb` ([`redb_intact`]).
pub fn verify_may_pass(kind: Kind, damage: Damage, redb_intact: bool) -> bool {
    match (kind, damage) {
        // The bytes changed are none that redb reads: the unused tail of a
        // page (filled with 0xFF) or a page freed by copy-on-write. Only
        // redb can tell; its check verifies the checksum of every page of
        // the committed trees. The other commands must still give the
        // pristine answers.
        (Kind::Meta, _) if redb_intact && !meta_lost(kind, damage) => true,
        // A cache, missing after any unclean shutdown; ignored and rebuilt
        // (format.md, "De-duplication checkpoint").
        (Kind::Dedup, Damage::Delete) => true,
        // A sealed segment's missing `.idx` is what a crash between a roll
        // and its seal leaves; format.md (Recovery step 3) says it is not a
        // problem. A damaged one is.
        (Kind::Index, Damage::Delete) => true,
        // An empty lock file; it holds nothing.
        (Kind::Lock, Damage::Delete) => true,
        // Removing a `.cut` file is how an operator clears what `verify`
        // reports about it (format.md, quarantine/).
        (Kind::Quarantine, Damage::Delete) => true,
        // Nothing is left to report: the segment is as a crash while
        // creating it (or right after sealing the one before) leaves it
        // ([`recovered_like_a_crash`]).
        (Kind::ActiveSegment, Damage::Delete | Damage::TruncZero) => true,
        // The tiles are a cache of the log: without `tree/partial` there
        // are none to check (an open rebuilds them).
        (Kind::Tiles, Damage::Delete) => true,
        _ => false,
    }
}

/// Damage to the active segment is what recovery after a crash handles
/// (format.md, Recovery step 4): an open for writing cuts a damaged tail
/// (from the bytes alone a bit flipped in the last record, garbage after
/// it, or a cut short segment cannot be told from an append whose write a
/// crash interrupted) and salvages the records after damage inside it
/// (losing only the damaged record); a segment cut to nothing or deleted
/// is what a crash while creating it, or right after sealing the previous
/// one, leaves. So the commands that open the store may answer from the
/// recovered store (fewer events, `get` of a lost one `not_found`); what
/// detects that this was not a crash is the checkpoints of the
/// tamper-evidence work. `verify`, which repairs nothing, must still report
/// everything an open would cut or salvage.
pub fn recovered_like_a_crash(kind: Kind, cmd: Cmd) -> bool {
    kind == Kind::ActiveSegment && cmd != Cmd::Verify
}

/// Damages every command except `verify` must get through (exit 0, with the
/// pristine answer): the missing files a crash leaves, which an open handles
/// (format.md). A refusal there would make every crash fatal.
pub fn must_open(kind: Kind, damage: Damage) -> bool {
    damage == Damage::Delete && matches!(kind, Kind::Dedup | Kind::Index | Kind::Lock)
}

/// The error codes that are honest for a damage.
/// - `corrupt` always (with the file named; checked separately).
/// - `io` only when the file is gone: an OS-level "not found" is an I/O
///   error; for damaged *content* (cut, extended, flipped, zeroed) `io`
///   (e.g. "failed to fill whole buffer") hides the damage behind what
///   looks like a disk problem, so it is reported. Not for a lost
///   `meta.redb`, which must be `corrupt`.
/// - No allowance for `not_found` (`get`, `export download`): the event and
///   the request exist in the pristine store, so if the damaged file is
///   irrelevant to them the answer must be the pristine one (exit 0), and
///   if it is relevant, "not found" hides data loss behind an ordinary
///   answer; `corrupt` is the honest code. Likewise `expired`, `no_data`,
///   `not_ready`, `failed`, `locked`, ...: none is true of the damaged copy.
pub fn honest_codes(kind: Kind, damage: Damage) -> &'static [&'static str] {
    if damage == Damage::Delete && !meta_lost(kind, damage) {
        &["corrupt", "io"]
    } else {
        &["corrupt"]
    }
}

/// The part of a successful output that must equal the pristine one: all
/// of it, except for a `verify` that passes (only on the allow-list), where
/// the number of index files checked and their bytes differ when an `.idx`
/// or `dedup.fp` is gone; the segments and records checked must match (a
/// failing `verify` has its counts inside the error object).
pub fn comparable(cmd: Cmd, stdout: &[u8]) -> Vec<u8> {
    if cmd != Cmd::Verify {
        return stdout.to_vec();
    }
    let Ok(v) = serde_json::from_slice::<Value>(stdout) else {
        return stdout.to_vec();
    };
    let src = v.get("error").unwrap_or(&v);
    let counts: Vec<Value> = ["segments", "records"]
        .iter()
        .map(|k| src.get(*k).cloned().unwrap_or(Value::Null))
        .collect();
    serde_json::to_vec(&counts).unwrap()
}

pub struct Pristine {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
}

pub struct Job<'a> {
    pub variant: &'a Variant,
    /// Relative to the data directory; `None`: the pristine store itself.
    pub file: Option<PathBuf>,
    pub kind: Kind,
    pub damage: Option<Damage>,
    pub cmd: Cmd,
    /// For `meta.redb` damage: whether redb finds the damaged file intact.
    pub redb_intact: bool,
}

pub struct Variant {
    pub name: &'static str,
    pub dir: PathBuf,
    pub pristine: BTreeMap<Cmd, Pristine>,
}

pub struct Violation {
    pub variant: &'static str,
    pub file: String,
    pub kind: Kind,
    pub damage: &'static str,
    pub cmd: Cmd,
    pub status: String,
    pub reason: String,
    pub stdout: String,
    pub stderr: String,
}

pub fn head(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
    s.replace('\n', "\\n")
}

/// Every rule a job's outcome breaks (empty: none).
pub fn check(job: &Job<'_>, out: &Outcome, verify_diff: &[String]) -> Vec<String> {
    let mut why = Vec::new();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.timed_out {
        why.push(format!("hung: killed after {TIMEOUT:?}"));
    } else if let Some(sig) = out.signal {
        why.push(format!("killed by signal {sig}"));
    }
    if out.code == Some(101) {
        why.push("exit 101 (a panic)".into());
    }
    if stdout.contains("panicked") || stderr.contains("panicked") {
        why.push("\"panicked\" in the output".into());
    }
    if let Some(c) = out.code.filter(|c| *c != 0 && *c != 1 && *c != 101) {
        why.push(format!("exit status {c} (only 0 or 1 allowed)"));
    }
    for d in verify_diff {
        why.push(format!("verify changed the data directory: {d}"));
    }
    let file_name = job
        .file
        .as_ref()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned());
    let lost = job.damage.is_some_and(|d| meta_lost(job.kind, d));
    let pristine = &job.variant.pristine[&job.cmd];
    match out.code {
        Some(0) => {
            if lost {
                why.push(
                    "exit 0 with meta.redb missing or empty: must be refused (corrupt naming meta.redb)"
                        .into(),
                );
            }
            if job.cmd == Cmd::Verify {
                let allowed = match job.damage {
                    None => pristine.code == Some(0),
                    Some(d) => verify_may_pass(job.kind, d, job.redb_intact),
                };
                if !allowed {
                    why.push("verify passed (exit 0) on a damage it must report".into());
                }
            }
            let want = comparable(job.cmd, &pristine.stdout);
            let got = comparable(job.cmd, &out.stdout);
            let recovered = job.damage.is_some() && recovered_like_a_crash(job.kind, job.cmd);
            let verify_of_nothing_left = job.cmd == Cmd::Verify
                && job.kind == Kind::ActiveSegment
                && matches!(job.damage, Some(Damage::Delete | Damage::TruncZero));
            if !lost && !recovered && !verify_of_nothing_left && want != got {
                why.push(format!(
                    "exit 0 with an answer different from the pristine store's ({} bytes, pristine {} bytes; pristine starts {})",
                    out.stdout.len(),
                    pristine.stdout.len(),
                    head(&pristine.stdout[..pristine.stdout.len().min(120)])
                ));
            }
        }
        Some(1) => {
            if let Some(d) = job
                .damage
                .filter(|d| must_open(job.kind, *d) && job.cmd != Cmd::Verify)
            {
                why.push(format!(
                    "refused a store with a {} {:?} (a crash leaves that; open must handle it)",
                    d.name(),
                    job.kind
                ));
            }
            let parsed: Option<Value> = serde_json::from_str(stdout.trim())
                .ok()
                .filter(|_| stdout.trim().lines().count() == 1);
            let err = parsed.as_ref().and_then(|v| v.get("error")).filter(|e| {
                e.get("code").is_some_and(Value::is_string) && e.get("message").is_some_and(Value::is_string)
            });
            match err {
                None => why.push(
                    "exit 1 without exactly one {\"error\": {\"code\", \"message\"}} object on stdout".into(),
                ),
                Some(e) => {
                    let code = e["code"].as_str().unwrap();
                    let honest: &[&str] = match job.damage {
                        // A `get` of an event the recovery cut.
                        Some(_) if recovered_like_a_crash(job.kind, job.cmd) && job.cmd == Cmd::Get => {
                            &["corrupt", "io", "not_found"]
                        }
                        Some(d) => honest_codes(job.kind, d),
                        None => &["corrupt"], // the pristine quarantined store's verify
                    };
                    if !honest.contains(&code) {
                        why.push(format!(
                            "error code {code:?} (honest for this damage: {honest:?})"
                        ));
                    }
                    if lost && code != "corrupt" {
                        why.push("meta.redb missing or empty must be refused with corrupt".into());
                    }
                    if code == "corrupt" {
                        if let Some(name) = &file_name {
                            if !e.to_string().contains(name.as_str()) {
                                why.push(format!("corrupt error does not name {name}"));
                            }
                        }
                    }
                }
            }
        }
        _ => {}
    }
    why
}
