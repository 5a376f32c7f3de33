//! The query function as a Lambda behind API Gateway (REST proxy events), buffered or
//! streamed (`RESPONSE_TRANSFER_MODE`).

use std::sync::Arc;

use axum::Router;
use manuel_aws::lambda::{Init, serve_http};
use manuel_core::config::ConfigError;
use manuel_core::security::Security;
use manuel_core::usage::SystemClock;
use manuel_query::{QueryConfig, QueryDeps, router};

async fn app(init: &Init) -> Result<(Router, Security), ConfigError> {
    let objects = init.objects()?;
    let (answer_model, model_id) = init.answer_model()?;
    let security = init.security().await?;
    let cache = manuel_redis::answer_cache(init.env.optional("REDIS_URL"))?;
    // API Gateway sends /health to the usage function; invoked directly, this function reports
    // its own breakers (Bedrock's are only here).
    let health = manuel_core::health::router(manuel_core::health::HealthState {
        version: env!("CARGO_PKG_VERSION"),
        cache: cache.clone(),
        resilience: init.resilience()?,
    });
    let deps = QueryDeps {
        cache,
        usage: init.usage()?,
        quota: init.quota()?,
        pricing: init.pricing()?,
        model_id,
        clock: Arc::new(SystemClock),
        manuals: init.manuals()?,
        knowledge_base: init.knowledge_base()?,
        answer_model,
        objects,
        transcriber: Some(init.transcriber()?),
        audio_limits: manuel_transcribe::capped(
            init.audio_limits()?,
            manuel_transcribe::MAX_SPOKEN_QUESTION,
        ),
        security: security.clone(),
        config: QueryConfig {
            retrieval_limit: init.env.parsed_or("RETRIEVAL_RESULTS", 8)?,
            ..QueryConfig::default()
        },
    };
    Ok((router(deps).merge(health), security))
}

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let init = Init::start("query").await;
    let (routes, security) = init.checked(app(&init).await)?;
    // QueryStreamFunction runs this binary in STREAM mode, for POST /api/query/stream.
    let mode = init.checked(init.transfer_mode())?;
    serve_http(routes, &security, mode).await
}
