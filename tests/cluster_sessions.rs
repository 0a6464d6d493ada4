//! Web sessions every node knows (docs/cluster.md, "Web sessions"): three
//! NATS servers and three `auditstore serve --cluster` nodes on loopback,
//! four partitions; node 1 does not apply the organization's partition
//! (docs/cluster.md, "Assignment"), so its web page and API answers come
//! from a node that does ("Routing"), the session going along.
//! - a user signed in on node 0 uses the same cookie, and the CSRF token
//!   derived from it, on node 1: the Audit Log page, an API read, an
//!   unsafe API call with the token (and without it, `403`);
//! - the sessions' bucket holds the hash of the id, never the id, and the
//!   user and end as documented; no node log carries the id;
//! - signed out on node 1, the cookie is refused there at once (its page)
//!   and everywhere within the re-check time (2 s) and a margin;
//! - with every NATS server down, a sign-in is refused (`503`) rather than
//!   leave a session the other nodes cannot see.
#![cfg(feature = "cluster")]

mod cluster_common;
mod page_common;

use std::time::{Duration, Instant};

use cluster_common::{send, start_nats, tool, Node};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use ureq::http::Request;

const ORG: &str = "org-web";
const PASSWORD: &str = "a long enough password";
const CLUSTER: &str = "sesstest";
const PARTITIONS: u32 = 4;

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// An agent that does not follow redirects and keeps no cookies.
fn browser() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

struct Answer {
    status: u16,
    /// The node that answered a forwarded request.
    served_by: Option<String>,
    set_cookies: Vec<String>,
    location: Option<String>,
    body: String,
}

impl Answer {
    fn cookie(&self, name: &str) -> Option<String> {
        page_common::cookie(&self.set_cookies, name)
    }

    fn csrf_field(&self) -> String {
        page_common::csrf_field(&self.body)
    }
}

