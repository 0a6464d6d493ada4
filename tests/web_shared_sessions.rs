//! Web sessions shared through the replication hook (what a cluster does,
//! with a fake in its place): two servers on two stores, one shared map of
//! sessions. A session started on one works on the other with the CSRF
//! token derived from its id; a sign-out on one reaches the other within
//! the re-check time; a hook that fails makes sign-in, sign-out and the
//! lookup of a session not held `503`; a hook that does not share sessions
//! (the defaults) leaves them in the server's memory.
#![cfg(feature = "server")]

mod http_common;
mod page_common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use auditstore::auth::{Auth, Role, User};
use auditstore::server::error::{ApiError, ApiResult};
use auditstore::server::replication::{BoxFuture, FoundSession, Replication};
use auditstore::server::session::{csrf_of, RECHECK};
use auditstore::server::{self, AppState, ServerConfig};
use auditstore::{BatchReport, Event, Plan};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use tower::ServiceExt;

const PASSWORD: &str = "correct horse battery";

/// The deployment's sessions, by id; `down` makes every call fail.
#[derive(Default)]
struct Shared {
    sessions: Mutex<HashMap<String, (User, i64)>>,
    down: AtomicBool,
}

struct Hook {
    shared: Arc<Shared>,
    /// `false`: the trait's defaults (sessions not shared).
    shares: bool,
}

fn down() -> ApiError {
    ApiError::unavailable("the sessions' store does not answer")
}

impl Replication for Hook {
    fn ingest(&self, _: String, _: Vec<Event>) -> BoxFuture<'static, ApiResult<BatchReport>> {
        Box::pin(async { Err(ApiError::internal("not in this test")) })
    }

    fn before_read(&self, _: String) -> BoxFuture<'static, ApiResult<()>> {
        Box::pin(async { Ok(()) })
    }

    fn session_started(&self, id: &str, user: &User, expires_at: i64) -> BoxFuture<'static, ApiResult<()>> {
        let answer = if self.shared.down.load(Ordering::SeqCst) {
            Err(down())
        } else {
            if self.shares {
                let mut sessions = self.shared.sessions.lock().unwrap();
                sessions.insert(id.to_owned(), (user.clone(), expires_at));
            }
            Ok(())
        };
        Box::pin(async move { answer })
    }

    fn find_session(&self, id: &str) -> Option<FoundSession> {
        if !self.shares {
            return None;
        }
        let answer = if self.shared.down.load(Ordering::SeqCst) {
            Err(down())
        } else {
            Ok(self.shared.sessions.lock().unwrap().get(id).cloned())
        };
        Some(Box::pin(async move { answer }))
    }

    fn session_ended(&self, id: &str) -> BoxFuture<'static, ApiResult<()>> {
        let answer = if self.shared.down.load(Ordering::SeqCst) {
            Err(down())
        } else {
            self.shared.sessions.lock().unwrap().remove(id);
            Ok(())
        };
        Box::pin(async move { answer })
    }
}

struct Web {
    _dir: tempfile::TempDir,
    app: axum::Router,
}

struct Answer {
    status: StatusCode,
    cookies: Vec<String>,
    location: Option<String>,
    body: String,
}

impl Answer {
    fn cookie(&self, name: &str) -> Option<String> {
        page_common::cookie(&self.cookies, name)
    }

    fn csrf_field(&self) -> String {
        page_common::csrf_field(&self.body)
    }
}

/// A server whose hook shares `shared` (or, `shares` false, does not).
fn web(shared: &Arc<Shared>, shares: bool) -> Web {
    let dir = tempfile::tempdir().unwrap();
    let store = http_common::store_at(dir.path(), "2026-12-07T10:31:00Z");
    store.set_org("acme", Some(Plan::Scale), None).unwrap();
    Auth::new(&store)
        .add_user("ann", "acme", Role::Admin, PASSWORD, "test")
        .unwrap();
    let hook: Arc<dyn Replication> = Arc::new(Hook {
        shared: shared.clone(),
        shares,
    });
    let state = AppState::replicated(
        store,
        ServerConfig::default(),
        server::metrics_handle(),
        Some(hook),
    );
    Web {
        _dir: dir,
        app: server::app(state),
    }
}

impl Web {
    async fn send(
        &self,
        method: &str,
        path: &str,
        cookies: &[(&str, &str)],
        form: Option<&[(&str, &str)]>,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(path);
        let cookie: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if !cookie.is_empty() {
            req = req.header(header::COOKIE, cookie.join("; "));
        }
        let body = match form {
            Some(pairs) => {
                req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Body::from(serde_urlencoded::to_string(pairs).unwrap())
            }
            None => Body::empty(),
        };
        let response = self.app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        Answer {
            status,
            cookies: headers
                .get_all(header::SET_COOKIE)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect(),
            location: headers
                .get(header::LOCATION)
                .map(|v| v.to_str().unwrap().to_owned()),
            body: String::from_utf8(bytes.to_vec()).unwrap(),
        }
    }

