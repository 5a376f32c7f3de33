//! The usage function as a Lambda behind API Gateway (REST proxy events): health, usage,
//! quota and erasure.

use std::sync::Arc;

use axum::Router;
use manuel_aws::lambda::{Init, run_http};
use manuel_core::config::ConfigError;
use manuel_core::security::Security;
use manuel_core::usage::SystemClock;
use manuel_usage::{UsageDeps, router};

async fn app(init: &Init) -> Result<(Router, Security), ConfigError> {
    let objects = init.objects()?;
    let security = init.security().await?;
    let deps = UsageDeps {
        version: env!("CARGO_PKG_VERSION"),
        cache: manuel_redis::answer_cache(init.env.optional("REDIS_URL"))?,
        usage: init.usage()?,
        quota: init.quota()?,
        currency: init.pricing()?.currency,
        clock: Arc::new(SystemClock),
        manuals: init.manuals()?,
        knowledge_base: init.knowledge_base()?,
        objects,
        resilience: init.resilience()?,
        security: security.clone(),
    };
    Ok((router(deps), security))
}

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let init = Init::start("usage").await;
    let (routes, security) = init.checked(app(&init).await)?;
    run_http(routes, &security).await
}
