//! The cross-organization matrix of http.md: a token of org-a, whatever
//! its role, never reads, writes or learns anything about org-b. Every
//! endpoint under org-b's path is `403 forbidden` with the same body,
//! whether what it names exists or not and whether the request is valid
//! or not; and nothing of org-b changes. Also the roles within one's own
//! organization.

mod http_common;

use http_common::*;
use serde_json::{json, Value};
use uuid::Uuid;

struct Fixture {
    _dir: tempfile::TempDir,
    server: Server,
    a: Vec<(&'static str, String)>,
    b_admin: String,
    b_event: String,
    b_request: String,
    b_token_name: &'static str,
    op: String,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    tool(
        dir.path(),
        &[
            "org",
            "set",
            "org-b",
            "--plan",
            "server",
            "--retention-days",
            "999",
        ],
    );
    let a = ["ingest", "member", "admin"]
        .map(|role| (role, token(dir.path(), "org-a", role)))
        .to_vec();
    let b_ingest = token(dir.path(), "org-b", "ingest");
    let b_token_name = "secret-b-admin";
    let b_admin = token_named(dir.path(), "org-b", "admin", b_token_name).1;
    let op = operator(dir.path());
    let server = Server::start_with(dir.path(), &["--as-of", "2026-08-01T12:00:00Z"], &[]);
    let b_event = Uuid::new_v4().to_string();
    let e = event(
        b_event.parse().unwrap(),
        "user.logged_in",
        "b-actor",
        "b-target",
        "2026-07-01T00:00:00Z",
    );
    server.ingest("org-b", &b_ingest, &[e]);
    let req = server.post_json(
        "/api/v1/orgs/org-b/exports",
        Some(&b_admin),
        &json!({"from": "2026-07-01", "to": "2026-07-02"}),
    );
    assert_eq!(req.status, 201, "{}", req.body);
    let b_request = req.json()["id"].as_str().unwrap().to_owned();
    Fixture {
        _dir: dir,
        server,
        a,
        b_admin,
        b_event,
        b_request,
        b_token_name,
        op,
    }
}

/// (method, path, body) of every endpoint under `org`, valid and invalid,
/// naming things that exist in org-b and things that do not.
fn requests(org: &str, event_id: &str, request: &str) -> Vec<(&'static str, String, Option<Value>)> {
    let e = event(Uuid::new_v4(), "a.b", "u", "t", "2026-07-01T00:00:00Z");
    let p = |s: &str| format!("/api/v1/orgs/{org}{s}");
    let none = Uuid::new_v4();
    vec![
        ("POST", p("/events"), Some(json!([e]))),
        ("POST", p("/events"), Some(json!("not events"))),
        ("GET", p("/events?from=2026-01-01&to=2027-01-01"), None),
        ("GET", p("/events?limit=0"), None),
        ("GET", p(&format!("/events/{event_id}")), None),
        ("GET", p(&format!("/events/{none}")), None),
        ("GET", p("/events/garbage"), None),
        (
            "POST",
            p("/exports"),
            Some(json!({"from": "2026-07-01", "to": "2026-07-02"})),
        ),
        ("POST", p("/exports"), Some(json!({"colour": "red"}))),
        ("GET", p("/exports"), None),
        ("GET", p(&format!("/exports/{request}")), None),
        ("GET", p(&format!("/exports/{none}")), None),
        ("GET", p(&format!("/exports/{request}/download")), None),
        ("GET", p(&format!("/exports/{none}/download")), None),
        ("GET", p("/export/full"), None),
        ("GET", p("/settings"), None),
        ("PUT", p("/settings"), Some(json!({"plan": "free"}))),
        ("PUT", p("/settings"), Some(json!({"retention_days": 0}))),
        ("GET", p(&format!("/events/{event_id}/proof")), None),
        ("GET", p(&format!("/events/{none}/proof")), None),
        ("GET", p(&format!("/exports/{request}/manifest")), None),
        ("GET", p(&format!("/exports/{none}/manifest")), None),
    ]
}

fn send(server: &Server, token: &str, method: &str, path: &str, body: &Option<Value>) -> Resp {
    match body {
        Some(b) => {
            let text = b.to_string();
            server.call(
                method,
                path,
                Some(token),
                Some("application/json"),
                Some(text.as_bytes()),
            )
        }
        None => server.call(method, path, Some(token), None, None),
    }
}

/// What org-b's admin sees of org-b.
fn b_state(f: &Fixture) -> (Vec<Value>, Value, Value) {
    let s = &f.server;
    (
        s.all_events("org-b", &f.b_admin, "2020-01-01", "2100-01-01", 1000),
        s.get("/api/v1/orgs/org-b/exports", Some(&f.b_admin)).expect_ok(),
        s.get("/api/v1/orgs/org-b/settings", Some(&f.b_admin)).expect_ok(),
    )
}

#[test]
fn another_organization_is_forbidden_whatever_exists() {
    let f = fixture();
    let before = b_state(&f);
    let mut checked = 0;
    for (role, token) in &f.a {
        let mut first_body: Option<String> = None;
        for org in ["org-b", "org-nobody"] {
            for (method, path, body) in requests(org, &f.b_event, &f.b_request) {
                let r = send(&f.server, token, method, &path, &body);
                assert_eq!(r.status, 403, "{role} {method} {path}: {}", r.body);
                r.expect_error(403, "forbidden");
                for secret in [
                    "org-b",
                    f.b_event.as_str(),
                    f.b_request.as_str(),
                    f.b_token_name,
                    "b-actor",
                    "server",
                ] {
                    assert!(
                        !r.body.contains(secret),
                        "{role} {method} {path} reveals {secret:?}: {}",
                        r.body
                    );
                }
                // The same answer whatever is behind the path.
                match &first_body {
                    None => first_body = Some(r.body.clone()),
                    Some(b) => assert_eq!(&r.body, b, "{role} {method} {path}"),
                }
                checked += 1;
            }
        }
        let r = send(&f.server, token, "POST", "/api/v1/exports/process", &None);
        r.expect_error(403, "forbidden");
    }
    assert_eq!(checked, 3 * 2 * 22);
    assert_eq!(b_state(&f), before, "nothing of org-b changed");
}

/// Within its own organization each role may do what http.md's table says
/// and gets `403 forbidden` for the rest.
#[test]
fn roles_within_the_own_organization() {
    let f = fixture();
    // (index in requests(), roles that may): the valid request of each endpoint.
    let may: &[(usize, &[&str])] = &[
        (0, &["ingest"]),
        (2, &["member", "admin"]),
        (5, &["member", "admin"]),
        (7, &["admin"]),
        (9, &["admin"]),
        (11, &["admin"]),
        (13, &["admin"]),
        (14, &["admin"]),
        (15, &["admin"]),
        (16, &[]),
        (18, &["member", "admin"]),
        (20, &["admin"]),
    ];
    let reqs = requests("org-a", &Uuid::new_v4().to_string(), &Uuid::new_v4().to_string());
    let op = f.op.clone();
    for (role, token) in f.a.iter().chain(std::iter::once(&("operator", op))) {
        for (i, allowed) in may {
            let (method, path, body) = &reqs[*i];
            let r = send(&f.server, token, method, path, body);
            if allowed.contains(role) || *role == "operator" {
                // Allowed: whatever the request's own outcome, not a 403 forbidden
                // (org-a is on the free plan: its exports are plan_not_eligible).
                assert!(
                    !(r.status == 403 && r.code() == "forbidden"),
                    "{role} {method} {path}: {}",
                    r.body
                );
                assert!(r.status < 500, "{role} {method} {path}: {}", r.body);
            } else {
                r.expect_error(403, "forbidden");
            }
        }
    }
}

/// http.md: `token revoke ID` stops the token at once, also in a running
/// server (the admin tool hands the command to the server through the
/// data directory's socket).
#[test]
fn a_token_revoked_while_the_server_runs_stops_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (id, doomed) = token_named(dir.path(), "org-a", "member", "doomed");
    let kept = token(dir.path(), "org-a", "member");
    let server = Server::start(dir.path());
    let path = "/api/v1/orgs/org-a/events?from=2026-07-01&to=2026-07-02";
    server.get(path, Some(&doomed)).expect_ok();
    assert_eq!(
        tool(dir.path(), &["token", "revoke", &id]),
        json!({"revoked": id})
    );
    server.get(path, Some(&doomed)).expect_error(401, "unauthorized");
    server.get(path, Some(&kept)).expect_ok();
}

