//! The web page without a browser: the app in process (tower `oneshot`),
//! a store on a fixed clock. CSRF refusals, the cookies' attributes, the
//! sign-in limit, a member's refused request, escaping of hostile names.
#![cfg(feature = "server")]

mod http_common;
mod page_common;

use std::sync::Arc;

use auditstore::auth::{Auth, Role};
use auditstore::export::Exports;
use auditstore::server::{self, AppState, ServerConfig};
use auditstore::{Plan, Store};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use tower::ServiceExt;

const PASSWORD: &str = "correct horse battery";

struct Web {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    app: axum::Router,
}

struct Answer {
    status: StatusCode,
    cookies: Vec<String>,
    location: Option<String>,
    headers: axum::http::HeaderMap,
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

fn web_with(secure_cookies: bool) -> Web {
    let dir = tempfile::tempdir().unwrap();
    let store = http_common::store_at(dir.path(), "2026-12-07T10:31:00Z");
    store.set_org("acme", Some(Plan::Scale), None).unwrap();
    let auth = Auth::new(&store);
    auth.add_user("ann", "acme", Role::Admin, PASSWORD, "test")
        .unwrap();
    auth.add_user("mo", "acme", Role::Member, PASSWORD, "test")
        .unwrap();
    auth.add_user("<script>alert(1)</script>", "acme", Role::Admin, PASSWORD, "test")
        .unwrap();
    let config = ServerConfig {
        secure_cookies,
        ..ServerConfig::default()
    };
    let state = AppState::new(store.clone(), config, server::metrics_handle());
    Web {
        _dir: dir,
        store,
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
        let cookie = cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        if !cookie.is_empty() {
            req = req.header(header::COOKIE, cookie);
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
        let cookies = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        let location = headers
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        Answer {
            status,
            cookies,
            location,
            headers,
            body: String::from_utf8(bytes.to_vec()).unwrap(),
        }
    }

    /// The sign-in page's token (cookie and field are the same value).
    async fn signin_token(&self) -> String {
        let page = self.send("GET", "/", &[], None).await;
        assert_eq!(page.status, StatusCode::OK);
        let token = page
            .cookie("auditstore_signin")
            .expect("a pre-session token cookie");
        assert_eq!(page.csrf_field(), token);
        token
    }

    async fn sign_in(&self, user: &str, password: &str) -> Answer {
        let token = self.signin_token().await;
        let form = [("user", user), ("password", password), ("csrf", token.as_str())];
        self.send("POST", "/signin", &[("auditstore_signin", &token)], Some(&form))
            .await
    }

    /// Sign in and return (session id, the session's CSRF token).
    async fn session(&self, user: &str) -> (String, String) {
        let answer = self.sign_in(user, PASSWORD).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        let id = answer.cookie("auditstore_session").expect("a session cookie");
        let page = self
            .send("GET", "/audit-log", &[("auditstore_session", &id)], None)
            .await;
        assert_eq!(page.status, StatusCode::OK);
        (id, page.csrf_field())
    }

    fn requests(&self) -> usize {
        Exports::new(&self.store).unwrap().list("acme").unwrap().len()
    }
}

fn web() -> Web {
    web_with(false)
}

#[tokio::test]
async fn sign_in_without_or_with_a_wrong_token_is_forbidden() {
    let web = web();
    let token = web.signin_token().await;
    let no_token = [("user", "ann"), ("password", PASSWORD)];
    let a = web
        .send(
            "POST",
            "/signin",
            &[("auditstore_signin", &token)],
            Some(&no_token),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.cookie("auditstore_session").is_none());
    let wrong = [("user", "ann"), ("password", PASSWORD), ("csrf", &"0".repeat(64))];
    let a = web
        .send("POST", "/signin", &[("auditstore_signin", &token)], Some(&wrong))
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    // The field alone, without the cookie (a cross-site form), is refused too.
    let field_only = [("user", "ann"), ("password", PASSWORD), ("csrf", token.as_str())];
    let a = web.send("POST", "/signin", &[], Some(&field_only)).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.cookie("auditstore_session").is_none());
}

#[tokio::test]
async fn the_session_cookie_has_its_attributes_and_pages_their_headers() {
    let web = web();
    let a = web.sign_in("ann", PASSWORD).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.location.as_deref(), Some("/audit-log"));
    let set = a
        .cookies
        .iter()
        .find(|c| c.starts_with("auditstore_session="))
        .unwrap();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set.split("; ").any(|p| p == attr), "{attr} missing in {set}");
    }
    assert!(!set.contains("Secure"), "{set}");
    let secure = web_with(true).sign_in("ann", PASSWORD).await;
    let set = secure
        .cookies
        .iter()
        .find(|c| c.starts_with("auditstore_session="))
        .unwrap();
    assert!(set.split("; ").any(|p| p == "Secure"), "{set}");

    let page = web.send("GET", "/", &[], None).await;
    let csp = page.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert_eq!(page.headers[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(page.headers[header::REFERRER_POLICY], "no-referrer");
    // Signed in, `/` leads to the Audit Log page; signed out, the page leads back.
    let id = a.cookie("auditstore_session").unwrap();
    let root = web.send("GET", "/", &[("auditstore_session", &id)], None).await;
    assert_eq!(root.location.as_deref(), Some("/audit-log"));
    let out = web.send("GET", "/audit-log", &[], None).await;
    assert_eq!(
        (out.status, out.location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/"))
    );
}

#[tokio::test]
async fn a_wrong_password_is_refused_and_repeated_failures_are_limited() {
    let web = web();
    let a = web.sign_in("ann", "wrong password").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.body.contains("The user name or password is incorrect."));
    let unknown = web.sign_in("nobody", "wrong password").await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    // No hint whether the user exists: the same page apart from the name
    // typed and the form's fresh token.
    let same = |x: &Answer, name: &str| x.body.replace(&x.csrf_field(), "T").replace(name, "N");
    assert_eq!(same(&a, "ann"), same(&unknown, "nobody"));
    for _ in 0..4 {
        assert_eq!(
            web.sign_in("ann", "wrong again").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    // Five failures: even the right password waits, until 15 minutes after the first.
    let limited = web.sign_in("ann", PASSWORD).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        limited.body.contains("Try again at 10:46 UTC."),
        "{}",
        limited.body
    );
    assert_eq!(limited.headers[header::RETRY_AFTER], "900");
    assert!(limited.cookie("auditstore_session").is_none());
    // Another user is not affected.
    assert_eq!(web.sign_in("mo", PASSWORD).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_request_form_needs_the_sessions_token() {
    let web = web();
    let (id, csrf) = web.session("ann").await;
    let session = [("auditstore_session", id.as_str())];
    let without = [("from", "2026-12-01"), ("to", "2026-12-06")];
    assert_eq!(
        web.send("POST", "/audit-log", &session, Some(&without))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let wrong = [("from", "2026-12-01"), ("to", "2026-12-06"), ("csrf", "nope")];
    assert_eq!(
        web.send("POST", "/audit-log", &session, Some(&wrong))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let signout = web
        .send("POST", "/signout", &session, Some(&[("csrf", "nope")]))
        .await;
    assert_eq!(signout.status, StatusCode::FORBIDDEN);
    assert_eq!(web.requests(), 0);
    let right = [
        ("from", "2026-12-01"),
        ("to", "2026-12-06"),
        ("csrf", csrf.as_str()),
    ];
    let made = web.send("POST", "/audit-log", &session, Some(&right)).await;
    assert_eq!(made.status, StatusCode::SEE_OTHER);
    assert_eq!(web.requests(), 1);
    let page = web.send("GET", "/audit-log", &session, None).await;
    assert!(page.body.contains("2026-12-01 – 2026-12-06") && page.body.contains("Processing"));
    // A range outside the rules is explained on the page.
    let old = [
        ("from", "2025-12-06"),
        ("to", "2026-12-06"),
        ("csrf", csrf.as_str()),
    ];
    let refused = web.send("POST", "/audit-log", &session, Some(&old)).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body.contains("on or after 2025-12-07"),
        "{}",
        refused.body
    );
    // Signing out with the token ends the session.
    let out = web
        .send("POST", "/signout", &session, Some(&[("csrf", csrf.as_str())]))
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out
        .cookies
        .iter()
        .any(|c| c.starts_with("auditstore_session=;") && c.contains("Max-Age=0")));
    assert_eq!(
        web.send("GET", "/audit-log", &session, None).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn a_member_sees_why_and_cannot_post_a_request() {
    let web = web();
    let (id, csrf) = web.session("mo").await;
    let session = [("auditstore_session", id.as_str())];
    let page = web.send("GET", "/audit-log", &session, None).await;
    assert!(page
        .body
        .contains("Only organization admins may request audit logs."));
    assert!(page.body.contains("disabled"));
    let form = [
        ("from", "2026-12-01"),
        ("to", "2026-12-06"),
        ("csrf", csrf.as_str()),
    ];
    let refused = web.send("POST", "/audit-log", &session, Some(&form)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused
        .body
        .contains("Only organization admins may request audit logs."));
    assert_eq!(web.requests(), 0);
}

#[tokio::test]
async fn hostile_names_are_escaped() {
    let web = web();
    let (id, csrf) = web.session("<script>alert(1)</script>").await;
    let session = [("auditstore_session", id.as_str())];
    let form = [
        ("from", "2026-12-01"),
        ("to", "2026-12-06"),
        ("csrf", csrf.as_str()),
    ];
    assert_eq!(
        web.send("POST", "/audit-log", &session, Some(&form)).await.status,
        StatusCode::SEE_OTHER
    );
    let page = web.send("GET", "/audit-log", &session, None).await;
    assert!(!page.body.contains("<script>"), "raw markup in the page");
    // Twice: in the account bar and in the "Requested by" column.
    assert!(
        page.body
            .matches("&#60;script&#62;alert(1)&#60;/script&#62;")
            .count()
            >= 2,
        "{}",
        page.body
    );
    // A hostile value sent back in the form is escaped too.
    let evil = [("from", "\"><b>x"), ("to", "2026-12-06"), ("csrf", csrf.as_str())];
    let refused = web.send("POST", "/audit-log", &session, Some(&evil)).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(!refused.body.contains("\"><b>x") && refused.body.contains("&#34;&#62;&#60;b&#62;x"));
}

#[tokio::test]
async fn signing_in_again_ends_the_previous_session() {
    let web = web();
    let (old, _) = web.session("ann").await;
    let token = web.signin_token().await;
    let form = [("user", "ann"), ("password", PASSWORD), ("csrf", token.as_str())];
    let cookies = [
        ("auditstore_signin", token.as_str()),
        ("auditstore_session", old.as_str()),
    ];
    let again = web.send("POST", "/signin", &cookies, Some(&form)).await;
    let new = again.cookie("auditstore_session").expect("a new session");
    assert_ne!(new, old);
    let stale = web
        .send("GET", "/audit-log", &[("auditstore_session", &old)], None)
        .await;
    assert_eq!(stale.status, StatusCode::SEE_OTHER);
    let fresh = web
        .send("GET", "/audit-log", &[("auditstore_session", &new)], None)
        .await;
    assert_eq!(fresh.status, StatusCode::OK);
}

#[tokio::test]
async fn a_finished_export_links_its_signed_manifest() {
    let web = web();
    let e = http_common::event(
        uuid::Uuid::new_v4(),
        "project.created",
        "u1",
        "p1",
        "2026-12-02T08:00:00Z",
    );
    let event = auditstore::Event::from_json(&e.to_string()).unwrap();
    web.store.append("acme", &event).unwrap();
    let exports = Exports::new(&web.store).unwrap();
    let req = exports
        .request(
            "acme",
            "ann",
            auditstore::export::Role::Admin,
            "2026-12-01".parse().unwrap(),
            "2026-12-03".parse().unwrap(),
        )
        .unwrap();
    // The 11:30 run, by a clock past it.
    let later = Arc::new(auditstore::FixedClock::new(
        auditstore::Timestamp::parse_instant_or_date("2026-12-07T11:31:00Z").unwrap(),
    ));
    let report = Exports::new(&web.store)
        .unwrap()
        .with_clock(later)
        .process()
        .unwrap();
    assert_eq!(report.processed.len(), 1);

    let (id, _) = web.session("ann").await;
    let session = [("auditstore_session", id.as_str())];
    let page = web.send("GET", "/audit-log", &session, None).await;
    let download = format!("/api/v1/orgs/acme/exports/{}/download", req.id);
    let manifest = format!("/api/v1/orgs/acme/exports/{}/manifest", req.id);
    assert!(
        page.body.contains(&format!("href=\"{download}\"")),
        "{}",
        page.body
    );
    assert!(
        page.body.contains(&format!("href=\"{manifest}\"")),
        "{}",
        page.body
    );
    assert!(page.body.contains(">Signed manifest</a>"), "{}", page.body);

    // The link serves the stored manifest to the signed-in admin.
    let got = web.send("GET", &manifest, &session, None).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_eq!(got.headers.get(header::CONTENT_TYPE).unwrap(), "application/json");
    let stored = Exports::new(&web.store).unwrap().manifest(req.id).unwrap();
    assert_eq!(got.body.as_bytes(), stored.as_slice());

    // A member sees the page's table but may not fetch it.
    let (mo, _) = web.session("mo").await;
    let refused = web
        .send("GET", &manifest, &[("auditstore_session", mo.as_str())], None)
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}
