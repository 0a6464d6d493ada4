//! Property tests of the API in-process (`server::app` with
//! `tower::ServiceExt::oneshot`): hostile query strings, paths and bodies
//! never make a `5xx` or a panic, and every refusal is the contract's JSON
//! error with a known code and its status.

mod http_common;

use std::sync::OnceLock;

use auditstore::auth::{Auth, Role, TokenScope};
use auditstore::server::{self, AppState, ServerConfig};
use axum::body::Body;
use axum::http::Request;
use http_common::CODES;
use proptest::prelude::*;
use serde_json::{json, Value};
use tower::ServiceExt;

struct App {
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    /// org-p's ingest, member, admin tokens and an operator's.
    tokens: [String; 4],
}

/// One store and app for every case (small bodies, so a small body limit).
fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let store = http_common::store_at(dir.path(), "2026-08-01T12:00:00Z");
        store
            .set_org("org-p", Some("scale".parse().unwrap()), None)
            .unwrap();
        let auth = Auth::new(&store);
        let make = |scope| auth.create_token(scope, Some("prop"), "test").unwrap().token;
        let org = |role| TokenScope::Org {
            org: "org-p".into(),
            role,
        };
        let tokens = [
            make(org(Role::Ingest)),
            make(org(Role::Member)),
            make(org(Role::Admin)),
            make(TokenScope::Operator),
        ];
        let config = ServerConfig {
            body_limit: 64 * 1024,
            ..ServerConfig::default()
        };
        let router = server::app(AppState::new(store, config, server::metrics_handle()));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        App {
            _dir: dir,
            rt,
            router,
            tokens,
        }
    })
}

/// Send one request; check the contract's rules for any answer.
fn check(
    method: &str,
    uri: &str,
    token: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> Result<u16, TestCaseError> {
    let app = app();
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let Ok(req) = req.body(Body::from(body)) else {
        return Ok(0); // not a request an HTTP client could send
    };
    let (status, ctype, bytes) = app.rt.block_on(async {
        let resp = app.router.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (
            status,
            ctype,
            axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap(),
        )
    });
    let text = String::from_utf8_lossy(&bytes);
    prop_assert!(status < 500, "{method} {uri}: {status} {text}");
    if !(200..300).contains(&status) {
        prop_assert!(
            ctype.starts_with("application/json"),
            "{method} {uri}: {status} {ctype} {text}"
        );
        let v: Value =
            serde_json::from_slice(&bytes).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
        let code = v["error"]["code"].as_str().unwrap_or_default();
        let known = CODES.iter().find(|(c, _)| *c == code);
        prop_assert!(known.is_some(), "{method} {uri}: unknown code in {text}");
        prop_assert_eq!(known.unwrap().1, status, "{} {}: {}", method, uri, text);
        prop_assert!(v["error"]["message"].is_string());
    } else if ctype.starts_with("application/json") {
        prop_assert!(serde_json::from_slice::<Value>(&bytes).is_ok(), "{text}");
    }
    Ok(status)
}

/// A value for a query parameter: valid, near-valid, or junk.
fn param_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("2026-07-01".to_owned()),
        Just("2026-08-01T00:00:00Z".to_owned()),
        Just("9999-12-31T23:59:59.999999999Z".to_owned()),
        Just("-0001-01-01".to_owned()),
        Just("c1".to_owned()),
        (0u64..2000).prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        "[0-9a-f]{56}".prop_map(|h| format!("c1{h}")),
        "[a-z.*]{0,12}",
        "\\PC{0,24}",
    ]
}

fn param_key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["from", "to", "action", "actor", "target", "limit", "cursor"]).prop_map(str::to_owned),
        1 => "\\PC{0,8}",
    ]
}

/// Any JSON value, nested a little.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "\\PC{0,16}".prop_map(Value::from),
        prop::sample::select(vec![
            "2026-07-01",
            "2026-07-31",
            "2026-08-01",
            "scale",
            "free",
            "server",
            "x"
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        let key = prop_oneof![
            prop::sample::select(vec![
                "from",
                "to",
                "plan",
                "retention_days",
                "id",
                "action",
                "actor",
                "target",
                "occurred_at",
                "success",
                "payload",
                "metadata",
                "version",
                "scope",
                "request",
                "type",
            ])
            .prop_map(str::to_owned),
            "\\PC{0,6}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(key, inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect()))
        ]
    })
}

/// An event with some fields replaced by anything.
fn near_event() -> impl Strategy<Value = Value> {
    (
        any::<u128>(),
        prop::collection::btree_map(
            prop::sample::select(vec![
                "id",
                "action",
                "actor",
                "target",
                "occurred_at",
                "success",
                "payload",
                "version",
                "scope",
                "extra",
            ]),
            json_value(),
            0..3,
        ),
    )
        .prop_map(|(id, changes)| {
            let mut e =
                http_common::event(uuid::Uuid::from_u128(id), "a.b", "u", "t", "2026-07-15T00:00:00Z");
            for (k, v) in changes {
                e[k] = v;
            }
            e
        })
}

