//! Tamper evidence in a cluster with real processes (docs/cluster.md,
//! "Tamper evidence in a cluster"): one NATS server, three
//! `auditstore serve --cluster` nodes, four partitions.
//!
//! Each partition's store keeps its own tree. So:
//! - the two nodes applying a partition sign checkpoints of one log (the
//!   origin names the partition's store id), with the same size and root,
//!   each with its own key (`key show` of that node), which the other
//!   node's key does not verify;
//! - a partition's tree holds its organizations' events only;
//! - an event's proof through either node has the same leaf index and
//!   hash, and checks against the checkpoint it carries;
//! - a node killed (SIGKILL) while events are ingested, and restarted,
//!   catches up to the same tree as the others.
#![cfg(feature = "cluster")]

mod cluster_common;

use std::collections::BTreeMap;
use std::time::Duration;

use auditstore::cluster::partition::partition_of;
use auditstore::integrity::{verify_inclusion, Checkpoint, Hash, VerifierKey};
use base64::Engine;
use cluster_common::{agent, call, settled, status, tool, wait_for, who, Nats, Node};
use serde_json::{json, Value};

const PARTITIONS: u32 = 4;
const CLUSTER: &str = "treetest";

fn events(org: &str, from: usize, n: usize) -> String {
    cluster_common::numbered_events(org, PARTITIONS, "tree.test", from, n)
}

fn origin_of(p: u32) -> String {
    let id = uuid::Uuid::from_bytes(auditstore::partitions::store_id(CLUSTER, p));
    format!("auditstore/{}", id.hyphenated())
}

/// The checkpoint body (origin, size, root) of a note.
fn body(note: &str) -> String {
    note.split("\n\n").next().unwrap().to_owned()
}

fn hash(b64: &Value) -> Hash {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.as_str().unwrap())
        .unwrap();
    bytes.try_into().unwrap()
}

struct Cluster {
    nodes: Vec<Node>,
    keys: BTreeMap<String, VerifierKey>,
    auth: Vec<(&'static str, String)>,
    agent: ureq::Agent,
}

impl Cluster {
    fn node(&self, id: &str) -> &Node {
        self.nodes.iter().find(|n| n.id == id).unwrap()
    }

    fn get(&self, node: &str, path: &str) -> (u16, Option<String>, String) {
        let headers: Vec<(&str, &str)> = self.auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
        call(
            &self.agent,
            "GET",
            &format!("{}{path}", self.node(node).base()),
            &headers,
            "",
        )
    }

    fn post(&self, node: &str, path: &str, body: &str) -> (u16, Option<String>, String) {
        let mut headers: Vec<(&str, &str)> = self.auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
        headers.push(("content-type", "application/json"));
        call(
            &self.agent,
            "POST",
            &format!("{}{path}", self.node(node).base()),
            &headers,
            body,
        )
    }

    /// `org`'s checkpoint through `node` (served there, not forwarded),
    /// verified with that node's key: the note and its tree size.
    fn checkpoint(&self, node: &str, org: &str, p: u32) -> (String, u64) {
        let (s, served_by, note) = self.get(node, &format!("/api/v1/orgs/{org}/checkpoint"));
        assert_eq!((s, served_by), (200, None), "{node}: {note}");
        let cp = Checkpoint::open(&note, &self.keys[node], &origin_of(p))
            .unwrap_or_else(|e| panic!("{node}'s checkpoint of partition {p} does not verify: {e}\n{note}"));
        (note, cp.size)
    }

