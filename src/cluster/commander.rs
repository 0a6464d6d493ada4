//! A node's commands (docs/cluster.md, "Commands"): the server's state
//! changes, published to the partition's stream as command messages; the
//! node answers once the command is applied (bounded, like reads), by its
//! own applier or by whichever node applies it first and publishes the
//! answer ([`super::answers`]): the outcome is the same on every node.
//!
//! Partitions: an organization's settings and export requests go to its
//! partition (so they are ordered with its events); tokens and users, of
//! every organization, to partition 0, which every node applies
//! ([`super::assign`]), so that any node authenticates any caller. A
//! processing run is one command per partition, each processing that
//! partition's organizations.

use futures_util::future::join_all;
use futures_util::StreamExt;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::answers;
use super::command::{self, Body, Command};
use super::message::Batch;
use super::node::Node;
use super::outcomes::{Answer, Outcomes};
use super::partition::partition_of;
use crate::auth::{token, Auth, AuthError, NewToken, TokenHash, TokenScope};
use crate::server::error::{ApiError, ApiResult};
use crate::server::replication::{self, Outcome};
use crate::time::Timestamp;

/// The partition of tokens and users (every node applies it).
pub const CREDENTIALS_PARTITION: u32 = super::assign::EVERY_NODE;

impl Node {
    /// Carry out `cmd` through the streams.
    pub async fn command(&self, cmd: replication::Command) -> ApiResult<Outcome> {
        use replication::Command as C;
        let now = self.store().clock().now();
        let of = |org: &str| partition_of(org, self.partitions());
        match cmd {
            C::SetOrg {
                org,
                by,
                plan,
                retention_days,
            } => {
                let p = of(&org);
                let body = Body::SetOrg(command::SetOrg {
                    org,
                    by,
                    plan: plan.map(|p| p.as_str().to_owned()),
                    retention_days,
                });
                self.issue(p, Uuid::new_v4(), now, body).await
            }
            C::RequestExport {
                org,
                requested_by,
                role,
                from,
                to,
            } => {
                let p = of(&org);
                let body = Body::RequestExport(command::RequestExport {
                    org,
                    requested_by,
                    role: role.as_str().to_owned(),
                    from: from.to_string(),
                    to: to.to_string(),
                });
                // The command's id is the request's.
                self.issue(p, Uuid::new_v4(), now, body).await
            }
            C::Process => self.process(now).await,
            C::ScheduleMark { mark } => self.publish_mark(mark).await,
            C::CreateToken { scope, name, by } => {
                let text = token::generate().map_err(|e| ApiError::internal(format!("make a token: {e}")))?;
                let (org, role) = match &scope {
                    TokenScope::Operator => (None, crate::auth::Role::Operator),
                    TokenScope::Org { org, role } => (Some(org.clone()), *role),
                };
                let p = CREDENTIALS_PARTITION;
                let body = Body::CreateToken(command::CreateToken {
                    token_id: Uuid::new_v4().hyphenated().to_string(),
                    org,
                    role: role.as_str().to_owned(),
                    name,
                    by,
                    sha256: TokenHash::of(&text).to_hex(),
                });
                match self.issue(p, Uuid::new_v4(), now, body).await? {
                    Outcome::Token(made) => Ok(Outcome::Token(NewToken {
                        info: made.info,
                        token: text,
                    })),
                    other => Err(unexpected("a token", &other)),
                }
            }
            C::RevokeToken { id, by } => {
                // Every node holds every token (partition 0): one unknown
                // here is refused as without a cluster.
                let store = self.store().clone();
                let lookup = id.clone();
                let held = tokio::task::spawn_blocking(move || Auth::new(&store).token(&lookup))
                    .await
                    .map_err(|e| ApiError::internal(format!("a token lookup failed: {e}")))??;
                if held.is_none() {
                    return Err(AuthError::NotFound { what: "token", id }.into());
                }
                let p = CREDENTIALS_PARTITION;
                let body = Body::RevokeToken(command::RevokeToken { token_id: id, by });
                self.issue(p, Uuid::new_v4(), now, body).await
            }
            C::AddUser {
                name,
                org,
                role,
                password_hash,
                by,
            } => {
                let p = CREDENTIALS_PARTITION;
                let body = Body::AddUser(command::AddUser {
                    user: name,
                    org,
                    role: role.as_str().to_owned(),
                    password_hash,
                    by,
                });
                self.issue(p, Uuid::new_v4(), now, body).await
            }
        }
    }

    /// One processing run now: a command per partition, all awaited; the
    /// requests processed and expired, oldest first.
    async fn process(&self, now: Timestamp) -> ApiResult<Outcome> {
        let runs = (0..self.partitions()).map(|p| {
            let body = Body::Process(command::Process { scheduled: false });
            self.issue(p, Uuid::new_v4(), now, body)
        });
        let (mut processed, mut expired) = (Vec::new(), Vec::new());
        for answer in join_all(runs).await {
            match answer? {
                Outcome::Processed {
                    processed: p,
                    expired: e,
                } => {
                    processed.extend(p);
                    expired.extend(e);
                }
                other => return Err(unexpected("a processing run", &other)),
            }
        }
        processed.sort_by_key(|r| (r.created_at, r.id));
        expired.sort_by_key(|r| (r.created_at, r.id));
        Ok(Outcome::Processed { processed, expired })
    }

