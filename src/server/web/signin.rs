//! `GET /` (the sign-in page), `POST /signin` and `POST /signout`.

use std::sync::Arc;

use askama::Template;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::Extension;

use super::forms::{self, SignInForm, SignOutForm, SIGNIN_COOKIE};
use super::limiter::Limiter;
use super::{html, see_other, set_cookie, with_cookie, ClientAddr, FormBody, SignedIn, AUDIT_LOG_PATH};
use crate::auth::{Auth, AuthError};
use crate::server::caller::cookie;
use crate::server::session::{random_hex, COOKIE};
use crate::server::state::AppState;

/// How long a sign-in form stays valid.
const SIGNIN_TOKEN_SECS: u64 = 3600;

#[derive(Template)]
#[template(path = "signin.html", config = "src/server/web/askama.toml")]
struct SignInPage<'a> {
    csrf: &'a str,
    user: &'a str,
    error: Option<String>,
}

/// The pre-session token the request's cookie holds, if it is one of ours.
pub struct SignInToken(Option<String>);

impl FromRequestParts<AppState> for SignInToken {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        Ok(SignInToken(
            cookie(parts, SIGNIN_COOKIE)
                .filter(|v| forms::plausible_token(v))
                .map(str::to_owned),
        ))
    }
}

/// The sign-in page again, `503`: what signing in needs (the streams or
/// the shared sessions of a cluster) cannot be reached now.
fn not_now(state: &AppState, token: Option<String>, user: &str) -> Response {
    let msg = "Signing in is not possible right now. Please try again in a moment.";
    page(
        state,
        token,
        StatusCode::SERVICE_UNAVAILABLE,
        user,
        Some(msg.into()),
    )
}

/// The sign-in page with `status`, keeping (or making) the pre-session
/// token so that a second tab does not invalidate the first one's form.
fn page(
    state: &AppState,
    token: Option<String>,
    status: StatusCode,
    user: &str,
    error: Option<String>,
) -> Response {
    let token = match token.map_or_else(random_hex, Ok) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "no random bytes for a sign-in token");
            return super::failure_page();
        }
    };
    let body = html(
        status,
        &SignInPage {
            csrf: &token,
            user,
            error,
        },
    );
    let secure = state.config.secure_cookies;
    with_cookie(
        body,
        &set_cookie(SIGNIN_COOKIE, &token, "Strict", SIGNIN_TOKEN_SECS, secure),
    )
}

/// `GET /`: the Audit Log page for a signed-in user, else the sign-in form.
pub async fn show(State(state): State<AppState>, signed_in: SignedIn, token: SignInToken) -> Response {
    if signed_in.0.is_some() {
        return see_other(AUDIT_LOG_PATH, &[]);
    }
    page(&state, token.0, StatusCode::OK, "", None)
}

/// `POST /signin`.
pub async fn submit(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Extension(limiter): Extension<Arc<Limiter>>,
    ClientAddr(addr): ClientAddr,
    token: SignInToken,
    FormBody(body): FormBody,
) -> Response {
    let form: SignInForm = forms::parse(&body).unwrap_or_default();
    if !forms::token_ok(&form.csrf, token.0.as_deref()) {
        let msg = "Your sign-in form expired or was not sent from this site. Please try again.";
        return page(&state, None, StatusCode::FORBIDDEN, &form.user, Some(msg.into()));
    }
    let now = state.now();
    if let Err(until) = limiter.check(&form.user, &addr, now) {
        // The minute shown is rounded up: trying at that minute works.
        let shown = until.checked_add_secs(59).unwrap_or(until).to_chrono();
        let msg = format!(
            "Too many failed sign-in attempts. Try again at {} UTC.",
            shown.format("%H:%M")
        );
        let wait_secs = crate::server::error::retry_after_secs(until, now);
        let mut response = page(
            &state,
            token.0,
            StatusCode::TOO_MANY_REQUESTS,
            &form.user,
            Some(msg),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, wait_secs.into());
        return response;
    }
    let (name, pass) = (form.user.clone(), form.password);
    // argon2 is deliberately slow: off the async workers.
    let outcome = state
        .blocking(move |store| Ok(Auth::new(store).sign_in(&name, &pass)))
        .await;
    let user = match outcome {
        Ok(Ok(user)) => user,
        Ok(Err(AuthError::Unauthorized(_))) => {
            limiter.failed(&form.user, &addr, now);
            // The same words whether or not the user exists.
            let msg = "The user name or password is incorrect.";
            return page(
                &state,
                token.0,
                StatusCode::UNAUTHORIZED,
                &form.user,
                Some(msg.into()),
            );
        }
        // In a cluster the sign-in's own event goes through the streams:
        // not recorded, not signed in.
        Ok(Err(AuthError::Store(e @ crate::Error::Unavailable(_)))) => {
            tracing::warn!(error = %e, "the sign-in could not be recorded");
            return not_now(&state, token.0, &form.user);
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "sign-in failed");
            return super::failure_page();
        }
        Err(e) => {
            tracing::error!(error = %e.message, "sign-in task failed");
            return super::failure_page();
        }
    };
    limiter.succeeded(&form.user);
    // A new id at every sign-in; a session the browser already had ends.
    // In a cluster both go through the shared sessions: if they cannot,
    // the sign-in is refused (`503`) rather than leave a session that
    // other nodes cannot see, or one that should have ended.
    let unavailable = |e: crate::server::error::ApiError| {
        tracing::warn!(error = %e.message, "a web session could not be started");
        not_now(&state, token.0.clone(), &form.user)
    };
    if let Some((old, _)) = signed_in.0 {
        if let Err(e) = state.end_session(&old).await {
            return unavailable(e);
        }
    }
    let id = match state.start_session(user).await {
        Ok(id) => id,
        Err(e) if e.status == StatusCode::INTERNAL_SERVER_ERROR => {
            tracing::error!(error = %e.message, "a session could not be started");
            return super::failure_page();
        }
        Err(e) => return unavailable(e),
    };
    let secure = state.config.secure_cookies;
    let ttl = state.config.session_ttl_secs;
    see_other(
        AUDIT_LOG_PATH,
        &[
            set_cookie(COOKIE, &id, "Lax", ttl, secure),
            // The pre-session token has done its job.
            set_cookie(SIGNIN_COOKIE, "", "Strict", 0, secure),
        ],
    )
}

/// `POST /signout`: ends the session (its CSRF token required, so that
/// another site cannot sign a user out).
pub async fn sign_out(
    State(state): State<AppState>,
    signed_in: SignedIn,
    FormBody(body): FormBody,
) -> Response {
    let form: SignOutForm = forms::parse(&body).unwrap_or_default();
    if let Some((id, session)) = signed_in.0 {
        if !forms::token_ok(&form.csrf, Some(&session.csrf)) {
            return super::page::forbidden(&session, "The sign-out form was not sent from this page.");
        }
        // Everywhere, or not at all: the user may try again.
        if let Err(e) = state.end_session(&id).await {
            tracing::warn!(error = %e.message, "a web session could not be ended");
            return super::unavailable_page(
                "Signing out is not possible right now: you are still signed in. Please try again in a moment.",
            );
        }
    }
    let secure = state.config.secure_cookies;
    see_other("/", &[set_cookie(COOKIE, "", "Lax", 0, secure)])
}
