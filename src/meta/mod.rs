//! The store's metadata: `meta.redb` (organization settings, export
//! requests, the outbox of the store's own audit events) and the
//! descriptor `store.id` that lets the store know it has metadata.
//!
//! Invariants:
//! - Every write transaction goes through [`Meta::write`], which bumps the
//!   generation recorded inside `meta.redb` (table `store`) and then
//!   records it in `store.id`. At open, a `meta.redb` whose generation is
//!   older than the descriptor's, of another store, missing or emptied
//!   while the store holds data, is `Corrupt`: metadata is never replaced
//!   by defaults.
//! - A `meta.redb` is opened with redb's integrity check; a panic inside
//!   redb becomes `Corrupt` naming `meta.redb`, and this `Meta` refuses
//!   every later call (it is not used further in the process).
//! - A read-only [`Meta::snapshot`] reads a stable copy of the file's bytes
//!   into memory and never writes to the store directory.

mod descriptor;
mod guard;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use redb::backends::InMemoryBackend;
use redb::{
    ReadTransaction, ReadableDatabase, ReadableTable, StorageBackend, TableDefinition, WriteTransaction,
};

pub use descriptor::{Descriptor, DESCRIPTOR_FILE};

use crate::error::{Error, IoContext, Result};
use crate::io::Io;

/// The metadata database's file name in the store directory.
pub const META_FILE: &str = "meta.redb";
const IDENTITY: TableDefinition<&str, &[u8]> = TableDefinition::new("store");
const ID_KEY: &str = "store_id";
const GENERATION_KEY: &str = "generation";
/// Attempts at reading a `meta.redb` that another process may be writing
/// until two reads in a row agree.
const STABLE_READ_ATTEMPTS: usize = 50;

/// The store's metadata database.
pub struct Meta {
    db: redb::Database,
    dir: PathBuf,
    path: PathBuf,
    io: Arc<dyn Io>,
    /// Opened for writing (the caller holds the store's lock); otherwise a
    /// read-only snapshot.
    writable: bool,
    /// The bytes a snapshot was read from.
    snapshot: Option<Vec<u8>>,
    /// The store's identity and the generation of the last committed
    /// write; held for the whole of each write transaction.
    identity: Mutex<Descriptor>,
    broken: OnceLock<String>,
}

impl std::fmt::Debug for Meta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meta")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why a store that holds data has no usable `meta.redb`.
fn missing(path: &Path, len: Option<u64>, desc: Option<&Descriptor>) -> Error {
    let what = match len {
        None => "is missing",
        Some(_) => "is empty",
    };
    let known = match desc {
        Some(d) => format!(
            "store.id records metadata generation {} of store {}",
            d.generation,
            d.id_text()
        ),
        None => "the directory holds event data".to_string(),
    };
    Error::corrupt(
        path,
        0,
        format!(
            "the metadata database {what} but {known}: it is not recreated with defaults (that would \
             widen retention and drop export history); restore it from a backup or rebuild it with \
             `auditstore repair`"
        ),
    )
}

fn open_error(path: &Path, e: redb::DatabaseError) -> Error {
    match e {
        redb::DatabaseError::UpgradeRequired(v) => Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found: v as u32,
            supported: 3,
        },
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if io.kind() != std::io::ErrorKind::InvalidData =>
        {
            Error::io(format!("open {}", path.display()), io)
        }
        e => Error::corrupt(path, 0, format!("metadata database: {e}")),
    }
}

