//! http.md's exports and settings against real `auditstore serve`
//! processes: requests and their refusals, the rate limit, list, get,
//! download through its lifecycle (restarts with a later `--as-of`), the
//! full export, processing, and settings.

mod http_common;

use std::collections::HashSet;
use std::path::Path;

use http_common::*;
use serde_json::{json, Value};

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/sample-events.jsonl");

struct Tokens {
    admin00: String,
    member00: String,
    admin01: String,
    member01: String,
    admin02: String,
    admin03: String,
    ingest03: String,
    op: String,
}

/// The sample's four organizations: org-00 server, org-01 performance,
/// org-02 free, org-03 scale.
fn setup(dir: &Path) -> Tokens {
    let v = tool(dir, &["ingest", SAMPLE]);
    assert!(v["appended"].as_u64().unwrap() > 1900, "{v}");
    for (org, plan) in [
        ("org-00", "server"),
        ("org-01", "performance"),
        ("org-02", "free"),
        ("org-03", "scale"),
    ] {
        tool(dir, &["org", "set", org, "--plan", plan]);
    }
    Tokens {
        admin00: token(dir, "org-00", "admin"),
        member00: token(dir, "org-00", "member"),
        admin01: token(dir, "org-01", "admin"),
        member01: token(dir, "org-01", "member"),
        admin02: token(dir, "org-02", "admin"),
        admin03: token(dir, "org-03", "admin"),
        ingest03: token(dir, "org-03", "ingest"),
        op: operator(dir),
    }
}

fn exports(org: &str) -> String {
    format!("/api/v1/orgs/{org}/exports")
}

fn range(from: &str, to: &str) -> Value {
    json!({"from": from, "to": to})
}

/// The ids of a CSV export's rows, after checking its header.
fn csv_ids(csv: &str) -> Vec<String> {
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("id,action,actor,target,payload,occurred_at,metadata,version,scope,success,request")
    );
    lines.map(|l| l.split(',').next().unwrap().to_owned()).collect()
}

fn assert_csv_download(r: &Resp) {
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.header("content-type").unwrap().starts_with("text/csv"),
        "{:?}",
        r.headers
    );
    assert!(
        r.header("content-disposition").unwrap().starts_with("attachment"),
        "{:?}",
        r.headers
    );
}

