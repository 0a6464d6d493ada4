//! Organization settings (plan and retention), kept in the store's redb
//! metadata database.

use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::meta::Meta;
use crate::store::own_events::{own_event, own_event_id, stage, Actor};
use crate::time::Timestamp;

/// Days of retention an organization gets when never configured.
pub const DEFAULT_RETENTION_DAYS: u32 = 365;
/// Allowed retention, in days.
pub const RETENTION_DAYS_RANGE: std::ops::RangeInclusive<u32> = 1..=3650;

pub(crate) const ORGS: TableDefinition<&str, &str> = TableDefinition::new("orgs");
/// The own event that records a change of settings.
pub const SETTINGS_UPDATE: &str = "org.settings.update";

/// An organization's plan; decides export eligibility and limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    Server,
    Scale,
    Performance,
    Free,
}

impl Plan {
    pub const ALL: [Plan; 4] = [Plan::Server, Plan::Scale, Plan::Performance, Plan::Free];

    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Server => "server",
            Plan::Scale => "scale",
            Plan::Performance => "performance",
            Plan::Free => "free",
        }
    }
}

impl std::fmt::Display for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Plan {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Plan::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| Error::InvalidArgument {
                what: "plan",
                reason: format!("unknown plan {s:?} (expected server, scale, performance or free)"),
            })
    }
}

/// One organization's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgSettings {
    pub org: String,
    pub plan: Plan,
    pub retention_days: u32,
}

impl OrgSettings {
    /// What an organization that was never configured gets.
    pub fn default_for(org: &str) -> Self {
        OrgSettings {
            org: org.to_owned(),
            plan: Plan::Free,
            retention_days: DEFAULT_RETENTION_DAYS,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct StoredSettings {
    plan: Plan,
    retention_days: u32,
}

/// Check an organization name: 1 to 256 bytes, no control characters.
pub fn validate_org_name(org: &str) -> Result<()> {
    if org.is_empty() || org.len() > crate::codec::MAX_ORG_LEN || org.chars().any(char::is_control) {
        return Err(Error::InvalidArgument {
            what: "organization",
            reason: format!(
                "{org:?}: must be 1 to {} bytes without control characters",
                crate::codec::MAX_ORG_LEN
            ),
        });
    }
    Ok(())
}

pub(crate) fn get(meta: &Meta, org: &str) -> Result<OrgSettings> {
    meta.read(|tx| get_in(tx, org))
}

fn get_in(tx: &redb::ReadTransaction, org: &str) -> Result<OrgSettings> {
    let table = match tx.open_table(ORGS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(OrgSettings::default_for(org)),
        Err(e) => return Err(e.into()),
    };
    let found = table.get(org)?;
    let Some(v) = found else {
        return Ok(OrgSettings::default_for(org));
    };
    let s: StoredSettings = serde_json::from_str(v.value())
        .map_err(|e| Error::Metadata(format!("settings of organization {org:?}: {e}")))?;
    Ok(OrgSettings {
        org: org.to_owned(),
        plan: s.plan,
        retention_days: s.retention_days,
    })
}

/// The own event `org.settings.update` that records `actor` changing
/// `org`'s (plan, retention days) from `old` to `new` at `now`.
pub fn settings_update_event(
    org: &str,
    old: (Plan, u32),
    new: (Plan, u32),
    actor: Actor<'_>,
    now: Timestamp,
) -> Result<crate::Event> {
    let (old_days, new_days) = (old.1.to_string(), new.1.to_string());
    let nanos = now.as_nanos().to_string();
    let id = own_event_id(&[
        SETTINGS_UPDATE,
        org,
        &nanos,
        old.0.as_str(),
        &old_days,
        new.0.as_str(),
        &new_days,
    ]);
    let payload = serde_json::json!({
        "old": {"plan": old.0, "retention_days": old.1},
        "new": {"plan": new.0, "retention_days": new.1},
    });
    own_event(
        org,
        SETTINGS_UPDATE,
        id,
        now,
        actor,
        (org, "organization"),
        payload,
    )
}

/// Create or update `org`'s settings. A change is recorded as the own
/// event `org.settings.update` by `actor` at `now`, staged in the same
/// transaction (see `store::own_events`); setting what is already set
/// records nothing.
pub(crate) fn set(
    meta: &Meta,
    org: &str,
    plan: Option<Plan>,
    retention_days: Option<u32>,
    actor: Actor<'_>,
    now: Timestamp,
) -> Result<OrgSettings> {
    validate_org_name(org)?;
    if let Some(d) = retention_days {
        if !RETENTION_DAYS_RANGE.contains(&d) {
            return Err(Error::InvalidArgument {
                what: "retention days",
                reason: format!("{d} is outside 1..=3650"),
            });
        }
    }
    meta.write(|tx| {
        let mut table = tx.open_table(ORGS)?;
        let current = match table.get(org)? {
            Some(v) => serde_json::from_str::<StoredSettings>(v.value())
                .map_err(|e| Error::Metadata(format!("settings of organization {org:?}: {e}")))?,
            None => StoredSettings {
                plan: Plan::Free,
                retention_days: DEFAULT_RETENTION_DAYS,
            },
        };
        let next = StoredSettings {
            plan: plan.unwrap_or(current.plan),
            retention_days: retention_days.unwrap_or(current.retention_days),
        };
        let text = serde_json::to_string(&next).map_err(|e| Error::Metadata(e.to_string()))?;
        table.insert(org, text.as_str())?;
        if (next.plan, next.retention_days) != (current.plan, current.retention_days) {
            let event = settings_update_event(
                org,
                (current.plan, current.retention_days),
                (next.plan, next.retention_days),
                actor,
                now,
            )?;
            stage(tx, org, &event)?;
        }
        Ok(OrgSettings {
            org: org.to_owned(),
            plan: next.plan,
            retention_days: next.retention_days,
        })
    })
}

/// Store these settings as they are, in one transaction, recording no own
/// event: how `repair` puts back settings rebuilt from the store's own
/// events.
pub(crate) fn put_all(meta: &Meta, all: &[OrgSettings]) -> Result<()> {
    let mut rows = Vec::with_capacity(all.len());
    for settings in all {
        validate_org_name(&settings.org)?;
        let text = serde_json::to_string(&StoredSettings {
            plan: settings.plan,
            retention_days: settings.retention_days,
        })
        .map_err(|e| Error::Metadata(e.to_string()))?;
        rows.push((settings.org.as_str(), text));
    }
    meta.write(|tx| {
        let mut table = tx.open_table(ORGS)?;
        for (org, text) in &rows {
            table.insert(*org, text.as_str())?;
        }
        Ok(())
    })
}

pub(crate) fn list(meta: &Meta) -> Result<Vec<OrgSettings>> {
    meta.read(|tx| {
        let table = match tx.open_table(ORGS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut names = Vec::new();
        for item in table.iter()? {
            let (k, _) = item?;
            names.push(k.value().to_owned());
        }
        names.iter().map(|o| get_in(tx, o)).collect()
    })
}
