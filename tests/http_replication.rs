//! The server's replication hook (`server::replication::Replication`, which
//! the cluster implements) with a fake in its place: ingest goes through
//! the hook and not into the local store, the report maps the hook's
//! outcomes to the body's indexes, and event reads wait on the hook (its
//! `503` is the answer) after the caller's checks.

mod http_common;

use std::sync::{Arc, Mutex};

use auditstore::auth::{Auth, TokenScope};
use auditstore::server::error::{ApiError, ApiResult};
use auditstore::server::replication::{BoxFuture, Command, Outcome, Replication};
use auditstore::server::{self, AppState, ServerConfig};
use auditstore::{AppendOutcome, BatchReport, Event};
use axum::body::Body;
use axum::http::Request;
use serde_json::{json, Value};
use tower::ServiceExt;

/// Records what it is given; the event whose id ends in `...0002` is a
/// conflict; reads of `org-lag` are refused as a lagging node would.
#[derive(Default)]
struct Fake {
    ingested: Mutex<Vec<(String, Vec<String>)>>,
    reads: Mutex<Vec<String>>,
    commands: Mutex<Vec<Command>>,
}

/// The hook the server holds; the test keeps the other handle.
struct Hook(Arc<Fake>);

impl Replication for Hook {
    fn ingest(&self, org: String, events: Vec<Event>) -> BoxFuture<'static, ApiResult<BatchReport>> {
        let ids: Vec<String> = events.iter().map(|e| e.id().to_string()).collect();
        let mut report = BatchReport::default();
        for id in &ids {
            if id.ends_with("0002") {
                report.conflicts += 1;
                report.outcomes.push(AppendOutcome::Conflict);
            } else {
                report.appended += 1;
                report.outcomes.push(AppendOutcome::Appended);
            }
        }
        self.0.ingested.lock().unwrap().push((org, ids));
        Box::pin(async move { Ok(report) })
    }

    /// Settings come back as the "cluster" decided them (the server plan,
    /// whatever was asked); an export request is refused with the limit
    /// reached; a processing run processed nothing.
    fn command(&self, command: Command) -> Option<BoxFuture<'static, ApiResult<Outcome>>> {
        self.0.commands.lock().unwrap().push(command.clone());
        let answer = match command {
            Command::SetOrg { org, .. } => Ok(Outcome::Settings(auditstore::OrgSettings {
                org,
                plan: auditstore::Plan::Server,
                retention_days: 7,
            })),
            Command::RequestExport { .. } => {
                let mut e = ApiError::new(
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "the limit is reached",
                )
                .with("next_allowed_at", "2026-08-01T12:01:00Z");
                e.next_allowed_at =
                    Some(auditstore::Timestamp::parse_rfc3339("2026-08-01T12:01:00Z").unwrap());
                Err(e)
            }
            Command::Process => Ok(Outcome::Processed {
                processed: Vec::new(),
                expired: Vec::new(),
            }),
            _ => Err(ApiError::internal("not in this test")),
        };
        Some(Box::pin(async move { answer }))
    }

    fn before_read(&self, org: String) -> BoxFuture<'static, ApiResult<()>> {
        self.0.reads.lock().unwrap().push(org.clone());
        Box::pin(async move {
            if org == "org-lag" {
                Err(ApiError::unavailable("this node is behind").with("partition", 3))
            } else {
                Ok(())
            }
        })
    }
}

fn event(n: u32) -> Value {
    json!({
        "id": format!("00000000-0000-0000-0000-{n:012}"),
        "action": "a.b",
        "actor": {"id": "u", "type": "user"},
        "target": {"id": "t", "type": "x"},
        "occurred_at": "2026-07-01T10:00:00Z",
        "success": true,
    })
}

struct App {
    _dir: tempfile::TempDir,
    store: Arc<auditstore::Store>,
    fake: Arc<Fake>,
    router: axum::Router,
    token: String,
}

fn app() -> App {
    let dir = tempfile::tempdir().unwrap();
    let store = http_common::store_at(dir.path(), "2026-08-01T12:00:00Z");
    let token = Auth::new(&store)
        .create_token(TokenScope::Operator, Some("op"), "test")
        .unwrap()
        .token;
    let fake = Arc::new(Fake::default());
    let hook: Arc<dyn Replication> = Arc::new(Hook(fake.clone()));
    let state = AppState::replicated(
        store.clone(),
        ServerConfig::default(),
        server::metrics_handle(),
        Some(hook),
    );
    App {
        _dir: dir,
        store,
        fake,
        router: server::app(state),
        token,
    }
}

