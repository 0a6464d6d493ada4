//! Assignment and routing with real processes (docs/cluster.md,
//! "Assignment" and "Routing"): one NATS server, three
//! `auditstore serve --cluster` nodes, four partitions.
//!
//! - Each partition but 0 is applied by the two nodes rendezvous hashing
//!   chooses; the third never consumes it.
//! - Any node answers any request: the third forwards ingest, reads and
//!   refusals to a node serving the partition, which authenticates them
//!   (a token of another organization is refused there too).
//! - A forwarded request is never forwarded again.
//! - When a chosen node is killed, requests keep being answered by the
//!   other; once its lease lapses the third node takes the partition over
//!   and catches up; when it comes back, the assignment returns to the
//!   chosen two, and every node answers with every event.
#![cfg(feature = "cluster")]

mod cluster_common;

use std::time::Duration;

use auditstore::cluster::partition::partition_of;
use cluster_common::{agent, applying, call, settled, status, tool, wait_for, who, Nats};
use serde_json::{json, Value};

const PARTITIONS: u32 = 4;
const CLUSTER: &str = "routetest";

fn events(org: &str, from: usize, n: usize) -> String {
    cluster_common::numbered_events(org, PARTITIONS, "route.test", from, n)
}

/// The events of `org` on 2026-01-01 through `base`.
fn events_url(base: &str, org: &str) -> String {
    format!("{base}/api/v1/orgs/{org}/events?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z&limit=1000")
}

fn ids(text: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let mut out: Vec<String> = v["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events: {text}"))
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    out.sort();
    out
}

