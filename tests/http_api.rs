//! http.md against a real `auditstore serve`: the operations endpoints,
//! ingest, query (every parameter, pagination), get. The 401 rules and the
//! order of checks are in `http_authz.rs`.
//! Exports and settings are in `http_exports.rs`, the cross-organization
//! matrix in `http_authz.rs`.

mod http_common;

use std::collections::HashSet;

use http_common::*;
use serde_json::{json, Value};
use uuid::Uuid;

const EVENTS: &str = "/api/v1/orgs/org-a/events";

/// A store with tokens of org-a; (dir, ingest, member, operator).
fn setup() -> (tempfile::TempDir, String, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let ingest = token(dir.path(), "org-a", "ingest");
    let member = token(dir.path(), "org-a", "member");
    let op = operator(dir.path());
    (dir, ingest, member, op)
}

#[test]
fn health_openapi_and_metrics() {
    let (dir, ingest, _, _) = setup();
    let server = Server::start(dir.path());
    assert_eq!(server.get("/healthz", None).expect_ok(), json!({"status": "ok"}));

    let doc = server.get("/api/openapi.json", None).expect_ok();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    for (method, path) in [
        ("get", "/healthz"),
        ("get", "/metrics"),
        ("get", "/api/openapi.json"),
        ("post", "/api/v1/orgs/{org}/events"),
        ("get", "/api/v1/orgs/{org}/events"),
        ("get", "/api/v1/orgs/{org}/events/{id}"),
        ("get", "/api/v1/orgs/{org}/events/{id}/proof"),
        ("get", "/checkpoint"),
        ("post", "/api/v1/orgs/{org}/exports"),
        ("get", "/api/v1/orgs/{org}/exports"),
        ("get", "/api/v1/orgs/{org}/exports/{id}"),
        ("get", "/api/v1/orgs/{org}/exports/{id}/download"),
        ("get", "/api/v1/orgs/{org}/exports/{id}/manifest"),
        ("get", "/api/v1/orgs/{org}/export/full"),
        ("get", "/api/v1/orgs/{org}/settings"),
        ("put", "/api/v1/orgs/{org}/settings"),
        ("post", "/api/v1/exports/process"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "openapi lacks {method} {path}"
        );
    }

    let id = Uuid::new_v4();
    let report = server.ingest(
        "org-a",
        &ingest,
        &[event(id, "user.logged_in", "u1", "t1", "2026-07-01T10:00:00Z")],
    );
    assert_eq!(report["appended"], 1);
    let metrics = server.get("/metrics", None);
    assert_eq!(metrics.status, 200);
    assert!(metrics.header("content-type").unwrap().starts_with("text/plain"));
    let text = &metrics.body;
    assert!(
        text.lines()
            .any(|l| l.starts_with("auditstore_http_requests_total{")
                && l.contains("route=\"/api/v1/orgs/{org}/events\"")
                && l.contains("status=\"200\"")),
        "request counts: {text}"
    );
    let appended = text
        .lines()
        .find(|l| l.starts_with("auditstore_ingest_events_total{") && l.contains("outcome=\"appended\""))
        .unwrap_or_else(|| panic!("ingest counter: {text}"));
    assert!(appended.ends_with(" 1"), "{appended}");
    assert!(text.contains("auditstore_store_events"), "store size: {text}");
    assert!(
        text.contains("auditstore_http_request_duration_seconds"),
        "latencies: {text}"
    );
}

