//! What the Audit Log page shows, computed from the store's records and
//! the plan's rules: pure functions, so the wording and the button's state
//! are tested without a server.

use crate::export::policy::{check_rate, one_year_before};
use crate::export::{ExportRequest, PlanPolicy, Schedule, Status};
use crate::org::Plan;
use crate::time::Timestamp;

/// An instant for people: `Dec 7, 2026, 10:31 UTC`.
pub fn instant(t: Timestamp) -> String {
    t.to_chrono().format("%b %-d, %Y, %H:%M UTC").to_string()
}

/// A plan's name as a product name.
pub fn plan_name(plan: Plan) -> &'static str {
    match plan {
        Plan::Server => "Server",
        Plan::Scale => "Scale",
        Plan::Performance => "Performance",
        Plan::Free => "Free",
    }
}

/// The plan's request limit, in a sentence.
pub fn limit_text(plan: Plan, rules: &PlanPolicy) -> String {
    let name = plan_name(plan);
    if !rules.eligible {
        return format!(
            "The {name} plan does not include self-service audit log exports. \
             Contact support to request your organization's audit logs."
        );
    }
    match rules.limit {
        None => format!("The {name} plan allows unlimited audit log requests."),
        Some(n) => format!(
            "The {name} plan allows {n} audit log request{} per {} day{}. \
             Pending requests count toward the limit; failed ones do not.",
            if n == 1 { "" } else { "s" },
            rules.window_days,
            if rules.window_days == 1 { "" } else { "s" },
        ),
    }
}

/// When requests are processed and how long downloads last.
pub fn lifecycle_text(rules: &PlanPolicy, schedule: Schedule) -> String {
    let when = if schedule.period_minutes == 60 {
        format!("every hour at :{:02}", schedule.minute)
    } else {
        format!("every {} minutes", schedule.period_minutes)
    };
    format!(
        "Requests are processed {when}. Downloads expire {} day{} after processing.",
        rules.download_days,
        if rules.download_days == 1 { "" } else { "s" },
    )
}

/// The request button: enabled, or disabled with the reason its tooltip
/// (and the text beside it) gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Button {
    pub disabled: bool,
    pub reason: String,
}

/// The button's state, by the rules `Exports::request` applies, in its
/// order: the role, the plan, then the rate limit over `requests` (the
/// organization's, as listed now).
pub fn button(admin: bool, rules: &PlanPolicy, requests: &[ExportRequest], now: Timestamp) -> Button {
    let disabled = |reason: String| Button {
        disabled: true,
        reason,
    };
    if !admin {
        return disabled("Only organization admins may request audit logs.".into());
    }
    if !rules.eligible {
        return disabled(
            "Your plan does not include audit log exports. Contact support to request audit logs.".into(),
        );
    }
    // The same rule and input as the request itself: every request of the
    // window that did not fail counts, pending ones included.
    let created: Vec<Timestamp> = requests
        .iter()
        .filter(|r| r.status != Status::Failed)
        .map(|r| r.created_at)
        .collect();
    match check_rate(&created, now, rules) {
        Ok(()) => Button {
            disabled: false,
            reason: String::new(),
        },
        Err((next, made)) => disabled(format!(
            "Your plan's limit is reached ({made} of {} requests in the last {} days). \
             New requests can be made on {}.",
            rules.limit.unwrap_or_default(),
            rules.window_days,
            instant(next)
        )),
    }
}

/// The words after a request was made: when the newest request (the one
/// just made, if it is still pending) will be processed.
pub fn received(newest: Option<&ExportRequest>, schedule: Schedule) -> String {
    match newest.filter(|r| r.status == Status::Requested) {
        Some(r) => format!(
            "Your request was received. It will be processed at the {} run.",
            instant(schedule.next_mark(r.created_at))
        ),
        None => "Your request was received.".to_owned(),
    }
}

/// The date inputs' bounds: (one year ago, today), by `now`.
pub fn date_bounds(now: Timestamp) -> (String, String) {
    let today = now.date();
    (one_year_before(today).to_string(), today.to_string())
}

/// One row of the requests table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub timeframe: String,
    pub requested_by: String,
    pub requested_on: String,
    pub expires_on: String,
    pub status: String,
    /// `processing`, `ready`, `empty`, `failed`, `expired`: the badge style.
    pub status_class: &'static str,
    /// Set when the status is the **Download logs** link.
    pub download_href: Option<String>,
    /// The file's **Signed manifest** link: set with `download_href` when
    /// the file has one (a store that keeps no tree signs none).
    pub manifest_href: Option<String>,
}

/// A request as a table row, its status as of `now`.
pub fn row(r: &ExportRequest, now: Timestamp) -> Row {
    let (status, class, href) = match r.status_at(now) {
        Status::Requested => ("Processing", "processing", None),
        Status::Success if r.has_data => (
            "Download logs",
            "ready",
            Some(format!(
                "/api/v1/orgs/{}/exports/{}/download",
                path_segment(&r.org),
                r.id
            )),
        ),
        Status::Success => ("0 results", "empty", None),
        Status::Failed => ("Error processing", "failed", None),
        Status::Expired => ("Expired", "expired", None),
    };
    let manifest_href = match (&href, &r.manifest_sha256) {
        (Some(_), Some(_)) => Some(format!(
            "/api/v1/orgs/{}/exports/{}/manifest",
            path_segment(&r.org),
            r.id
        )),
        _ => None,
    };
    Row {
        timeframe: format!("{} – {}", r.from, r.to),
        requested_by: r.requested_by.clone(),
        requested_on: instant(r.created_at),
        expires_on: r.expires_at.map_or_else(|| "—".to_owned(), instant),
        status: status.to_owned(),
        status_class: class,
        download_href: href,
        manifest_href,
    }
}

