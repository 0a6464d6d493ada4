//! State changes go through the partitions' streams (shared/spec/cluster.md:
//! "Everything that changes state goes through the partition's stream"):
//! three NATS servers and three `auditstore serve --cluster` nodes on
//! loopback, with empty stores, and
//! - a token made through one node's admin socket works on the others, and
//!   revoking it through another stops it on all;
//! - settings changed through one node are what the others answer;
//! - export requests through all three nodes, at once, hit the plan's
//!   limit once, cluster-wide: exactly the limit is admitted;
//! - every node builds the export at the schedule's mark, the same CSV
//!   byte for byte;
//! - a user added through one node exists on the others.
//!
//! The nodes' schedule is every minute (an `export-policy.json` in each
//! data directory) and their clocks (`--as-of`) read :40 seconds past a
//! minute at the first start, so that the first mark comes soon.
#![cfg(feature = "cluster")]

mod cluster_common;

use std::time::Duration;

use cluster_common::{
    agent, get, get_bytes, post, send, sorted_ids, start_nats, tool, tool_status, wait_for, Node,
};
use serde_json::{json, Value};

const PARTITIONS: u32 = 4;
const ORG: &str = "org-cmd";
/// The scale plan's limit (exports.md): 3 requests per 30 days.
const LIMIT: usize = 3;

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn commands_go_through_the_streams_to_every_node() {
    let Some(nats_bin) = cluster_common::nats_server("cluster_commands") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    let (_nats, urls) = start_nats(&nats_bin, root, "cmdtest");
    // Clocks at :40 past a minute when the first node starts; all nodes
    // run the same offset from the real clock.
    let real = chrono::Utc::now();
    let offset = chrono::Duration::seconds(40 - i64::from(chrono::Timelike::second(&real)));
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| {
            let mut n = Node::new(root, i, &urls, "cmdtest", PARTITIONS);
            n.clock_offset = Some(offset);
            // A slow machine (two cores shared with builds) must not turn
            // an answer into a 503: the test is about the decisions.
            n.extra = vec!["--read-wait-ms".into(), "20000".into()];
            std::fs::create_dir_all(&n.dir).unwrap();
            std::fs::write(
                n.dir.join("export-policy.json"),
                r#"{"schedule": {"period_minutes": 1, "minute": 0}}"#,
            )
            .unwrap();
            n
        })
        .collect();
    for n in &mut nodes {
        n.start();
    }
    let bases: Vec<String> = nodes.iter().map(Node::base).collect();
    let agent = agent();
    let settings = |base: &str| format!("{base}/api/v1/orgs/{ORG}/settings");

    // A token made through node 0's admin socket: node 0 answered once it
    // applied it; the others apply it from the stream.
    let op = tool(&nodes[0].dir, &["token", "create", "--operator", "--name", "op"]);
    let token = op["token"].as_str().unwrap().to_owned();
    assert_eq!(op["role"], "operator");
    let (status, text) = get(&agent, &settings(&bases[0]), &token).unwrap();
    assert_eq!(
        status, 200,
        "node 0 answered the token before applying it: {text}"
    );
    for base in &bases[1..] {
        wait_for(&format!("the token on {base}"), Duration::from_secs(10), || {
            get(&agent, &settings(base), &token)
                .ok()
                .filter(|(s, _)| *s == 200)
        });
    }

    // Settings through node 0; nodes 1 and 2 answer them at once (a read
    // waits until the node applied its partition as far as the stream).
    let (status, text) = send(
        &agent,
        "PUT",
        &settings(&bases[0]),
        &token,
        r#"{"plan":"scale","retention_days":400}"#,
    )
    .unwrap();
    assert_eq!(status, 200, "{text}");
    for base in &bases {
        let (status, text) = get(&agent, &settings(base), &token).unwrap();
        assert_eq!(status, 200, "{text}");
        let v = json_of(&text);
        assert_eq!(
            (v["plan"].clone(), v["retention_days"].clone()),
            (json!("scale"), json!(400)),
            "{base}"
        );
    }
    // The same through a node's admin socket (`org set`).
    let set = tool(
        &nodes[2].dir,
        &["org", "set", "org-other", "--plan", "performance"],
    );
    assert_eq!(set["plan"], "performance", "{set}");
    let (status, text) = get(&agent, &settings(&bases[0]).replace(ORG, "org-other"), &token).unwrap();
    assert_eq!(
        (status, json_of(&text)["plan"].clone()),
        (200, json!("performance")),
        "{text}"
    );
    // A bad value is refused before anything is published.
    let (status, _) = send(&agent, "PUT", &settings(&bases[1]), &token, r#"{"plan":"gold"}"#).unwrap();
    assert_eq!(status, 400);

    // Events of today (by the nodes' clock), through node 1.
    let today = (chrono::Utc::now() + offset).date_naive();
    let events: Vec<Value> = (0..40)
        .map(|k| {
            json!({
                "id": format!("00000000-0000-4000-8000-{k:012}"),
                "action": "cmd.test",
                "actor": {"id": "u", "type": "user"},
                "target": {"id": format!("t{k}"), "type": "thing"},
                "occurred_at": format!("{today}T00:00:{:02}Z", k % 60),
                "success": true,
            })
        })
        .collect();
    let (status, text) = post(
        &agent,
        &format!("{}/api/v1/orgs/{ORG}/events", bases[1]),
        &token,
        &Value::from(events).to_string(),
    )
    .unwrap();
    assert_eq!(status, 200, "{text}");

    // Rules are evaluated where the request is applied, alike everywhere:
    // a free plan's organization is refused, a reversed range too.
    let body = json!({"from": today.to_string(), "to": today.to_string()}).to_string();
    let (status, text) = post(
        &agent,
        &format!("{}/api/v1/orgs/org-free/exports", bases[2]),
        &token,
        &body,
    )
    .unwrap();
    assert_eq!(
        (status, json_of(&text)["error"]["code"].clone()),
        (403, json!("plan_not_eligible")),
        "{text}"
    );
    let yesterday = today.pred_opt().unwrap().to_string();
    let reversed = json!({"from": today.to_string(), "to": yesterday}).to_string();
    let exports_url = |base: &str| format!("{base}/api/v1/orgs/{ORG}/exports");
    let (status, text) = post(&agent, &exports_url(&bases[1]), &token, &reversed).unwrap();
    assert_eq!(
        (status, json_of(&text)["error"]["code"].clone()),
        (422, json!("invalid_range")),
        "{text}"
    );

    // Six requests at once, two through each node: the limit (3) holds
    // cluster-wide, counted once.
    let answers: Vec<(u16, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|k| {
                let (url, body, token) = (exports_url(&bases[k % 3]), body.clone(), token.clone());
                s.spawn(move || post(&cluster_common::agent(), &url, &token, &body).unwrap())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut created: Vec<String> = Vec::new();
    for (status, text) in &answers {
        let v = json_of(text);
        match status {
            201 => {
                assert_eq!(v["status"], "requested", "{v}");
                assert_eq!(v["requested_by"], "op", "{v}");
                created.push(v["id"].as_str().unwrap().to_owned());
            }
            429 => {
                assert_eq!(v["error"]["code"], "rate_limited", "{v}");
                assert!(v["error"]["next_allowed_at"].is_string(), "{v}");
            }
            _ => panic!("an export request answered {status} {text}"),
        }
    }
    assert_eq!(created.len(), LIMIT, "answers: {answers:?}");
    // And the next one through any node is refused, the same way.
    let mut refusals = Vec::new();
    for base in &bases {
        let (status, text) = post(&agent, &exports_url(base), &token, &body).unwrap();
        assert_eq!(status, 429, "{base}: {text}");
        let v = json_of(&text);
        refusals.push(v["error"]["next_allowed_at"].clone());
    }
    // And through an admin socket (`export request`), the same refusal.
    let (code, out, err) = tool_status(
        &nodes[1].dir,
        &[
            "export",
            "request",
            "--org",
            ORG,
            "--user",
            "cli",
            "--from",
            &today.to_string(),
            "--to",
            &today.to_string(),
        ],
    );
    assert_ne!(code, 0, "{out}");
    let refusal = format!("{out}{err}");
    assert!(
        refusal.contains("rate_limited") && refusal.contains("next_allowed_at"),
        "{refusal}"
    );
    assert!(refusals.windows(2).all(|w| w[0] == w[1]), "{refusals:?}");
    created.sort();
    for base in &bases {
        let (status, text) = get(&agent, &exports_url(base), &token).unwrap();
        assert_eq!(status, 200, "{text}");
        assert_eq!(sorted_ids(&text), created, "{base}");
    }

    // The schedule's next mark (within a minute) builds them on every
    // node, from the same events: the same CSV, byte for byte.
    let id = &created[0];
    let mut files = Vec::new();
    for base in &bases {
        let url = format!("{}/{id}", exports_url(base));
        let request = wait_for(&format!("{url} processed"), Duration::from_secs(90), || {
            let (status, text) = get(&agent, &url, &token).ok()?;
            let v = json_of(&text);
            (status == 200 && v["status"] != "requested").then_some(v)
        });
        assert_eq!(request["status"], "success", "{request}");
        let (status, csv) = get_bytes(&agent, &format!("{url}/download"), &token);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&csv));
        files.push((request, csv));
    }
    let (first, csv) = &files[0];
    let text = String::from_utf8_lossy(csv);
    assert!(text.contains("00000000-0000-4000-8000-000000000039"), "{text}");
    for (request, other) in &files[1..] {
        assert_eq!(request["rows"], first["rows"]);
        assert_eq!(request["completed_at"], first["completed_at"]);
        assert!(other == csv, "the nodes built different CSV files");
    }
    // A processing run on request: answered once node 2 applied it on
    // every partition; nothing made before the last mark is left.
    let (status, text) = post(
        &agent,
        &format!("{}/api/v1/exports/process", bases[2]),
        &token,
        "",
    )
    .unwrap();
    assert_eq!(status, 200, "{text}");
    let v = json_of(&text);
    assert!(v["processed"].is_array() && v["expired"].is_array(), "{v}");
    let (_, text) = get(&agent, &exports_url(&bases[2]), &token).unwrap();
    assert!(
        json_of(&text)
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "success"),
        "{text}"
    );

    // An organization's token made through node 1 works through node 2;
    // revoked through node 2, it stops there at once and on the others as
    // soon as they apply the revocation.
    let admin = tool(
        &nodes[1].dir,
        &[
            "token", "create", "--org", ORG, "--role", "admin", "--name", "ann",
        ],
    );
    let admin_token = admin["token"].as_str().unwrap().to_owned();
    let admin_id = admin["id"].as_str().unwrap().to_owned();
    wait_for("the admin token on node 2", Duration::from_secs(10), || {
        get(&agent, &exports_url(&bases[2]), &admin_token)
            .ok()
            .filter(|(s, _)| *s == 200)
    });
    let listed = tool(&nodes[0].dir, &["token", "list", "--org", ORG]);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == admin_id.as_str()),
        "{listed}"
    );
    let revoked = tool(&nodes[2].dir, &["token", "revoke", &admin_id]);
    assert_eq!(revoked["revoked"], admin_id.as_str());
    let (status, _) = get(&agent, &exports_url(&bases[2]), &admin_token).unwrap();
    assert_eq!(status, 401, "node 2 answered the revocation before applying it");
    for base in &bases {
        wait_for(
            &format!("the revocation on {base}"),
            Duration::from_secs(10),
            || {
                get(&agent, &exports_url(base), &admin_token)
                    .ok()
                    .filter(|(s, _)| *s == 401)
            },
        );
    }
    // A token no node holds is refused as without a cluster.
    let (code, out, err) = tool_status(&nodes[0].dir, &["token", "revoke", &admin_id]);
    assert_ne!(code, 0);
    assert!(format!("{out}{err}").contains("not_found"), "{out} {err}");

    // A user added through node 0 exists for node 1, which refuses the
    // same name (applied after node 0's, in the stream's order).
    let (ok, text) = cluster_common::user_add(&nodes[0].dir, ORG, "alice", "a long enough password");
    assert!(ok, "{text}");
    let (ok, text) = cluster_common::user_add(&nodes[1].dir, ORG, "alice", "a long enough password");
    assert!(
        !ok && text.contains("conflict"),
        "second user add: ok={ok}: {text:?}"
    );
}
