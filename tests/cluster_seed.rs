//! Seeding a node from another's `backup` when the streams no longer hold
//! everything (shared/spec/cluster.md: "A node that was down, or is new,
//! catches up from the stream (and, where the stream no longer holds
//! everything, from a copy of another replica's store made with
//! `backup`)"; docs/cluster.md, "Seeding a node").
//!
//! One NATS server (R1 streams that keep messages 2 s). Node `a` applies
//! three requests; once their messages expired, a new empty node `b`
//! cannot catch up from the streams and says so (`503` naming the
//! backup) instead of serving a partial log (it forwards its clients to
//! `a`, which serves); `c`, seeded from a backup of
//! the running `a`, goes on from the positions recorded in it and holds
//! every event exactly once, also one sent after the backup.
#![cfg(feature = "cluster")]

mod cluster_common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use cluster_common::{agent, get, nats_server, post, tail, tool, tool_status, Nats, Node};
use serde_json::{json, Value};
use uuid::Uuid;

const ORGS: [&str; 2] = ["org-1", "org-2"];

fn batch(n: usize) -> (Vec<String>, String) {
    let now = chrono::Utc::now();
    let events: Vec<Value> = (0..n)
        .map(|k| {
            json!({
                "id": Uuid::new_v4().to_string(),
                "action": "project.update",
                "actor": {"id": "u1", "type": "user"},
                "target": {"id": format!("p{k}"), "type": "project"},
                "occurred_at": (now + chrono::Duration::milliseconds(k as i64)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "success": true,
            })
        })
        .collect();
    let ids = events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    (ids, serde_json::to_string(&events).unwrap())
}

/// `org`'s events from yesterday to tomorrow through `base`.
fn events_url(base: &str, org: &str) -> String {
    let from = (chrono::Utc::now() - chrono::Duration::days(1)).format("%Y-%m-%d");
    let to = (chrono::Utc::now() + chrono::Duration::days(1)).format("%Y-%m-%d");
    format!("{base}/api/v1/orgs/{org}/events?from={from}&to={to}&limit=1000")
}

fn ids_of(agent: &ureq::Agent, base: &str, token: &str, org: &str) -> (u16, Vec<String>, String) {
    let url = events_url(base, org);
    let (status, text) = get(agent, &url, token).unwrap();
    let ids = match status {
        200 => serde_json::from_str::<Value>(&text).unwrap()["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect(),
        _ => Vec::new(),
    };
    (status, ids, text)
}

/// `ids_of`'s request as a node forwards it (answered where it lands).
fn get_forwarded(agent: &ureq::Agent, base: &str, token: &str, org: &str) -> (u16, String) {
    let url = events_url(base, org);
    let request = ureq::http::Request::get(&url)
        .header("authorization", format!("Bearer {token}"))
        .header("x-auditstore-forwarded-by", "test")
        .body(())
        .unwrap();
    let mut answer = agent.run(request).unwrap();
    let status = answer.status().as_u16();
    (status, answer.body_mut().read_to_string().unwrap())
}

/// Every stream's messages expired (status: `messages` 0 everywhere).
fn wait_until_expired(dir: &std::path::Path, urls: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = tool(
            dir,
            &[
                "cluster",
                "status",
                "--cluster",
                urls,
                "--cluster-name",
                "seedtest",
            ],
        );
        let streams = status["streams"].as_array().unwrap();
        if streams.iter().all(|s| s["messages"] == 0)
            && streams.iter().any(|s| s["last_seq"].as_u64() > Some(0))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the streams still hold messages: {status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_new_node_is_seeded_from_a_backup_when_the_streams_expired_what_it_lacks() {
    let Some(nats_bin) = nats_server("cluster_seed") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    let (_nats, urls) = Nats::single(&nats_bin, root);
    let urls = [urls];
    let node = |i: usize| {
        let mut n = Node::new(root, i, &urls, "seedtest", 2);
        n.extra = ["--replicas", "1", "--stream-max-age", "2"]
            .map(String::from)
            .to_vec();
        n
    };
    let mut a = node(0);
    let token = tool(&a.dir, &["token", "create", "--operator", "--name", "seed"])["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // `b` gets the token through a backup taken before `a` ever ran (no
    // positions in it), `c` through the one taken later.
    let mut b = node(1);
    tool(&a.dir, &["backup", b.dir.to_str().unwrap()]);
    a.start();

    let agent = agent();
    let mut sent: Vec<HashSet<String>> = vec![HashSet::new(); ORGS.len()];
    let send = |n: usize, sent: &mut Vec<HashSet<String>>| {
        for (k, org) in ORGS.iter().enumerate() {
            let (ids, body) = batch(n);
            let url = format!("{}/api/v1/orgs/{org}/events", a.base());
            let (status, text) = post(&agent, &url, &token, &body).unwrap();
            assert_eq!(status, 200, "{text}");
            sent[k].extend(ids);
        }
    };
    for round in 0..3 {
        send(10 + round, &mut sent);
    }
    for (k, org) in ORGS.iter().enumerate() {
        let (status, ids, text) = ids_of(&agent, &a.base(), &token, org);
        assert_eq!((status, ids.len()), (200, sent[k].len()), "{text}");
    }
    wait_until_expired(&a.dir, &urls[0]);

    // A node that lacks what expired refuses to serve a partial log: asked
    // as a forwarding node would ask it, it answers `503` naming the
    // backup; asked by a client, it forwards to `a`, which serves it.
    b.start();
    for (k, org) in ORGS.iter().enumerate() {
        let (status, text) = get_forwarded(&agent, &b.base(), &token, org);
        assert_eq!(status, 503, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"]["code"], "unavailable", "{text}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("expired") && message.contains("backup"),
            "{message}"
        );
        let (status, ids, text) = ids_of(&agent, &b.base(), &token, org);
        assert_eq!((status, ids.len()), (200, sent[k].len()), "{text}");
    }
    let status_args = [
        "cluster",
        "status",
        "--cluster",
        &urls[0],
        "--cluster-name",
        "seedtest",
    ];
    let status = tool(&a.dir, &status_args);
    for s in status["streams"].as_array().unwrap() {
        assert_eq!(s["serving"], json!(["n0"]), "{status}");
    }
    assert!(tail(&b.log).contains("expired"), "{}", tail(&b.log));

    // Events ingested straight into a node's data directory would reach
    // no other node: refused.
    b.proc.kill();
    let lines = root.join("direct.jsonl");
    let (_, body) = batch(1);
    let one: Vec<Value> = serde_json::from_str(&body).unwrap();
    std::fs::write(&lines, format!("{}\n", one[0])).unwrap();
    let (code, refusal, _) = tool_status(&b.dir, &["ingest", "--org", "org-1", lines.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(refusal["error"]["code"], "unavailable", "{refusal}");
    assert!(
        refusal["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cluster node"),
        "{refusal}"
    );

    // A backup of the running `a` carries every partition's store, each
    // with its position.
    let mut c = node(2);
    let backup = tool(&a.dir, &["backup", c.dir.to_str().unwrap()]);
    assert!(backup["events"].as_u64().unwrap() >= 66, "{backup}");
    assert_eq!(backup["partitions"], serde_json::json!([0, 1]), "{backup}");
    for p in 0..2 {
        let store = auditstore::partitions::store_dir(&c.dir, p);
        let file = store.join(format!("cluster/seedtest/p{p}.applied"));
        assert_eq!(
            std::fs::metadata(&file).map(|m| m.len()).ok(),
            Some(32),
            "{}",
            file.display()
        );
    }
    // Sent after the backup: `c` takes it from the stream.
    send(5, &mut sent);
    c.start();
    // Every running node holds a lease on its id; a second process with a
    // node's id refuses to start (their consumers would be shared).
    // (`b`, killed above, holds its lease until it lapses.)
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = tool(&a.dir, &status_args);
        let members: Vec<String> = status["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["node"].as_str().unwrap().to_owned())
            .collect();
        assert!(
            members.contains(&"n0".to_owned()) && members.contains(&"n2".to_owned()),
            "{status}"
        );
        if members == ["n0", "n2"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the killed node's lease never lapsed: {status}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let mut twin = node(3);
    twin.id = "n0".into();
    let started = Instant::now();
    let out = twin.command().output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is in use") && stderr.contains("--node"),
        "{stderr}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(6),
        "it waited for the lease to lapse"
    );
    // A node killed a moment ago is back within the lease's time to live.
    a.proc.kill();
    let restarted = Instant::now();
    a.start();
    assert!(restarted.elapsed() < Duration::from_secs(30));
    for node in [&c, &a] {
        for (k, org) in ORGS.iter().enumerate() {
            let (status, ids, text) = ids_of(&agent, &node.base(), &token, org);
            assert_eq!(status, 200, "{}: {text}", node.id);
            let unique: HashSet<String> = ids.iter().cloned().collect();
            assert_eq!(unique.len(), ids.len(), "{}: an event twice", node.id);
            assert_eq!(unique, sent[k], "{}: {org}", node.id);
        }
    }
}