/// A request with `cookies`, a form body when given, and more headers.
fn request(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    cookies: &[(&str, &str)],
    form: Option<&[(&str, &str)]>,
    headers: &[(&str, &str)],
) -> Answer {
    let mut req = Request::builder().method(method).uri(url);
    if !cookies.is_empty() {
        let cookie: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
        req = req.header("cookie", cookie.join("; "));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = match form {
        Some(pairs) => {
            req = req.header("content-type", "application/x-www-form-urlencoded");
            pairs
                .iter()
                .map(|(k, v)| format!("{k}={}", urlencode(v)))
                .collect::<Vec<_>>()
                .join("&")
        }
        None => String::new(),
    };
    let mut answer = agent.run(req.body(body).unwrap()).unwrap();
    let header = |name: &str| -> Vec<String> {
        answer
            .headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    };
    let set_cookies = header("set-cookie");
    let location = header("location").into_iter().next();
    Answer {
        served_by: header("x-auditstore-node").into_iter().next(),
        status: answer.status().as_u16(),
        set_cookies,
        location,
        body: answer.body_mut().read_to_string().unwrap_or_default(),
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Sign `user` in on `base`: the answer to `POST /signin`.
fn sign_in(agent: &ureq::Agent, base: &str, user: &str) -> Answer {
    let page = request(agent, "GET", &format!("{base}/"), &[], None, &[]);
    assert_eq!(page.status, 200, "{}", page.body);
    let token = page.cookie("auditstore_signin").expect("a sign-in token");
    let form = [("user", user), ("password", PASSWORD), ("csrf", token.as_str())];
    request(
        agent,
        "POST",
        &format!("{base}/signin"),
        &[("auditstore_signin", &token)],
        Some(&form),
        &[],
    )
}

/// The sessions' bucket through NATS at `url`: its live keys, and the last
/// entry of `key` (operation, value).
fn bucket(url: &str, key: &str) -> (Vec<String>, Option<(String, Vec<u8>)>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use futures_util::TryStreamExt;
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let bucket = js
            .get_key_value(format!("AUDIT_{CLUSTER}_SESSIONS"))
            .await
            .unwrap();
        let keys: Vec<String> = bucket.keys().await.unwrap().try_collect().await.unwrap();
        let entry = bucket.entry(key).await.unwrap();
        (
            keys,
            entry.map(|e| (format!("{:?}", e.operation), e.value.to_vec())),
        )
    })
}

#[test]
fn a_session_signed_in_on_one_node_works_on_another_until_signed_out() {
    let Some(nats_bin) = cluster_common::nats_server("cluster_sessions") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    let (mut nats, urls) = start_nats(&nats_bin, root, CLUSTER);
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| {
            let mut n = Node::new(root, i, &urls, CLUSTER, PARTITIONS);
            n.extra = vec!["--read-wait-ms".into(), "20000".into()];
            n
        })
        .collect();
    for n in &mut nodes {
        n.start();
    }
    let (b0, b1) = (nodes[0].base(), nodes[1].base());
    let agent = browser();
    // Node 1 does not apply ORG's partition (rendezvous hashing over n0,
    // n1, n2 chooses n0 and n2 for it): wait until it let go of it.
    let p = auditstore::cluster::partition::partition_of(ORG, PARTITIONS);
    let chosen = auditstore::cluster::assign::chosen(p, &["n0", "n1", "n2"]);
    assert!(!chosen.contains(&"n1"), "{chosen:?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = tool(
            &nodes[0].dir,
            &[
                "cluster",
                "status",
                "--cluster",
                &urls[0],
                "--cluster-name",
                CLUSTER,
            ],
        );
        let n1 = status["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["node"] == "n1")
            .cloned()
            .unwrap_or_default();
        let serving = status["streams"][p as usize]["serving"]
            .as_array()
            .map_or(0, Vec::len);
        if serving == 2 && n1["applying"].as_array().is_some_and(|a| !a.contains(&json!(p))) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 1 still applies partition {p}: {status}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    let op = tool(&nodes[0].dir, &["token", "create", "--operator", "--name", "op"]);
    let operator = op["token"].as_str().unwrap().to_owned();
    let (status, text) = send(
        &agent,
        "PUT",
        &format!("{b0}/api/v1/orgs/{ORG}/settings"),
        &operator,
        r#"{"plan":"scale"}"#,
    )
    .unwrap();
    assert_eq!(status, 200, "{text}");
    let (ok, text) = cluster_common::user_add(&nodes[0].dir, ORG, "ann", PASSWORD);
    assert!(ok, "{text}");

    // Signed in on node 0.
    let signed_in = sign_in(&agent, &b0, "ann");
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    assert_eq!(signed_in.location.as_deref(), Some("/audit-log"));
    let id = signed_in.cookie("auditstore_session").expect("a session cookie");
    let csrf = hex_sha256(format!("auditstore csrf v1\0{id}").as_bytes());
    let cookie = [("auditstore_session", id.as_str())];

    // The same cookie on node 1: the page, with the derived token.
    let page = request(&agent, "GET", &format!("{b1}/audit-log"), &cookie, None, &[]);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.served_by.as_deref().is_some_and(|n| chosen.contains(&n)),
        "answered by {:?}",
        page.served_by
    );
    assert!(page.body.contains("ann"), "{}", page.body);
    assert_eq!(page.csrf_field(), csrf);
    // An API read with the cookie.
    let exports = format!("{b1}/api/v1/orgs/{ORG}/exports");
    let list = request(&agent, "GET", &exports, &cookie, None, &[]);
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(list.served_by.is_some(), "forwarded");
    // An unsafe API call: refused without the token, made with it.
    let day = (chrono::Utc::now() - chrono::Duration::days(1))
        .date_naive()
        .to_string();
    let body = json!({"from": day, "to": day}).to_string();
    let post = |headers: &[(&str, &str)]| {
        let mut req = Request::post(&exports)
            .header("cookie", format!("auditstore_session={id}"))
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut answer = agent.run(req.body(body.clone()).unwrap()).unwrap();
        let status = answer.status().as_u16();
        (status, answer.body_mut().read_to_string().unwrap())
    };
    let (status, text) = post(&[]);
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("CSRF"), "{text}");
    let (status, text) = post(&[("x-csrf-token", &csrf)]);
    assert_eq!(status, 201, "{text}");

    // The bucket: the id's hash as the key, never the id.
    let key = hex_sha256(id.as_bytes());
    let (keys, entry) = bucket(&urls[2], &key);
    assert_eq!(keys, std::slice::from_ref(&key));
    let (op, value) = entry.expect("the session's entry");
    assert_eq!(op, "Put");
    let text = String::from_utf8(value).unwrap();
    assert!(!text.contains(&id) && !text.contains(&csrf), "{text}");
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["user"], json!({"user": "ann", "org": ORG, "role": "admin"}));
    let expires_at = value["expires_at"].as_i64().unwrap();
    let expected = chrono::Utc::now().timestamp() + 8 * 3600;
    assert!((expected - expires_at).abs() < 120, "{value}");
    assert_eq!(value.as_object().unwrap().len(), 2, "{value}");

    // Signed out on node 1: refused there at once, on node 0 soon.
    let out = request(
        &agent,
        "POST",
        &format!("{b1}/signout"),
        &cookie,
        Some(&[("csrf", csrf.as_str())]),
        &[],
    );
    assert_eq!(out.status, 303, "{}", out.body);
    assert_eq!(out.location.as_deref(), Some("/"));
    let signed_out = Instant::now();
    let refused = |base: &str| {
        let page = request(&agent, "GET", &format!("{base}/audit-log"), &cookie, None, &[]);
        let api = request(
            &agent,
            "GET",
            &format!("{base}/api/v1/orgs/{ORG}/exports"),
            &cookie,
            None,
            &[],
        );
        (
            page.status == 303 && page.location.as_deref() == Some("/"),
            api.status,
        )
    };
    // Node 1's page at once (it forgot the session); its API answers come
    // from a node serving the partition, which re-checks within 2 s.
    assert!(refused(&b1).0);
    loop {
        let (page_refused, api) = refused(&b0);
        let (_, api_through_1) = refused(&b1);
        if page_refused && api == 401 && api_through_1 == 401 {
            break;
        }
        assert!(
            signed_out.elapsed() < Duration::from_secs(5),
            "node 0 still accepts the session {:?} after the sign-out",
            signed_out.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "node 0 refused the signed-out session after {:?}",
        signed_out.elapsed()
    );
    let (keys, entry) = bucket(&urls[0], &key);
    assert!(keys.is_empty(), "{keys:?}");
    assert!(entry.as_ref().is_none_or(|(op, _)| op == "Delete"), "{entry:?}");

    // No log line carries the id.
    for n in &nodes {
        let log = std::fs::read_to_string(&n.log).unwrap_or_default();
        assert!(!log.contains(&id), "node {}'s log holds the session id", n.id);
    }

    // Without NATS the sign-in is refused, not half made.
    for n in &mut nats {
        n.proc.kill();
    }
    let refused = sign_in(&agent, &b0, "ann");
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(refused.cookie("auditstore_session").is_none());
    assert!(
        refused.body.contains("not possible right now"),
        "{}",
        refused.body
    );
}
