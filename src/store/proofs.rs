//! Checkpoints and proofs from the store (shared/spec/integrity.md):
//! [`Store::checkpoint`], [`Store::key_info`], [`Store::prove`],
//! [`Store::prove_consistency`].

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::tlog::{SignedCheckpoint, Tlog};
use super::tlog_read::event_leaf;
use super::*;
use crate::integrity::{verify_consistency, verify_inclusion, Hash};

/// The inclusion proof of one event in the latest checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    pub org: String,
    pub event: Event,
    pub leaf_index: u64,
    pub tree_size: u64,
    pub leaf_hash: Hash,
    /// RFC 9162 inclusion path, bottom up.
    pub inclusion: Vec<Hash>,
    /// The signed checkpoint the proof leads to.
    pub checkpoint: String,
}

/// A consistency proof between two tree sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    pub from_size: u64,
    pub to_size: u64,
    pub consistency: Vec<Hash>,
    /// The signed checkpoint of `to_size` when the store signed one (the
    /// newest such); else the latest, which `to_size` precedes.
    pub checkpoint: String,
}

/// The store's log identity and public key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyInfo {
    pub origin: String,
    /// `<name>+<hex key id>+<base64(0x01 || public key)>`.
    pub verifier_key: String,
}

fn b64(h: &Hash) -> String {
    STANDARD.encode(h)
}

impl InclusionProof {
    /// The `prove ID` object as one line of JSON (see the `Serialize` impl).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The `prove ID` object of integrity.md. The event is its `get` text,
/// verbatim (numbers keep their digits; a JSON value would round them).
impl serde::Serialize for InclusionProof {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        struct View<'a> {
            org: &'a str,
            event: &'a serde_json::value::RawValue,
            leaf_index: u64,
            tree_size: u64,
            leaf_hash: String,
            inclusion: Vec<String>,
            checkpoint: &'a str,
        }
        let event = serde_json::value::RawValue::from_string(self.event.to_json())
            .map_err(serde::ser::Error::custom)?;
        View {
            org: &self.org,
            event: &event,
            leaf_index: self.leaf_index,
            tree_size: self.tree_size,
            leaf_hash: b64(&self.leaf_hash),
            inclusion: self.inclusion.iter().map(b64).collect(),
            checkpoint: &self.checkpoint,
        }
        .serialize(s)
    }
}

impl ConsistencyProof {
    /// The `prove --consistency` object of integrity.md.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "from_size": self.from_size,
            "to_size": self.to_size,
            "consistency": self.consistency.iter().map(b64).collect::<Vec<_>>(),
            "checkpoint": self.checkpoint,
        })
    }
}

impl SignedCheckpoint {
    /// `{"tree_size", "root_hash", "note"}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "tree_size": self.tree_size,
            "root_hash": b64(&self.root_hash),
            "note": self.note,
        })
    }
}

impl Store {
    pub(super) fn tlog(&self) -> Result<&Tlog> {
        match &self.tlog {
            Some(t) => Ok(t),
            None if self.read_only => Err(Error::ReadOnly(
                "checkpoints and proofs need the store open for writing (ask the process that holds it)"
                    .into(),
            )),
            None => Err(Error::InvalidArgument {
                what: "integrity",
                reason: "this store was opened with the tamper-evidence tree off".into(),
            }),
        }
    }

    /// Integrates every acknowledged event into the tree and returns the
    /// latest signed checkpoint (signing a new one if the tree grew).
    pub fn checkpoint(&self) -> Result<SignedCheckpoint> {
        let t = self.tlog()?;
        self.flush()?;
        t.checkpoint_now()
    }

    /// [`Store::checkpoint`] when the store keeps a tree (`None` when not).
    pub fn checkpoint_if_kept(&self) -> Result<Option<SignedCheckpoint>> {
        match self.tlog {
            Some(_) => self.checkpoint().map(Some),
            None => Ok(None),
        }
    }

    /// The latest signed checkpoint, without integrating anything new.
    pub fn latest_checkpoint(&self) -> Result<Option<SignedCheckpoint>> {
        Ok(lock(&self.tlog()?.state).latest.clone())
    }

    /// The origin of the store's checkpoints and its verifier key.
    pub fn key_info(&self) -> Result<KeyInfo> {
        let t = self.tlog()?;
        Ok(KeyInfo {
            origin: t.origin.clone(),
            verifier_key: t.signer.verifier().to_string(),
        })
    }

