//! What every handler shares.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

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
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(store: Arc<Store>, config: ServerConfig, metrics: PrometheusHandle) -> Self {
        let sessions = Sessions::new(config.session_ttl_secs);
        AppState(Arc::new(Inner {
            store,
            config,
            sessions,
            metrics,
        }))
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
