//! Making an export's manifest when its file is built: the rows' leaf
//! indexes and batch proof in a checkpoint taken after the build, the
//! file's facts, the link to the organization's previous manifest, signed
//! with the store's key, written aside, fsynced and renamed into place
//! (`exports/<id>.manifest.json`) before the request is marked done.

use std::io::Write;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::export::error::{self, ExportError};
use crate::export::manifest::{encode_hashes, hex_sha256, FileFacts, Manifest, FORMAT, SUFFIX};
use crate::export::request::ExportRequest;
use crate::export::rows::RowLeaf;
use crate::log::segment::sync_dir;
use crate::store::Store;
use crate::time::Timestamp;

/// A written manifest, as its request records it: the next manifest of the
/// organization links to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ManifestRef {
    /// Hex SHA-256 of the manifest file.
    pub sha256: String,
    pub sequence: u64,
}

/// `exports/<id>.manifest.json`
pub(crate) fn manifest_path(dir: &Path, id: &Uuid) -> PathBuf {
    dir.join(format!("{}{SUFFIX}", id.hyphenated()))
}

/// The stored manifest of `req` (which recorded its SHA-256 as `want`):
/// `corrupt` naming it when its bytes are not those written, the read's
/// error (`NotFound` for a missing one) when it cannot be read.
pub(crate) fn read_checked(dir: &Path, req: &ExportRequest, want: &str) -> Result<Vec<u8>, ExportError> {
    let path = manifest_path(dir, &req.id);
    let bytes = std::fs::read(&path).map_err(|e| error::io(format!("read {}", path.display()), e))?;
    if hex_sha256(&bytes) != want {
        return Err(crate::Error::corrupt(
            &path,
            0,
            format!(
                "the manifest of export request {} is not the one written ({} bytes; its SHA-256 differs \
                 from the recorded one)",
                req.id,
                bytes.len()
            ),
        )
        .into());
    }
    Ok(bytes)
}

/// What the build knows about the file.
pub(crate) struct BuiltFile<'a> {
    pub rows: &'a [RowLeaf],
    pub bytes: u64,
    pub sha256: String,
}

/// Makes, signs and durably writes the manifest of `req`'s file.
pub(crate) fn write(
    store: &Store,
    dir: &Path,
    req: &ExportRequest,
    file: BuiltFile<'_>,
    completed_at: Timestamp,
    previous: Option<&ManifestRef>,
) -> Result<ManifestRef, ExportError> {
    let positions: Vec<_> = file.rows.iter().map(|r| (r.pos, r.leaf)).collect();
    let proof = store.rows_proof(&positions)?;
    let (origin, signer) = store.log_signer()?;
    let covered_from = Timestamp::from_nanos(
        req.window_start
            .as_nanos()
            .max(store.retention_from(&req.org, completed_at)?),
    );
    let mut manifest = Manifest {
        format: FORMAT.to_owned(),
        origin,
        export_id: req.id.hyphenated().to_string(),
        org: req.org.clone(),
        from: req.from.to_string(),
        to: req.to.to_string(),
        window_start: req.window_start.to_rfc3339(),
        window_end: req.window_end.to_rfc3339(),
        covered_from: covered_from.to_rfc3339(),
        completed_at: completed_at.to_rfc3339(),
        file: FileFacts {
            name: format!("{}.csv", req.id.hyphenated()),
            bytes: file.bytes,
            rows: file.rows.len() as u64,
            sha256: file.sha256,
        },
        checkpoint: proof.checkpoint.note,
        leaf_indexes: proof.leaf_indexes,
        inclusion: encode_hashes(&proof.proof),
        sequence: previous.map_or(1, |p| p.sequence + 1),
        previous_manifest_sha256: previous.map(|p| p.sha256.clone()),
        signature: String::new(),
    };
    let failed =
        |e: crate::export::manifest::ManifestError| error::io("make the manifest", std::io::Error::other(e));
    manifest.sign(&signer).map_err(failed)?;
    let bytes = manifest.to_file_bytes().map_err(failed)?;
    let path = manifest_path(dir, &req.id);
    let tmp = path.with_extension("json.tmp");
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(error::io(format!("write {}", path.display()), e));
    }
    sync_dir(dir)?;
    Ok(ManifestRef {
        sha256: hex_sha256(&bytes),
        sequence: manifest.sequence,
    })
}
