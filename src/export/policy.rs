//! The export policy as data: a plan table (who may request, how many per
//! rolling window, window length, download lifetime, optional maximum range,
//! full exports) and the processing schedule; plus the pure rules that use
//! it: the requested-range checks, the padding, the rate limit and the
//! schedule marks.
//!
//! Defaults are those of `shared/spec/exports.md`. An operator changes them
//! without code changes through `<data-dir>/export-policy.json` (see
//! [`ExportPolicy::load`] and `docs/exports.md`) or through the API
//! ([`crate::export::Exports::with_policy`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::export::error::ExportError;
use crate::org::Plan;
use crate::time::Timestamp;

/// A calendar date (UTC), as requested ranges are given.
pub type Date = NaiveDate;

/// Name of the optional policy file in the store's directory.
pub const POLICY_FILE: &str = "export-policy.json";
/// Version of the policy file format this build reads and writes.
pub const POLICY_FORMAT_VERSION: u32 = 1;

const NANOS_PER_MINUTE: i64 = 60 * 1_000_000_000;
const MINUTES_PER_DAY: u32 = 1440;
const MAX_DAYS: u32 = 36_500;

/// What one plan may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanPolicy {
    /// May admins of organizations on this plan request exports at all?
    /// (`false`: refused with `plan_not_eligible`.)
    pub eligible: bool,
    /// Requests allowed per rolling window; `None` is unlimited. At least 1
    /// when set (use `eligible: false` to forbid requests).
    pub limit: Option<u32>,
    /// Length of the rolling rate-limit window, in days (1 for a per-day limit).
    pub window_days: u32,
    /// How long a finished request can be downloaded, in days:
    /// `expires_at = completed_at + download_days`.
    pub download_days: u32,
    /// Longest requested range, in days counted inclusively (`None`: only
    /// the one-year rule applies).
    pub max_range_days: Option<u32>,
    /// May admins download the complete retained log at once (`full`)?
    pub full_export: bool,
}

impl PlanPolicy {
    /// The default for `plan`, as in exports.md.
    pub fn default_for(plan: Plan) -> PlanPolicy {
        let base = PlanPolicy {
            eligible: true,
            limit: None,
            window_days: 30,
            download_days: 10,
            max_range_days: None,
            full_export: false,
        };
        match plan {
            Plan::Server => PlanPolicy {
                full_export: true,
                ..base
            },
            Plan::Scale => PlanPolicy {
                limit: Some(3),
                ..base
            },
            Plan::Performance => PlanPolicy {
                limit: Some(1),
                ..base
            },
            Plan::Free => PlanPolicy {
                eligible: false,
                ..base
            },
        }
    }

    fn validate(&self, plan: Plan) -> Result<(), String> {
        let p = plan.as_str();
        if self.limit == Some(0) {
            return Err(format!(
                "plan {p}: limit must be at least 1 (use \"eligible\": false to refuse requests)"
            ));
        }
        if !(1..=MAX_DAYS).contains(&self.window_days) {
            return Err(format!("plan {p}: window_days must be 1..={MAX_DAYS}"));
        }
        if !(1..=MAX_DAYS).contains(&self.download_days) {
            return Err(format!("plan {p}: download_days must be 1..={MAX_DAYS}"));
        }
        if let Some(d) = self.max_range_days {
            if !(1..=MAX_DAYS).contains(&d) {
                return Err(format!("plan {p}: max_range_days must be 1..={MAX_DAYS}"));
            }
        }
        Ok(())
    }
}

/// When processing runs: at `minute` past every `period_minutes`, counted
/// from midnight UTC (default: hourly at :30). `period_minutes` divides a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub period_minutes: u32,
    pub minute: u32,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            period_minutes: 60,
            minute: 30,
        }
    }
}

