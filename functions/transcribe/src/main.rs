//! The transcribe function as a Lambda behind API Gateway (REST proxy events).

use std::sync::Arc;

use axum::Router;
use manuel_aws::lambda::{Init, run_http};
use manuel_core::config::ConfigError;
use manuel_core::security::Security;
use manuel_core::usage::SystemClock;
use manuel_transcribe::{MAX_TRANSCRIBED_CLIP, TranscribeDeps, capped, router};

async fn app(init: &Init) -> Result<(Router, Security), ConfigError> {
    let security = init.security().await?;
    let deps = TranscribeDeps {
        usage: init.usage()?,
        quota: init.quota()?,
        pricing: init.pricing()?,
        clock: Arc::new(SystemClock),
        transcriber: Some(init.transcriber()?),
        limits: capped(init.audio_limits()?, MAX_TRANSCRIBED_CLIP),
        security: security.clone(),
    };
    Ok((router(deps), security))
}

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let init = Init::start("transcribe").await;
    let (routes, security) = init.checked(app(&init).await)?;
    run_http(routes, &security).await
}