/// A valid query with a few of its parameters changed or added.
fn valid_query() -> impl Strategy<Value = Vec<(String, String)>> {
    let date = "2026-0[6-8]-[0-2][0-9]";
    (
        date,
        date,
        prop::collection::vec((param_key(), param_value()), 0..3),
    )
        .prop_map(|(from, to, extra)| {
            let mut pairs = vec![("from".to_owned(), from), ("to".to_owned(), to)];
            pairs.extend(extra);
            pairs
        })
}

/// An export or settings body: right keys, values near the rules.
fn near_request() -> impl Strategy<Value = Value> {
    let date = "2025-0[7-9]-0[1-9]|2026-0[6-8]-[0-2][0-9]";
    (
        date,
        date,
        prop::option::weighted(0.2, json_value()),
        prop::option::of(0u32..4000),
        prop::option::of("free|scale|server|performance|gold"),
    )
        .prop_map(|(from, to, extra, days, plan)| {
            let mut v = json!({"from": from, "to": to});
            if let Some(x) = extra {
                v["note"] = x;
            }
            if let (Some(d), Some(p)) = (days, plan) {
                v = json!({"retention_days": d, "plan": p});
            }
            v
        })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => near_request().prop_map(|v| v.to_string().into_bytes()),
        1 => json_value().prop_map(|v| v.to_string().into_bytes()),
        2 => prop::collection::vec(near_event(), 0..4).prop_map(|v| Value::from(v).to_string().into_bytes()),
        1 => near_event().prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(near_event(), 0..4)
            .prop_map(|v| v.iter().map(|e| format!("{e}\n\n")).collect::<String>().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

fn content_type() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "application/json",
        "application/x-ndjson",
        "text/plain",
        "application/json; charset=utf-8",
        "",
    ])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn hostile_query_strings(
        pairs in prop_oneof![prop::collection::vec((param_key(), param_value()), 0..8), valid_query()],
        raw in "[ -~]{0,40}",
        encode in any::<bool>(),
        who in 0usize..4,
    ) {
        let query = if encode {
            serde_urlencoded::to_string(&pairs).unwrap()
        } else {
            let mut q = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
            q.push_str(&raw);
            q
        };
        let token = &app().tokens[who];
        check("GET", &format!("/api/v1/orgs/org-p/events?{query}"), Some(token), "", Vec::new())?;
    }

    #[test]
    fn hostile_paths(org in "\\PC{0,12}", id in "\\PC{0,40}", who in 0usize..4, which in 0usize..9) {
        let enc = |s: &str| s.bytes().map(|b| format!("%{b:02X}")).collect::<String>();
        let (org, id) = (enc(&org), enc(&id));
        let path = [
            format!("/api/v1/orgs/{org}/events/{id}"),
            format!("/api/v1/orgs/{org}/exports/{id}"),
            format!("/api/v1/orgs/{org}/exports/{id}/download"),
            format!("/api/v1/orgs/{org}/export/full"),
            format!("/api/v1/orgs/{org}/settings"),
            format!("/api/v1/orgs/org-p/events/{id}"),
            format!("/api/v1/orgs/{org}/events/{id}/proof"),
            format!("/api/v1/orgs/org-p/events/{id}/proof"),
            format!("/api/v1/orgs/{org}/exports/{id}/manifest"),
        ][which].clone();
        check("GET", &path, Some(&app().tokens[who]), "", Vec::new())?;
    }

    #[test]
    fn hostile_bodies(body in body(), ct in content_type(), who in 0usize..4, which in 0usize..4) {
        let (method, path) = [
            ("POST", "/api/v1/orgs/org-p/events"),
            ("POST", "/api/v1/orgs/org-p/exports"),
            ("PUT", "/api/v1/orgs/org-p/settings"),
            ("POST", "/api/v1/exports/process"),
        ][which];
        let status = check(method, path, Some(&app().tokens[who]), ct, body)?;
        // Who may is decided before the body is looked at.
        let may = match which { 0 => [true, false, false, true], 1 => [false, false, true, true], _ => [false, false, false, true] };
        prop_assert_eq!(status == 403 && !may[who], !may[who], "{} {}: {}", method, path, status);
    }

    #[test]
    fn hostile_tokens(token in "\\PC{0,60}", prefixed in any::<bool>()) {
        let token = if prefixed { format!("aus_{token}") } else { token };
        let status = check("GET", "/api/v1/orgs/org-p/events?from=2026-07-01&to=2026-07-02", Some(&token), "", Vec::new())?;
        prop_assert!(status == 401 || status == 0, "{}", status);
    }
}
