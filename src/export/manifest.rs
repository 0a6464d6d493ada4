//! Export manifests: the signed statement that an export file holds these
//! rows of the log, in the spirit of CloudTrail's digest files. The format
//! is documented byte for byte in docs/exports.md, "Manifests".
//!
//! A manifest is one JSON object (the file is its RFC 8785 form and a
//! newline). Its `signature` is a C2SP signed note, by the store's key,
//! whose text is [`FORMAT`], a newline, the hex SHA-256 of the RFC 8785 form
//! of the manifest without `signature`, and a newline. So the signature
//! covers every other field, and is checked with the same verifier key as
//! the checkpoints (a manifest note never parses as a checkpoint: its
//! second line is not a tree size).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::integrity::{jcs, Hash, NoteError, Signer, VerifierKey};

/// The manifest format, its first note line and its `format` field.
pub const FORMAT: &str = "auditstore-export-manifest/1";
/// A manifest's file name in the exports directory: `<id>.manifest.json`.
pub const SUFFIX: &str = ".manifest.json";

/// One export's manifest (field meanings: docs/exports.md, "Manifests").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    /// The store's log origin (the checkpoints' first line, the key's name).
    pub origin: String,
    pub export_id: String,
    pub org: String,
    /// The requested dates (inclusive).
    pub from: String,
    pub to: String,
    /// The padded window, `[window_start, window_end)`.
    pub window_start: String,
    pub window_end: String,
    /// The window's start after the organization's retention as of
    /// `completed_at`: rows have `covered_from <= occurred_at < window_end`.
    pub covered_from: String,
    pub completed_at: String,
    pub file: FileFacts,
    /// The signed checkpoint the rows are proven in.
    pub checkpoint: String,
    /// Each row's leaf index, in row order.
    pub leaf_indexes: Vec<u64>,
    /// The batch inclusion proof (`auditstore::integrity::batch`) of the
    /// rows' leaves, sorted by leaf index, in the checkpoint's tree: base64
    /// of the hashes back to back.
    pub inclusion: String,
    /// 1 for the organization's first manifest, then +1 each.
    pub sequence: u64,
    /// Hex SHA-256 of the organization's previous manifest file (`null` for
    /// the first).
    pub previous_manifest_sha256: Option<String>,
    pub signature: String,
}

/// The export file a manifest describes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileFacts {
    /// `<export id>.csv`, the name it is downloaded as.
    pub name: String,
    pub bytes: u64,
    pub rows: u64,
    /// Hex SHA-256 of the file's bytes.
    pub sha256: String,
}

/// Why a manifest could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not a valid {FORMAT} document: {0}")]
    Malformed(String),
    #[error("manifest signature: {0}")]
    Signature(String),
}

impl Manifest {
    /// The RFC 8785 form of the manifest without its `signature`: what the
    /// signature's note commits to.
    fn unsigned_jcs(&self) -> Result<Vec<u8>, ManifestError> {
        let mut value = serde_json::to_value(self).map_err(|e| ManifestError::Malformed(e.to_string()))?;
        if let Some(map) = value.as_object_mut() {
            map.remove("signature");
        }
        let mut out = Vec::new();
        jcs::write(&value, &mut out).map_err(ManifestError::Malformed)?;
        Ok(out)
    }

    /// The note text the signature signs.
    fn signed_text(&self) -> Result<String, ManifestError> {
        Ok(format!("{FORMAT}\n{}\n", hex_sha256(&self.unsigned_jcs()?)))
    }

    /// Signs the manifest (sets `signature`).
    pub fn sign(&mut self, signer: &Signer) -> Result<(), ManifestError> {
        let text = self.signed_text()?;
        self.signature = signer
            .sign(&text)
            .map_err(|e: NoteError| ManifestError::Signature(e.to_string()))?;
        Ok(())
    }

    /// Checks the signature with `key`, and that the key is the one named
    /// by the manifest's origin.
    pub fn check_signature(&self, key: &VerifierKey) -> Result<(), ManifestError> {
        if key.name() != self.origin {
            return Err(ManifestError::Signature(format!(
                "the key is {:?}'s, the manifest is {:?}'s",
                key.name(),
                self.origin
            )));
        }
        let text = key
            .open(&self.signature)
            .map_err(|e| ManifestError::Signature(e.to_string()))?;
        if text != self.signed_text()? {
            return Err(ManifestError::Signature(
                "the signature is good but signs another manifest (a field was changed)".into(),
            ));
        }
        Ok(())
    }