#[test]
fn partitions_are_assigned_and_requests_routed() {
    let Some(nats_bin) = cluster_common::nats_server("cluster_routing") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    let (_nats, nats_url) = Nats::single(&nats_bin, root);
    let (mut nodes, st) = cluster_common::three_settled_nodes(root, &nats_url, CLUSTER, PARTITIONS);
    let node_ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
    // One organization per partition 1..3, and the node not chosen for it.
    let orgs: Vec<(u32, String, usize)> = (1..PARTITIONS)
        .map(|p| {
            let org = (0..)
                .map(|k| format!("route-{k}"))
                .find(|o| partition_of(o, PARTITIONS) == p)
                .unwrap();
            let (assigned, _) = who(&st, p);
            let outsider = node_ids.iter().position(|n| !assigned.contains(n)).unwrap();
            (p, org, outsider)
        })
        .collect();

    let op = tool(&nodes[0].dir, &["token", "create", "--operator", "--name", "op"]);
    let op = format!("Bearer {}", op["token"].as_str().unwrap());
    let agent = agent();
    // Every node knows the token (partition 0 is everyone's).
    for n in &nodes {
        wait_for("the token everywhere", Duration::from_secs(10), || {
            let (s, _, _) = call(
                &agent,
                "GET",
                &format!("{}/api/v1/orgs/x/settings", n.base()),
                &[("authorization", &op)],
                "",
            );
            (s == 200).then_some(())
        });
    }

    for (p, org, outsider) in &orgs {
        let (assigned, _) = who(&st, *p);
        let through = &nodes[*outsider];
        // Ingest through the node that does not apply the partition.
        let url = format!("{}/api/v1/orgs/{org}/events", through.base());
        let headers = [
            ("authorization", op.as_str()),
            ("content-type", "application/json"),
        ];
        let (s, served_by, text) = call(&agent, "POST", &url, &headers, &events(org, 0, 20));
        assert_eq!(s, 200, "{text}");
        let served_by = served_by.expect("answered by a node serving the partition");
        assert!(assigned.contains(&served_by), "{served_by} not in {assigned:?}");
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap()["appended"],
            20,
            "{text}"
        );
        // Read through every node: the same events.
        for n in &nodes {
            let (s, _, text) = call(&agent, "GET", &events_url(&n.base(), org), &headers, "");
            assert_eq!((s, ids(&text).len()), (200, 20), "{} {text}", n.id);
        }
        // A forwarded request is not forwarded again.
        let (s, _, text) = call(
            &agent,
            "GET",
            &events_url(&through.base(), org),
            &[
                ("authorization", op.as_str()),
                ("x-auditstore-forwarded-by", "elsewhere"),
            ],
            "",
        );
        assert_eq!(s, 503, "{text}");
        assert!(text.contains(&format!("partition {p}")), "{text}");
        // The outsider does not apply the partition.
        let st = status(root, &nats_url, CLUSTER);
        assert!(!applying(&st, *p).contains(&through.id), "{st}");
    }

    // A token of one organization is refused for another's data, also
    // when the request is forwarded to the node that serves it.
    let (p, org, outsider) = &orgs[0];
    let other = &orgs[1].1;
    let made = tool(
        &nodes[0].dir,
        &[
            "token",
            "create",
            "--org",
            other,
            "--role",
            "admin",
            "--name",
            "other-admin",
        ],
    );
    let other_token = format!("Bearer {}", made["token"].as_str().unwrap());
    for n in &nodes {
        wait_for("the org token everywhere", Duration::from_secs(10), || {
            let (s, _, _) = call(
                &agent,
                "GET",
                &format!("{}/api/v1/orgs/{other}/settings", n.base()),
                &[("authorization", &other_token)],
                "",
            );
            (s == 200).then_some(())
        });
        let (s, _, text) = call(
            &agent,
            "GET",
            &events_url(&n.base(), org),
            &[("authorization", &other_token)],
            "",
        );
        assert_eq!(s, 403, "{}: {text}", n.id);
    }

    // A full export through the outsider is served by a node applying the
    // partition; its own event (`audit_log.download_url.generated`) goes
    // through the stream: both nodes applying the partition hold it.
    let headers = [
        ("authorization", op.as_str()),
        ("content-type", "application/json"),
    ];
    let through = &nodes[*outsider];
    let settings = format!("{}/api/v1/orgs/{org}/settings", through.base());
    let (s, _, text) = call(&agent, "PUT", &settings, &headers, r#"{"plan":"server"}"#);
    assert_eq!(s, 200, "{text}");
    let full = format!("{}/api/v1/orgs/{org}/export/full", through.base());
    let (s, served_by, csv) = call(&agent, "GET", &full, &headers, "");
    assert_eq!(s, 200, "{csv}");
    assert!(served_by.is_some(), "forwarded");
    assert_eq!(
        csv.lines().filter(|l| l.contains(",route.test,")).count(),
        20,
        "{csv}"
    );
    let (assigned, _) = who(&st, *p);
    let today = chrono::Utc::now().date_naive();
    let mut seen = Vec::new();
    for holder in nodes.iter().filter(|n| assigned.contains(&n.id)) {
        let url = format!(
            "{}/api/v1/orgs/{org}/events?from={}&to={}&action=audit_log.download_url.generated",
            holder.base(),
            today.pred_opt().unwrap(),
            today.succ_opt().unwrap()
        );
        let text = wait_for("the own event on both nodes", Duration::from_secs(10), || {
            let (s, served_by, text) = call(&agent, "GET", &url, &headers, "");
            (s == 200 && served_by.is_none() && ids(&text).len() == 1).then_some(text)
        });
        seen.push(ids(&text));
    }
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0], seen[1], "both nodes hold the same own event");

    // An event id taken by an organization of another partition: each
    // partition keeps its own store, so both are stored, each under its
    // organization, on every node applying the partitions, also the node
    // applying both (docs/cluster.md, "A node's data directory").
    let (pa, org_a, _) = &orgs[0];
    let (assigned_a, _) = who(&st, *pa);
    let (pb, org_b) = orgs[1..]
        .iter()
        .map(|(p, o, _)| (*p, o.clone()))
        .find(|(p, _)| who(&st, *p).0 != assigned_a)
        .expect("two partitions with different nodes");
    let (assigned_b, _) = who(&st, pb);
    let only_b = assigned_b.iter().find(|n| !assigned_a.contains(n)).unwrap();
    let both = assigned_b.iter().find(|n| assigned_a.contains(n)).unwrap();
    let node = |id: &str| nodes.iter().find(|n| n.id == id).unwrap();
    let taken: Value = serde_json::from_str(&events(org_a, 0, 1)).unwrap();
    let id = taken[0]["id"].as_str().unwrap();
    let mut other = taken[0].clone();
    other["action"] = json!("route.other");
    let url = format!("{}/api/v1/orgs/{org_b}/events", node(only_b).base());
    let (s, served_by, text) = call(&agent, "POST", &url, &headers, &json!([other]).to_string());
    assert_eq!((s, served_by), (200, None), "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["appended"],
        1,
        "{text}"
    );
    for holder in &assigned_b {
        let (s, _, text) = call(
            &agent,
            "GET",
            &format!("{}/api/v1/orgs/{org_b}/events/{id}", node(holder).base()),
            &headers,
            "",
        );
        assert_eq!(s, 200, "{holder}: {text}");
        assert!(text.contains("route.other"), "{holder}: {text}");
    }
    let (s, _, text) = call(
        &agent,
        "GET",
        &format!("{}/api/v1/orgs/{org_a}/events/{id}", node(both).base()),
        &headers,
        "",
    );
    assert_eq!(s, 200, "{text}");
    assert!(text.contains("route.test"), "{text}");
    let (_, _, metrics) = call(&agent, "GET", &format!("{}/metrics", node(both).base()), &[], "");
    assert!(
        !metrics.contains("auditstore_cluster_apply_conflicts_total"),
        "no conflict: {metrics}"
    );

    // Kill one of the two nodes serving `org`'s partition.
    let victim = node_ids.iter().position(|n| *n == assigned[0]).unwrap();
    nodes[victim].proc.kill();
    let headers = [
        ("authorization", op.as_str()),
        ("content-type", "application/json"),
    ];
    for (i, n) in nodes.iter().enumerate() {
        if i == victim {
            continue;
        }
        let (s, _, text) = call(&agent, "GET", &events_url(&n.base(), org), &headers, "");
        assert_eq!(
            (s, ids(&text).len()),
            (200, 20),
            "{} with {} down: {text}",
            n.id,
            assigned[0]
        );
    }
    let url_of_outsider = format!("{}/api/v1/orgs/{org}/events", nodes[*outsider].base());
    let (s, _, text) = call(&agent, "POST", &url_of_outsider, &headers, &events(org, 20, 10));
    assert_eq!(s, 200, "{text}");
    // Its lease lapses: the outsider takes the partition over, caught up.
    wait_for(
        "the outsider to serve the partition",
        Duration::from_secs(60),
        || {
            let st = status(root, &nats_url, CLUSTER);
            let (_, serving) = who(&st, *p);
            serving.contains(&node_ids[*outsider]).then_some(())
        },
    );
    // It comes back: the assignment returns to the two chosen.
    nodes[victim].start();
    wait_for("the assignment to settle again", Duration::from_secs(90), || {
        Some(status(root, &nats_url, CLUSTER)).filter(|s| settled(s, 3, PARTITIONS))
    });
    for n in &nodes {
        let (s, _, text) = call(&agent, "GET", &events_url(&n.base(), org), &headers, "");
        assert_eq!((s, ids(&text).len()), (200, 30), "{}: {text}", n.id);
    }
    let st = status(root, &nats_url, CLUSTER);
    let (assigned_now, serving_now) = who(&st, *p);
    assert_eq!(assigned_now, assigned);
    assert_eq!(serving_now, assigned);
}