#[test]
fn ingest_bodies_and_reports() {
    let (dir, ingest, member, _) = setup();
    let server = Server::start(dir.path());
    let at = |i: u32| format!("2026-07-01T10:{i:02}:00Z");

    // A JSON array.
    let batch: Vec<Value> = (0..3)
        .map(|i| event(Uuid::new_v4(), "a.b", "u", "t", &at(i)))
        .collect();
    let r = server.ingest("org-a", &ingest, &batch);
    assert_eq!(
        r,
        json!({"appended": 3, "duplicates": 0, "conflicts": 0, "rejected": 0, "errors": []})
    );

    // A single event.
    let one = event(Uuid::new_v4(), "a.b", "u", "t", &at(3));
    let r = server.post_json(EVENTS, Some(&ingest), &one).expect_ok();
    assert_eq!(r["appended"], 1);

    // JSON Lines with blank lines (not counted) and one bad line.
    let n1 = event(Uuid::new_v4(), "a.b", "u", "t", &at(4));
    let n2 = event(Uuid::new_v4(), "a.b", "u", "t", &at(5));
    let ndjson = format!("\n{n1}\n\n   \nnot json\n{n2}\n\n");
    let r = server
        .call(
            "POST",
            EVENTS,
            Some(&ingest),
            Some("application/x-ndjson"),
            Some(ndjson.as_bytes()),
        )
        .expect_ok();
    assert_eq!(
        (r["appended"].as_u64(), r["rejected"].as_u64()),
        (Some(2), Some(1)),
        "{r}"
    );
    assert_eq!(r["errors"].as_array().unwrap().len(), 1);
    assert_eq!(r["errors"][0]["index"], 1, "blank lines are not counted: {r}");
    assert_eq!(r["errors"][0]["code"], "invalid_event");

    // Mixed good and bad events: good ones stored, errors by index.
    let g1 = event(Uuid::new_v4(), "a.b", "u", "t", &at(6));
    let mut unknown = event(Uuid::new_v4(), "a.b", "u", "t", &at(7));
    unknown["colour"] = json!("red");
    let g2 = event(Uuid::new_v4(), "a.b", "u", "t", &at(8));
    let mixed = json!([g1, unknown, g2, 42, {"id": "x"}]);
    let r = server.post_json(EVENTS, Some(&ingest), &mixed).expect_ok();
    assert_eq!(
        (r["appended"].as_u64(), r["rejected"].as_u64()),
        (Some(2), Some(3)),
        "{r}"
    );
    let errors = r["errors"].as_array().unwrap();
    assert_eq!(
        errors
            .iter()
            .map(|e| e["index"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 3, 4]
    );
    assert!(errors
        .iter()
        .all(|e| e["code"] == "invalid_event" && e["message"].is_string()));
    assert!(
        errors[0]["message"].as_str().unwrap().contains("colour"),
        "names the field: {r}"
    );

    // A conflict: same id, other content, at index 1.
    let mut changed = batch[0].clone();
    changed["action"] = json!("c.d");
    let fresh = event(Uuid::new_v4(), "a.b", "u", "t", &at(9));
    let r = server
        .post_json(EVENTS, Some(&ingest), &json!([fresh, changed]))
        .expect_ok();
    assert_eq!(
        (r["appended"].as_u64(), r["conflicts"].as_u64()),
        (Some(1), Some(1)),
        "{r}"
    );
    assert_eq!(
        r["errors"],
        json!([{"index": 1, "code": "conflict", "message": r["errors"][0]["message"]}])
    );

    // A retry of the same body stores nothing twice.
    let r = server.post_json(EVENTS, Some(&ingest), &mixed).expect_ok();
    assert_eq!(
        (r["appended"].as_u64(), r["duplicates"].as_u64()),
        (Some(0), Some(2)),
        "{r}"
    );
    let stored = server.all_events("org-a", &member, "2026-07-01", "2026-07-02", 1000);
    assert_eq!(stored.len(), 3 + 1 + 2 + 2 + 1);
    let unique: HashSet<_> = ids(&stored).into_iter().collect();
    assert_eq!(unique.len(), stored.len(), "each event once");
    let first = stored.iter().find(|e| e["id"] == batch[0]["id"]).unwrap();
    assert_eq!(first["action"], "a.b", "the first write wins");

    // Not JSON at all.
    for body in ["hello", "[1,", "{\"id\": ", ""] {
        server
            .call(
                "POST",
                EVENTS,
                Some(&ingest),
                Some("application/json"),
                Some(body.as_bytes()),
            )
            .expect_error(400, "invalid_request");
    }
}

#[test]
fn body_limit_is_413_with_the_limit() {
    let (dir, ingest, _, _) = setup();
    let server = Server::start_with(dir.path(), &[], &["--body-limit", "1000"]);
    let small = event(Uuid::new_v4(), "a.b", "u", "t", "2026-07-01T00:00:00Z");
    assert_eq!(
        server.post_json(EVENTS, Some(&ingest), &small).expect_ok()["appended"],
        1
    );
    let big: Vec<Value> = (0..20)
        .map(|_| event(Uuid::new_v4(), "a.b", "u", "t", "2026-07-01T00:00:00Z"))
        .collect();
    let r = server.post_json(EVENTS, Some(&ingest), &Value::from(big));
    r.expect_error(413, "too_large");
    assert!(
        r.json()["error"]["message"].as_str().unwrap().contains("1000"),
        "{}",
        r.body
    );
    // 401 comes before the body's own checks.
    server
        .post_json(EVENTS, None, &Value::from(vec![json!("x".repeat(2000))]))
        .expect_error(401, "unauthorized");
}

/// org-a's events for the query tests: 40 events over two days.
fn query_fixture(server: &Server, ingest: &str) -> Vec<Value> {
    let actions = [
        "workflow.job.start",
        "workflow.finish",
        "user.logged_in",
        "workflowx.other",
    ];
    let events: Vec<Value> = (0..40)
        .map(|i| {
            event(
                Uuid::new_v4(),
                actions[i % 4],
                &format!("actor-{}", i % 3),
                &format!("target-{}", i % 5),
                &format!("2026-07-{:02}T{:02}:00:00Z", 1 + i / 20, i % 20),
            )
        })
        .collect();
    assert_eq!(server.ingest("org-a", ingest, &events)["appended"], 40);
    events
}

#[test]
fn query_parameters() {
    let (dir, ingest, member, _) = setup();
    let server = Server::start(dir.path());
    let events = query_fixture(&server, &ingest);
    let q = |query: &str| server.get(&format!("{EVENTS}?{query}"), Some(&member));
    let count = |query: &str| q(query).expect_ok()["events"].as_array().unwrap().len();

    assert_eq!(count("from=2026-07-01&to=2026-07-03"), 40);
    assert_eq!(count("from=2026-07-01&to=2026-07-02"), 20, "to is exclusive");
    assert_eq!(count("from=2026-07-01T05:00:00Z&to=2026-07-01T07:00:00Z"), 2);
    assert_eq!(
        count("from=2026-07-01T07:00:00%2B02:00&to=2026-07-01T07:00:00Z"),
        2,
        "offsets"
    );
    assert_eq!(count("from=2026-07-01&to=2026-07-03&action=workflow.*"), 20);
    assert_eq!(count("from=2026-07-01&to=2026-07-03&action=workflow.finish"), 10);
    assert_eq!(count("from=2026-07-01&to=2026-07-03&action=user.*"), 10);
    let by_actor = q("from=2026-07-01&to=2026-07-03&actor=actor-1").expect_ok();
    assert_eq!(by_actor["events"].as_array().unwrap().len(), 13);
    assert!(by_actor["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actor"]["id"] == "actor-1"));
    assert_eq!(count("from=2026-07-01&to=2026-07-03&target=target-4"), 8);
    assert_eq!(
        count("from=2026-07-01&to=2026-07-03&actor=actor-1&target=target-4&action=workflow.*"),
        1
    );
    assert_eq!(count("from=2026-07-01&to=2026-07-03&limit=1"), 1);
    assert_eq!(count("from=2026-07-01&to=2026-07-03&limit=1000"), 40);
    assert_eq!(count("from=2026-07-01&to=2026-07-03"), 40, "default 100");
    assert_eq!(count("from=2026-08-01&to=2026-08-01"), 0, "an empty range");

    // The page's events in order and in the shape of events.md.
    let page = q("from=2026-07-01&to=2026-07-03&limit=5").expect_ok();
    assert_eq!(
        page["events"][0],
        stored(&events[0]),
        "the stored JSON of the first event"
    );
    let first_page = page["events"].as_array().unwrap();
    let cursor = page["next_cursor"].as_str().unwrap();
    let next = q(&format!("from=2026-07-01&to=2026-07-03&limit=5&cursor={cursor}")).expect_ok();
    assert_eq!(next["events"][0], stored(&events[5]));
    assert_eq!(first_page.len(), 5);

    for bad in [
        "from=2026-07-01&to=2026-07-03&limit=0",
        "from=2026-07-01&to=2026-07-03&limit=1001",
        "from=2026-07-01&to=2026-07-03&limit=abc",
        "from=2026-07-01&to=2026-07-03&limit=-1",
        "from=2026-07-01&to=2026-07-03&limit=",
        "to=2026-07-03",
        "from=2026-07-01",
        "",
        "from=2026-07-32&to=2026-08-01",
        "from=yesterday&to=2026-08-01",
        "from=2026-07-01T10:00:00&to=2026-08-01",
        "from=2026-07-01&to=2026-07-03&cursor=abc",
        "from=2026-07-01&to=2026-07-03&cursor=c1",
        "from=2026-07-01&to=2026-07-03&cursor=c10000000000000000000000000000000000000000000000000000000000",
        "from=2026-07-01&to=2026-07-03&colour=red",
        "from=2026-07-01&from=2026-07-02&to=2026-07-03",
    ] {
        q(bad).expect_error(400, "invalid_request");
    }
    // A cursor of this API with one digit changed is not ours.
    let mut forged = cursor.to_owned().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'0' { b'1' } else { b'0' };
    q(&format!(
        "from=2026-07-01&to=2026-07-03&cursor={}",
        String::from_utf8(forged).unwrap()
    ))
    .expect_error(400, "invalid_request");
    q("from=2026-07-03&to=2026-07-01").expect_error(422, "invalid_range");
}