impl Meta {
    /// Open the metadata of the store in `dir` for writing (the caller holds
    /// the store's lock). `holds_data`: the directory holds segments or
    /// export files, so a missing `meta.redb` is damage, not a new store.
    /// A new store gets the id `new_id`, or a random one.
    pub(crate) fn open(
        dir: &Path,
        io: Arc<dyn Io>,
        holds_data: bool,
        new_id: Option<[u8; 16]>,
    ) -> Result<Meta> {
        let path = dir.join(META_FILE);
        let desc = Descriptor::read(dir)?;
        let len = file_len(&path)?;
        if len.unwrap_or(0) == 0 {
            if desc.is_some() || holds_data {
                return Err(missing(&path, len, desc.as_ref()));
            }
            return Meta::create(dir, &path, io, new_id);
        }
        let db = guarded(&path, || {
            redb::Builder::new().set_check_integrity_on_open(true).open(&path)
        })?
        .map_err(|e| open_error(&path, e))?;
        let found = read_identity(&db, &path)?;
        check_against(&found, desc.as_ref(), &path)?;
        if desc != Some(found) {
            // New metadata generations committed before a crash (or a store
            // made before the descriptor existed): record them.
            found.write(&*io, dir)?;
        }
        Ok(Meta::new(db, dir, path, io, true, None, found))
    }

    /// Replace an unusable `meta.redb` by a new, empty one (the caller holds
    /// the store's lock): the damaged file is kept, renamed
    /// `meta.redb.damaged-<n>`, never deleted. The new database keeps the
    /// store id of a readable `store.id`, at a generation above its own.
    /// Returns the name the damaged file was kept under, if there was one.
    pub(crate) fn rebuild(dir: &Path, io: Arc<dyn Io>) -> Result<(Meta, Option<PathBuf>)> {
        let path = dir.join(META_FILE);
        let old = Descriptor::read(dir).ok().flatten();
        let kept = match file_len(&path)? {
            Some(_) => {
                let aside = (1u32..)
                    .map(|n| dir.join(format!("{META_FILE}.damaged-{n}")))
                    .find(|p| !p.exists())
                    .unwrap_or_else(|| dir.join(format!("{META_FILE}.damaged")));
                io.rename(&path, &aside)
                    .ctx(|| format!("rename {} to {}", path.display(), aside.display()))?;
                crate::log::segment::sync_dir_via(&*io, dir)?;
                Some(aside)
            }
            None => None,
        };
        let identity = Descriptor {
            store_id: old.map_or_else(|| *uuid::Uuid::new_v4().as_bytes(), |d| d.store_id),
            generation: old.map_or(1, |d| d.generation + 1),
        };
        Ok((Meta::create_as(dir, &path, io, identity)?, kept))
    }

    fn create(dir: &Path, path: &Path, io: Arc<dyn Io>, new_id: Option<[u8; 16]>) -> Result<Meta> {
        let identity = Descriptor {
            store_id: new_id.unwrap_or_else(|| *uuid::Uuid::new_v4().as_bytes()),
            generation: 1,
        };
        Meta::create_as(dir, path, io, identity)
    }

    fn create_as(dir: &Path, path: &Path, io: Arc<dyn Io>, identity: Descriptor) -> Result<Meta> {
        let db = guarded(path, || redb::Database::create(path))?.map_err(|e| open_error(path, e))?;
        let tx = db.begin_write()?;
        {
            let mut t = tx.open_table(IDENTITY)?;
            t.insert(ID_KEY, &identity.store_id[..])?;
            t.insert(GENERATION_KEY, &identity.generation.to_le_bytes()[..])?;
        }
        tx.commit()?;
        identity.write(&*io, dir)?;
        Ok(Meta::new(db, dir, path.to_path_buf(), io, true, None, identity))
    }

