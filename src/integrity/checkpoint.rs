//! The C2SP `tlog-checkpoint` body (c2sp.org/tlog-checkpoint):
//!
//! ```text
//! <origin>\n
//! <tree size, decimal>\n
//! <root hash, standard padded base64>\n
//! [<extension line>\n ...]
//! ```
//!
//! signed as a C2SP signed note ([`super::note`]). The origin names the log
//! uniquely (`auditstore/<store id>`); the store's key carries the same name.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::hash::Hash;
use super::note::{NoteError, Signer, VerifierKey};

/// Why a checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint has no {0} line")]
    MissingLine(&'static str),
    #[error("checkpoint body must end with a newline")]
    NotTerminated,
    #[error("checkpoint origin line is empty")]
    EmptyOrigin,
    #[error("checkpoint tree size {0:?} is not a decimal number without leading zeros below 2^64")]
    BadSize(String),
    #[error("checkpoint root hash {0:?} is not the standard base64 of 32 bytes")]
    BadRootHash(String),
    #[error("checkpoint extension line {0} is empty")]
    EmptyExtension(usize),
    #[error("checkpoint origin {found:?} is not the expected {expected:?}")]
    WrongOrigin { found: String, expected: String },
    #[error(transparent)]
    Note(#[from] NoteError),
}

/// A tree head: which log, how many leaves, what root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// Optional extension lines after the root (none in ours).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    pub fn new(origin: &str, size: u64, root: Hash) -> Checkpoint {
        Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// The body text (the note text that gets signed).
    pub fn body(&self) -> String {
        let mut out = format!("{}\n{}\n{}\n", self.origin, self.size, STANDARD.encode(self.root));
        for line in &self.extensions {
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    /// Parses a body.
    pub fn parse(body: &str) -> Result<Checkpoint, CheckpointError> {
        let Some(body) = body.strip_suffix('\n') else {
            return Err(if body.is_empty() {
                CheckpointError::MissingLine("origin")
            } else {
                CheckpointError::NotTerminated
            });
        };
        let mut lines = body.split('\n');
        let origin = lines.next().ok_or(CheckpointError::MissingLine("origin"))?;
        if origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        let size = parse_size(lines.next().ok_or(CheckpointError::MissingLine("tree size"))?)?;
        let root = parse_root(lines.next().ok_or(CheckpointError::MissingLine("root hash"))?)?;
        let mut extensions = Vec::new();
        for (i, line) in lines.enumerate() {
            if line.is_empty() {
                return Err(CheckpointError::EmptyExtension(i + 1));
            }
            extensions.push(line.to_owned());
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }

    /// The signed note of this checkpoint.
    pub fn sign(&self, signer: &Signer) -> Result<String, CheckpointError> {
        Ok(signer.sign(&self.body())?)
    }

    /// Verifies a signed checkpoint with `key` and parses it; its origin
    /// must be `origin`.
    pub fn open(note: &str, key: &VerifierKey, origin: &str) -> Result<Checkpoint, CheckpointError> {
        let checkpoint = Checkpoint::parse(key.open(note)?)?;
        if checkpoint.origin != origin {
            return Err(CheckpointError::WrongOrigin {
                found: checkpoint.origin,
                expected: origin.to_owned(),
            });
        }
        Ok(checkpoint)
    }
}

fn parse_size(line: &str) -> Result<u64, CheckpointError> {
    let digits = !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit());
    let canonical = line == "0" || !line.starts_with('0');
    match line.parse::<u64>() {
        Ok(n) if digits && canonical => Ok(n),
        _ => Err(CheckpointError::BadSize(line.to_owned())),
    }
}

fn parse_root(line: &str) -> Result<Hash, CheckpointError> {
    STANDARD
        .decode(line)
        .ok()
        .and_then(|raw| Hash::try_from(raw.as_slice()).ok())
        .ok_or_else(|| CheckpointError::BadRootHash(line.to_owned()))
}
