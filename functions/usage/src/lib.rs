//! The usage function. For now it serves the public health check.

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

#[derive(Clone, Debug)]
pub struct UsageDeps {
    pub version: &'static str,
}

pub fn router(deps: UsageDeps) -> Router {
    Router::new().route("/health", get(move || health(deps.version)))
}

async fn health(version: &'static str) -> Json<Value> {
    Json(json!({
        "status": "healthy",
        "service": "manuel-backend",
        "version": version,
        "timestamp": chrono_like_now(),
    }))
}

fn chrono_like_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default()
}
