//! The admin tool on a cluster node's data directory (docs/cluster.md, "A
//! node's data directory"): partition 0's store at the top, partition N's
//! in `partitions/p<N>`, the count in `partitions/count`. Built here with
//! the library (no NATS): each organization's events, settings and exports
//! in the store of its partition. `backup` copies every store, `verify`
//! checks every store, and the reads about an organization answer from its
//! partition's store.

mod common;
mod export_common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use auditstore::export::{Exports, Role};
use auditstore::partitions::{partition_of, store_dir, write_count};
use auditstore::{FixedClock, Options, Plan, Query, Store, Timestamp};
use common::listed_ids;
use export_common::{append_at, d, exits_with, json, ok, t, tool_at};
use serde_json::Value;
use uuid::Uuid;

const P: u32 = 4;

/// A refusal: exit status 1 and the `--json` error object.
fn refused(dir: &Path, args: &[&str]) -> Value {
    json(&exits_with(dir, args, 1))["error"].clone()
}

fn options(clock: &Arc<FixedClock>, p: u32) -> Options {
    Options {
        clock: clock.clone(),
        store_id: Some(auditstore::partitions::store_id("test", p)),
        ..Options::default()
    }
}

/// Two organizations of each partition (`org-<n>` in order of n).
fn orgs_by_partition() -> BTreeMap<u32, Vec<String>> {
    let mut by: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for n in 0.. {
        let org = format!("org-{n:02}");
        let list = by.entry(partition_of(&org, P)).or_default();
        if list.len() < 2 {
            list.push(org);
        }
        if by.len() == P as usize && by.values().all(|l| l.len() == 2) {
            return by;
        }
    }
    unreachable!()
}

/// A node's data directory as a node fills it.
struct Node {
    dir: tempfile::TempDir,
    clock: Arc<FixedClock>,
    orgs: BTreeMap<u32, Vec<String>>,
    /// Per organization, its events' ids (not its own events').
    events: BTreeMap<String, Vec<Uuid>>,
    /// Per partition, one finished export request (of its first org).
    exports: BTreeMap<u32, Uuid>,
}

impl Node {
    fn data(&self) -> &Path {
        self.dir.path()
    }

    fn open(&self, p: u32) -> Store {
        Store::open_with(store_dir(self.data(), p), options(&self.clock, p)).unwrap()
    }

    fn partition_of_org(&self, org: &str) -> u32 {
        partition_of(org, P)
    }
}

/// Every partition's store with events of its organizations (partition
/// `p`'s first organization gets `p + 3` events, its second one), on the
/// server plan, with one processed export each; the count file; and with
/// the `cluster` feature an applied position in each store.
fn node_dir() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::new(t("2026-06-09T08:00:00Z")));
    let orgs = orgs_by_partition();
    let mut events = BTreeMap::new();
    let mut exports = BTreeMap::new();
    for (p, list) in &orgs {
        let store = Store::open_with(store_dir(dir.path(), *p), options(&clock, *p)).unwrap();
        for (i, org) in list.iter().enumerate() {
            store.set_org(org, Some(Plan::Server), None).unwrap();
            let n = if i == 0 { *p as usize + 3 } else { 1 };
            let at: Vec<String> = (0..n)
                .map(|k| format!("2026-06-0{}T10:00:00Z", 1 + k % 8))
                .collect();
            let at: Vec<&str> = at.iter().map(String::as_str).collect();
            let appended = append_at(&store, org, &at);
            events.insert(org.clone(), appended.iter().map(|e| e.id()).collect());
        }
        let ex = Exports::new(&store).unwrap().with_clock(clock.clone());
        let req = ex
            .request(&list[0], "ann", Role::Admin, d("2026-06-01"), d("2026-06-08"))
            .unwrap();
        clock.set(ex.processed_at(req.created_at));
        ex.process().unwrap();
        clock.set(t("2026-06-09T08:00:00Z"));
        exports.insert(*p, req.id);
        store.flush().unwrap();
        drop(store);
        #[cfg(feature = "cluster")]
        auditstore::cluster::applied::write_positions(
            &store_dir(dir.path(), *p),
            &[(
                PathBuf::from(format!("cluster/test/p{p}.applied")),
                100 + u64::from(*p),
            )],
        )
        .unwrap();
    }
    write_count(dir.path(), P).unwrap();
    Node {
        dir,
        clock,
        orgs,
        events,
        exports,
    }
}