    /// The manifest file's bytes: RFC 8785 JSON and a newline.
    pub fn to_file_bytes(&self) -> Result<Vec<u8>, ManifestError> {
        let value = serde_json::to_value(self).map_err(|e| ManifestError::Malformed(e.to_string()))?;
        let mut out = Vec::new();
        jcs::write(&value, &mut out).map_err(ManifestError::Malformed)?;
        out.push(b'\n');
        Ok(out)
    }

    /// Reads a manifest file (any JSON layout; fields as documented).
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Malformed(e.to_string()))?;
        if m.format != FORMAT {
            return Err(ManifestError::Malformed(format!(
                "format {:?}; this build reads {FORMAT:?}",
                m.format
            )));
        }
        Ok(m)
    }

    /// The inclusion proof's hashes.
    pub fn inclusion_hashes(&self) -> Result<Vec<Hash>, ManifestError> {
        let bytes = STANDARD
            .decode(&self.inclusion)
            .map_err(|e| ManifestError::Malformed(format!("inclusion: {e}")))?;
        if bytes.len() % 32 != 0 {
            return Err(ManifestError::Malformed(format!(
                "inclusion: {} bytes is not a whole number of 32-byte hashes",
                bytes.len()
            )));
        }
        Ok(bytes
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect())
    }
}

/// Base64 of hashes back to back (a manifest's `inclusion`).
pub(crate) fn encode_hashes(hashes: &[Hash]) -> String {
    STANDARD.encode(hashes.concat())
}

/// Lowercase hex SHA-256.
pub fn hex_sha256(bytes: &[u8]) -> String {
    crate::hex::encode(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            format: FORMAT.into(),
            origin: "auditstore/test".into(),
            export_id: "8d5f2a3e-0b1c-4d2e-9f30-112233445566".into(),
            org: "org-01".into(),
            from: "2026-08-02".into(),
            to: "2026-08-05".into(),
            window_start: "2026-08-01T00:00:00Z".into(),
            window_end: "2026-08-07T00:00:00Z".into(),
            covered_from: "2026-08-01T00:00:00Z".into(),
            completed_at: "2026-08-10T10:30:00Z".into(),
            file: FileFacts {
                name: "x.csv".into(),
                bytes: 10,
                rows: 1,
                sha256: hex_sha256(b"x"),
            },
            checkpoint: String::new(),
            leaf_indexes: vec![3],
            inclusion: encode_hashes(&[[7u8; 32]]),
            sequence: 1,
            previous_manifest_sha256: None,
            signature: String::new(),
        }
    }

    #[test]
    fn a_signed_manifest_round_trips_and_any_change_breaks_it() {
        let signer = Signer::from_seed("auditstore/test", &[9u8; 32]).expect("signer");
        let mut m = sample();
        m.sign(&signer).expect("sign");
        let bytes = m.to_file_bytes().expect("bytes");
        assert!(bytes.ends_with(b"}\n"));
        let back = Manifest::parse(&bytes).expect("parse");
        assert_eq!(back, m);
        back.check_signature(&signer.verifier()).expect("good");
        let mut changed = back.clone();
        changed.leaf_indexes[0] = 4;
        assert!(changed.check_signature(&signer.verifier()).is_err());
        let mut changed = back.clone();
        changed.file.rows = 2;
        assert!(changed.check_signature(&signer.verifier()).is_err());
        let other = Signer::from_seed("auditstore/test", &[8u8; 32]).expect("signer");
        assert!(back.check_signature(&other.verifier()).is_err());
        let renamed = Signer::from_seed("auditstore/other", &[9u8; 32]).expect("signer");
        assert!(back.check_signature(&renamed.verifier()).is_err());
        assert_eq!(back.inclusion_hashes().expect("hashes"), vec![[7u8; 32]]);
        let unknown = String::from_utf8(bytes)
            .expect("utf8")
            .replacen('{', "{\"extra\":1,", 1);
        assert!(Manifest::parse(unknown.as_bytes()).is_err());
    }
}