impl Schedule {
    fn validate(&self) -> Result<(), String> {
        if self.period_minutes == 0 || !MINUTES_PER_DAY.is_multiple_of(self.period_minutes) {
            return Err(format!(
                "schedule: period_minutes {} must divide a day (1440 minutes)",
                self.period_minutes
            ));
        }
        if self.minute >= self.period_minutes {
            return Err(format!(
                "schedule: minute {} must be below period_minutes {}",
                self.minute, self.period_minutes
            ));
        }
        Ok(())
    }

    fn period_nanos(&self) -> i64 {
        i64::from(self.period_minutes) * NANOS_PER_MINUTE
    }

    fn offset_nanos(&self) -> i64 {
        i64::from(self.minute) * NANOS_PER_MINUTE
    }

    /// The most recent mark at or before `now` (09:45 -> 09:30; 09:30 -> 09:30).
    pub fn last_mark(&self, now: Timestamp) -> Timestamp {
        let (p, o) = (self.period_nanos(), self.offset_nanos());
        let k = now.as_nanos().saturating_sub(o).div_euclid(p);
        Timestamp::from_nanos(k.saturating_mul(p).saturating_add(o))
    }

    /// The first mark at or after `t`: when a request made at `t` is processed
    /// (09:31 -> 10:30).
    pub fn next_mark(&self, t: Timestamp) -> Timestamp {
        let last = self.last_mark(t);
        if last == t {
            t
        } else {
            Timestamp::from_nanos(last.as_nanos().saturating_add(self.period_nanos()))
        }
    }
}

/// The whole policy: one [`PlanPolicy`] per plan, and the schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportPolicy {
    plans: BTreeMap<Plan, PlanPolicy>,
    schedule: Schedule,
}

impl Default for ExportPolicy {
    fn default() -> Self {
        ExportPolicy {
            plans: Plan::ALL
                .iter()
                .map(|&p| (p, PlanPolicy::default_for(p)))
                .collect(),
            schedule: Schedule::default(),
        }
    }
}

/// The policy file: every part optional; what is absent keeps its default.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    format_version: Option<u32>,
    #[serde(default)]
    schedule: Option<ScheduleFile>,
    #[serde(default)]
    plans: BTreeMap<Plan, PlanFile>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleFile {
    period_minutes: Option<u32>,
    minute: Option<u32>,
}

/// A plan's entry in the file. `limit` and `max_range_days` distinguish
/// absent (keep the default) from `null` (none).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    eligible: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    limit: Option<Option<u32>>,
    window_days: Option<u32>,
    download_days: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    max_range_days: Option<Option<u32>>,
    full_export: Option<bool>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
    Option::<u32>::deserialize(d).map(Some)
}

impl ExportPolicy {
    /// The rules of `plan`.
    pub fn plan(&self, plan: Plan) -> PlanPolicy {
        self.plans
            .get(&plan)
            .copied()
            .unwrap_or_else(|| PlanPolicy::default_for(plan))
    }

    /// The processing schedule.
    pub fn schedule(&self) -> Schedule {
        self.schedule
    }

    /// Replace the rules of one plan (checked).
    pub fn set_plan(&mut self, plan: Plan, rules: PlanPolicy) -> Result<&mut Self, ExportError> {
        rules.validate(plan).map_err(ExportError::Policy)?;
        self.plans.insert(plan, rules);
        Ok(self)
    }

    /// Replace the schedule (checked).
    pub fn set_schedule(&mut self, schedule: Schedule) -> Result<&mut Self, ExportError> {
        schedule.validate().map_err(ExportError::Policy)?;
        self.schedule = schedule;
        Ok(self)
    }