    async fn sign_in(&self) -> Answer {
        let page = self.send("GET", "/", &[], None).await;
        let token = page.cookie("auditstore_signin").unwrap();
        let form = [("user", "ann"), ("password", PASSWORD), ("csrf", token.as_str())];
        self.send("POST", "/signin", &[("auditstore_signin", &token)], Some(&form))
            .await
    }

    /// Whether `id` is signed in here: (the page's status, the API's).
    async fn signed_in(&self, id: &str) -> (StatusCode, StatusCode) {
        let cookie = [("auditstore_session", id)];
        let page = self.send("GET", "/audit-log", &cookie, None).await;
        let api = self.send("GET", "/api/v1/orgs/acme/exports", &cookie, None).await;
        (page.status, api.status)
    }
}

const OK: (StatusCode, StatusCode) = (StatusCode::OK, StatusCode::OK);
const OUT: (StatusCode, StatusCode) = (StatusCode::SEE_OTHER, StatusCode::UNAUTHORIZED);

#[tokio::test]
async fn a_session_started_on_one_server_works_on_the_other_until_signed_out() {
    let shared = Arc::new(Shared::default());
    let (a, b) = (web(&shared, true), web(&shared, true));
    let answer = a.sign_in().await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let id = answer.cookie("auditstore_session").unwrap();
    assert!(shared.sessions.lock().unwrap().contains_key(&id));

    assert_eq!(b.signed_in(&id).await, OK);
    let page = b
        .send("GET", "/audit-log", &[("auditstore_session", &id)], None)
        .await;
    assert_eq!(page.csrf_field(), csrf_of(&id));
    // A sign-out on b needs the derived token, and ends the session there
    // at once, and on a once a re-check is due.
    let cookie = [("auditstore_session", id.as_str())];
    let wrong = [("csrf", "0".repeat(64))];
    let wrong = [(wrong[0].0, wrong[0].1.as_str())];
    let refused = b.send("POST", "/signout", &cookie, Some(&wrong)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let csrf = csrf_of(&id);
    let out = b
        .send("POST", "/signout", &cookie, Some(&[("csrf", &csrf)]))
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.location.as_deref(), Some("/"));
    assert!(shared.sessions.lock().unwrap().is_empty());
    assert_eq!(b.signed_in(&id).await, OUT);
    tokio::time::sleep(RECHECK + std::time::Duration::from_millis(200)).await;
    assert_eq!(a.signed_in(&id).await, OUT);
    // An id that no server could have made is not looked up.
    assert_eq!(a.signed_in("not-a-session").await, OUT);
}

#[tokio::test]
async fn a_failing_hook_refuses_sign_in_sign_out_and_unknown_sessions() {
    let shared = Arc::new(Shared::default());
    let (a, b) = (web(&shared, true), web(&shared, true));
    shared.down.store(true, Ordering::SeqCst);
    let answer = a.sign_in().await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{}", answer.body);
    assert!(answer.cookie("auditstore_session").is_none());
    assert!(answer.body.contains("not possible right now"), "{}", answer.body);

    shared.down.store(false, Ordering::SeqCst);
    let id = a.sign_in().await.cookie("auditstore_session").unwrap();
    shared.down.store(true, Ordering::SeqCst);
    // a holds it (fresh); b cannot ask.
    assert_eq!(a.signed_in(&id).await, OK);
    assert_eq!(
        b.signed_in(&id).await,
        (StatusCode::SERVICE_UNAVAILABLE, StatusCode::SERVICE_UNAVAILABLE)
    );
    // A sign-out that cannot reach the others leaves the session as it was.
    let cookie = [("auditstore_session", id.as_str())];
    let csrf = csrf_of(&id);
    let out = a
        .send("POST", "/signout", &cookie, Some(&[("csrf", &csrf)]))
        .await;
    assert_eq!(out.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(out.cookie("auditstore_session").is_none());
    shared.down.store(false, Ordering::SeqCst);
    assert_eq!(b.signed_in(&id).await, OK);
}

#[tokio::test]
async fn a_hook_that_does_not_share_sessions_leaves_them_in_memory() {
    let shared = Arc::new(Shared::default());
    let (a, b) = (web(&shared, false), web(&shared, false));
    let id = a.sign_in().await.cookie("auditstore_session").unwrap();
    assert!(shared.sessions.lock().unwrap().is_empty());
    tokio::time::sleep(RECHECK + std::time::Duration::from_millis(200)).await;
    assert_eq!(a.signed_in(&id).await, OK);
    assert_eq!(b.signed_in(&id).await, OUT);
}
