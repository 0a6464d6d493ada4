//! The OpenAPI description, assembled from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::api::{self, events, exports, integrity, settings};
use super::ops;

#[derive(OpenApi)]
#[openapi(
    info(title = "auditstore", description = "The auditstore HTTP API (shared/spec/http.md)."),
    paths(
        ops::healthz,
        ops::metrics,
        ops::openapi,
        events::ingest,
        events::query,
        events::get,
        integrity::proof,
        integrity::checkpoint,
        integrity::org_checkpoint,
        exports::create,
        exports::list,
        exports::get,
        exports::download,
        exports::manifest,
        exports::full,
        exports::process,
        settings::get,
        settings::put,
    ),
    components(schemas(
        api::ErrorBody,
        api::ErrorDetail,
        api::EventPage,
        api::IngestBody,
        events::IngestReport,
        events::IngestError,
        exports::NewExport,
        exports::ExportRequestBody,
        exports::ProcessAnswer,
        settings::SettingsBody,
        settings::SettingsChange,
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
