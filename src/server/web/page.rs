//! The Audit Log page: `GET /audit-log` shows it, `POST /audit-log`
//! requests an export of a range of dates.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::forms::{self, RequestForm};
use super::view::{self, Button, Row};
use super::{html, see_other, FormBody, SignedIn};
use crate::auth::Role;
use crate::export::{parse_date, ExportError, ExportRequest, Exports, PlanPolicy, Schedule};
use crate::org::Plan;
use crate::server::error::ApiError;
use crate::server::replication::Command;
use crate::server::session::Session;
use crate::server::state::AppState;

#[derive(Template)]
#[template(path = "audit_log.html", config = "src/server/web/askama.toml")]
struct AuditLogPage {
    org: String,
    user: String,
    csrf: String,
    admin: bool,
    plan: &'static str,
    limit_text: String,
    lifecycle_text: String,
    min_date: String,
    max_date: String,
    from: String,
    to: String,
    button: Button,
    notice: Option<NoticeView>,
    rows: Vec<Row>,
    full_export_href: Option<String>,
}

#[derive(Template)]
#[template(path = "forbidden.html", config = "src/server/web/askama.toml")]
struct ForbiddenPage<'a> {
    user: &'a str,
    org: &'a str,
    csrf: &'a str,
    message: &'a str,
}

/// The outcome of the last submission, shown above the form.
pub enum Notice {
    /// A request was made (the redirect after it says so).
    Received,
    /// A request was refused, in words for people.
    Refused(String),
}

/// A notice as the template shows it.
pub struct NoticeView {
    pub error: bool,
    pub text: String,
}

/// What the page is made of, read from the store in one blocking call.
struct Loaded {
    plan: Plan,
    rules: PlanPolicy,
    schedule: Schedule,
    requests: Vec<ExportRequest>,
}

async fn load(state: &AppState, session: &Session) -> Result<Loaded, Response> {
    let org = session.user.org.clone();
    let admin = session.role() == Role::Admin;
    let loaded = state
        .blocking_for(org.clone(), move |store| {
            let plan = store.org_settings(&org)?.plan;
            let exports = Exports::new(store)?;
            // Members may not list requests (the API refuses them too).
            let requests = if admin { exports.list(&org)? } else { Vec::new() };
            Ok(Loaded {
                plan,
                rules: exports.policy().plan(plan),
                schedule: exports.policy().schedule(),
                requests,
            })
        })
        .await;
    loaded.map_err(|e| {
        tracing::error!(error = %e.message, "the audit log page could not be read");
        super::failure_page()
    })
}

/// Render the page for `session` with an optional notice and the form's
/// previous values.
async fn render(
    state: &AppState,
    session: &Session,
    status: StatusCode,
    notice: Option<Notice>,
    form: (&str, &str),
) -> Response {
    let loaded = match load(state, session).await {
        Ok(l) => l,
        Err(failed) => return failed,
    };
    let now = state.now();
    let admin = session.role() == Role::Admin;
    let (min_date, max_date) = view::date_bounds(now);
    let org = &session.user.org;
    let page = AuditLogPage {
        org: org.clone(),
        user: session.user.user.clone(),
        csrf: session.csrf.clone(),
        admin,
        plan: view::plan_name(loaded.plan),
        limit_text: view::limit_text(loaded.plan, &loaded.rules),
        lifecycle_text: view::lifecycle_text(&loaded.rules, loaded.schedule),
        button: view::button(admin, &loaded.rules, &loaded.requests, now),
        from: if form.0.is_empty() {
            min_date.clone()
        } else {
            form.0.to_owned()
        },
        to: if form.1.is_empty() {
            max_date.clone()
        } else {
            form.1.to_owned()
        },
        min_date,
        max_date,
        notice: notice.map(|n| match n {
            Notice::Received => NoticeView {
                error: false,
                text: view::received(loaded.requests.first(), loaded.schedule),
            },
            Notice::Refused(text) => NoticeView { error: true, text },
        }),
        rows: loaded.requests.iter().map(|r| view::row(r, now)).collect(),
        full_export_href: (admin && loaded.rules.full_export).then(|| view::full_export_href(org)),
    };
    html(status, &page)
}

/// `GET /audit-log`.
pub async fn show(
    State(state): State<AppState>,
    signed_in: SignedIn,
    query: axum::extract::RawQuery,
) -> Response {
    let Some((_, session)) = signed_in.0 else {
        return see_other("/", &[]);
    };
    // Set by the redirect after a request was made (post/redirect/get).
    let notice = query.0.filter(|q| q == "requested").map(|_| Notice::Received);
    render(&state, &session, StatusCode::OK, notice, ("", "")).await
}

