//! A command's answer reaches the node that issued it from whichever node
//! applies it (docs/cluster.md, "Command messages", "Answers").
//!
//! One NATS server. First, the wire alone: an answer published with
//! `cluster::answers::publish` on one connection is what a subscriber on
//! another connection decodes. Then the whole path: node `n0` (a process)
//! applies every partition; node `b`, in this process, joins the cluster
//! and stops applying, so that it holds no partition, like a node that does
//! not apply the command's partition. Every command `b` issues is then
//! answered from `n0`'s answers only: settings, export requests (made and
//! refused), a processing run over both partitions, an operator token (its
//! text made and kept on `b`), a user and its conflict; with `n0` killed,
//! `b` answers `503` after its read wait, as before.
#![cfg(feature = "cluster")]

mod cluster_common;

use std::sync::Arc;
use std::time::Duration;

use auditstore::cluster::answers;
use auditstore::cluster::outcomes::Answer;
use auditstore::cluster::{ClusterConfig, Node as ClusterNode};
use auditstore::export::{ExportRequest, Role as ExportRole, Status};
use auditstore::server::error::ApiError;
use auditstore::server::replication::{Command, Outcome};
use auditstore::{OrgSettings, Plan, Store, Timestamp};
use cluster_common::{nats_server, Nats, Node};
use futures_util::StreamExt;
use uuid::Uuid;

const CLUSTER: &str = "answertest";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn request(org: &str) -> ExportRequest {
    let day = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
    ExportRequest {
        id: Uuid::new_v4(),
        org: org.into(),
        requested_by: "ops".into(),
        from: day,
        to: day,
        window_start: Timestamp::from_nanos(1_795_000_000_000_000_000),
        window_end: Timestamp::from_nanos(1_796_000_000_000_000_000),
        created_at: Timestamp::from_nanos(1_796_000_000_123_456_789),
        status: Status::Success,
        completed_at: Some(Timestamp::from_nanos(1_796_000_001_000_000_000)),
        expires_at: Some(Timestamp::from_nanos(1_796_600_001_000_000_000)),
        has_data: true,
        rows: Some(3),
        bytes: Some(300),
        crc32: Some(7),
        manifest_sha256: Some("cd".repeat(32)),
        manifest_seq: Some(1),
        failure_reason: None,
    }
}

fn error_of(answer: Answer) -> ApiError {
    match answer {
        Err(e) => e,
        Ok(o) => panic!("an outcome, not an error: {o:?}"),
    }
}

fn outcome_of(answer: Answer) -> Outcome {
    match answer {
        Ok(o) => o,
        Err(e) => panic!("an error, not an outcome: {e:?}"),
    }
}