#[test]
fn pagination_by_link_and_cursor_has_no_gap_or_repeat() {
    let (dir, ingest, member, _) = setup();
    let server = Server::start(dir.path());
    // 250 events, many sharing one instant so that ties by id cross pages.
    let events: Vec<Value> = (0..250)
        .map(|i| {
            event(
                Uuid::new_v4(),
                "a.b",
                "u",
                "t",
                &format!("2026-07-01T10:{:02}:00Z", i % 7),
            )
        })
        .collect();
    server.ingest("org-a", &ingest, &events);
    let full = ids(&server
        .get(
            &format!("{EVENTS}?from=2026-07-01&to=2026-07-02&limit=1000"),
            Some(&member),
        )
        .expect_ok()["events"]
        .as_array()
        .unwrap()
        .clone());
    assert_eq!(full.len(), 250);

    // By the Link header.
    let mut url = format!("{EVENTS}?from=2026-07-01&to=2026-07-02&limit=7&action=a.*");
    let mut walked = Vec::new();
    let mut pages = 0;
    loop {
        let page = server.get(&url, Some(&member));
        let body = page.expect_ok();
        walked.extend(ids(body["events"].as_array().unwrap()));
        pages += 1;
        match page.header("link") {
            Some(link) => {
                assert!(body["next_cursor"].is_string(), "a Link with a cursor");
                let target = link
                    .strip_prefix('<')
                    .and_then(|l| l.split_once(">; rel=\"next\""))
                    .unwrap()
                    .0;
                assert!(target.starts_with(&server.base), "{target}");
                assert!(
                    target.contains("action=a.*") || target.contains("action=a.%2A"),
                    "same parameters: {target}"
                );
                url = target.to_owned();
            }
            None => {
                assert!(body["next_cursor"].is_null(), "the last page: {body}");
                break;
            }
        }
    }
    assert_eq!(walked, full, "by Link: no gap, no repeat, same order");
    assert_eq!(pages, 250usize.div_ceil(7));

    // By next_cursor, with a page size that divides the total: the page
    // holding the last event ends the walk (no empty page after it).
    assert_eq!(
        ids(&server.all_events("org-a", &member, "2026-07-01", "2026-07-02", 50)),
        full
    );
    let last = server.get(
        &format!("{EVENTS}?from=2026-07-01&to=2026-07-02&limit=250"),
        Some(&member),
    );
    assert!(last.expect_ok()["next_cursor"].is_null());
    assert_eq!(last.header("link"), None);
}