/// A node listening on every address announces one other nodes can use:
/// the machine's host name when it resolves, else loopback; never
/// `0.0.0.0`.
#[test]
fn a_node_listening_everywhere_announces_a_reachable_address() {
    let Some(nats_bin) = cluster_common::nats_server("cluster_routing") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    let (_nats, nats_url) = Nats::single(&nats_bin, root);
    let port = cluster_common::free_port();
    let mut child = std::process::Command::new(cluster_common::BIN)
        .arg("--data-dir")
        .arg(root.join("node"))
        .args(["serve", "--listen", &format!("0.0.0.0:{port}")])
        .args([
            "--cluster",
            &nats_url,
            "--node",
            "wide",
            "--cluster-name",
            CLUSTER,
        ])
        .args(["--partitions", "2", "--replicas", "1"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = cluster_common::Proc(None);
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    guard.0 = Some(child);
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut first).unwrap();
    assert!(first.starts_with("listening on "), "{first}");
    // Said on stderr before `listening on` (warnings, if any, aside).
    let said = std::io::BufRead::lines(std::io::BufReader::new(stderr))
        .map_while(Result::ok)
        .find(|l| l.contains("told to reach"))
        .unwrap_or_default();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let address = wait_for("the node's lease", Duration::from_secs(10), || {
        let st = status(root, &nats_url, CLUSTER);
        st["members"][0]["address"].as_str().map(str::to_owned)
    });
    assert!(
        address == format!("http://{}:{port}", hostname.trim())
            || address == format!("http://127.0.0.1:{port}"),
        "{address}"
    );
    assert!(said.contains(&address), "{said}");
    // And it is reachable there.
    let (s, _, _) = call(&agent(), "GET", &format!("{address}/healthz"), &[], "");
    assert_eq!(s, 200);
}