    /// The schedule reached `mark`: a processing command per partition,
    /// which every node builds alike (id from (partition, mark), instant
    /// the mark), so that JetStream keeps one of each within its
    /// de-duplication window. Nobody waits for their outcomes.
    async fn publish_mark(&self, mark: Timestamp) -> ApiResult<Outcome> {
        let mut batches = Vec::new();
        for p in 0..self.partitions() {
            let cmd = Command {
                id: command::schedule_id(p, mark),
                at: mark,
                body: Body::Process(command::Process { scheduled: true }),
            };
            batches.push((p, batch(&cmd)?));
        }
        self.publisher()
            .publish_batches(batches)
            .await
            .map_err(|e| ApiError::unavailable(format!("the schedule mark {mark} was not published: {e}")))?;
        Ok(Outcome::Published)
    }

    /// Publish one command to `partition` and wait, at most the read wait,
    /// for its outcome: this node's applier's, or the answer of whichever
    /// node applies it first (published on the command's answer subject,
    /// [`answers`]), so that a node that does not apply the partition
    /// answers too. Subscribed before publishing; the subscription and the
    /// waiting outcome are given up on every path (also when the request
    /// itself is dropped).
    async fn issue(&self, partition: u32, id: Uuid, at: Timestamp, body: Body) -> ApiResult<Outcome> {
        let cmd = Command { id, at, body };
        let message = batch(&cmd)?;
        let local = self.outcomes().expect(id);
        let _waiting = Waiting(self.outcomes(), id);
        let remote = self.subscribe_answer(&id).await;
        if let Err(e) = self.publisher().publish_batches(vec![(partition, message)]).await {
            return Err(ApiError::unavailable(format!(
                "the change was not acknowledged by JetStream ({e}); it may or may not be made: \
                 look, then retry"
            ))
            .with("partition", partition));
        }
        let wait = self.read_wait();
        match tokio::time::timeout(wait, first_answer(id, local, remote)).await {
            Ok(answer) => answer,
            Err(_) => {
                metrics::counter!("auditstore_cluster_reads_not_caught_up_total").increment(1);
                Err(ApiError::unavailable(format!(
                    "the change is in partition {partition}'s stream (acknowledged by JetStream) but this \
                     node did not apply it within {wait:?}; it will be applied: look again shortly"
                ))
                .with("partition", partition))
            }
        }
    }

    /// Subscribe to command `id`'s answer subject. The subscription goes
    /// out on the connection the command is then published on, so the
    /// server has it before the command exists. Without one (the client is
    /// closing), only this node's own outcome is awaited.
    async fn subscribe_answer(&self, id: &Uuid) -> Option<async_nats::Subscriber> {
        let subject = answers::subject(self.publisher().cluster(), id);
        match self.publisher().client().subscribe(subject.clone()).await {
            Ok(sub) => Some(sub),
            Err(e) => {
                tracing::warn!("{subject}: cannot subscribe ({e}); waiting for this node's own outcome only");
                None
            }
        }
    }
}

/// No longer waits for a command's outcome when dropped (answered, timed
/// out, or the request dropped); the answer's subscription unsubscribes
/// when dropped too.
struct Waiting<'a>(&'a Outcomes, Uuid);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.forget(&self.1);
    }
}

/// The first of: this node's applier's outcome, and the first readable
/// answer on the subscription. An unreadable answer (a newer node's, or
/// damaged) is logged and the wait goes on.
async fn first_answer(
    id: Uuid,
    local: oneshot::Receiver<Answer>,
    remote: Option<async_nats::Subscriber>,
) -> Answer {
    let local = async {
        match local.await {
            Ok(answer) => answer,
            // Nobody will deliver here: the other way, or the timeout.
            Err(_) => std::future::pending().await,
        }
    };
    let remote = async {
        let Some(mut sub) = remote else {
            return std::future::pending().await;
        };
        while let Some(msg) = sub.next().await {
            match answers::decode(&msg.payload) {
                Ok(answer) => return answer,
                Err(e) => tracing::warn!("command {id}: an answer was not read: {e}"),
            }
        }
        std::future::pending().await
    };
    tokio::select! {
        answer = local => answer,
        answer = remote => answer,
    }
}

/// A command as a message to publish.
fn batch(cmd: &Command) -> ApiResult<Batch> {
    let payload = cmd.encode().map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Batch {
        msg_id: command::msg_id(&payload),
        payload,
        count: 0,
    })
}

fn unexpected(what: &str, other: &Outcome) -> ApiError {
    ApiError::internal(format!("{what} answered {other:?}"))
}