/// Published on one connection, decoded on another, equal.
#[test]
fn an_answer_crosses_between_two_clients() {
    let Some(bin) = nats_server("an_answer_crosses_between_two_clients") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (_nats, url) = Nats::single(&bin, tmp.path());
    runtime().block_on(async {
        let connect = || async {
            for _ in 0..100 {
                if let Ok(c) = async_nats::connect(url.as_str()).await {
                    return c;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("no NATS server at {url}");
        };
        let (applier, issuer) = (connect().await, connect().await);
        let export = request("org-1");
        let mut limited = ApiError::new(
            ApiError::status_of("rate_limited"),
            "rate_limited",
            "3 requests per 30 days",
        )
        .with("limit", 3);
        limited.next_allowed_at = Some(Timestamp::from_nanos(1_797_000_000_000_000_001));
        let sent: Vec<(Uuid, Answer)> = vec![
            (Uuid::new_v4(), Ok(Outcome::Export(export.clone()))),
            (Uuid::new_v4(), Err(limited.clone())),
            (
                Uuid::new_v4(),
                Ok(Outcome::Settings(OrgSettings {
                    org: "org-1".into(),
                    plan: Plan::Scale,
                    retention_days: 90,
                })),
            ),
        ];
        let mut subs = Vec::new();
        for (id, _) in &sent {
            subs.push(issuer.subscribe(answers::subject(CLUSTER, id)).await.unwrap());
        }
        // The subscriptions are the server's before the other connection
        // publishes.
        issuer.flush().await.unwrap();
        answers::publish(applier.clone(), CLUSTER, &sent);
        for ((_, answer), sub) in sent.iter().zip(&mut subs) {
            let msg = tokio::time::timeout(Duration::from_secs(10), sub.next())
                .await
                .expect("an answer within 10 s")
                .expect("the subscription is open");
            let got = answers::decode(&msg.payload).unwrap();
            assert_eq!(
                answers::encode(&got).unwrap(),
                answers::encode(answer).unwrap(),
                "{:?}",
                String::from_utf8_lossy(&msg.payload)
            );
            match (got, answer) {
                (Ok(Outcome::Export(got)), Ok(Outcome::Export(sent))) => assert_eq!(&got, sent),
                (Ok(Outcome::Settings(got)), Ok(Outcome::Settings(sent))) => assert_eq!(&got, sent),
                (Err(got), Err(sent)) => assert_eq!(
                    (
                        got.status,
                        got.code,
                        &got.message,
                        &got.extra,
                        got.next_allowed_at
                    ),
                    (
                        sent.status,
                        sent.code,
                        &sent.message,
                        &sent.extra,
                        sent.next_allowed_at
                    )
                ),
                (got, sent) => panic!("sent {sent:?}, got {got:?}"),
            }
        }
    });
}

/// A node that applies nothing answers its commands from another node's
/// answers.
#[test]
fn a_node_that_does_not_apply_is_answered_by_one_that_does() {
    let Some(bin) = nats_server("a_node_that_does_not_apply_is_answered_by_one_that_does") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (_nats, url) = Nats::single(&bin, root);
    let urls = vec![url];
    let mut n0 = Node::new(root, 0, &urls, CLUSTER, 2);
    n0.extra = ["--replicas", "1"].map(String::from).to_vec();
    n0.start();

    let rt = runtime();
    let store = Arc::new(Store::open(root.join("b")).unwrap());
    let mut config = ClusterConfig::new(urls.clone(), "b");
    config.name = CLUSTER.into();
    config.partitions = Some(2);
    config.replicas = 1;
    config.read_wait = Duration::from_secs(3);
    rt.block_on(async {
        let b = ClusterNode::start(config, store).await.unwrap();
        // `b` stops applying: no outcome of its own will come.
        b.stop().await;
        let applied_before = b.positions();

        let set = |org: &str, plan| Command::SetOrg {
            org: org.into(),
            by: "ops".into(),
            plan: Some(plan),
            retention_days: None,
        };
        match outcome_of(b.command(set("org-scale", Plan::Scale)).await) {
            Outcome::Settings(s) => assert_eq!((s.org.as_str(), s.plan), ("org-scale", Plan::Scale)),
            other => panic!("{other:?}"),
        }
        let today = chrono::Utc::now().date_naive();
        let export = |org: &str| Command::RequestExport {
            org: org.into(),
            requested_by: "ops".into(),
            role: ExportRole::Admin,
            from: today - chrono::Duration::days(3),
            to: today - chrono::Duration::days(1),
        };
        let made = match outcome_of(b.command(export("org-scale")).await) {
            Outcome::Export(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!((made.org.as_str(), made.status), ("org-scale", Status::Requested));
        // A refusal decided where applied, answered as the single node would.
        let refused = error_of(b.command(export("org-free")).await);
        assert_eq!(
            (refused.status.as_u16(), refused.code),
            (403, "plan_not_eligible")
        );

        match outcome_of(b.command(Command::Process).await) {
            // Both partitions' runs answered (whether the request is due
            // yet is the processing's own rule: its padded window).
            Outcome::Processed { processed, expired } => {
                assert!(processed.iter().all(|r| r.id == made.id), "{processed:?}");
                assert!(expired.is_empty(), "{expired:?}");
            }
            other => panic!("{other:?}"),
        }

        let token = Command::CreateToken {
            scope: auditstore::auth::TokenScope::Operator,
            name: Some("remote".into()),
            by: "ops".into(),
        };
        match outcome_of(b.command(token).await) {
            Outcome::Token(t) => {
                assert!(
                    !t.token.is_empty(),
                    "the text is made and kept by the issuing node"
                );
                assert_eq!(
                    (t.info.role, t.info.name.as_deref()),
                    (auditstore::auth::Role::Operator, Some("remote"))
                );
            }
            other => panic!("{other:?}"),
        }

        let user = || Command::AddUser {
            name: "ada".into(),
            org: "org-scale".into(),
            role: auditstore::auth::Role::Member,
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            by: "ops".into(),
        };
        match outcome_of(b.command(user()).await) {
            Outcome::User(u) => assert_eq!((u.user.as_str(), u.org.as_str()), ("ada", "org-scale")),
            other => panic!("{other:?}"),
        }
        assert_eq!(error_of(b.command(user()).await).code, "conflict");
        assert_eq!(b.positions(), applied_before, "b applied nothing itself");

        // Nobody applies: the wait ends in `503`, as it did before answers.
        n0.proc.kill();
        let started = std::time::Instant::now();
        let late = error_of(b.command(set("org-scale", Plan::Performance)).await);
        assert_eq!((late.status.as_u16(), late.code), (503, "unavailable"));
        assert!(
            late.message.contains("did not apply it within"),
            "{}",
            late.message
        );
        assert!(started.elapsed() >= Duration::from_secs(3));
    });
}
