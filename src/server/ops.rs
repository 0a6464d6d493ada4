//! What runs the service needs: health, metrics, the API's description.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use utoipa::OpenApi;

use super::state::AppState;

/// `{"status": "ok"}` once the store is open (the server listens only then).
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The store is open", body = Object, example = json!({"status": "ok"}))))]
pub async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    // A cluster node's partition stores count too (organizations are
    // each in one partition).
    let mut stores = vec![state.store.clone()];
    if let Some(r) = &state.replication {
        stores.extend(r.other_stores());
    }
    let summed = tokio::task::spawn_blocking(move || {
        stores.iter().try_fold([0u64; 4], |sum, store| {
            let s = store.stats()?;
            Ok::<_, crate::Error>([
                sum[0] + s.events,
                sum[1] + s.bytes,
                sum[2] + s.segments,
                sum[3] + s.organizations,
            ])
        })
    })
    .await;
    if let Ok(Ok([events, bytes, segments, organizations])) = summed {
        metrics::gauge!("auditstore_store_events").set(events as f64);
        metrics::gauge!("auditstore_store_bytes").set(bytes as f64);
        metrics::gauge!("auditstore_store_segments").set(segments as f64);
        metrics::gauge!("auditstore_store_organizations").set(organizations as f64);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    )
        .into_response()
}

/// The OpenAPI 3 description of this API, generated from the handlers.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3 document", body = Object)))]
pub async fn openapi() -> Response {
    axum::Json(super::openapi::ApiDoc::openapi()).into_response()
}