    /// Parse a policy file's text (see `docs/exports.md`): absent parts keep
    /// their defaults; unknown keys, plans and invalid values are refused.
    pub fn from_json(text: &str) -> Result<ExportPolicy, ExportError> {
        let file: PolicyFile =
            serde_json::from_str(text).map_err(|e| ExportError::Policy(format!("{POLICY_FILE}: {e}")))?;
        if let Some(v) = file.format_version {
            if v != POLICY_FORMAT_VERSION {
                return Err(ExportError::Policy(format!(
                    "{POLICY_FILE}: unsupported format_version {v} (this build reads {POLICY_FORMAT_VERSION})"
                )));
            }
        }
        let mut policy = ExportPolicy::default();
        if let Some(s) = file.schedule {
            let d = policy.schedule;
            policy.set_schedule(Schedule {
                period_minutes: s.period_minutes.unwrap_or(d.period_minutes),
                minute: s.minute.unwrap_or(d.minute),
            })?;
        }
        for (plan, f) in file.plans {
            let d = policy.plan(plan);
            policy.set_plan(
                plan,
                PlanPolicy {
                    eligible: f.eligible.unwrap_or(d.eligible),
                    limit: f.limit.unwrap_or(d.limit),
                    window_days: f.window_days.unwrap_or(d.window_days),
                    download_days: f.download_days.unwrap_or(d.download_days),
                    max_range_days: f.max_range_days.unwrap_or(d.max_range_days),
                    full_export: f.full_export.unwrap_or(d.full_export),
                },
            )?;
        }
        Ok(policy)
    }

    /// The complete policy as a policy file's text (every field written).
    pub fn to_json(&self) -> String {
        let file = PolicyFile {
            format_version: Some(POLICY_FORMAT_VERSION),
            schedule: Some(ScheduleFile {
                period_minutes: Some(self.schedule.period_minutes),
                minute: Some(self.schedule.minute),
            }),
            plans: Plan::ALL
                .iter()
                .map(|&p| {
                    let r = self.plan(p);
                    (
                        p,
                        PlanFile {
                            eligible: Some(r.eligible),
                            limit: Some(r.limit),
                            window_days: Some(r.window_days),
                            download_days: Some(r.download_days),
                            max_range_days: Some(r.max_range_days),
                            full_export: Some(r.full_export),
                        },
                    )
                })
                .collect(),
        };
        serde_json::to_string_pretty(&file).unwrap_or_default()
    }

    /// Where the policy file of the store in `dir` lives.
    pub fn file_path(dir: &Path) -> PathBuf {
        dir.join(POLICY_FILE)
    }

    /// The policy of the store in `dir`: its `export-policy.json` if there is
    /// one, else the defaults. A file that cannot be read or parsed is an
    /// error, never silently ignored.
    pub fn load(dir: &Path) -> Result<ExportPolicy, ExportError> {
        let path = Self::file_path(dir);
        // A file that is there but unreadable is damage, never a reason to
        // fall back to the default plans.
        let damaged = |reason: String| ExportError::Store(crate::Error::corrupt(&path, 0, reason));
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::from_json(&text).map_err(|e| damaged(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ExportPolicy::default()),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(damaged(e.to_string())),
            Err(e) => Err(crate::Error::Io {
                context: format!("read {}", path.display()),
                source: e,
            }
            .into()),
        }
    }

    /// Write this policy as the store's `export-policy.json` (atomically).
    pub fn save(&self, dir: &Path) -> Result<(), ExportError> {
        crate::log::segment::write_atomically(&Self::file_path(dir), self.to_json().as_bytes())?;
        Ok(())
    }
}

/// Today's date with the year minus one; Feb 29 becomes Feb 28.
pub fn one_year_before(today: Date) -> Date {
    let year = today.year() - 1;
    NaiveDate::from_ymd_opt(year, today.month(), today.day())
        .or_else(|| NaiveDate::from_ymd_opt(year, today.month(), today.day() - 1))
        .unwrap_or(today)
}

/// Check a requested range as of `now`, in the order `range_too_old`,
/// `range_in_future`, `invalid_range` (start after end, or longer than the
/// plan's maximum).
pub fn check_range(from: Date, to: Date, now: Timestamp, rules: &PlanPolicy) -> Result<(), ExportError> {
    let today = now.date();
    let earliest = one_year_before(today);
    if from < earliest {
        return Err(ExportError::RangeTooOld { from, earliest });
    }
    if to > today {
        return Err(ExportError::RangeInFuture { to, latest: today });
    }
    if from > to {
        return Err(ExportError::InvalidRange(format!(
            "the start date {from} is after the end date {to}"
        )));
    }
    if let Some(max) = rules.max_range_days {
        let days = (to - from).num_days() + 1;
        if days > i64::from(max) {
            return Err(ExportError::InvalidRange(format!(
                "{from} to {to} is {days} days; this plan allows at most {max} days per request"
            )));
        }
    }
    Ok(())
}