#[test]
fn pages_stay_gap_free_while_appends_go_on() {
    let (dir, ingest, member, _) = setup();
    let server = Server::start(dir.path());
    let at = |i: usize| format!("2026-07-01T{:02}:{:02}:00Z", (i / 60) % 24, i % 60);
    let before: Vec<Value> = (0..300)
        .map(|i| event(Uuid::new_v4(), "a.b", "u", "t", &at(i * 3)))
        .collect();
    server.ingest("org-a", &ingest, &before);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let walked = std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let batch: Vec<Value> = (0..10)
                    .map(|k| event(Uuid::new_v4(), "a.b", "u", "t", &at((i * 37 + k * 11) % 1440)))
                    .collect();
                server.ingest("org-a", &ingest, &batch);
                i += 1;
            }
        });
        let walked = server.all_events("org-a", &member, "2026-07-01", "2026-07-02", 9);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        walked
    });
    let keys: Vec<(String, String)> = walked
        .iter()
        .map(|e| {
            (
                e["occurred_at"].as_str().unwrap().to_owned(),
                e["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "strictly increasing: no repeat"
    );
    let seen: HashSet<String> = ids(&walked).into_iter().collect();
    assert!(
        ids(&before).iter().all(|id| seen.contains(id)),
        "every event stored before the walk is on a page"
    );
}

#[test]
fn get_one_event() {
    let (dir, ingest, member, _) = setup();
    let b_ingest = token(dir.path(), "org-b", "ingest");
    tool(dir.path(), &["org", "set", "org-r", "--retention-days", "1"]);
    let r_ingest = token(dir.path(), "org-r", "ingest");
    let r_member = token(dir.path(), "org-r", "member");
    let server = Server::start_with(dir.path(), &["--as-of", "2026-07-10T12:00:00Z"], &[]);
    let a = event(Uuid::new_v4(), "a.b", "u", "t", "2026-07-09T00:00:00Z");
    let b = event(Uuid::new_v4(), "a.b", "u", "t", "2026-07-09T00:00:00Z");
    let old = event(Uuid::new_v4(), "a.b", "u", "t", "2026-07-08T00:00:00Z");
    let recent = event(Uuid::new_v4(), "a.b", "u", "t", "2026-07-10T00:00:00Z");
    server.ingest("org-a", &ingest, std::slice::from_ref(&a));
    server.ingest("org-b", &b_ingest, std::slice::from_ref(&b));
    server.ingest("org-r", &r_ingest, &[old.clone(), recent.clone()]);

    let got = server.get(&format!("{EVENTS}/{}", a["id"].as_str().unwrap()), Some(&member));
    assert_eq!(got.expect_ok(), stored(&a));
    assert!(got
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    server
        .get(&format!("{EVENTS}/{}", Uuid::new_v4()), Some(&member))
        .expect_error(404, "not_found");
    server
        .get(&format!("{EVENTS}/not-a-uuid"), Some(&member))
        .expect_error(404, "not_found");
    let foreign = server.get(&format!("{EVENTS}/{}", b["id"].as_str().unwrap()), Some(&member));
    foreign.expect_error(404, "not_found");
    assert!(
        !foreign.body.contains("org-b"),
        "reveals nothing of org-b: {}",
        foreign.body
    );

    let r_path = |e: &Value| format!("/api/v1/orgs/org-r/events/{}", e["id"].as_str().unwrap());
    server
        .get(&r_path(&old), Some(&r_member))
        .expect_error(404, "not_found");
    assert_eq!(
        server.get(&r_path(&recent), Some(&r_member)).expect_ok(),
        stored(&recent)
    );
    let in_range = server.all_events("org-r", &r_member, "2026-07-01", "2026-07-11", 100);
    assert_eq!(
        ids(&in_range),
        ids(&[recent]),
        "queries are clamped to retention too"
    );
}

#[test]
fn json_listening_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--json", "serve", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert!(
        v["listening"].as_str().unwrap().starts_with("http://127.0.0.1:"),
        "{line}"
    );
}