#[test]
fn a_token_revoked_before_a_restart_stops_working() {
    let dir = tempfile::tempdir().unwrap();
    let (id, doomed) = token_named(dir.path(), "org-a", "member", "doomed");
    let kept = token(dir.path(), "org-a", "member");
    let path = "/api/v1/orgs/org-a/events?from=2026-07-01&to=2026-07-02";
    let server = Server::start(dir.path());
    server.get(path, Some(&doomed)).expect_ok();
    assert_eq!(server.stop(libc::SIGTERM).code(), Some(0));
    assert_eq!(
        tool(dir.path(), &["token", "revoke", &id]),
        json!({"revoked": id})
    );
    let server = Server::start(dir.path());
    server.get(path, Some(&doomed)).expect_error(401, "unauthorized");
    server.get(path, Some(&kept)).expect_ok();
}

/// A refusal made before the body is read (401, 403) leaves the connection
/// unusable for another request: the server says so (`Connection: close`),
/// so a client's next request on its pooled connection does not fail.
#[test]
fn refusals_before_the_body_keep_the_client_working() {
    let dir = tempfile::tempdir().unwrap();
    let member = token(dir.path(), "org-a", "member");
    let server = Server::start(dir.path());
    let body = vec![json!({"filler": "x".repeat(200_000)})];
    for round in 0..20 {
        for (who, status) in [(None, 401), (Some(member.as_str()), 403)] {
            let r = server.post_json("/api/v1/orgs/org-b/events", who, &Value::from(body.clone()));
            assert_eq!(r.status, status, "round {round}");
            // `call` panics on a transport error.
            assert_eq!(server.get("/healthz", None).status, 200, "round {round}");
        }
    }
}

