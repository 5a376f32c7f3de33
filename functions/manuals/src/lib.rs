//! The manuals function: a user's manuals, uploaded as base64 JSON, listed, shown and deleted.

mod handlers;
mod upload;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use manuel_core::ports::{IngestionQueue, KnowledgeBase, ManualRepository, ObjectStore};
use manuel_core::security::Security;

pub use upload::sanitize_file_name;

#[derive(Clone, Debug)]
pub struct ManualsConfig {
    /// The largest manual accepted, in decoded bytes.
    pub max_upload_bytes: usize,
    /// How long a download link stays valid.
    pub download_link_ttl: Duration,
}

impl Default for ManualsConfig {
    fn default() -> Self {
        Self {
            max_upload_bytes: 25 * 1024 * 1024,
            download_link_ttl: Duration::from_secs(300),
        }
    }
}

#[derive(Clone)]
pub struct ManualsDeps {
    pub objects: Arc<dyn ObjectStore>,
    pub manuals: Arc<dyn ManualRepository>,
    pub knowledge_base: Arc<dyn KnowledgeBase>,
    pub ingestion: Arc<dyn IngestionQueue>,
    pub security: Security,
    pub config: ManualsConfig,
}

/// The largest request body the upload route reads: base64 grows the file by 4/3, and the
/// rest of the JSON body is small.
pub fn request_body_limit(config: &ManualsConfig) -> usize {
    config.max_upload_bytes.div_ceil(3) * 4 + 64 * 1024
}

pub fn router(deps: ManualsDeps) -> Router {
    let body_limit = request_body_limit(&deps.config);
    let routes = Router::new()
        .route("/api/manuals", get(handlers::list))
        .route("/api/manuals/upload", post(upload::upload))
        .route(
            "/api/manuals/{id}",
            get(handlers::detail).delete(handlers::delete),
        );
    deps.security
        .protect(routes)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(deps)
}
