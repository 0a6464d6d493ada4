//! The `signing.key` file: the store's Ed25519 signing key.
//!
//! Its content is one line, Go's `golang.org/x/mod/sumdb/note` signer key
//! text and a newline (docs/format.md, "Signing key"):
//! `PRIVATE+KEY+<name>+<key id, 8 hex>+<base64(0x01 || 32-byte seed)>\n`.
//! The file is created with mode 0600 at `open` (never widened then
//! narrowed), and a key file that group or others may read is refused: a
//! key others could read signs nothing anyone should trust.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::note::{NoteError, Signer};

/// The file name of the key in the data directory.
pub const KEY_FILE: &str = "signing.key";
/// Longer than any key line, so a wrong file is not read whole.
const MAX_KEY_FILE: u64 = 1024;

/// Why the key file could not be created or loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{context} {}: {source}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {} already exists; refusing to replace a signing key", path.display())]
    Exists { path: PathBuf },
    #[error("key file {} has mode {mode:04o}: group or others may access it; run `chmod 600` on it (and consider the key exposed)", path.display())]
    Exposed { path: PathBuf, mode: u32 },
    #[error("key file {} is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error("key file {} is larger than {MAX_KEY_FILE} bytes: not a key file", path.display())]
    TooLarge { path: PathBuf },
    #[error("key file {} is malformed: {reason}", path.display())]
    Malformed {
        path: PathBuf,
        #[source]
        reason: NoteError,
    },
    #[error("key file {} does not end with exactly one newline", path.display())]
    NotOneLine { path: PathBuf },
    #[error("no randomness for a new key: {0}")]
    Random(String),
}

fn io(context: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> KeyError {
    let path = path.to_owned();
    move |source| KeyError::Io {
        context,
        path,
        source,
    }
}

/// Creates a new random key named `name` at `path` (refusing to replace
/// one) and returns its signer.
pub fn create(path: &Path, name: &str) -> Result<Signer, KeyError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
    let signer = Signer::from_seed(name, &seed).map_err(|reason| KeyError::Malformed {
        path: path.to_owned(),
        reason,
    })?;
    seed.fill(0);
    write(path, &signer)?;
    Ok(signer)
}

/// Writes `signer` to a new key file at `path`: to `<path>.tmp` created
/// with mode 0600, synced, then linked to `path` (which fails if a key is
/// already there, unlike a rename), and the directory synced.
pub fn write(path: &Path, signer: &Signer) -> Result<(), KeyError> {
    if path.exists() {
        return Err(KeyError::Exists {
            path: path.to_owned(),
        });
    }
    let tmp = tmp_path(path);
    // A leftover from a crash while creating: never a key in use.
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io("creating key file", &tmp))?;
    let text = format!("{}\n", signer.to_private_text());
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io("writing key file", &tmp));
    drop(file);
    let linked = written.and_then(|()| match fs::hard_link(&tmp, path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(KeyError::Exists {
            path: path.to_owned(),
        }),
        other => other.map_err(io("linking key file", path)),
    });
    let _ = fs::remove_file(&tmp);
    linked?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing directory of", path))?;
    }
    Ok(())
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Loads the key at `path`, refusing a file group or others may access.
pub fn load(path: &Path) -> Result<Signer, KeyError> {
    let file = File::open(path).map_err(io("opening key file", path))?;
    // The permissions of the file opened, not of whatever the path names
    // a moment later.
    let meta = file
        .metadata()
        .map_err(io("reading metadata of key file", path))?;
    if !meta.is_file() {
        return Err(KeyError::NotAFile {
            path: path.to_owned(),
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Exposed {
            path: path.to_owned(),
            mode,
        });
    }
    if meta.len() > MAX_KEY_FILE {
        return Err(KeyError::TooLarge {
            path: path.to_owned(),
        });
    }
    let mut text = String::new();
    file.take(MAX_KEY_FILE)
        .read_to_string(&mut text)
        .map_err(io("reading key file", path))?;
    let line = text
        .strip_suffix('\n')
        .filter(|l| !l.contains('\n'))
        .ok_or_else(|| KeyError::NotOneLine {
            path: path.to_owned(),
        })?;
    Signer::parse(line).map_err(|reason| KeyError::Malformed {
        path: path.to_owned(),
        reason,
    })
}