/// A missing, malformed, unknown or revoked token is 401 with
/// `WWW-Authenticate: Bearer`; checks run 401, then 403, then the request.
#[test]
fn unauthorized_and_the_order_of_checks() {
    let dir = tempfile::tempdir().unwrap();
    let ingest = token(dir.path(), "org-a", "ingest");
    let member = token(dir.path(), "org-a", "member");
    let (revoked_id, revoked) = token_named(dir.path(), "org-a", "member", "gone");
    let v = tool(dir.path(), &["token", "revoke", &revoked_id]);
    assert_eq!(v["revoked"], revoked_id.as_str());
    let elsewhere = tempfile::tempdir().unwrap();
    let unknown = token(elsewhere.path(), "org-a", "member");
    let server = Server::start(dir.path());
    let good = "/api/v1/orgs/org-a/events?from=2026-07-01&to=2026-07-02";

    server.get(good, None).expect_error(401, "unauthorized");
    for auth in [
        "Basic dXNlcjpwYXNz".to_owned(),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        "bearer x".to_owned(),
        "Bearer aus_not-a-token".to_owned(),
        format!("Bearer {unknown}"),
        format!("Bearer {revoked}"),
        format!("Bearer {member}x"),
    ] {
        server.get_auth(good, &auth).expect_error(401, "unauthorized");
    }
    for path in [
        "/api/v1/orgs/org-a/exports",
        "/api/v1/orgs/org-a/settings",
        "/api/v1/orgs/org-a/export/full",
        "/api/v1/orgs/org-z/events/x",
    ] {
        server.get(path, None).expect_error(401, "unauthorized");
    }
    server
        .post_json("/api/v1/exports/process", None, &json!({}))
        .expect_error(401, "unauthorized");

    // 401 before 403 before 400 / 404.
    let bad_query = "/api/v1/orgs/org-b/events?limit=0";
    server
        .get(bad_query, Some("aus_nope"))
        .expect_error(401, "unauthorized");
    server
        .get(bad_query, Some(&member))
        .expect_error(403, "forbidden");
    server
        .get("/api/v1/orgs/org-a/events?limit=0", Some(&ingest))
        .expect_error(403, "forbidden");
    server
        .get("/api/v1/orgs/org-a/events?limit=0", Some(&member))
        .expect_error(400, "invalid_request");
    server
        .get("/api/v1/orgs/org-b/events/nope", Some(&member))
        .expect_error(403, "forbidden");
    server
        .get("/api/v1/orgs/org-a/events/nope", Some(&member))
        .expect_error(404, "not_found");
    let not_json = Some(&b"nope"[..]);
    server
        .call("POST", "/api/v1/orgs/org-b/events", None, None, not_json)
        .expect_error(401, "unauthorized");
    server
        .call("POST", "/api/v1/orgs/org-b/events", Some(&ingest), None, not_json)
        .expect_error(403, "forbidden");
    server
        .call("POST", "/api/v1/orgs/org-a/events", Some(&member), None, not_json)
        .expect_error(403, "forbidden");
    server
        .call("POST", "/api/v1/orgs/org-a/events", Some(&ingest), None, not_json)
        .expect_error(400, "invalid_request");
    // Routing's own refusals are JSON too.
    server
        .get("/api/v1/nothing", Some(&member))
        .expect_error(404, "not_found");
    let wrong_method = server.call("DELETE", "/api/v1/orgs/org-a/events", Some(&member), None, None);
    assert_eq!(wrong_method.status, 405);
    assert!(wrong_method.json()["error"]["code"].is_string());
}
