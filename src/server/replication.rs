//! The hook through which a replicated deployment (the `cluster` feature,
//! `src/cluster/`) takes over the ingest path, guards the reads and shares
//! the web sessions.
//!
//! The server knows only this trait; the cluster implements it. Without a
//! hook the server appends to its own store and reads it directly.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::error::ApiResult;
use crate::auth::{NewToken, TokenInfo, TokenScope, User};
use crate::event::Event;
use crate::export::{Date, ExportRequest};
use crate::org::{OrgSettings, Plan};
use crate::store::{BatchReport, Store};
use crate::time::Timestamp;

/// A change of state that a replicated deployment carries out on every
/// replica, in its log's order, with the instant it was made at (the
/// server's or the admin tool's, which would otherwise apply it to the
/// local store). Checks that depend on nothing stored (the caller's role,
/// a well-formed body) are made before; checks that depend on the state
/// (a rate limit, an existing user) are made where it is applied.
#[derive(Debug, Clone)]
pub enum Command {
    /// `PUT .../settings`.
    SetOrg {
        org: String,
        by: String,
        plan: Option<Plan>,
        retention_days: Option<u32>,
    },
    /// `POST .../exports` (the rate limit and the rules are evaluated when
    /// it is applied).
    RequestExport {
        org: String,
        requested_by: String,
        role: crate::export::Role,
        from: Date,
        to: Date,
    },
    /// `POST /api/v1/exports/process`: one processing run now, everywhere.
    Process,
    /// The export schedule reached `mark`: processing as of it (published
    /// by every node's schedule, carried out once).
    ScheduleMark { mark: Timestamp },
    /// `token create` (the secret is made where the command is issued and
    /// never travels).
    CreateToken {
        scope: TokenScope,
        name: Option<String>,
        by: String,
    },
    /// `token revoke`.
    RevokeToken { id: String, by: String },
    /// `user add`, the password already hashed (argon2id PHC).
    AddUser {
        name: String,
        org: String,
        role: crate::auth::Role,
        password_hash: String,
        by: String,
    },
}

/// What a [`Command`] did, as the local store would have answered.
#[derive(Debug, Clone)]
pub enum Outcome {
    Settings(OrgSettings),
    Export(ExportRequest),
    /// Requests processed and expired, each list oldest first.
    Processed {
        processed: Vec<ExportRequest>,
        expired: Vec<ExportRequest>,
    },
    /// Handed over; nobody waits for its outcome (a schedule mark).
    Published,
    Token(NewToken),
    Revoked(TokenInfo),
    User(User),
}

/// What a forwarded request may take: its body and the wait for an
/// answer's head (the server's own limits).
#[derive(Debug, Clone, Copy)]
pub struct ForwardLimits {
    pub body_limit: usize,
    pub timeout: std::time::Duration,
}

/// A boxed future that may move between threads.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A session a replicated deployment found: its user and when it ends
/// (unix seconds), `None` when it knows of no such session.
pub type FoundSession = BoxFuture<'static, ApiResult<Option<(User, i64)>>>;

/// What a replicated deployment does in place of the local store.
pub trait Replication: Send + Sync + 'static {
    /// Store `events` of `org` (validated, in body order): answer once
    /// every one that will be stored is durable by the deployment's rule,
    /// with the outcome of each event in order.
    fn ingest(&self, org: String, events: Vec<Event>) -> BoxFuture<'static, ApiResult<BatchReport>>;

    /// Wait until this node's store holds every write of `org` that was
    /// acknowledged before the call, or refuse (`503 unavailable`).
    fn before_read(&self, org: String) -> BoxFuture<'static, ApiResult<()>>;

    /// Carry out `command` through the deployment (answering once it is
    /// durable there and applied here), or `None`: the caller applies it
    /// to its local store.
    fn command(&self, command: Command) -> Option<BoxFuture<'static, ApiResult<Outcome>>> {
        let _ = command;
        None
    }

    /// Answer `request`, about `org`, on another node (the answer to
    /// send back), or hand it back to be answered here (the default).
    fn forward(
        &self,
        org: &str,
        request: axum::extract::Request,
        limits: ForwardLimits,
    ) -> Result<BoxFuture<'static, axum::response::Response>, Box<axum::extract::Request>> {
        let _ = (org, limits);
        Err(Box::new(request))
    }

    /// A web session `id` of `user`, ending at `expires_at` (unix seconds),
    /// was started here: make it known to the deployment's other servers,
    /// answering once they can find it, or refuse (the sign-in is then
    /// refused: a session the others cannot see would fail later, in a
    /// confusing way). The id is the session's secret: never store or log
    /// it in clear. By default sessions stay in this server's memory.
    fn session_started(&self, id: &str, user: &User, expires_at: i64) -> BoxFuture<'static, ApiResult<()>> {
        let _ = (id, user, expires_at);
        Box::pin(async { Ok(()) })
    }

    /// The session `id` that another server started (or this one): its
    /// user and end (unix seconds), `Ok(None)` when the deployment knows of
    /// no such session (never started, signed out, expired), an error when
    /// it cannot be asked. `None`: sessions are not shared, and the
    /// server's memory is the only truth (the default).
    fn find_session(&self, id: &str) -> Option<FoundSession> {
        let _ = id;
        None
    }

    /// The store holding `org`'s events, settings and exports, when the
    /// deployment keeps more than the server's one (a cluster node keeps
    /// one per partition); `None`: the server's store. Blocking (it may
    /// open the store): called off the async workers.
    fn store_of(&self, org: &str) -> ApiResult<Option<Arc<Store>>> {
        let _ = org;
        Ok(None)
    }

    /// Every store the deployment holds open besides the server's, for the
    /// gauges.
    fn other_stores(&self) -> Vec<Arc<Store>> {
        Vec::new()
    }

    /// Session `id` was signed out here: forget it everywhere, or refuse.
    fn session_ended(&self, id: &str) -> BoxFuture<'static, ApiResult<()>> {
        let _ = id;
        Box::pin(async { Ok(()) })
    }
}