/// The padded window `[from - 1 day, to + 2 days)` (Aug 2 - Aug 5 ->
/// `[Aug 1 00:00Z, Aug 7 00:00Z)`).
pub fn padded_window(from: Date, to: Date) -> (Timestamp, Timestamp) {
    let start = Timestamp::start_of_day(from).map_or(Timestamp::MIN, |t| t.saturating_sub_days(1));
    let end = Timestamp::start_of_day(to).map_or(Timestamp::MAX, |t| t.saturating_add_days(2));
    (start, end)
}

/// The rate limit: `created` are the `created_at` of the organization's
/// requests that are not `failed`. Those with `now - window < created_at <=
/// now` count; at the limit, the answer is `Err((next_allowed_at, made))`:
/// the instant enough of them turn `window` old for the count to drop below
/// the limit, and how many count now (pending ones included).
pub fn check_rate(
    created: &[Timestamp],
    now: Timestamp,
    rules: &PlanPolicy,
) -> Result<(), (Timestamp, usize)> {
    check_rate_upto(created, now, now, rules)
}

/// [`check_rate`] counting the requests created in the window up to
/// `upto` (at or after `now`): a replicated deployment counts a request
/// applied before this one even when it is stamped later (its instants
/// come from several nodes' clocks, not in the order of its log).
pub fn check_rate_upto(
    created: &[Timestamp],
    now: Timestamp,
    upto: Timestamp,
    rules: &PlanPolicy,
) -> Result<(), (Timestamp, usize)> {
    let Some(limit) = rules.limit else { return Ok(()) };
    let since = now.saturating_sub_days(rules.window_days);
    let upto = upto.max(now);
    let mut counting: Vec<Timestamp> = created
        .iter()
        .copied()
        .filter(|&t| since < t && t <= upto)
        .collect();
    let limit = limit as usize;
    if counting.len() < limit {
        return Ok(());
    }
    counting.sort_unstable();
    // Dropping below the limit needs the oldest `len - limit + 1` to age out.
    let must_age = counting[counting.len() - limit];
    Err((must_age.saturating_add_days(rules.window_days), counting.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Date {
        s.parse().unwrap()
    }

    #[test]
    fn one_year_before_handles_feb_29() {
        assert_eq!(one_year_before(d("2028-02-29")), d("2027-02-28"));
        assert_eq!(one_year_before(d("2026-08-05")), d("2025-08-05"));
    }

    #[test]
    fn file_round_trip_and_partial_files() {
        let mut p = ExportPolicy::default();
        p.set_plan(
            Plan::Scale,
            PlanPolicy {
                limit: Some(5),
                window_days: 1,
                max_range_days: Some(30),
                ..PlanPolicy::default_for(Plan::Scale)
            },
        )
        .unwrap();
        assert_eq!(ExportPolicy::from_json(&p.to_json()).unwrap(), p);
        let partial = ExportPolicy::from_json(r#"{"plans":{"performance":{"limit":null}}}"#).unwrap();
        assert_eq!(partial.plan(Plan::Performance).limit, None);
        assert_eq!(partial.plan(Plan::Performance).download_days, 10);
        assert_eq!(partial.plan(Plan::Scale), PlanPolicy::default_for(Plan::Scale));
        assert!(ExportPolicy::from_json(r#"{"plans":{"gold":{}}}"#).is_err());
        assert!(ExportPolicy::from_json(r#"{"plans":{"scale":{"limt":2}}}"#).is_err());
        assert!(ExportPolicy::from_json(r#"{"schedule":{"period_minutes":7}}"#).is_err());
        assert!(ExportPolicy::from_json(r#"{"plans":{"scale":{"limit":0}}}"#).is_err());
    }
}