    /// Wait until every node in `holders` signed a checkpoint of `org`'s
    /// partition at `size`; their notes.
    fn checkpoints_at(&self, holders: &[String], org: &str, p: u32, size: u64) -> Vec<String> {
        holders
            .iter()
            .map(|h| {
                wait_for(
                    &format!("{h}'s checkpoint of partition {p} at {size}"),
                    Duration::from_secs(20),
                    || {
                        let (note, at) = self.checkpoint(h, org, p);
                        (at == size).then_some(note)
                    },
                )
            })
            .collect()
    }
}

/// The notes of two nodes: the same checkpoint body, different
/// signatures, each verified only by its own node's key.
fn same_tree_two_keys(c: &Cluster, holders: &[String], notes: &[String], p: u32) {
    assert_eq!(notes.len(), 2);
    assert_eq!(
        body(&notes[0]),
        body(&notes[1]),
        "partition {p}: one tree on {holders:?}"
    );
    assert_ne!(notes[0], notes[1], "each node signs with its own key");
    for (i, h) in holders.iter().enumerate() {
        let other = &holders[1 - i];
        assert!(
            Checkpoint::open(&notes[i], &c.keys[other], &origin_of(p)).is_err(),
            "{h}'s note verified with {other}'s key"
        );
    }
}

#[test]
fn each_partition_keeps_one_tree_on_every_node() {
    let Some(nats_bin) = cluster_common::nats_server("cluster_trees") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    let (_nats, nats_url) = Nats::single(&nats_bin, root);
    let (nodes, st) = cluster_common::three_settled_nodes(root, &nats_url, CLUSTER, PARTITIONS);
    let op = tool(&nodes[0].dir, &["token", "create", "--operator", "--name", "op"]);
    let keys = nodes
        .iter()
        .map(|n| {
            let shown = tool(&n.dir, &["key", "show"]);
            let key = VerifierKey::parse(shown["verifier_key"].as_str().unwrap()).unwrap();
            (n.id.clone(), key)
        })
        .collect();
    let mut c = Cluster {
        auth: vec![(
            "authorization",
            format!("Bearer {}", op["token"].as_str().unwrap()),
        )],
        nodes,
        keys,
        agent: agent(),
    };
    let orgs: Vec<(u32, String)> = (1..PARTITIONS)
        .map(|p| {
            let org = (0..)
                .map(|k| format!("tree-{k}"))
                .find(|o| partition_of(o, PARTITIONS) == p)
                .unwrap();
            (p, org)
        })
        .collect();
    for n in &c.nodes {
        wait_for("the token everywhere", Duration::from_secs(10), || {
            (c.get(&n.id, "/api/v1/orgs/x/settings").0 == 200).then_some(())
        });
    }

    // Different sizes per partition: each tree holds its partition's
    // events only.
    for (i, (_, org)) in orgs.iter().enumerate() {
        let (s, _, text) = c.post(
            "n0",
            &format!("/api/v1/orgs/{org}/events"),
            &events(org, 0, 10 * (i + 1)),
        );
        assert_eq!(s, 200, "{text}");
    }
    for (i, (p, org)) in orgs.iter().enumerate() {
        let (holders, _) = who(&st, *p);
        let size = 10 * (i as u64 + 1);
        let notes = c.checkpoints_at(&holders, org, *p, size);
        same_tree_two_keys(&c, &holders, &notes, *p);

        // One event's proof through each node: the same leaf, checked
        // against the checkpoint it carries.
        let id = format!("00000000-0000-4000-8000-{p:04}{:08}", 3);
        let mut leaves = Vec::new();
        for h in &holders {
            let (s, served_by, text) = c.get(h, &format!("/api/v1/orgs/{org}/events/{id}/proof"));
            assert_eq!((s, served_by), (200, None), "{h}: {text}");
            let proof: Value = serde_json::from_str(&text).unwrap();
            let cp =
                Checkpoint::open(proof["checkpoint"].as_str().unwrap(), &c.keys[h], &origin_of(*p)).unwrap();
            let path: Vec<Hash> = proof["inclusion"].as_array().unwrap().iter().map(hash).collect();
            let (index, size) = (
                proof["leaf_index"].as_u64().unwrap(),
                proof["tree_size"].as_u64().unwrap(),
            );
            assert_eq!(size, cp.size);
            verify_inclusion(&hash(&proof["leaf_hash"]), index, size, &path, &cp.root).unwrap();
            leaves.push((index, proof["leaf_hash"].clone()));
        }
        assert_eq!(
            leaves[0], leaves[1],
            "partition {p}: the event is the same leaf on both nodes"
        );
        assert_eq!(
            leaves[0].0, 3,
            "leaf 3 of its partition's tree, not of a node-wide one"
        );
        // The admin tool through a node's socket reads the partition's store.
        let proved = tool(&c.node(&holders[0]).dir, &["prove", &id]);
        assert_eq!(
            (&proved["org"], &proved["leaf_index"]),
            (&json!(org), &json!(3)),
            "{proved}"
        );
        let out = std::process::Command::new(cluster_common::BIN)
            .arg("--data-dir")
            .arg(&c.node(&holders[1]).dir)
            .args(["query", "--org", org, "--format", "jsonl"])
            .args(["--from", "2026-01-01T00:00:00Z", "--to", "2026-01-02T00:00:00Z"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            text.lines().filter(|l| l.contains("\"tree.test\"")).count(),
            size as usize,
            "{text}"
        );
    }

    // Kill one node of partition 1 while its events keep coming through
    // another node, and restart it: the same tree again.
    let (p, org) = orgs[0].clone();
    let (holders, _) = who(&st, p);
    let victim = c.nodes.iter().position(|n| n.id == holders[0]).unwrap();
    let through = c.nodes.iter().find(|n| n.id != holders[0]).unwrap().id.clone();
    let mut sent = 10;
    for round in 0..6 {
        if round == 2 {
            c.nodes[victim].proc.kill();
        }
        let (s, _, text) = c.post(
            &through,
            &format!("/api/v1/orgs/{org}/events"),
            &events(&org, sent, 25),
        );
        assert_eq!(s, 200, "{text}");
        sent += 25;
    }
    c.nodes[victim].start();
    let st = wait_for("the assignment to settle again", Duration::from_secs(90), || {
        Some(status(root, &nats_url, CLUSTER)).filter(|s| settled(s, 3, PARTITIONS))
    });
    let (holders, _) = who(&st, p);
    let notes = c.checkpoints_at(&holders, &org, p, sent as u64);
    same_tree_two_keys(&c, &holders, &notes, p);
}