/// `POST /audit-log`: a new request, then back to the page.
pub async fn request(
    State(state): State<AppState>,
    signed_in: SignedIn,
    FormBody(body): FormBody,
) -> Response {
    let Some((_, session)) = signed_in.0 else {
        return see_other("/", &[]);
    };
    let form: RequestForm = forms::parse(&body).unwrap_or_default();
    if !forms::token_ok(&form.csrf, Some(&session.csrf)) {
        return forbidden(
            &session,
            "This form was not sent from the Audit Log page. Reload the page and try again.",
        );
    }
    let (Ok(from), Ok(to)) = (parse_date(&form.from), parse_date(&form.to)) else {
        let notice = Notice::Refused("Enter a start date and an end date.".into());
        return render(
            &state,
            &session,
            StatusCode::BAD_REQUEST,
            Some(notice),
            (&form.from, &form.to),
        )
        .await;
    };
    let org = session.user.org.clone();
    let user = session.user.user.clone();
    let role = if session.role() == Role::Admin {
        crate::export::Role::Admin
    } else {
        crate::export::Role::Member
    };
    let command = Command::RequestExport {
        org: org.clone(),
        requested_by: user.clone(),
        role,
        from,
        to,
    };
    if let Some(replicated) = state.replication.as_ref().and_then(|r| r.command(command)) {
        return match replicated.await {
            Ok(_) => see_other(&format!("{}?requested", super::AUDIT_LOG_PATH), &[]),
            Err(e) => match replicated_refusal(e) {
                Some((status, text)) => {
                    let notice = Notice::Refused(text);
                    render(&state, &session, status, Some(notice), (&form.from, &form.to)).await
                }
                None => super::failure_page(),
            },
        };
    }
    let outcome = state
        .blocking_for(org.clone(), move |store| {
            Ok(Exports::new(store)?.request(&org, &user, role, from, to))
        })
        .await;
    let refusal = match outcome {
        Ok(Ok(_)) => return see_other(&format!("{}?requested", super::AUDIT_LOG_PATH), &[]),
        Ok(Err(e)) => refusal(e),
        Err(e) => {
            tracing::error!(error = %e.message, "an export request failed");
            return super::failure_page();
        }
    };
    match refusal {
        Some((status, text)) => {
            let notice = Notice::Refused(text);
            render(&state, &session, status, Some(notice), (&form.from, &form.to)).await
        }
        None => super::failure_page(),
    }
}

/// A refusal in words for people, with its status; `None` for a failure
/// of the server (logged).
fn refusal(e: ExportError) -> Option<(StatusCode, String)> {
    let text = match &e {
        ExportError::Forbidden { .. } => {
            return Some((
                StatusCode::FORBIDDEN,
                "Only organization admins may request audit logs.".into(),
            ))
        }
        ExportError::PlanNotEligible { .. } => {
            return Some((
                StatusCode::FORBIDDEN,
                "Your plan does not include audit log exports. Contact support to request audit logs.".into(),
            ))
        }
        ExportError::RangeTooOld { earliest, .. } => {
            format!("The start date must be on or after {earliest} (one year ago).")
        }
        ExportError::RangeInFuture { latest, .. } => {
            format!("The end date must be on or before today, {latest}.")
        }
        ExportError::InvalidRange(_) => "The start date must be on or before the end date.".into(),
        ExportError::RateLimited { next_allowed_at, .. } => {
            return Some((
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Your plan's request limit is reached. New requests can be made on {}.",
                    view::instant(*next_allowed_at)
                ),
            ))
        }
        other => {
            tracing::error!(error = %other, "an export request failed");
            return None;
        }
    };
    Some((StatusCode::UNPROCESSABLE_ENTITY, text))
}

/// [`refusal`] for a request refused where a replicated deployment applied
/// it (the refusal comes as the API's error).
fn replicated_refusal(e: ApiError) -> Option<(StatusCode, String)> {
    match e.code {
        "forbidden" => Some((
            StatusCode::FORBIDDEN,
            "Only organization admins may request audit logs.".into(),
        )),
        "plan_not_eligible" => Some((
            StatusCode::FORBIDDEN,
            "Your plan does not include audit log exports. Contact support to request audit logs.".into(),
        )),
        "rate_limited" => Some((
            StatusCode::TOO_MANY_REQUESTS,
            match e.next_allowed_at {
                Some(at) => format!(
                    "Your plan's request limit is reached. New requests can be made on {}.",
                    view::instant(at)
                ),
                None => "Your plan's request limit is reached.".into(),
            },
        )),
        "range_too_old" | "range_in_future" | "invalid_range" => {
            Some((StatusCode::UNPROCESSABLE_ENTITY, e.message))
        }
        "unavailable" => Some((StatusCode::SERVICE_UNAVAILABLE, e.message)),
        _ => {
            tracing::error!(error = %e.message, "an export request failed");
            None
        }
    }
}

/// `403` as a page: a form without its session's token, a member's request.
pub fn forbidden(session: &Session, message: &str) -> Response {
    html(
        StatusCode::FORBIDDEN,
        &ForbiddenPage {
            user: &session.user.user,
            org: &session.user.org,
            csrf: &session.csrf,
            message,
        },
    )
}
