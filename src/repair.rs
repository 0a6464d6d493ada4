//! `repair`: the explicit way out of a refused open. Rebuilds a lost or
//! unreadable `meta.redb` from the store's own audit events (organization
//! settings from `org.settings.update`, export requests from
//! `audit_log.requested`, `.processed` and `.expired`, whose payload
//! carries the request's stored record) and checks the export files
//! present against them. Event data is never touched; the damaged
//! `meta.redb` is kept beside the new one.
//!
//! What cannot come back is said in the report: an organization whose
//! settings events have been deleted by retention (or that was never
//! changed) keeps the defaults, and requests whose events are gone are
//! not restored.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::export::own_events::{EXPIRED, PROCESSED, REQUESTED};
use crate::export::request::{self, ExportRequest, Registry};
use crate::export::{builder, ExportError};
use crate::meta::META_FILE;
use crate::org::{self, OrgSettings, Plan, SETTINGS_UPDATE};
use crate::store::{Options, Store};
use crate::time::Timestamp;

/// What `repair` did, per organization.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RepairReport {
    /// Whether the metadata was rebuilt (false: it was usable, nothing done).
    pub repaired: bool,
    /// Where the unusable `meta.redb` was kept.
    pub kept_damaged: Option<PathBuf>,
    /// Own events read.
    pub events_read: u64,
    pub orgs: Vec<OrgRepair>,
    /// Export files present whose request could not be rebuilt (left in place).
    pub files_without_request: Vec<PathBuf>,
    /// Restored successful requests with data whose file is gone.
    pub requests_without_file: Vec<String>,
}

/// One organization's part of a repair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrgRepair {
    pub org: String,
    pub plan: Plan,
    pub retention_days: u32,
    /// `true`: restored from the `org.settings.update` event at `settings_from`;
    /// `false`: left at the defaults (no such event is stored).
    pub settings_restored: bool,
    pub settings_from: Option<Timestamp>,
    pub export_requests_restored: u64,
}

fn is_metadata_damage(e: &Error) -> bool {
    let named = |p: &Path| p.file_name().is_some_and(|n| n == META_FILE);
    match e {
        Error::Corrupt { path, .. } | Error::UnsupportedVersion { path, .. } => named(path),
        _ => false,
    }
}

/// `{"plan", "retention_days"}` of a settings event's payload.
fn settings_in(v: &serde_json::Value) -> Option<(Plan, u32)> {
    let plan = v["plan"].as_str()?.parse::<Plan>().ok()?;
    let days = u32::try_from(v["retention_days"].as_u64()?).ok()?;
    Some((plan, days))
}

fn rank(action: &str) -> u8 {
    match action {
        REQUESTED => 0,
        PROCESSED => 1,
        _ => 2,
    }
}

