//! The store's own audit events: what its administrators do (settings
//! changes, export requests and their lifecycle, downloads), recorded in
//! the organization's own log like any other event (events.md, "The
//! store's own actions").
//!
//! Invariants:
//! - An own event's id is derived from the action it records (UUID v5 over
//!   the action's identifying parts), so recording it again, after a crash
//!   or a retry, is a duplicate, never a second event.
//! - An own event that goes with a metadata change is staged in the
//!   metadata's outbox table in the same transaction as the change, then
//!   appended (and fsynced), then removed from the outbox. An open appends
//!   whatever a crash left staged. So the change and its event are never
//!   separated: `repair` rebuilds the metadata from these events.
//! - They cost nothing on the ingest path: only administrative calls make
//!   them.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use uuid::Uuid;

use super::*;

/// Staged own events: id -> `{"org": ORG, "event": EVENT}`.
const OUTBOX: TableDefinition<&str, &str> = TableDefinition::new("own_events_outbox");
/// The namespace of own events' UUID v5 ids.
const NAMESPACE: Uuid = Uuid::from_bytes([
    0x6a, 0x1d, 0x3c, 0x52, 0x9e, 0x04, 0x4b, 0x7f, 0xa8, 0x21, 0x5d, 0x90, 0x33, 0xc6, 0xe1, 0x0b,
]);

/// Who did something, for an own event's `actor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor<'a> {
    pub id: &'a str,
    pub kind: &'a str,
}

impl<'a> Actor<'a> {
    /// A person (or service account) named by the caller.
    pub fn user(id: &'a str) -> Self {
        Actor { id, kind: "user" }
    }

    /// The store itself (scheduled processing, expiry).
    pub const SYSTEM: Actor<'static> = Actor {
        id: "auditstore",
        kind: "system",
    };
}

/// The id of the own event that records the action named by `parts`.
pub fn own_event_id(parts: &[&str]) -> Uuid {
    Uuid::new_v5(&NAMESPACE, parts.join("\u{1f}").as_bytes())
}

/// An own event of `org`: scope and the common fields set.
pub fn own_event(
    org: &str,
    action: &str,
    id: Uuid,
    at: Timestamp,
    actor: Actor<'_>,
    target: (&str, &str),
    payload: serde_json::Value,
) -> Result<Event> {
    Ok(Event::builder(id, action, at, true)
        .actor(actor.id, actor.kind, None)
        .target(target.0, target.1, None)
        .scope(org, "organization", None)
        .payload(payload)
        .build()?)
}

/// Stage `event` of `org` in the outbox, inside the transaction that makes
/// the change it records.
pub(crate) fn stage(tx: &WriteTransaction, org: &str, event: &Event) -> Result<()> {
    let event_json: serde_json::Value =
        serde_json::from_str(&event.to_json()).map_err(|e| Error::Metadata(format!("own event: {e}")))?;
    let value = serde_json::json!({"org": org, "event": event_json}).to_string();
    let mut outbox = tx.open_table(OUTBOX)?;
    let key = event.id().hyphenated().to_string();
    outbox.insert(key.as_str(), value.as_str())?;
    Ok(())
}

impl Store {
    /// Append the own events staged in the outbox (fsynced), then empty it.
    /// Idempotent: an event appended before a crash is a duplicate now.
    pub(crate) fn record_staged_events(&self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        let staged: Vec<(String, String, Event)> = self.meta.read(|tx| -> Result<_> {
            let outbox = match tx.open_table(OUTBOX) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut out = Vec::new();
            for item in outbox.iter()? {
                let (k, v) = item?;
                let bad = |why: String| {
                    Error::corrupt(
                        self.meta.path(),
                        0,
                        format!("staged own event {}: {why}", k.value()),
                    )
                };
                let value: serde_json::Value =
                    serde_json::from_str(v.value()).map_err(|e| bad(e.to_string()))?;
                let org = value["org"]
                    .as_str()
                    .ok_or_else(|| bad("no org".into()))?
                    .to_owned();
                let event = Event::from_json(&value["event"].to_string()).map_err(|e| bad(e.to_string()))?;
                out.push((k.value().to_owned(), org, event));
            }
            Ok(out)
        })?;
        if staged.is_empty() {
            return Ok(());
        }
        self.append_batch(staged.iter().map(|(_, org, e)| (org.as_str(), e)))?;
        self.flush()?;
        self.meta.write(|tx| -> Result<()> {
            let mut outbox = tx.open_table(OUTBOX)?;
            for (key, _, _) in &staged {
                outbox.remove(key.as_str())?;
            }
            Ok(())
        })
    }

