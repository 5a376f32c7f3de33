//! The manuals function: a user's manuals, uploaded as base64 JSON, listed, shown and deleted.

mod download;
pub mod fetch;
mod handlers;
mod ingestion;
mod pdf_page;
pub mod pdfium;
mod upload;
mod upload_link;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use manuel_core::config::ConfigError;
use manuel_core::ports::{
    IngestionQueue, KnowledgeBase, ManualRepository, ObjectStore, PageRenderer,
};
use manuel_core::security::Security;
use manuel_core::url_policy::FetchAllowList;

use crate::fetch::{FetchLimits, UrlFetcher};

pub use upload::sanitize_file_name;

#[derive(Clone, Debug)]
pub struct ManualsConfig {
    /// The largest manual accepted, in decoded bytes.
    pub max_upload_bytes: usize,
    /// How long a download link stays valid.
    pub download_link_ttl: Duration,
    /// How long the detail's `pdfUrl` stays valid: the predecessor's app keeps it while the
    /// detail screen is open.
    pub pdf_link_ttl: Duration,
    /// How long a rendered page's `page_image_url` stays valid.
    pub page_image_ttl: Duration,
    /// The largest manual accepted through an upload link (`POST /api/manuals/upload-url`).
    pub max_upload_link_bytes: u64,
    /// How long an upload link stays valid.
    pub upload_link_ttl: Duration,
    /// Upload links one user may be given per link lifetime (a window of `upload_link_ttl`):
    /// with links valid one window, at most twice this many are outstanding at any moment, so
    /// at most twice this times `max_upload_link_bytes` can be announced.
    pub max_upload_links: u64,
}

impl Default for ManualsConfig {
    fn default() -> Self {
        Self {
            max_upload_bytes: 25 * 1024 * 1024,
            download_link_ttl: Duration::from_secs(300),
            pdf_link_ttl: Duration::from_secs(3600),
            page_image_ttl: Duration::from_secs(900),
            max_upload_link_bytes: 100 * 1024 * 1024,
            upload_link_ttl: Duration::from_secs(900),
            max_upload_links: 10,
        }
    }
}

#[derive(Clone)]
pub struct ManualsDeps {
    pub objects: Arc<dyn ObjectStore>,
    pub manuals: Arc<dyn ManualRepository>,
    pub knowledge_base: Arc<dyn KnowledgeBase>,
    pub ingestion: Arc<dyn IngestionQueue>,
    /// Fetches manuals for `POST /api/manuals/download`.
    pub fetcher: Arc<UrlFetcher>,
    /// Draws pages for `POST /api/pdf-page`; `None` answers it 503.
    pub renderer: Option<Arc<dyn PageRenderer>>,
    pub security: Security,
    pub config: ManualsConfig,
}

/// The fetcher for URL downloads: `MAX_DOWNLOAD_BYTES` (25 MiB) and `URL_FETCH_ALLOW_HOSTS`
/// (hosts exempt from the SSRF address check; for tests against a loopback server only).
pub fn fetcher_from_vars(
    vars: &std::collections::HashMap<String, String>,
) -> Result<Arc<UrlFetcher>, ConfigError> {
    let env = manuel_core::config::Env::from_vars(vars.clone());
    let defaults = FetchLimits::default();
    let limits = FetchLimits {
        max_bytes: env
            .number_in(
                "MAX_DOWNLOAD_BYTES",
                defaults.max_bytes as u64,
                1..=u64::MAX,
            )?
            .try_into()
            .unwrap_or(usize::MAX),
        ..defaults
    };
    let allow = FetchAllowList::parse(env.optional("URL_FETCH_ALLOW_HOSTS").unwrap_or_default());
    UrlFetcher::new(allow, limits)
        .map(Arc::new)
        .map_err(|reason| ConfigError {
            name: "URL_FETCH_ALLOW_HOSTS",
            reason,
        })
}

/// pdfium from `MANUEL_PDFIUM_LIB` (the layer's `/opt/lib/libpdfium.so` in template.yaml) for
/// `POST /api/pdf-page`; unset, that route answers 503. A path that does not load stops init.
pub fn renderer_from_vars(
    vars: &std::collections::HashMap<String, String>,
) -> Result<Option<Arc<dyn PageRenderer>>, ConfigError> {
    let Some(library) = vars
        .get("MANUEL_PDFIUM_LIB")
        .map(|value| value.trim())
        .filter(|value| !value.is_empty())
    else {
        return Ok(None);
    };
    let renderer =
        pdfium::PdfiumRenderer::load(std::path::Path::new(library)).map_err(|reason| {
            ConfigError {
                name: "MANUEL_PDFIUM_LIB",
                reason,
            }
        })?;
    Ok(Some(Arc::new(renderer)))
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
        .route("/api/manuals/download", post(download::download))
        .route("/api/manuals/upload-url", post(upload_link::upload_link))
        .route("/api/pdf-page", post(pdf_page::pdf_page))
        .route("/api/ingestion/status", get(ingestion::status))
        // A catch-all: the predecessor's CLI sends storage keys (`manuals/<user>/<id>.pdf`)
        // URL-encoded, and a gateway that decodes `%2F` before routing would otherwise split
        // them into segments.
        .route(
            "/api/manuals/{*id}",
            get(handlers::detail).delete(handlers::delete),
        );
    deps.security
        .protect_with_body_limit(routes, body_limit)
        .with_state(deps)
}
