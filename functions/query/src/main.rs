//! The query function as a Lambda behind API Gateway (REST proxy events).

use std::sync::Arc;

use axum::Router;
use manuel_aws::lambda::{Init, run_http};
use manuel_core::security::{ConfigError, Security};
use manuel_core::usage::SystemClock;
use manuel_query::{QueryConfig, QueryDeps, router};

async fn app(init: &Init) -> Result<(Router, Security), ConfigError> {
    let objects = init.objects()?;
    let (answer_model, model_id) = init.answer_model()?;
    let security = init.security().await?;
    let deps = QueryDeps {
        cache: manuel_redis::answer_cache(init.env.optional("REDIS_URL"))?,
        usage: init.usage()?,
        quota: init.quota()?,
        pricing: init.pricing()?,
        model_id,
        clock: Arc::new(SystemClock),
        manuals: init.manuals()?,
        knowledge_base: init.knowledge_base(objects.clone())?,
        answer_model,
        objects,
        transcriber: Some(init.transcriber()?),
        audio_limits: init.audio_limits()?,
        security: security.clone(),
        config: QueryConfig {
            retrieval_limit: init.env.parsed_or("RETRIEVAL_RESULTS", 8)?,
            ..QueryConfig::default()
        },
    };
    Ok((router(deps), security))
}

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let init = Init::start("query").await;
    let (routes, security) = init.checked(app(&init).await)?;
    run_http(routes, &security).await
}