    /// Record one own event that goes with no metadata change (a
    /// download, a full export, a sign-in), durably: in the log, or where
    /// [`Store::send_own_events_to`] said. Recording it again is a
    /// duplicate.
    pub fn record_own_event(&self, org: &str, event: &Event) -> Result<()> {
        if let Some(sink) = self.own_event_sink.get() {
            return sink.record(org, event);
        }
        self.append_batch([(org, event)])?;
        self.flush()
    }

    /// From now on, send the own events [`Store::record_own_event`]
    /// records to `sink` instead of the log (a replicated deployment that
    /// must carry them to every replica, which appends them there). Set
    /// once: `false` when a sink was already set.
    pub fn send_own_events_to(&self, sink: Arc<dyn OwnEventSink>) -> bool {
        self.own_event_sink.set(sink).is_ok()
    }

    /// Every stored event whose action is one of `actions`, with its
    /// organization, in log order (all of the log, not clamped by
    /// retention): what `repair` rebuilds the metadata from.
    pub fn events_with_actions(&self, actions: &[&str]) -> Result<Vec<(String, Event)>> {
        let mut found = Vec::new();
        let mut visit = |bytes: &[u8]| {
            recovery::walk(bytes, SEGMENT_HEADER_LEN, |_, v| {
                if actions.contains(&v.action) {
                    found.push((v.org.to_owned(), v.to_event()));
                }
            });
        };
        for seg in self.sealed_snapshot().iter() {
            visit(seg.log_bytes());
        }
        let (in_memory, active) = {
            let mut w = lock(&self.writer);
            self.install_sealed(&mut w);
            let in_memory: Vec<(Arc<File>, PathBuf, u64)> = w
                .sealing
                .iter()
                .map(|s| (s.file.clone(), s.path.clone(), s.len))
                .collect();
            let end = self.visible_end(&w);
            (
                in_memory,
                (
                    w.active.file.clone(),
                    w.active.path.clone(),
                    end.min(w.active.len),
                ),
            )
        };
        for (file, path, len) in in_memory.into_iter().chain([active]) {
            if len < SEGMENT_HEADER_LEN as u64 {
                continue;
            }
            let mut bytes = vec![0u8; len as usize];
            std::os::unix::fs::FileExt::read_exact_at(&*file, &mut bytes, 0)
                .ctx(|| format!("read {}", path.display()))?;
            visit(&bytes);
        }
        Ok(found)
    }

    /// Replace the unusable metadata of the store in `dir` by an empty
    /// database (see `Meta::rebuild`), under the store's lock.
    pub(crate) fn rebuild_metadata(dir: &Path) -> Result<Option<PathBuf>> {
        let _lock = take_lock(dir)?;
        let (_meta, kept) = Meta::rebuild(dir, Arc::new(RealIo))?;
        Ok(kept)
    }
}

/// Where a store's own events go instead of its log
/// ([`Store::send_own_events_to`]).
pub trait OwnEventSink: Send + Sync {
    /// Record `event` of `org` durably, or fail (nothing is recorded
    /// then): it is called on a blocking thread, never an async one.
    fn record(&self, org: &str, event: &Event) -> Result<()>;
}
