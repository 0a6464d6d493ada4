//! `auditstore serve`: the store over HTTP (contract: `shared/spec/http.md`).
//!
//! Behind the `server` cargo feature: an embedder with
//! `default-features = false` compiles no async runtime and no HTTP stack.
//! The server uses the store; the store knows nothing of it.
//!
//! Invariants:
//! - Every store call runs off the async workers (`spawn_blocking`); the
//!   store's group commit batches concurrent appends.
//! - A `200` to an ingest means every appended event is durable: the
//!   store's default durability fsyncs before `append_batch` returns.
//! - Every refusal is the contract's JSON error, also those made by the
//!   layers (body limit, timeout, a caught panic) and by routing.
//! - Checks run in the contract's order: `401`, `403`, then the request.

pub mod api;
pub mod caller;
pub mod cursor;
pub mod error;
pub mod layers;
pub mod openapi;
pub mod ops;
pub mod replication;
mod schedule;
pub mod session;
pub mod state;
pub mod stream;
pub mod web;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub use error::{ApiError, ApiResult};
pub use state::AppState;

use crate::store::Store;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest request body, in bytes (`413 too_large` above).
    pub body_limit: usize,
    /// Longest time to produce a response's head (`503` after).
    pub request_timeout: Duration,
    /// Mark the session cookie `Secure` (behind TLS).
    pub secure_cookies: bool,
    /// How long a web session lasts.
    pub session_ttl_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            body_limit: 16 * 1024 * 1024,
            request_timeout: Duration::from_secs(60),
            secure_cookies: false,
            session_ttl_secs: 8 * 3600,
        }
    }
}

/// The process's Prometheus recorder (one per process: the `metrics`
/// facade is global).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// The whole application: API, operations endpoints, web page, layers.
pub fn app(state: AppState) -> Router {
    let routes = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .route("/api/openapi.json", get(ops::openapi))
        .merge(api::routes())
        .merge(web::routes());
    layers::wrap(routes, &state).with_state(state)
}

/// Serve `store` on `listener` until `shutdown` resolves, then stop
/// accepting, finish the requests in flight, and stop the export schedule.
/// The store stays open: the caller flushes and drops it.
pub async fn serve(
    store: Arc<Store>,
    listener: tokio::net::TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(store, listener, config, None, shutdown).await
}

/// [`serve`], with ingest and the event reads going through `replication`
/// when given (`auditstore serve --cluster`).
pub async fn serve_with(
    store: Arc<Store>,
    listener: tokio::net::TcpListener,
    config: ServerConfig,
    replication: Option<Arc<dyn replication::Replication>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = AppState::replicated(store, config, metrics_handle(), replication);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let scheduler = tokio::spawn(schedule::run(state.clone(), stop_rx));
    // Connection info: the sign-in limiter counts failures per address.
    let app = app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    let _ = stop_tx.send(true);
    let _ = scheduler.await;
    served
}