    /// A read-only copy of the metadata of the store in `dir`, taken from
    /// its file's bytes (stable across two reads, so that a writer in
    /// another process is not caught mid-commit) and held in memory. Never
    /// writes to `dir`.
    pub(crate) fn snapshot(dir: &Path, io: Arc<dyn Io>, holds_data: bool) -> Result<Meta> {
        let path = dir.join(META_FILE);
        let desc = Descriptor::read(dir)?;
        let bytes = read_stable(&path)?;
        let len = bytes.as_ref().map(|b| b.len() as u64);
        let empty = len.unwrap_or(0) == 0;
        if empty && (desc.is_some() || holds_data) {
            return Err(missing(&path, len, desc.as_ref()));
        }
        let backend = InMemoryBackend::new();
        if let Some(b) = bytes.as_ref().filter(|b| !b.is_empty()) {
            backend
                .set_len(b.len() as u64)
                .and_then(|()| backend.write(0, b))
                .map_err(|e| Error::Metadata(format!("load {} into memory: {e}", path.display())))?;
        }
        let db = guarded(&path, || {
            redb::Builder::new()
                .set_check_integrity_on_open(true)
                .create_with_backend(backend)
        })?
        .map_err(|e| open_error(&path, e))?;
        let identity = if empty {
            Descriptor::NONE
        } else {
            let found = read_identity(&db, &path)?;
            check_against(&found, desc.as_ref(), &path)?;
            found
        };
        Ok(Meta::new(db, dir, path, io, false, bytes, identity))
    }

    /// An empty, read-only metadata database in memory: what `verify` reads
    /// a store with against when its own `meta.redb` is unusable.
    pub(crate) fn empty(dir: &Path, io: Arc<dyn Io>) -> Result<Meta> {
        let path = dir.join(META_FILE);
        let db = redb::Builder::new()
            .create_with_backend(InMemoryBackend::new())
            .map_err(|e| open_error(&path, e))?;
        Ok(Meta::new(db, dir, path, io, false, None, Descriptor::NONE))
    }

    fn new(
        db: redb::Database,
        dir: &Path,
        path: PathBuf,
        io: Arc<dyn Io>,
        writable: bool,
        snapshot: Option<Vec<u8>>,
        identity: Descriptor,
    ) -> Meta {
        Meta {
            db,
            dir: dir.to_path_buf(),
            path,
            io,
            writable,
            snapshot,
            identity: Mutex::new(identity),
            broken: OnceLock::new(),
        }
    }

    /// The path of `meta.redb`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The store's identity and the metadata generation at open.
    pub fn identity(&self) -> Descriptor {
        *lock(&self.identity)
    }

    fn usable(&self) -> Result<()> {
        match self.broken.get() {
            Some(why) => Err(Error::corrupt(&self.path, 0, why.clone())),
            None => Ok(()),
        }
    }

    fn mark_broken(&self, panic: String) -> Error {
        let why = format!(
            "the metadata database failed an internal check ({panic}); it is not used further in this \
             process: run `auditstore verify`"
        );
        let _ = self.broken.set(why);
        Error::corrupt(&self.path, 0, self.broken.get().cloned().unwrap_or_default())
    }

    /// Run `f` in a read transaction.
    pub(crate) fn read<T, E: From<Error>>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, E>,
    ) -> Result<T, E> {
        self.usable()?;
        match guard::catch(|| {
            let tx = self.db.begin_read().map_err(Error::from)?;
            f(&tx)
        }) {
            Ok(r) => r,
            Err(panic) => Err(self.mark_broken(panic).into()),
        }
    }

    /// Run `f` in a write transaction and commit it (durably) unless `f`
    /// fails, recording the new metadata generation in `store.id`.
    pub(crate) fn write<T, E: From<Error>>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, E>,
    ) -> Result<T, E> {
        self.usable()?;
        if !self.writable {
            return Err(Error::ReadOnly(format!("{} is a read-only snapshot", self.path.display())).into());
        }
        let mut current = lock(&self.identity);
        let next = Descriptor {
            store_id: current.store_id,
            generation: current.generation + 1,
        };
        let outcome = guard::catch(|| -> Result<T, E> {
            let tx = self.db.begin_write().map_err(Error::from)?;
            let value = f(&tx)?;
            {
                let mut t = tx.open_table(IDENTITY).map_err(Error::from)?;
                t.insert(GENERATION_KEY, &next.generation.to_le_bytes()[..])
                    .map_err(Error::from)?;
            }
            tx.commit().map_err(Error::from)?;
            Ok(value)
        });
        let value = match outcome {
            Ok(r) => r?,
            Err(panic) => return Err(self.mark_broken(panic).into()),
        };
        *current = next;
        // The change is committed: a failure to record the generation only
        // leaves the descriptor behind, which the next open (or write)
        // brings up to date; it does not undo the change.
        let _ = next.write(&*self.io, &self.dir);
        Ok(value)
    }

    /// The bytes of a consistent state of `meta.redb` and the descriptor
    /// that goes with them: no write transaction commits meanwhile.
    pub fn consistent_bytes(&self) -> Result<(Vec<u8>, Descriptor)> {
        self.usable()?;
        // Holding the identity keeps write transactions out meanwhile.
        let current = lock(&self.identity);
        let bytes = match (self.writable, &self.snapshot) {
            (true, _) => std::fs::read(&self.path).ctx(|| format!("read {}", self.path.display()))?,
            (false, Some(bytes)) => bytes.clone(),
            (false, None) => Vec::new(),
        };
        Ok((bytes, *current))
    }
}