/// The full export's link (server plan).
pub fn full_export_href(org: &str) -> String {
    format!("/api/v1/orgs/{}/export/full", path_segment(org))
}

/// Percent-encode a path segment: an organization's name may hold any
/// printable character, `/`, `?` and `#` included.
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    fn request(created: &str, status: Status) -> ExportRequest {
        ExportRequest {
            id: uuid::Uuid::parse_str("8d5f2a3e-0b1c-4d2e-9f30-112233445566").unwrap(),
            org: "a/b c".into(),
            requested_by: "ann".into(),
            from: "2026-06-01".parse().unwrap(),
            to: "2026-06-30".parse().unwrap(),
            window_start: t("2026-05-31T00:00:00Z"),
            window_end: t("2026-07-02T00:00:00Z"),
            created_at: t(created),
            status,
            completed_at: None,
            expires_at: None,
            has_data: false,
            rows: None,
            bytes: None,
            crc32: None,
            failure_reason: None,
            manifest_sha256: None,
            manifest_seq: None,
        }
    }

    #[test]
    fn instants_and_timeframes_read_well() {
        assert_eq!(instant(t("2026-12-07T10:31:05Z")), "Dec 7, 2026, 10:31 UTC");
        let r = row(
            &request("2026-07-01T09:00:00Z", Status::Requested),
            t("2026-07-01T09:05:00Z"),
        );
        assert_eq!(r.timeframe, "2026-06-01 – 2026-06-30");
        assert_eq!((r.status.as_str(), r.expires_on.as_str()), ("Processing", "—"));
    }

    #[test]
    fn a_received_request_says_when_it_runs() {
        let r = request("2026-07-01T09:31:00Z", Status::Requested);
        assert_eq!(
            received(Some(&r), Schedule::default()),
            "Your request was received. It will be processed at the Jul 1, 2026, 10:30 UTC run."
        );
        let done = request("2026-07-01T09:31:00Z", Status::Success);
        assert_eq!(
            received(Some(&done), Schedule::default()),
            "Your request was received."
        );
    }

    #[test]
    fn every_status_has_its_label() {
        let now = t("2026-07-02T00:00:00Z");
        let mut ok = request("2026-07-01T09:00:00Z", Status::Success);
        ok.has_data = true;
        ok.expires_at = Some(t("2026-07-11T09:30:00Z"));
        let r = row(&ok, now);
        assert_eq!(r.status, "Download logs");
        assert_eq!(
            r.download_href.as_deref(),
            Some("/api/v1/orgs/a%2Fb%20c/exports/8d5f2a3e-0b1c-4d2e-9f30-112233445566/download")
        );
        assert_eq!(r.manifest_href, None, "no manifest recorded");
        ok.manifest_sha256 = Some("00".repeat(32));
        assert_eq!(
            row(&ok, now).manifest_href.as_deref(),
            Some("/api/v1/orgs/a%2Fb%20c/exports/8d5f2a3e-0b1c-4d2e-9f30-112233445566/manifest")
        );
        assert_eq!(r.expires_on, "Jul 11, 2026, 09:30 UTC");
        assert_eq!(row(&ok, t("2026-07-11T09:30:00Z")).status, "Expired");
        assert_eq!(row(&ok, t("2026-07-11T09:30:00Z")).manifest_href, None);
        ok.has_data = false;
        assert_eq!(row(&ok, now).status, "0 results");
        assert_eq!(row(&ok, now).manifest_href, None);
        assert_eq!(
            row(&request("2026-07-01T09:00:00Z", Status::Failed), now).status,
            "Error processing"
        );
    }

    #[test]
    fn the_button_follows_the_rules_in_order() {
        let now = t("2026-07-20T12:00:00Z");
        let perf = PlanPolicy::default_for(Plan::Performance);
        let recent = [request("2026-07-01T09:31:00Z", Status::Success)];
        assert!(button(false, &perf, &[], now)
            .reason
            .contains("Only organization admins"));
        let free = PlanPolicy::default_for(Plan::Free);
        assert!(button(true, &free, &[], now).reason.contains("Contact support"));
        assert!(!button(true, &perf, &[], now).disabled);
        let b = button(true, &perf, &recent, now);
        assert!(b.disabled);
        assert!(b.reason.contains("Jul 31, 2026, 09:31 UTC"), "{}", b.reason);
        // A failed request gives its slot back; an old one has aged out.
        assert!(
            !button(
                true,
                &perf,
                &[request("2026-07-01T09:31:00Z", Status::Failed)],
                now
            )
            .disabled
        );
        assert!(!button(true, &perf, &recent, t("2026-07-31T09:31:00Z")).disabled);
        let server = PlanPolicy::default_for(Plan::Server);
        assert!(!button(true, &server, &recent, now).disabled);
    }

    #[test]
    fn texts_name_the_plans_limits() {
        let scale = PlanPolicy::default_for(Plan::Scale);
        assert!(limit_text(Plan::Scale, &scale).contains("3 audit log requests per 30 days"));
        let perf = PlanPolicy::default_for(Plan::Performance);
        assert!(limit_text(Plan::Performance, &perf).contains("1 audit log request per 30 days"));
        assert!(limit_text(Plan::Server, &PlanPolicy::default_for(Plan::Server)).contains("unlimited"));
        assert!(limit_text(Plan::Free, &PlanPolicy::default_for(Plan::Free)).contains("Contact support"));
        assert!(lifecycle_text(&scale, Schedule::default()).contains("every hour at :30"));
        assert!(lifecycle_text(&scale, Schedule::default()).contains("expire 10 days after processing"));
        assert_eq!(
            date_bounds(t("2028-02-29T23:00:00Z")),
            ("2027-02-28".into(), "2028-02-29".into())
        );
    }
}