    /// The inclusion proof of the event `id` in the latest checkpoint
    /// (`None` when `get` would not find it). An event newer than the
    /// latest checkpoint gets a new checkpoint first.
    pub fn prove(&self, id: uuid::Uuid) -> Result<Option<InclusionProof>> {
        let t = self.tlog()?;
        let Some((seg, offset, org, event)) = self.locate(id, self.options.clock.now())? else {
            return Ok(None);
        };
        let covered = |t: &Tlog| -> Result<Option<(u64, SignedCheckpoint)>> {
            let latest = lock(&t.state).latest.clone();
            Ok(match (t.leaf_index(seg, offset)?, latest) {
                (Some(leaf), Some(cp)) if leaf < cp.tree_size => Some((leaf, cp)),
                _ => None,
            })
        };
        let (leaf, cp) = match covered(t)? {
            Some(hit) => hit,
            None => {
                self.checkpoint()?;
                covered(t)?.ok_or_else(|| {
                    Error::corrupt(
                        segment::log_path(&self.dir, seg),
                        offset,
                        "a stored event has no leaf in the tree after a checkpoint",
                    )
                })?
            }
        };
        let leaf_hash = event_leaf(&org, &event);
        let inclusion = {
            let st = lock(&t.state);
            st.tree
                .inclusion_proof(leaf, cp.tree_size, &mut t.source(&st.firsts, st.base, &st.before))
                .map_err(|e| Error::corrupt(segment::log_path(&self.dir, seg), offset, e.to_string()))?
        };
        // Never hand out a proof that does not verify.
        verify_inclusion(&leaf_hash, leaf, cp.tree_size, &inclusion, &cp.root_hash).map_err(|e| {
            Error::corrupt(
                segment::log_path(&self.dir, seg),
                offset,
                format!("leaf {leaf}: the event does not prove into the checkpoint: {e}"),
            )
        })?;
        Ok(Some(InclusionProof {
            org,
            event,
            leaf_index: leaf,
            tree_size: cp.tree_size,
            leaf_hash,
            inclusion,
            checkpoint: cp.note,
        }))
    }

    /// The consistency proof from the tree of `from` leaves to that of `to`
    /// (default: the latest checkpoint's size).
    pub fn prove_consistency(&self, from: u64, to: Option<u64>) -> Result<ConsistencyProof> {
        let t = self.tlog()?;
        let mut cp = lock(&t.state).latest.clone();
        if cp.as_ref().is_none_or(|c| to.is_some_and(|to| to > c.tree_size)) {
            cp = Some(self.checkpoint()?);
        }
        let cp = cp.ok_or(Error::Closed)?;
        let to = to.unwrap_or(cp.tree_size);
        if from > to || to > cp.tree_size {
            return Err(Error::InvalidArgument {
                what: "consistency sizes",
                reason: format!(
                    "need OLD <= NEW <= {} (the latest checkpoint's size); got {from} and {to}",
                    cp.tree_size
                ),
            });
        }
        let st = lock(&t.state);
        let mut source = t.source(&st.firsts, st.base, &st.before);
        let consistency = st
            .tree
            .consistency_proof(from, to, &mut source)
            .map_err(|e| Error::corrupt(self.dir.join("tree"), 0, e.to_string()))?;
        if to == cp.tree_size && from > 0 {
            let old_root = st
                .tree
                .root_at(from, &mut source)
                .map_err(|e| Error::corrupt(self.dir.join("tree"), 0, e.to_string()))?;
            verify_consistency(from, to, &old_root, &cp.root_hash, &consistency)
                .map_err(|e| Error::corrupt(self.dir.join("tree"), 0, e.to_string()))?;
        }
        drop(st);
        // The checkpoint of the size proven to, when the store signed one;
        // else the latest, which `to` precedes.
        let checkpoint = if to == cp.tree_size {
            cp.note
        } else {
            self.stored_checkpoint_of_size(t, to)?.unwrap_or(cp.note)
        };
        Ok(ConsistencyProof {
            from_size: from,
            to_size: to,
            consistency,
            checkpoint,
        })
    }

    /// The newest stored checkpoint of `size` leaves, checked.
    fn stored_checkpoint_of_size(&self, t: &Tlog, size: u64) -> Result<Option<String>> {
        let path = self.dir.join(crate::integrity::log::CHECKPOINTS_FILE);
        let Some(contents) = crate::integrity::log::read(&path).map_err(super::tlog::log_err)? else {
            return Ok(None);
        };
        let verifier = t.signer.verifier();
        for e in contents.entries.iter().rev() {
            if let Ok(cp) = crate::integrity::Checkpoint::open(&e.note, &verifier, &t.origin) {
                if cp.size == size {
                    return Ok(Some(e.note.clone()));
                }
            }
        }
        Ok(None)
    }
}