/// Run a redb call that may panic on a damaged file.
fn guarded<T>(path: &Path, f: impl FnOnce() -> T) -> Result<T> {
    guard::catch(f).map_err(|panic| {
        Error::corrupt(
            path,
            0,
            format!("the metadata database failed an internal check while opening ({panic})"),
        )
    })
}

fn file_len(path: &Path) -> Result<Option<u64>> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(m.len())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).ctx(|| format!("stat {}", path.display())),
    }
}

/// The file's bytes once two reads in a row agree (`None` if missing).
fn read_stable(path: &Path) -> Result<Option<Vec<u8>>> {
    let read = || match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).ctx(|| format!("read {}", path.display())),
    };
    let mut last = read()?;
    for _ in 0..STABLE_READ_ATTEMPTS {
        let again = read()?;
        if again == last {
            return Ok(again);
        }
        last = again;
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    Err(Error::Metadata(format!(
        "{} kept changing while being read ({STABLE_READ_ATTEMPTS} attempts)",
        path.display()
    )))
}

fn read_identity(db: &redb::Database, path: &Path) -> Result<Descriptor> {
    let bad = |reason: &str| Error::corrupt(path, 0, format!("metadata database: {reason}"));
    guarded(path, || -> Result<Descriptor> {
        let tx = db.begin_read()?;
        let table = match tx.open_table(IDENTITY) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Err(bad("it holds no store identity")),
            Err(e) => return Err(e.into()),
        };
        let id = table.get(ID_KEY)?.map(|v| v.value().to_vec());
        let generation = table.get(GENERATION_KEY)?.map(|v| v.value().to_vec());
        let (Some(id), Some(generation)) = (id, generation) else {
            return Err(bad("its store identity is incomplete"));
        };
        let store_id: [u8; 16] = id.try_into().map_err(|_| bad("its store id is not 16 bytes"))?;
        let generation: [u8; 8] = generation
            .try_into()
            .map_err(|_| bad("its generation is not 8 bytes"))?;
        Ok(Descriptor {
            store_id,
            generation: u64::from_le_bytes(generation),
        })
    })?
}

/// A `meta.redb` of another store, or older than the generation the
/// descriptor records, is refused.
fn check_against(found: &Descriptor, desc: Option<&Descriptor>, path: &Path) -> Result<()> {
    let Some(desc) = desc else { return Ok(()) };
    if found.store_id != desc.store_id {
        return Err(Error::corrupt(
            path,
            0,
            format!(
                "metadata database of another store ({}): store.id names store {}",
                found.id_text(),
                desc.id_text()
            ),
        ));
    }
    if found.generation < desc.generation {
        return Err(Error::corrupt(
            path,
            0,
            format!(
                "metadata database at generation {}, older than generation {} that store.id records: \
                 an older copy was put in place; restore the current one or run `auditstore repair`",
                found.generation, desc.generation
            ),
        ));
    }
    Ok(())
}
