//! The files of a data directory, the damages done to them, and the
//! commands run on each damaged copy.

use super::*;

/// What a file of the data directory is, from its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// The highest-numbered `.log`, without an `.idx`.
    ActiveSegment,
    SealedSegment,
    Index,
    Dedup,
    Meta,
    Lock,
    ExportCsv,
    /// `exports/<id>.manifest.json`: the signed manifest of an export.
    ExportManifest,
    Quarantine,
    /// The tamper-evidence tree: `checkpoints`, `signing.key`, `tree/*`.
    Checkpoints,
    SigningKey,
    Tiles,
    /// Any other file (e.g. a descriptor added after this test was written).
    Other,
    /// No file: the pristine store itself.
    Pristine,
}

pub fn classify(rel: &Path, active: Option<&str>) -> Kind {
    let name = rel.file_name().unwrap().to_string_lossy().into_owned();
    let parent = rel
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    match (parent.as_str(), name.as_str()) {
        ("", "LOCK") => Kind::Lock,
        ("", "meta.redb") => Kind::Meta,
        ("", "dedup.fp") => Kind::Dedup,
        ("", n) if n.ends_with(".log") && Some(n) == active => Kind::ActiveSegment,
        ("", n) if n.ends_with(".log") => Kind::SealedSegment,
        ("", n) if n.ends_with(".idx") => Kind::Index,
        ("exports", n) if n.ends_with(".csv") => Kind::ExportCsv,
        ("exports", n) if n.ends_with(".manifest.json") => Kind::ExportManifest,
        ("quarantine", _) => Kind::Quarantine,
        ("", "checkpoints") => Kind::Checkpoints,
        ("", "signing.key") => Kind::SigningKey,
        ("tree", _) => Kind::Tiles,
        _ => Kind::Other,
    }
}

/// The active segment's file name: the highest-numbered `.log`, unless it
/// has an `.idx` (then it is sealed and there is none).
pub fn active_segment(dir: &Path) -> Option<String> {
    let mut logs: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 20 && n.ends_with(".log") && n[..16].bytes().all(|b| b.is_ascii_digit()))
        .collect();
    logs.sort();
    let last = logs.pop()?;
    let idx = format!("{}.idx", &last[..16]);
    (!dir.join(idx).exists()).then_some(last)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pos {
    Start,
    Middle,
    End,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Damage {
    /// Cut to half its length.
    TruncHalf,
    /// Cut to 0 bytes.
    TruncZero,
    /// 37 bytes of (non-zero) garbage appended.
    Extend,
    /// One bit flipped at the first byte, in the middle or at the end
    /// (see [`live_byte`]).
    Flip(Pos),
    /// 64 bytes zeroed in the middle (around [`live_byte`]).
    ZeroRange,
    Delete,
}

impl Damage {
    pub const ALL: [Damage; 8] = [
        Damage::TruncHalf,
        Damage::TruncZero,
        Damage::Extend,
        Damage::Flip(Pos::Start),
        Damage::Flip(Pos::Middle),
        Damage::Flip(Pos::End),
        Damage::ZeroRange,
        Damage::Delete,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Damage::TruncHalf => "truncated-half",
            Damage::TruncZero => "truncated-0",
            Damage::Extend => "extended-37",
            Damage::Flip(Pos::Start) => "bitflip-start",
            Damage::Flip(Pos::Middle) => "bitflip-middle",
            Damage::Flip(Pos::End) => "bitflip-end",
            Damage::ZeroRange => "zeroed-64",
            Damage::Delete => "deleted",
        }
    }

    /// The damaged bytes of a file (`None`: the file is deleted).
    pub fn apply_to(self, bytes: &[u8]) -> Option<Vec<u8>> {
        let mut b = bytes.to_vec();
        let len = b.len();
        match self {
            Damage::TruncHalf => b.truncate(len / 2),
            Damage::TruncZero => b.clear(),
            Damage::Extend => {
                // A fixed xorshift stream, never a zero byte (zeros after the
                // data are free space, not garbage).
                let mut x: u32 = 0x9e37_79b9;
                b.extend((0..37).map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    (x as u8) | 1
                }));
            }
            Damage::Flip(pos) if len > 0 => {
                let at = match pos {
                    Pos::Start => 0,
                    Pos::Middle => live_byte(bytes, len / 2),
                    Pos::End => live_byte(bytes, len - 1),
                };
                b[at] ^= 0x04;
            }
            Damage::Flip(_) => {}
            Damage::ZeroRange => {
                let start = live_byte(bytes, len / 2).saturating_sub(32);
                let end = (start + 64).min(len);
                b[start..end].fill(0);
            }
            Damage::Delete => return None,
        }
        Some(b)
    }
}

/// Where a flip or a zeroed range in the middle or at the end aims: the
/// nearest byte at or before `at` that is neither 0x00 nor 0xFF. Runs of
/// those are typically padding or slack (redb fills the unused tail of each
/// page with 0xFF, and neither its checksums nor a reader look there), where
/// damage is harmless and a passing `verify` would prove nothing.
pub fn live_byte(bytes: &[u8], at: usize) -> usize {
    (0..=at)
        .rev()
        .find(|&i| bytes[i] != 0 && bytes[i] != 0xff)
        .unwrap_or(at)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cmd {
    Stats,
    Query,
    Get,
    Verify,
    OrgShow,
    ExportList,
    Download,
    /// Opens for writing: one new valid event.
    Ingest,
    /// Opens for writing: changes `meta.redb`.
    OrgSet,
}

impl Cmd {
    pub const ALL: [Cmd; 9] = [
        Cmd::Stats,
        Cmd::Query,
        Cmd::Get,
        Cmd::Verify,
        Cmd::OrgShow,
        Cmd::ExportList,
        Cmd::Download,
        Cmd::Ingest,
        Cmd::OrgSet,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Cmd::Stats => "stats",
            Cmd::Query => "query",
            Cmd::Get => "get",
            Cmd::Verify => "verify",
            Cmd::OrgShow => "org show",
            Cmd::ExportList => "export list",
            Cmd::Download => "export download",
            Cmd::Ingest => "ingest",
            Cmd::OrgSet => "org set",
        }
    }
}

/// What the commands need to know about the pristine store.
pub struct Fixture {
    /// An event of org-01 within its retention as of `AS_OF`.
    pub get_id: String,
    /// The processed export request of org-01.
    pub request_id: String,
    /// One valid JSON line for `ingest`.
    pub new_event: String,
}

impl Fixture {
    pub fn query_args() -> [&'static str; 7] {
        [
            "query",
            "--org",
            "org-01",
            "--from",
            "2026-01-01",
            "--to",
            "2027-01-01",
        ]
    }

    pub fn args(&self, cmd: Cmd) -> Vec<&str> {
        match cmd {
            Cmd::Stats => vec!["stats"],
            Cmd::Query => Fixture::query_args().to_vec(),
            Cmd::Get => vec!["get", &self.get_id],
            Cmd::Verify => vec!["verify"],
            Cmd::OrgShow => vec!["org", "show", "org-01"],
            Cmd::ExportList => vec!["export", "list", "--org", "org-01"],
            Cmd::Download => vec!["export", "download", &self.request_id, "--out", "-"],
            Cmd::Ingest => vec!["ingest", "-"],
            Cmd::OrgSet => vec!["org", "set", "org-02", "--retention-days", "90"],
        }
    }

    pub fn stdin(&self, cmd: Cmd) -> &[u8] {
        match cmd {
            Cmd::Ingest => self.new_event.as_bytes(),
            _ => b"",
        }
    }
}