/// Poll until export `id` of `org` has `status` (the schedule runs at start).
fn wait_status(server: &Server, org: &str, id: &str, token: &str, status: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let r = server
            .get(&format!("{}/{id}", exports(org)), Some(token))
            .expect_ok();
        if r["status"] == status {
            return r;
        }
        assert!(std::time::Instant::now() < deadline, "still {r}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn export_requests_through_their_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let t = setup(dir.path());
    let server = Server::start_with(dir.path(), &["--as-of", "2026-08-01T12:00:00Z"], &[]);

    // 201 with the request object of cli.md.
    let r1 = server.post_json(
        &exports("org-01"),
        Some(&t.admin01),
        &range("2026-07-01", "2026-07-05"),
    );
    assert_eq!(r1.status, 201, "{}", r1.body);
    let r1 = r1.json();
    for key in [
        "id",
        "org",
        "requested_by",
        "from",
        "to",
        "window_start",
        "window_end",
        "created_at",
        "status",
        "expires_at",
        "has_data",
        "rows",
        "bytes",
    ] {
        assert!(r1.get(key).is_some(), "{key} in {r1}");
    }
    assert_eq!(r1["org"], "org-01");
    assert_eq!(r1["requested_by"], "org-01-admin", "the token's name");
    assert_eq!(
        (r1["from"].as_str(), r1["to"].as_str()),
        (Some("2026-07-01"), Some("2026-07-05"))
    );
    assert_eq!(r1["window_start"], "2026-06-30T00:00:00Z");
    assert_eq!(r1["window_end"], "2026-07-07T00:00:00Z");
    assert_eq!(r1["status"], "requested");
    assert!(r1["expires_at"].is_null());
    assert!(
        r1["created_at"]
            .as_str()
            .unwrap()
            .starts_with("2026-08-01T12:00:0"),
        "the --as-of clock: {r1}"
    );

    // The plan's limit: 429 with next_allowed_at and Retry-After.
    let limited = server.post_json(
        &exports("org-01"),
        Some(&t.admin01),
        &range("2026-07-01", "2026-07-05"),
    );
    limited.expect_error(429, "rate_limited");
    assert!(limited.json()["error"]["next_allowed_at"]
        .as_str()
        .unwrap()
        .starts_with("2026-08-31T12:00:0"));
    let retry: u64 = limited
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((30 * 86400 - 5..=30 * 86400 + 5).contains(&retry), "{retry}");

    // Who may, in the order of exports.md; then the body's validity.
    let ok_range = range("2026-07-01", "2026-07-05");
    server
        .post_json(&exports("org-01"), Some(&t.member01), &ok_range)
        .expect_error(403, "forbidden");
    server
        .post_json(&exports("org-02"), Some(&t.admin02), &ok_range)
        .expect_error(403, "plan_not_eligible");
    for bad in [
        json!("nope"),
        json!([]),
        json!(["2026-07-01", "2026-07-02"]),
        json!({"from": "2026-07-01"}),
        json!({"from": "2026-07-01", "to": "2026-07-02", "user": "x"}),
        json!({"from": "2026-13-01", "to": "2026-07-02"}),
        json!({"from": "07/01/2026", "to": "2026-07-02"}),
        json!({"from": 20260701, "to": "2026-07-02"}),
    ] {
        server
            .post_json(&exports("org-03"), Some(&t.admin03), &bad)
            .expect_error(400, "invalid_request");
    }
    server
        .call(
            "POST",
            &exports("org-03"),
            Some(&t.admin03),
            Some("application/json"),
            Some(b"{\"from\": "),
        )
        .expect_error(400, "invalid_request");
    for (from, to, code) in [
        ("2026-07-05", "2026-07-01", "invalid_range"),
        ("2025-07-31", "2026-07-01", "range_too_old"),
        ("2026-07-01", "2026-08-02", "range_in_future"),
    ] {
        server
            .post_json(&exports("org-03"), Some(&t.admin03), &range(from, to))
            .expect_error(422, code);
    }
    // Range checks come before the rate limit.
    server
        .post_json(
            &exports("org-01"),
            Some(&t.admin01),
            &range("2026-07-05", "2026-07-01"),
        )
        .expect_error(422, "invalid_range");

    // List (newest first) and get.
    let with_data = server.post_json(
        &exports("org-03"),
        Some(&t.admin03),
        &range("2026-07-10", "2026-07-12"),
    );
    assert_eq!(with_data.status, 201);
    let with_data = with_data.json();
    let no_data = server
        .post_json(
            &exports("org-03"),
            Some(&t.admin03),
            &range("2026-05-01", "2026-05-03"),
        )
        .json();
    assert_eq!(
        server.get(&exports("org-03"), Some(&t.admin03)).expect_ok(),
        json!([no_data, with_data])
    );
    let id3 = with_data["id"].as_str().unwrap();
    assert_eq!(
        server
            .get(&format!("{}/{id3}", exports("org-03")), Some(&t.admin03))
            .expect_ok(),
        with_data
    );
    let foreign = format!("{}/{}", exports("org-03"), r1["id"].as_str().unwrap());
    let r = server.get(&foreign, Some(&t.admin03));
    r.expect_error(404, "not_found");
    assert!(!r.body.contains("org-01"), "{}", r.body);
    server
        .get(&format!("{foreign}/download"), Some(&t.admin03))
        .expect_error(404, "not_found");
    server
        .get(
            &format!("{}/{}", exports("org-03"), uuid::Uuid::new_v4()),
            Some(&t.admin03),
        )
        .expect_error(404, "not_found");
    server
        .get(&format!("{}/not-an-id", exports("org-03")), Some(&t.admin03))
        .expect_error(404, "not_found");
    let download3 = format!("{}/{id3}/download", exports("org-03"));
    server
        .get(&download3, Some(&t.admin03))
        .expect_error(409, "not_ready");
    server
        .get(&download3, Some(&t.ingest03))
        .expect_error(403, "forbidden");

    // The full export: server plan only, admins only.
    let all00 = ids(&server.all_events("org-00", &t.member00, "2025-01-01", "2027-01-01", 1000));
    assert!(all00.len() > 400);
    let full = server.get("/api/v1/orgs/org-00/export/full", Some(&t.admin00));
    assert_csv_download(&full);
    let full_ids = csv_ids(&full.body);
    // Every event, and at most the full export's own audit event besides.
    assert!(full_ids.starts_with(&all00), "the retained log in order");
    assert!(full_ids.len() <= all00.len() + 1, "{} rows", full_ids.len());
    // Compressed for a client that asks: the stream ends cleanly (it once
    // aborted the connection: the gzip layer polled the ended stream).
    let req = ureq::http::Request::get(server.url("/api/v1/orgs/org-00/export/full"))
        .header("authorization", format!("Bearer {}", t.admin00))
        .header("accept-encoding", "gzip")
        .body(())
        .unwrap();
    let mut gz = server.agent.run(req).unwrap();
    assert_eq!(gz.status(), 200);
    assert_eq!(gz.headers().get("content-encoding").unwrap(), "gzip");
    let bytes = gz
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .expect("the whole compressed body");
    assert!(
        bytes.starts_with(&[0x1f, 0x8b]) && bytes.len() > 1000,
        "{} bytes",
        bytes.len()
    );
    server
        .get("/api/v1/orgs/org-03/export/full", Some(&t.admin03))
        .expect_error(403, "plan_not_eligible");
    server
        .get("/api/v1/orgs/org-02/export/full", Some(&t.admin02))
        .expect_error(403, "plan_not_eligible");
    server
        .get("/api/v1/orgs/org-00/export/full", Some(&t.member00))
        .expect_error(403, "forbidden");

    // Processing now handles nothing: every request is after the 11:30 mark.
    server
        .post_json("/api/v1/exports/process", Some(&t.admin03), &json!({}))
        .expect_error(403, "forbidden");
    let run = server
        .call("POST", "/api/v1/exports/process", Some(&t.op), None, None)
        .expect_ok();
    assert_eq!(run, json!({"processed": [], "expired": []}));
    drop(server);

    // After the 12:30 mark the schedule has processed them.
    let server = Server::start_with(dir.path(), &["--as-of", "2026-08-01T12:31:00Z"], &[]);
    let done = wait_status(&server, "org-03", id3, &t.admin03, "success");
    assert_eq!(done["has_data"], true);
    assert!(
        done["expires_at"]
            .as_str()
            .unwrap()
            .starts_with("2026-08-11T12:3"),
        "{done}"
    );
    let csv = server.get(&download3, Some(&t.admin03));
    assert_csv_download(&csv);
    assert_eq!(
        (done["window_start"].as_str(), done["window_end"].as_str()),
        (Some("2026-07-09T00:00:00Z"), Some("2026-07-14T00:00:00Z"))
    );
    let window = ids(&server.all_events("org-03", &t.op, "2026-07-09", "2026-07-14", 1000));
    assert!(!window.is_empty());
    assert_eq!(csv_ids(&csv.body), window, "the window's events in order");
    assert_eq!(done["rows"].as_u64(), Some(window.len() as u64));
    let nothing = no_data["id"].as_str().unwrap();
    wait_status(&server, "org-03", nothing, &t.admin03, "success");
    server
        .get(
            &format!("{}/{nothing}/download", exports("org-03")),
            Some(&t.admin03),
        )
        .expect_error(404, "no_data");
    let run = server
        .call("POST", "/api/v1/exports/process", Some(&t.op), None, None)
        .expect_ok();
    assert_eq!(run, json!({"processed": [], "expired": []}), "nothing left to do");
    drop(server);

    // Ten days later: expired.
    let server = Server::start_with(dir.path(), &["--as-of", "2026-08-12T13:00:00Z"], &[]);
    server
        .get(&download3, Some(&t.admin03))
        .expect_error(410, "expired");
    wait_status(&server, "org-03", id3, &t.admin03, "expired");
}

#[test]
fn settings_get_and_put() {
    let dir = tempfile::tempdir().unwrap();
    let op = operator(dir.path());
    let admin = token(dir.path(), "org-s", "admin");
    let member = token(dir.path(), "org-s", "member");
    let ingest = token(dir.path(), "org-s", "ingest");
    let server = Server::start(dir.path());
    let path = "/api/v1/orgs/org-s/settings";

    let defaults = json!({"org": "org-s", "plan": "free", "retention_days": 365});
    assert_eq!(server.get(path, Some(&admin)).expect_ok(), defaults);
    assert_eq!(server.get(path, Some(&op)).expect_ok(), defaults);
    server.get(path, Some(&member)).expect_error(403, "forbidden");
    server.get(path, Some(&ingest)).expect_error(403, "forbidden");
    server
        .put_json(path, Some(&admin), &json!({"plan": "server"}))
        .expect_error(403, "forbidden");
    server
        .put_json(path, Some(&member), &json!("not even valid"))
        .expect_error(403, "forbidden");

    let changed = server
        .put_json(path, Some(&op), &json!({"plan": "scale", "retention_days": 30}))
        .expect_ok();
    assert_eq!(
        changed,
        json!({"org": "org-s", "plan": "scale", "retention_days": 30})
    );
    let changed = server
        .put_json(path, Some(&op), &json!({"retention_days": 3650}))
        .expect_ok();
    assert_eq!(
        changed,
        json!({"org": "org-s", "plan": "scale", "retention_days": 3650})
    );
    assert_eq!(server.put_json(path, Some(&op), &json!({})).expect_ok(), changed);
    assert_eq!(server.get(path, Some(&admin)).expect_ok(), changed);

    for bad in [
        json!({"plan": "gold"}),
        json!({"plan": 1}),
        json!({"retention_days": 0}),
        json!({"retention_days": 3651}),
        json!({"retention_days": -1}),
        json!({"retention_days": "30"}),
        json!({"retention_days": 1.5}),
        json!({"colour": "red"}),
        json!({"plan": "scale", "org": "org-s"}),
        json!([]),
        json!([null, null]),
        json!(["scale", 30]),
        json!(null),
    ] {
        server
            .put_json(path, Some(&op), &bad)
            .expect_error(400, "invalid_request");
    }
    server
        .call(
            "PUT",
            path,
            Some(&op),
            Some("application/json"),
            Some(b"plan=free"),
        )
        .expect_error(400, "invalid_request");
    assert_eq!(
        server.get(path, Some(&admin)).expect_ok(),
        changed,
        "refusals change nothing"
    );

    // An organization the operator sets up through the API.
    let new = server.put_json(
        "/api/v1/orgs/org-new/settings",
        Some(&op),
        &json!({"plan": "performance"}),
    );
    assert_eq!(
        new.expect_ok(),
        json!({"org": "org-new", "plan": "performance", "retention_days": 365})
    );
    server
        .put_json(
            "/api/v1/orgs/tab%09org/settings",
            Some(&op),
            &json!({"plan": "free"}),
        )
        .expect_error(400, "invalid_request");
    let seen: HashSet<String> = server
        .all_events("org-s", &op, "2020-01-01", "2100-01-01", 100)
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        seen.contains("org.settings.update"),
        "the change is audited: {seen:?}"
    );
}

