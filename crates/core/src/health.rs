//! `GET /health` (public): liveness with the cache counters; `?deep=true` adds the circuit
//! breaker of every dependency this process guards. Breakers live per process (per Lambda
//! container), so each function answers for its own; `CircuitOpened` is the fleet-wide view.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use crate::ApiError;
use crate::cache::Cache;
use crate::resilience::{BreakerState, Resilience};

#[derive(Clone)]
pub struct HealthState {
    pub version: &'static str,
    pub cache: Arc<Cache>,
    pub resilience: Arc<Resilience>,
}

pub fn router(state: HealthState) -> Router {
    Router::new()
        .route("/health", get(health))
        .with_state(state)
}

fn wants_deep(query: Option<&str>) -> Result<bool, ApiError> {
    let mut deep = false;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("deep", "true" | "1") => deep = true,
            ("deep", "false" | "0") => deep = false,
            ("deep", _) => {
                return Err(ApiError::validation(
                    "deep",
                    "`deep` must be true or false.",
                ));
            }
            (name, _) => {
                return Err(ApiError::validation(
                    name,
                    format!("Unknown query parameter `{name}`; only `deep` is accepted."),
                ));
            }
        }
    }
    Ok(deep)
}

/// 200 while every breaker is closed or probing; 503 with `status: degraded` while one is open,
/// so a deep check can drive an alarm or a load balancer.
async fn health(
    State(state): State<HealthState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let deep = wants_deep(query.as_deref())?;
    let mut body = json!({
        "status": "healthy",
        "service": "manuel-backend",
        "version": state.version,
        "timestamp": chrono::Utc::now().timestamp(),
        "cache": state.cache.stats(),
    });
    if !deep {
        return Ok(Json(body).into_response());
    }
    let mut dependencies = Map::new();
    let mut degraded = false;
    for (name, snapshot) in state.resilience.snapshot() {
        degraded |= snapshot.state == BreakerState::Open;
        dependencies.insert(
            name.to_owned(),
            json!({
                "circuit": snapshot.state.as_str(),
                "recent_failures": snapshot.recent_failures,
                "retry_after_seconds": snapshot.retry_after.map(|d| d.as_secs_f64().ceil() as u64),
            }),
        );
    }
    if let Some(map) = body.as_object_mut() {
        map.insert("dependencies".to_owned(), Value::Object(dependencies));
        if degraded {
            map.insert("status".to_owned(), json!("degraded"));
        }
    }
    let status = if degraded {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    Ok((status, Json(body)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_deep_is_accepted() {
        assert_eq!(wants_deep(None).ok(), Some(false));
        assert_eq!(wants_deep(Some("deep=true")).ok(), Some(true));
        assert_eq!(wants_deep(Some("deep=false")).ok(), Some(false));
        assert!(wants_deep(Some("deep=maybe")).is_err());
        assert!(wants_deep(Some("verbose=1")).is_err());
    }
}