/// Every event id of `org` in `store`, own events included, in scan order.
fn ids(store: &Store, org: &str) -> Vec<Uuid> {
    store
        .scan(&Query::new(org, Timestamp::MIN, Timestamp::MAX))
        .unwrap()
        .map(|e| e.unwrap().id())
        .collect()
}

/// A segment file of partition `p`'s store, somewhere in the middle of
/// which a byte is flipped.
fn damage_a_segment(data: &Path, p: u32) -> PathBuf {
    let dir = store_dir(data, p);
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    let log = logs.first().cloned().expect("a segment");
    let mut bytes = std::fs::read(&log).unwrap();
    // Past the header, inside the first record (events are a few hundred
    // bytes each; a segment's trailing zeros are preallocated space).
    let last = bytes.iter().rposition(|b| *b != 0).unwrap();
    let at = (64 + last) / 2;
    bytes[at] ^= 0x55;
    std::fs::write(&log, bytes).unwrap();
    log
}

/// `backup DEST` of a node's data directory, while one partition store is
/// held by this process (as a running node holds them): DEST holds a copy
/// of every partition store at `partitions/p<N>` with the same events per
/// organization, the count file, and (with the `cluster` feature) each
/// store's applied positions; the JSON output sums the stores and lists
/// them. A DEST that is not empty is refused before anything is copied.
#[test]
fn backup_of_a_node_directory_copies_every_partition_store() {
    let node = node_dir();
    let backups = tempfile::tempdir().unwrap();
    let dest = backups.path().join("copy");
    let held = node.open(2);
    let out = ok(node.data(), &["--json", "backup", dest.to_str().unwrap()]);
    drop(held);
    let report = json(&out);
    assert_eq!(report["partitions"], serde_json::json!([0, 1, 2, 3]), "{report}");
    assert_eq!(report["read_only"], true, "partition 2 was held: {report}");
    assert_eq!(report["dest"], dest.to_str().unwrap());
    assert_eq!(
        std::fs::read(dest.join("partitions").join("count")).unwrap(),
        b"4\n"
    );
    let mut events = 0;
    for (p, list) in &node.orgs {
        let source = node.open(*p);
        let copy = Store::open_with(store_dir(&dest, *p), options(&node.clock, *p)).unwrap();
        assert!(copy.verify().unwrap().problems.is_empty(), "partition {p}");
        for org in list {
            let in_copy = ids(&copy, org);
            assert_eq!(in_copy, ids(&source, org), "{org} in partition {p}");
            for id in &node.events[org] {
                assert!(in_copy.contains(id), "{org}'s {id} in the copy of {p}");
            }
        }
        events += source.stats().unwrap().events;
        #[cfg(feature = "cluster")]
        assert_eq!(
            auditstore::cluster::applied::read_positions(&store_dir(&dest, *p)).unwrap(),
            vec![(
                PathBuf::from(format!("cluster/test/p{p}.applied")),
                100 + u64::from(*p)
            )],
            "partition {p}'s positions"
        );
    }
    assert_eq!(report["events"], events, "{report}");
    // The copy is a node's data directory: verify goes over every store.
    let verified = json(&ok(&dest, &["--json", "verify"]));
    assert_eq!(verified["partitions"], serde_json::json!([0, 1, 2, 3]));
    // A backup never overwrites: not even with partition stores.
    let err = refused(node.data(), &["--json", "backup", dest.to_str().unwrap()]);
    assert_eq!(err["code"], "io", "{err}");
    assert!(err["message"].as_str().unwrap().contains("not empty"), "{err}");
}

/// A partition store that cannot be backed up (its metadata unreadable)
/// fails the whole backup: `corrupt`, naming that store's file, and no
/// DEST is left behind (an empty DEST given is left empty).
#[test]
fn a_damaged_partition_store_fails_the_backup_naming_it() {
    let node = node_dir();
    let meta = store_dir(node.data(), 3).join("meta.redb");
    std::fs::write(&meta, b"not a database").unwrap();
    let backups = tempfile::tempdir().unwrap();
    let dest = backups.path().join("copy");
    let err = refused(node.data(), &["--json", "backup", dest.to_str().unwrap()]);
    assert_eq!(err["code"], "corrupt", "{err}");
    let message = err["message"].as_str().unwrap();
    assert!(message.contains(&meta.display().to_string()), "{err}");
    assert!(message.contains("partition 3"), "{err}");
    assert_eq!(err["partition"], 3, "{err}");
    assert!(!dest.exists(), "a partial backup was left at {}", dest.display());
    assert_eq!(
        std::fs::read_dir(backups.path()).unwrap().count(),
        0,
        "nothing left beside it"
    );
    let empty = backups.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    refused(node.data(), &["--json", "backup", empty.to_str().unwrap()]);
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
}