/// Rebuild the metadata of the store in `dir` if it cannot be opened
/// because of its metadata; otherwise change nothing.
pub fn repair(dir: &Path, options: Options) -> Result<RepairReport, ExportError> {
    match Store::open_with(dir, options.clone()) {
        Ok(_) => return Ok(RepairReport::default()),
        Err(e) if is_metadata_damage(&e) => {}
        Err(e) => return Err(e.into()),
    }
    let (events, event_orgs) = {
        let snapshot = Store::open_for_verify(dir, options.clone())?;
        let events = snapshot.events_with_actions(&[SETTINGS_UPDATE, REQUESTED, PROCESSED, EXPIRED])?;
        (events, snapshot.event_orgs())
    };
    let kept_damaged = Store::rebuild_metadata(dir)?;
    let store = Store::open_with(dir, options)?;
    let mut report = RepairReport {
        repaired: true,
        kept_damaged,
        events_read: events.len() as u64,
        ..Default::default()
    };
    // The latest settings event of each org, and the latest state of each request.
    let mut settings: BTreeMap<String, (Timestamp, Plan, u32)> = BTreeMap::new();
    let mut requests: HashMap<Uuid, (u8, Timestamp, ExportRequest)> = HashMap::new();
    let mut orgs: BTreeMap<String, u64> = BTreeMap::new();
    for (org, event) in &events {
        let payload: serde_json::Value = serde_json::from_str(event.payload_json()).unwrap_or_default();
        let at = event.occurred_at();
        if event.action() == SETTINGS_UPDATE {
            if let (Some(old), Some((plan, days))) =
                (settings_in(&payload["old"]), settings_in(&payload["new"]))
            {
                // Only the store's own event (its id derived from exactly this
                // change), not a sender's event that borrows the action name.
                let actor: serde_json::Value = serde_json::from_str(event.actor_json()).unwrap_or_default();
                let actor = crate::store::own_events::Actor {
                    id: actor["id"].as_str().unwrap_or(""),
                    kind: actor["type"].as_str().unwrap_or(""),
                };
                let own = org::settings_update_event(org, old, (plan, days), actor, at)
                    .is_ok_and(|e| e.id() == event.id());
                if own && settings.get(org).is_none_or(|(t, _, _)| *t <= at) {
                    settings.insert(org.clone(), (at, plan, days));
                }
            }
            continue;
        }
        let record = timestamps_as_numbers(&payload["record"]);
        let Some(id) = record["id"].as_str() else { continue };
        let Ok(req) = request::decode(id, &record.to_string()) else {
            continue;
        };
        let own_id =
            crate::store::own_events::own_event_id(&[event.action(), &req.id.hyphenated().to_string()]);
        if req.org != *org || own_id != event.id() {
            continue;
        }
        let key = (rank(event.action()), at);
        if requests.get(&req.id).is_none_or(|(r, t, _)| (*r, *t) <= key) {
            requests.insert(req.id, (key.0, key.1, req));
        }
    }
    // Every organization with events is reported: restored, or left at
    // the defaults.
    for org in settings.keys().chain(event_orgs.iter()) {
        orgs.entry(org.clone()).or_insert(0);
    }
    let restored: Vec<OrgSettings> = settings
        .iter()
        .map(|(org, (_, plan, days))| OrgSettings {
            org: org.clone(),
            plan: *plan,
            retention_days: *days,
        })
        .collect();
    org::put_all(store.meta(), &restored)?;
    let requests: Vec<ExportRequest> = requests.into_values().map(|(_, _, req)| req).collect();
    Registry::new(store.meta()).restore(&requests)?;
    let exports_dir = store.dir().join(builder::EXPORTS_DIR);
    for req in &requests {
        *orgs.entry(req.org.clone()).or_insert(0) += 1;
        if req.download_available() && !builder::final_path(&exports_dir, &req.id).exists() {
            report.requests_without_file.push(req.id.to_string());
        }
    }
    let restored_ids: std::collections::HashSet<Uuid> = requests.iter().map(|r| r.id).collect();
    report.files_without_request = builder::finished_files(&exports_dir)?
        .into_iter()
        .filter(|(id, _)| !restored_ids.contains(id))
        .map(|(_, path)| path)
        .collect();
    for (org, restored) in orgs {
        let found = settings.get(&org);
        let current = store.org_settings(&org)?;
        report.orgs.push(OrgRepair {
            org,
            plan: current.plan,
            retention_days: current.retention_days,
            settings_restored: found.is_some(),
            settings_from: found.map(|(t, _, _)| *t),
            export_requests_restored: restored,
        });
    }
    Ok(report)
}

/// A request record as its own event carries it, with the nanosecond
/// timestamps that own events write as strings (a double cannot hold them)
/// made numbers again, as the registry stores them.
fn timestamps_as_numbers(record: &serde_json::Value) -> serde_json::Value {
    let mut record = record.clone();
    if let Some(map) = record.as_object_mut() {
        for key in [
            "window_start",
            "window_end",
            "created_at",
            "completed_at",
            "expires_at",
        ] {
            if let Some(n) = map
                .get(key)
                .and_then(|v| v.as_str())
                .and_then(|s| s.parse::<i64>().ok())
            {
                map.insert(key.to_owned(), serde_json::Value::from(n));
            }
        }
    }
    record
}
