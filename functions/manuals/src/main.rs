//! The manuals function as a Lambda behind API Gateway (REST proxy events).

use axum::Router;
use manuel_aws::bedrock::MAX_DOCUMENT_BYTES;
use manuel_aws::lambda::{Init, run_http};
use manuel_core::config::ConfigError;
use manuel_core::security::Security;
use manuel_manuals::{ManualsConfig, ManualsDeps, router};

async fn app(init: &Init) -> Result<(Router, Security), ConfigError> {
    let objects = init.objects()?;
    let security = init.security().await?;
    let defaults = ManualsConfig::default();
    let config = ManualsConfig {
        // A synchronous Lambda invocation carries at most 6 MB, base64 included; bigger
        // manuals go through a pre-signed upload.
        max_upload_bytes: init.env.parsed_or("MAX_UPLOAD_BYTES", 4 * 1024 * 1024)?,
        max_upload_link_bytes: upload_link_limit(init)?,
        upload_link_ttl: std::time::Duration::from_secs(init.env.parsed_or(
            "UPLOAD_LINK_TTL_SECONDS",
            defaults.upload_link_ttl.as_secs(),
        )?),
        max_upload_links: init
            .env
            .parsed_or("MAX_UPLOAD_LINKS", defaults.max_upload_links)?,
        ..defaults
    };
    let deps = ManualsDeps {
        objects: objects.clone(),
        manuals: init.manuals()?,
        knowledge_base: init.knowledge_base()?,
        // The stored object's S3 event starts process-manual.
        ingestion: std::sync::Arc::new(manuel_aws::s3::ProcessedOnObjectCreated),
        fetcher: manuel_manuals::fetcher_from_vars(init.env.vars())?,
        renderer: manuel_manuals::renderer_from_vars(init.env.vars())?,
        security: security.clone(),
        config,
    };
    Ok((router(deps), security))
}

/// `MAX_UPLOAD_LINK_BYTES`, at most (and by default) what the knowledge base ingests: a bigger
/// manual would be accepted and then fail.
fn upload_link_limit(init: &Init) -> Result<u64, ConfigError> {
    let limit = init
        .env
        .parsed_or("MAX_UPLOAD_LINK_BYTES", MAX_DOCUMENT_BYTES)?;
    if limit > MAX_DOCUMENT_BYTES {
        return Err(ConfigError {
            name: "MAX_UPLOAD_LINK_BYTES",
            reason: format!(
                "{limit} is above the {MAX_DOCUMENT_BYTES} bytes a knowledge-base document may have"
            ),
        });
    }
    Ok(limit)
}

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let init = Init::start("manuals").await;
    let (routes, security) = init.checked(app(&init).await)?;
    run_http(routes, &security).await
}
