//! integrity.md's server endpoints against real `auditstore serve`
//! processes: `GET /checkpoint` (a note the store's key verifies, growing
//! with the log), `GET .../events/{id}/proof` (an RFC 9162 proof into the
//! checkpoint it carries, authorized as `GET .../events/{id}`), and
//! `GET .../exports/{id}/manifest` (the stored manifest, which checks out
//! against the downloaded CSV; refused as the download is). In process: a
//! store kept without the tree answers `404 not_found` for both.
#![cfg(feature = "server")]

mod http_common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use auditstore::export::manifest_check::check_export;
use auditstore::integrity::{event_leaf_hash, verify_inclusion, Checkpoint, Hash, VerifierKey};
use auditstore::Event;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http_common::*;
use serde_json::{json, Value};

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/sample-events.jsonl");
const AS_OF: &str = "2026-08-01T12:00:00Z";

/// The store's (origin, verifier key), from `auditstore key show`.
fn key_show(dir: &Path) -> (String, VerifierKey) {
    let v = tool(dir, &["key", "show"]);
    let origin = v["origin"].as_str().expect("origin").to_owned();
    let key = VerifierKey::parse(v["verifier_key"].as_str().expect("verifier_key")).expect("a verifier key");
    (origin, key)
}

/// `GET /checkpoint`: asserts its headers, verifies the note with `key`
/// under `origin`; the parsed checkpoint and the note.
fn checkpoint(server: &Server, origin: &str, key: &VerifierKey) -> (Checkpoint, String) {
    let r = server.get("/checkpoint", None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(
        r.body.starts_with(&format!("{origin}\n")),
        "names the origin: {:?}",
        r.body
    );
    let cp = Checkpoint::open(&r.body, key, origin).unwrap_or_else(|e| panic!("{e}: {:?}", r.body));
    (cp, r.body)
}

fn b64_hash(v: &Value) -> Hash {
    let bytes = STANDARD
        .decode(v.as_str().expect("a base64 string"))
        .expect("base64");
    bytes.try_into().expect("32 bytes")
}

/// Checks a `prove ID` object: the event is `GET`'s, the leaf hash is
/// recomputed from it, and the inclusion path leads to the root of the
/// checkpoint it carries, which `key` signed. Returns the tree size.
fn check_proof(p: &Value, org: &str, event_text: &str, origin: &str, key: &VerifierKey) -> u64 {
    let keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
    for k in [
        "org",
        "event",
        "leaf_index",
        "tree_size",
        "leaf_hash",
        "inclusion",
        "checkpoint",
    ] {
        assert!(keys.contains(&k), "{k} in {p}");
    }
    assert_eq!(keys.len(), 7, "{p}");
    assert_eq!(p["org"], org);
    let event_json: Value = serde_json::from_str(event_text).unwrap();
    assert_eq!(p["event"], event_json);
    let event = Event::from_json(event_text).unwrap();
    let leaf = event_leaf_hash(org, &event).unwrap();
    assert_eq!(b64_hash(&p["leaf_hash"]), leaf, "the leaf hash of the event");
    let cp = Checkpoint::open(p["checkpoint"].as_str().unwrap(), key, origin).expect("a signed checkpoint");
    let size = p["tree_size"].as_u64().unwrap();
    let index = p["leaf_index"].as_u64().unwrap();
    assert_eq!(cp.size, size);
    let path: Vec<Hash> = p["inclusion"].as_array().unwrap().iter().map(b64_hash).collect();
    verify_inclusion(&leaf, index, size, &path, &cp.root).expect("the proof verifies");
    size
}

#[test]
fn checkpoint_and_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let v = tool(dir.path(), &["ingest", SAMPLE]);
    let sampled = v["appended"].as_u64().unwrap();
    assert!(sampled > 1900, "{v}");
    tool(dir.path(), &["org", "set", "org-03", "--plan", "scale"]);
    let (origin, key) = key_show(dir.path());
    let ingest03 = token(dir.path(), "org-03", "ingest");
    let member03 = token(dir.path(), "org-03", "member");
    let admin03 = token(dir.path(), "org-03", "admin");
    let member01 = token(dir.path(), "org-01", "member");
    let op = operator(dir.path());
    let server = Server::start_with(dir.path(), &["--as-of", AS_OF], &[]);

    // No credential needed; every sampled event is in it.
    let (first, _) = checkpoint(&server, &origin, &key);
    assert!(first.size >= sampled, "{} < {sampled}", first.size);

    // An ingest grows it (the store signs about once a second).
    let id = uuid::Uuid::new_v4();
    let e = event(id, "project.created", "u1", "p1", "2026-07-31T10:00:00Z");
    assert_eq!(server.ingest("org-03", &ingest03, &[e])["appended"], 1);
    let deadline = Instant::now() + Duration::from_secs(15);
    let grown = loop {
        let (cp, _) = checkpoint(&server, &origin, &key);
        if cp.size > first.size {
            break cp;
        }
        assert!(Instant::now() < deadline, "still {} leaves", cp.size);
        std::thread::sleep(Duration::from_millis(100));
    };

    // A member's proof of the event: checks out against the store's key.
    let get = format!("/api/v1/orgs/org-03/events/{id}");
    let proof = format!("{get}/proof");
    let text = server.get(&get, Some(&member03));
    assert_eq!(text.status, 200, "{}", text.body);
    let r = server.get(&proof, Some(&member03));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("content-type").unwrap().starts_with("application/json"));
    let size = check_proof(&r.json(), "org-03", &text.body, &origin, &key);
    assert!(size >= grown.size);
    // An admin and an operator too, with the same proof.
    for who in [&admin03, &op] {
        assert_eq!(server.get(&proof, Some(who)).expect_ok(), r.json());
    }

    // An event newer than the latest checkpoint: the proof signs one first
    // (as `auditstore prove` does) and the new one is served after.
    let id2 = uuid::Uuid::new_v4();
    let e2 = event(id2, "project.deleted", "u1", "p1", "2026-07-31T11:00:00Z");
    server.ingest("org-03", &ingest03, &[e2]);
    let get2 = format!("/api/v1/orgs/org-03/events/{id2}");
    let text2 = server.get(&get2, Some(&member03));
    let p2 = server.get(&format!("{get2}/proof"), Some(&member03)).expect_ok();
    let size2 = check_proof(&p2, "org-03", &text2.body, &origin, &key);
    assert!(p2["leaf_index"].as_u64().unwrap() >= first.size);
    let (now, _) = checkpoint(&server, &origin, &key);
    assert!(now.size >= size2, "{} < {size2}", now.size);

    // Authorized as GET event: another organization's token is refused as
    // GET refuses it; under its own path, another's id is unknown.
    for (path, who) in [
        (&get, &member01),
        (&get, &ingest03),
        (&format!("/api/v1/orgs/org-01/events/{id}"), &member01),
        (
            &format!("/api/v1/orgs/org-03/events/{}", uuid::Uuid::new_v4()),
            &member03,
        ),
        (&"/api/v1/orgs/org-03/events/not-an-id".to_owned(), &member03),
    ] {
        let want = server.get(path, Some(who));
        assert!(want.status == 403 || want.status == 404, "{}", want.body);
        let got = server.get(&format!("{path}/proof"), Some(who));
        got.expect_error(want.status, &want.code());
        assert!(
            !got.body.contains("org-03") || path.contains("org-03"),
            "{}",
            got.body
        );
    }
    server
        .get(&format!("/api/v1/orgs/org-01/events/{id}/proof"), Some(&member01))
        .expect_error(404, "not_found");
    server
        .get(
            &format!("/api/v1/orgs/org-03/events/{}/proof", uuid::Uuid::new_v4()),
            Some(&member03),
        )
        .expect_error(404, "not_found");
    server.get(&proof, None).expect_error(401, "unauthorized");
    server
        .get_auth(&proof, "Bearer nope")
        .expect_error(401, "unauthorized");

    // The OpenAPI document declares them with their content types.
    let doc = server.get("/api/openapi.json", None).expect_ok();
    let ok = |path: &str| doc["paths"][path]["get"]["responses"]["200"]["content"].clone();
    assert!(
        ok("/checkpoint")["text/plain"].is_object(),
        "{}",
        ok("/checkpoint")
    );
    assert!(
        doc["paths"]["/checkpoint"]["get"]["security"].is_null(),
        "no credential"
    );
    for path in [
        "/api/v1/orgs/{org}/events/{id}/proof",
        "/api/v1/orgs/{org}/exports/{id}/manifest",
    ] {
        assert!(ok(path)["application/json"].is_object(), "{path}: {}", ok(path));
        let responses = &doc["paths"][path]["get"]["responses"];
        for status in ["401", "403", "404"] {
            assert!(responses[status].is_object(), "{path} {status}");
        }
    }
}