async fn call(app: &App, method: &str, uri: &str, token: Option<&str>, body: String) -> (u16, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = app
        .router
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn ingest_goes_through_the_hook() {
    let app = app();
    // Index 1 is not an event: the hook gets the good ones, and its
    // conflict (the second good event) is reported at body index 2.
    let body = json!([event(1), {"id": "nope"}, event(2), event(3)]).to_string();
    let (status, v) = call(&app, "POST", "/api/v1/orgs/org-a/events", Some(&app.token), body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["appended"], 2);
    assert_eq!(v["conflicts"], 1);
    assert_eq!(v["rejected"], 1);
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{v}");
    assert_eq!(
        (errors[0]["index"].clone(), errors[0]["code"].clone()),
        (json!(1), json!("invalid_event"))
    );
    assert_eq!(
        (errors[1]["index"].clone(), errors[1]["code"].clone()),
        (json!(2), json!("conflict"))
    );
    assert!(errors[1]["message"]
        .as_str()
        .unwrap()
        .contains("00000000-0000-0000-0000-000000000002"));
    let ingested = app.fake.ingested.lock().unwrap().clone();
    assert_eq!(ingested.len(), 1);
    assert_eq!(ingested[0].0, "org-a");
    assert_eq!(ingested[0].1.len(), 3);
    // Nothing went into the local store: applying is the hook's business.
    assert_eq!(app.store.stats().unwrap().events, 0);
}

#[tokio::test]
async fn reads_wait_on_the_hook_after_the_callers_checks() {
    let app = app();
    let range = "from=2026-07-01&to=2026-07-02";
    let (status, v) = call(
        &app,
        "GET",
        &format!("/api/v1/orgs/org-ok/events?{range}"),
        Some(&app.token),
        String::new(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["events"], json!([]));
    for uri in [
        format!("/api/v1/orgs/org-lag/events?{range}"),
        "/api/v1/orgs/org-lag/events/00000000-0000-0000-0000-000000000001".to_owned(),
        "/api/v1/orgs/org-lag/events/00000000-0000-0000-0000-000000000001/proof".to_owned(),
    ] {
        let (status, v) = call(&app, "GET", &uri, Some(&app.token), String::new()).await;
        assert_eq!(status, 503, "{uri}: {v}");
        assert_eq!(v["error"]["code"], "unavailable");
        assert_eq!(v["error"]["partition"], 3);
        // No credential: 401 first, without asking the hook.
        let before = app.fake.reads.lock().unwrap().len();
        let (status, _) = call(&app, "GET", &uri, None, String::new()).await;
        assert_eq!(status, 401, "{uri}");
        assert_eq!(app.fake.reads.lock().unwrap().len(), before);
    }
    // A bad range is the request's own fault, found before any wait.
    let (status, _) = call(
        &app,
        "GET",
        "/api/v1/orgs/org-lag/events?from=x&to=y",
        Some(&app.token),
        String::new(),
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn state_changes_go_through_the_hook() {
    let app = app();
    // Settings: the hook's outcome is the answer; the local store is not
    // changed (applying is the hook's business).
    let (status, v) = call(
        &app,
        "PUT",
        "/api/v1/orgs/org-a/settings",
        Some(&app.token),
        r#"{"plan":"scale"}"#.into(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["plan"].clone(), v["retention_days"].clone()),
        (json!("server"), json!(7))
    );
    assert_eq!(
        app.store.org_settings("org-a").unwrap().plan,
        auditstore::Plan::Free
    );
    // A bad body is refused before the hook is asked.
    let before = app.fake.commands.lock().unwrap().len();
    let (status, _) = call(
        &app,
        "PUT",
        "/api/v1/orgs/org-a/settings",
        Some(&app.token),
        r#"{"plan":"gold"}"#.into(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(app.fake.commands.lock().unwrap().len(), before);
    // Reads of settings wait on the hook: a lagging node's 503.
    let (status, v) = call(
        &app,
        "GET",
        "/api/v1/orgs/org-lag/settings",
        Some(&app.token),
        String::new(),
    )
    .await;
    assert_eq!(status, 503, "{v}");
    // An export request refused where it was applied: the contract's 429,
    // with Retry-After from this server's clock.
    let req = Request::builder()
        .method("POST")
        .uri("/api/v1/orgs/org-a/exports")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {}", app.token))
        .body(Body::from(r#"{"from":"2026-07-01","to":"2026-07-02"}"#))
        .unwrap();
    let resp = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers()["retry-after"], "60");
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["error"]["code"], "rate_limited");
    assert_eq!(v["error"]["next_allowed_at"], "2026-08-01T12:01:00Z");
    // A processing run: the hook's.
    let (status, v) = call(
        &app,
        "POST",
        "/api/v1/exports/process",
        Some(&app.token),
        String::new(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v, json!({"processed": [], "expired": []}));
    let commands = app.fake.commands.lock().unwrap();
    assert!(matches!(&commands[0], Command::SetOrg { org, by, .. } if org == "org-a" && by == "op"));
    assert!(matches!(&commands[1], Command::RequestExport { requested_by, .. } if requested_by == "op"));
    assert!(matches!(commands[2], Command::Process));
}
