//! What every handler shares.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use super::error::{ApiError, ApiResult};
use super::replication::Replication;
use super::session::{self, Session, Sessions};
use super::ServerConfig;
use crate::store::Store;
use crate::time::Timestamp;

/// The server's shared state: cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub store: Arc<Store>,
    pub config: ServerConfig,
    pub sessions: Sessions,
    pub metrics: PrometheusHandle,
    /// The cluster's ingest path and read guard (`None`: the local store).
    pub replication: Option<Arc<dyn Replication>>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(store: Arc<Store>, config: ServerConfig, metrics: PrometheusHandle) -> Self {
        Self::replicated(store, config, metrics, None)
    }

    /// The state of a node whose ingest and event reads go through
    /// `replication` when given (`auditstore serve --cluster`).
    pub fn replicated(
        store: Arc<Store>,
        config: ServerConfig,
        metrics: PrometheusHandle,
        replication: Option<Arc<dyn Replication>>,
    ) -> Self {
        let sessions = Sessions::new(config.session_ttl_secs);
        AppState(Arc::new(Inner {
            store,
            config,
            sessions,
            metrics,
            replication,
        }))
    }

    /// Wait until this node's store reflects the acknowledged writes of
    /// `org` (a no-op without replication).
    pub async fn before_read(&self, org: &str) -> ApiResult<()> {
        match &self.replication {
            Some(r) => r.before_read(org.to_owned()).await,
            None => Ok(()),
        }
    }

    /// The live session with this id: the one this server holds, else (or,
    /// when sessions are shared, once it is older than
    /// [`session::RECHECK`]) the one the replication hook finds, which is
    /// then held here until it ends. `Err` (`503`): the hook could not be
    /// asked. An id this server could not have made is no session.
    pub async fn session(&self, id: &str) -> ApiResult<Option<Session>> {
        if !session::plausible_id(id) {
            return Ok(None);
        }
        let held = self.sessions.get(id);
        if held.as_ref().is_some_and(Session::fresh) {
            return Ok(held);
        }
        let Some(find) = self.replication.as_ref().and_then(|r| r.find_session(id)) else {
            return Ok(held);
        };
        match find.await? {
            Some((user, expires_at)) if expires_at > session::unix_now() => {
                Ok(Some(self.sessions.insert(id, user, expires_at)))
            }
            _ => {
                self.sessions.end(id);
                Ok(None)
            }
        }
    }

    /// Start a session for `user`: its id, once the replication hook (if
    /// any) made it known everywhere; `Err` if it could not.
    pub async fn start_session(&self, user: crate::auth::User) -> ApiResult<String> {
        let (id, expires_at) = self
            .sessions
            .new_id()
            .map_err(|e| ApiError::internal(format!("no random bytes for a session: {e}")))?;
        if let Some(r) = &self.replication {
            r.session_started(&id, &user, expires_at).await?;
        }
        self.sessions.insert(&id, user, expires_at);
        Ok(id)
    }

    /// End session `id`: everywhere through the replication hook (if any),
    /// then here; `Err` (the session is left as it was) if the hook could
    /// not.
    pub async fn end_session(&self, id: &str) -> ApiResult<()> {
        if let Some(r) = &self.replication {
            r.session_ended(id).await?;
        }
        self.sessions.end(id);
        Ok(())
    }

    /// The server's "now": the store's clock (`--as-of` sets it).
    pub fn now(&self) -> Timestamp {
        self.store.clock().now()
    }

    /// The store holding `org`'s data (the server's, or the replication's
    /// store of its partition). Blocking.
    pub fn store_of(&self, org: &str) -> ApiResult<Arc<Store>> {
        match &self.replication {
            Some(r) => Ok(r.store_of(org)?.unwrap_or_else(|| self.store.clone())),
            None => Ok(self.store.clone()),
        }
    }

    /// Run a blocking call on `org`'s store off the async workers.
    pub async fn blocking_for<T, F>(&self, org: String, f: F) -> ApiResult<T>
    where
        F: FnOnce(&Store) -> ApiResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let state = self.clone();
        off_the_workers(move || f(&*state.store_of(&org)?)).await
    }

    /// Run a blocking call on the server's store (partition 0's in a
    /// cluster: tokens, users, the node's checkpoint) off the async
    /// workers.
    pub async fn blocking<T, F>(&self, f: F) -> ApiResult<T>
    where
        F: FnOnce(&Store) -> ApiResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let store = self.store.clone();
        off_the_workers(move || f(&store)).await
    }
}

async fn off_the_workers<T, F>(f: F) -> ApiResult<T>
where
    F: FnOnce() -> ApiResult<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("a store task failed: {e}")))?
}