#[test]
fn manifests() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tool(d, &["ingest", SAMPLE]);
    for (org, plan) in [
        ("org-00", "server"),
        ("org-01", "performance"),
        ("org-03", "scale"),
    ] {
        tool(d, &["org", "set", org, "--plan", plan]);
    }
    let (_, key) = key_show(d);
    let request = |org: &str, from: &str, to: &str| -> String {
        let v = tool(
            d,
            &[
                "--as-of", AS_OF, "export", "request", "--org", org, "--user", "ann", "--from", from, "--to",
                to,
            ],
        );
        v["id"].as_str().unwrap().to_owned()
    };
    let with_data = request("org-03", "2026-07-10", "2026-07-12");
    let no_data = request("org-03", "2026-05-01", "2026-05-03");
    let other = request("org-01", "2026-07-01", "2026-07-05");
    let admin00 = token(d, "org-00", "admin");
    let admin03 = token(d, "org-03", "admin");
    let member03 = token(d, "org-03", "member");
    let ingest03 = token(d, "org-03", "ingest");
    let admin01 = token(d, "org-01", "admin");
    let op = operator(d);

    // Past the 12:30 mark the schedule processes them at start.
    let server = Server::start_with(d, &["--as-of", "2026-08-01T12:31:00Z"], &[]);
    let base = |org: &str, id: &str| format!("/api/v1/orgs/{org}/exports/{id}");
    let deadline = Instant::now() + Duration::from_secs(15);
    for (org, id, who) in [
        ("org-03", &with_data, &admin03),
        ("org-03", &no_data, &admin03),
        ("org-01", &other, &admin01),
    ] {
        while server.get(&base(org, id), Some(who)).expect_ok()["status"] != "success" {
            assert!(Instant::now() < deadline, "{id} not processed");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // An admin gets the stored bytes; they check out against the CSV.
    let manifest = format!("{}/manifest", base("org-03", &with_data));
    let got = server.get(&manifest, Some(&admin03));
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.header("content-type"), Some("application/json"));
    let m: Value = got.json();
    assert_eq!(m["org"], "org-03", "{m}");
    let csv = server.get(
        &format!("{}/download", base("org-03", &with_data)),
        Some(&admin03),
    );
    assert_eq!(csv.status, 200);
    let csv_path = d.join("download.csv");
    std::fs::write(&csv_path, csv.body.as_bytes()).unwrap();
    let checked = check_export(&csv_path, got.body.as_bytes(), &key).expect("the manifest checks out");
    assert_eq!(checked.export_id, with_data);
    assert_eq!(checked.rows as usize, csv.body.lines().count() - 1);
    assert_eq!(server.get(&manifest, Some(&op)).body, got.body, "an operator too");

    // Refused as the download is, in the same order.
    let pending = server
        .post_json(
            "/api/v1/orgs/org-00/exports",
            Some(&admin00),
            &json!({"from": "2026-07-01", "to": "2026-07-02"}),
        )
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cases: Vec<(String, &String, u16, &str)> = vec![
        (base("org-03", &with_data), &member03, 403, "forbidden"),
        (base("org-03", &with_data), &ingest03, 403, "forbidden"),
        (base("org-03", &with_data), &admin01, 403, "forbidden"),
        (base("org-01", &with_data), &admin01, 404, "not_found"),
        (base("org-03", &other), &admin03, 404, "not_found"),
        (
            base("org-03", &uuid::Uuid::new_v4().to_string()),
            &admin03,
            404,
            "not_found",
        ),
        (base("org-03", "not-an-id"), &admin03, 404, "not_found"),
        (base("org-03", &no_data), &admin03, 404, "no_data"),
        (base("org-00", &pending), &admin00, 409, "not_ready"),
    ];
    for (path, who, status, code) in cases {
        let download = server.get(&format!("{path}/download"), Some(who));
        download.expect_error(status, code);
        let refused = server.get(&format!("{path}/manifest"), Some(who));
        refused.expect_error(status, code);
        let (a, b) = (download.json(), refused.json());
        assert_eq!(a["error"]["code"], b["error"]["code"]);
        if status == 404 && path.contains("org-01") {
            assert!(!refused.body.contains("org-03"), "{}", refused.body);
        }
    }
    server.get(&manifest, None).expect_error(401, "unauthorized");
    drop(server);

    // The admin tool prints the same bytes.
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(d)
        .args([
            "--as-of",
            "2026-08-01T12:31:00Z",
            "export",
            "manifest",
            &with_data,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        out.stdout,
        got.body.as_bytes(),
        "the bytes `export manifest` prints"
    );
}

/// A store kept without the tree: both answer `404 not_found` saying so.
#[tokio::test]
async fn a_store_without_a_tree_says_so() {
    use auditstore::auth::{Auth, Role, TokenScope};
    use auditstore::server::{self, AppState, ServerConfig};
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    let dir = tempfile::tempdir().unwrap();
    let options = auditstore::Options {
        integrity: false,
        ..auditstore::Options::default()
    };
    let store = std::sync::Arc::new(auditstore::Store::open_with(dir.path(), options).unwrap());
    let id = uuid::Uuid::new_v4();
    let e = event(id, "project.created", "u1", "p1", "2026-07-31T10:00:00Z");
    store
        .append("org-a", &Event::from_json(&e.to_string()).unwrap())
        .unwrap();
    let member = Auth::new(&store)
        .create_token(
            TokenScope::Org {
                org: "org-a".into(),
                role: Role::Member,
            },
            Some("m"),
            "test",
        )
        .unwrap()
        .token;
    let app = server::app(AppState::new(
        store,
        ServerConfig::default(),
        server::metrics_handle(),
    ));
    for (path, token) in [
        ("/checkpoint".to_owned(), None),
        (format!("/api/v1/orgs/org-a/events/{id}/proof"), Some(&member)),
    ] {
        let mut req = Request::get(path.as_str());
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 404, "{path}");
        let ctype = resp
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(ctype.starts_with("application/json"), "{ctype}");
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "not_found", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("keeps no tamper-evidence tree"),
            "{v}"
        );
    }
}
