//! What every handler shares.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use super::replication::Replication;
use super::session::Sessions;
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
    pub async fn before_read(&self, org: &str) -> super::error::ApiResult<()> {
        match &self.replication {
            Some(r) => r.before_read(org.to_owned()).await,
            None => Ok(()),
        }
    }

    /// The server's "now": the store's clock (`--as-of` sets it).
    pub fn now(&self) -> Timestamp {
        self.store.clock().now()
    }

    /// Run a blocking store call off the async workers.
    pub async fn blocking<T, F>(&self, f: F) -> super::error::ApiResult<T>
    where
        F: FnOnce(&Store) -> super::error::ApiResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| super::error::ApiError::internal(format!("a store task failed: {e}")))?
    }
}