/// An organization's name with non-ASCII bytes, a space and a quote still
/// gives a valid `Content-Disposition` (it was a `500`).
#[test]
fn full_export_of_an_org_with_any_name() {
    let dir = tempfile::tempdir().unwrap();
    let org = "orgé \"x\";";
    tool(dir.path(), &["org", "set", org, "--plan", "server"]);
    let admin = token(dir.path(), org, "admin");
    let ingest = token(dir.path(), org, "ingest");
    let server = Server::start(dir.path());
    let path = "/api/v1/orgs/org%C3%A9%20%22x%22%3B";
    let e = event(uuid::Uuid::new_v4(), "a.b", "u", "t", "2026-07-01T00:00:00Z");
    server.ingest(
        path.trim_start_matches("/api/v1/orgs/"),
        &ingest,
        std::slice::from_ref(&e),
    );
    let full = server.get(&format!("{path}/export/full"), Some(&admin));
    assert_csv_download(&full);
    let disposition = full.header("content-disposition").unwrap();
    assert!(
        disposition.contains("filename=\"audit-log-org____x__-full.csv\""),
        "{disposition}"
    );
    assert!(
        disposition.contains("filename*=UTF-8''audit-log-org%C3%A9%20%22x%22%3B-full.csv"),
        "{disposition}"
    );
    assert!(csv_ids(&full.body).contains(&e["id"].as_str().unwrap().to_owned()));
}
