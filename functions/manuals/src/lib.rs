//! The manuals function: a user's manuals, uploaded as base64 JSON, listed, shown and deleted.

mod handlers;
mod upload;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use manuel_core::auth::{JwtVerifier, require_user};
use manuel_core::ports::{IngestionQueue, KnowledgeBase, ManualRepository, ObjectStore};

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
    pub verifier: Arc<JwtVerifier>,
    pub config: ManualsConfig,
}

pub fn router(deps: ManualsDeps) -> Router {
    // base64 grows the file by 4/3; the rest of the JSON body is small.
    let body_limit = deps.config.max_upload_bytes / 3 * 4 + 64 * 1024;
    let verifier = Arc::clone(&deps.verifier);
    Router::new()
        .route("/api/manuals", get(handlers::list))
        .route("/api/manuals/upload", post(upload::upload))
        .route(
            "/api/manuals/{id}",
            get(handlers::detail).delete(handlers::delete),
        )
        .route_layer(from_fn_with_state(verifier, require_user))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(deps)
}