/// `verify` of a node's data directory checks every partition store, with
/// the counts summed; a byte flipped in a segment of `partitions/p<N>` is
/// `corrupt` naming that file (and nothing in the directory changes); so
/// are a damaged count file and a store of a partition beyond the count.
#[test]
fn verify_of_a_node_directory_checks_every_partition_store() {
    let node = node_dir();
    let data = node.data();
    let report = json(&ok(data, &["--json", "verify"]));
    assert_eq!(report["ok"], true);
    assert_eq!(report["partitions"], serde_json::json!([0, 1, 2, 3]));
    let mut records = 0;
    for p in 0..P {
        let one = Store::verify_dir(store_dir(data, p), options(&node.clock, p)).unwrap();
        records += one.records;
    }
    assert_eq!(report["records"], records, "{report}");
    // The plain-text form says how many stores it checked.
    let text = String::from_utf8(ok(data, &["verify"]).stdout).unwrap();
    assert!(text.contains("in 4 partition stores: no problems"), "{text}");

    let log = damage_a_segment(data, 2);
    let before = std::fs::read(&log).unwrap();
    let err = refused(data, &["--json", "verify"]);
    assert_eq!(err["code"], "corrupt", "{err}");
    let files: Vec<&str> = err["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["file"].as_str().unwrap())
        .collect();
    assert!(
        files.iter().any(|f| *f == log.to_str().unwrap()),
        "{log:?} not named: {err}"
    );
    assert!(
        files.iter().all(|f| f.contains("partitions/p2")),
        "only partition 2 is damaged: {err}"
    );
    assert_eq!(std::fs::read(&log).unwrap(), before, "verify changed nothing");

    // The layout itself.
    let fresh = node_dir();
    let count = fresh.data().join("partitions").join("count");
    std::fs::write(&count, b"four\n").unwrap();
    let err = refused(fresh.data(), &["--json", "verify"]);
    assert_eq!(err["problems"][0]["file"], count.to_str().unwrap(), "{err}");
    std::fs::write(&count, b"3\n").unwrap();
    let err = refused(fresh.data(), &["--json", "verify"]);
    assert_eq!(
        err["problems"][0]["file"],
        store_dir(fresh.data(), 3).to_str().unwrap(),
        "{err}"
    );
}

/// The reads about an organization on a node's data directory answer from
/// its partition's store: `query`, `org show`, `export list`, `export
/// full`; `get`, `prove`, `export download` and `export manifest` find the
/// event or request in whichever store holds it; `export verify` checks
/// with the key of the manifest's store.
#[test]
fn org_scoped_reads_use_the_organization_partition_store() {
    let node = node_dir();
    let data = node.data();
    for (p, list) in &node.orgs {
        for org in list {
            assert_eq!(node.partition_of_org(org), *p);
            let out = ok(
                data,
                &[
                    "--json",
                    "query",
                    "--org",
                    org,
                    "--from",
                    "2026-01-01",
                    "--to",
                    "2027-01-01",
                ],
            );
            let got: Vec<Uuid> = listed_ids(&out.stdout)
                .iter()
                .map(|id| id.parse().unwrap())
                .collect();
            for id in &node.events[org] {
                assert!(got.contains(id), "{org} (partition {p}) lacks {id}: {got:?}");
            }
            let shown = json(&ok(data, &["--json", "org", "show", org]));
            assert_eq!(shown["plan"], "server", "{org}: {shown}");
        }
        let first = &list[0];
        let id = node.events[first][0].to_string();
        let got = json(&ok(data, &["--json", "get", &id]));
        assert_eq!(got["id"], id.as_str());
        let proof = json(&ok(data, &["--json", "prove", &id]));
        assert_eq!(proof["org"], first.as_str(), "{proof}");
        let origin = format!(
            "auditstore/{}",
            Uuid::from_bytes(auditstore::partitions::store_id("test", *p))
        );
        assert!(
            proof["checkpoint"].as_str().unwrap().starts_with(&origin),
            "partition {p}'s log signs it: {proof}"
        );

        let list_out = json(&ok(data, &["--json", "export", "list", "--org", first]));
        let export = node.exports[p].to_string();
        assert_eq!(list_out[0]["id"], export.as_str(), "{list_out}");
        assert_eq!(list_out[0]["status"], "success", "{list_out}");
        let csv = data.join(format!("export-{p}.csv"));
        let manifest = data.join(format!("export-{p}.manifest.json"));
        ok(
            data,
            &["export", "download", &export, "--out", csv.to_str().unwrap()],
        );
        ok(
            data,
            &["export", "manifest", &export, "--out", manifest.to_str().unwrap()],
        );
        let checked = json(&ok(
            data,
            &[
                "--json",
                "export",
                "verify",
                csv.to_str().unwrap(),
                manifest.to_str().unwrap(),
            ],
        ));
        assert_eq!(checked["ok"], true, "{checked}");
        assert_eq!(checked["org"], first.as_str(), "{checked}");
        let full = ok(data, &["export", "full", "--org", first, "--user", "ann"]);
        let rows = String::from_utf8(full.stdout).unwrap();
        assert!(
            rows.contains(&node.events[first][0].to_string()),
            "{first}'s full export: {rows}"
        );
    }
    let nowhere = Uuid::new_v4().to_string();
    assert_eq!(refused(data, &["--json", "get", &nowhere])["code"], "not_found");
    assert_eq!(refused(data, &["--json", "prove", &nowhere])["code"], "not_found");
    assert_eq!(
        refused(data, &["--json", "export", "download", &nowhere])["code"],
        "not_found"
    );
}

#[test]
fn changes_of_organizations_without_the_server_are_refused_on_a_node_directory() {
    let node = node_dir();
    let data = node.dir.path();
    let org = &node.orgs[&2][0];
    let listed = |org: &str| json(&ok(data, &["--json", "export", "list", "--org", org]));
    let before = listed(org);
    for args in [
        vec!["--json", "org", "set", org.as_str(), "--plan", "free"],
        vec![
            "--json",
            "export",
            "request",
            "--org",
            org.as_str(),
            "--user",
            "ann",
            "--from",
            "2026-06-01",
            "--to",
            "2026-06-02",
        ],
        vec!["--json", "export", "process"],
    ] {
        let error = refused(data, &args);
        assert_eq!(error["code"], "unavailable", "{args:?}: {error}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains("cluster node's data directory"), "{message}");
        assert!(message.contains(&data.display().to_string()), "{message}");
    }
    // Nothing was changed: the settings and requests are as they were.
    assert_eq!(listed(org), before);
    let shown = json(&ok(data, &["--json", "org", "show", org]));
    assert_eq!(shown["plan"], "server", "{shown}");
}

#[test]
fn stats_and_retention_cover_every_partition_store() {
    let node = node_dir();
    let data = node.dir.path();
    let mut events = 0;
    let mut organizations = 0;
    for p in 0..P {
        let store = Store::open_with(store_dir(data, p), Options::default()).unwrap();
        let s = store.stats().unwrap();
        events += s.events;
        organizations += s.organizations;
    }
    assert!(events > node.events.values().map(Vec::len).sum::<usize>() as u64);
    let stats = json(&ok(data, &["--json", "stats"]));
    assert_eq!(stats["events"], events, "{stats}");
    assert_eq!(stats["organizations"], organizations, "{stats}");

    // Far past every event's retention: each store is asked, each
    // partition reported.
    let out = tool_at(data, "2036-01-01T00:00:00Z", &["--json", "retention", "apply"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out);
    let runs: Vec<u64> = report["partitions"]
        .as_array()
        .unwrap_or_else(|| panic!("{report}"))
        .iter()
        .map(|r| r["partition"].as_u64().unwrap())
        .collect();
    assert_eq!(runs, (0..u64::from(P)).collect::<Vec<_>>(), "{report}");
    let deleted: u64 = report["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["events_deleted"].as_u64().unwrap())
        .sum();
    assert_eq!(report["events_deleted"], deleted, "{report}");
}
