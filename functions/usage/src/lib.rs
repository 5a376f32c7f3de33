//! The usage function: the public health check, the caller's usage and costs, quota state, and
//! erasing everything the caller owns.

mod report;

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{delete, get};
use axum::{Json, Router};
use manuel_core::ApiError;
use manuel_core::auth::AuthenticatedUser;
use manuel_core::cache::Cache;
use manuel_core::health::HealthState;
use manuel_core::ports::{KnowledgeBase, ManualRepository, ObjectStore, UsageStore};
use manuel_core::resilience::Resilience;
use manuel_core::security::Security;
use manuel_core::usage::{Clock, QuotaLimits};
use serde_json::{Value, json};

#[derive(Clone)]
pub struct UsageDeps {
    pub version: &'static str,
    pub cache: Arc<Cache>,
    pub usage: Arc<dyn UsageStore>,
    pub quota: QuotaLimits,
    pub currency: String,
    pub clock: Arc<dyn Clock>,
    pub manuals: Arc<dyn ManualRepository>,
    pub objects: Arc<dyn ObjectStore>,
    pub knowledge_base: Arc<dyn KnowledgeBase>,
    /// The breakers `GET /health?deep=true` reports.
    pub resilience: Arc<Resilience>,
    pub security: Security,
}

/// The largest body a usage route reads (none needs one).
const USAGE_BODY_LIMIT: usize = 64 * 1024;

pub fn router(deps: UsageDeps) -> Router {
    let api = Router::new()
        .route("/api/user/usage", get(report::usage))
        .route("/api/user/quota", get(report::quota))
        .route("/api/user/data", delete(erase));
    let health = manuel_core::health::router(HealthState {
        version: deps.version,
        cache: deps.cache.clone(),
        resilience: deps.resilience.clone(),
    });
    // No route here takes a body: a small limit keeps `DELETE /api/user/data` with an
    // `Idempotency-Key` from buffering one.
    deps.security
        .protect_with_body_limit(api, USAGE_BODY_LIMIT)
        .with_state(deps)
        .merge(health)
}

/// `DELETE /api/user/data`: every manual (file, index entries, record), every cost record and
/// past usage counter, and every cached answer. The counters of the current day and month stay
/// (they hold a count under the user id's hash, nothing else), so erasing does not reset the
/// quota. Safe to repeat after a partial failure.
async fn erase(
    State(deps): State<UsageDeps>,
    AuthenticatedUser(user): AuthenticatedUser,
) -> Result<Json<Value>, ApiError> {
    let mut manuals = 0u64;
    loop {
        let page = deps
            .manuals
            .list(&user, 100, None)
            .await
            .map_err(|error| match error {
                manuel_core::ports::ListError::Port(error) => ApiError::from(error),
                manuel_core::ports::ListError::BadToken => {
                    ApiError::internal("unexpected pagination error")
                }
            })?;
        if page.manuals.is_empty() {
            break;
        }
        for manual in page.manuals {
            deps.knowledge_base.remove(&manual).await?;
            deps.objects.delete(&manual.key).await?;
            if deps.manuals.delete(&user, &manual.id).await? {
                manuals += 1;
            }
        }
    }
    // Pages rendered for `POST /api/pdf-page`, including any left by a manual whose record
    // went first.
    let mut rendered_pages = 0;
    for prefix in manuel_core::storage_keys::all_rendered_pages_prefixes(&user, None) {
        rendered_pages += deps.objects.delete_prefix(&prefix).await?;
    }
    // The quota of the current day and month survives the erase (under the user id's hash).
    let current = manuel_core::usage::QuotaWindows::at(deps.clock.now());
    let usage_records = deps.usage.erase(&user, &current).await?;
    let cached_answers = deps.cache.purge_user(user.as_str()).await?;
    // Stored responses of idempotent requests hold the user's data too (answers, manual names).
    let idempotency_records = deps
        .security
        .idempotency
        .erase_prefix(&manuel_core::idempotency::user_prefix(&user))
        .await?;
    tracing::info!(
        manuals,
        usage_records,
        cached_answers,
        idempotency_records,
        rendered_pages,
        "user data erased"
    );
    Ok(Json(json!({
        "message": "All your data was erased.",
        "deleted": {
            "manuals": manuals,
            "files": manuals,
            "rendered_pages": rendered_pages,
            "index_entries_of_manuals": manuals,
            "usage_and_cost_records": usage_records,
            "shared_cache_entries": cached_answers,
            "stored_responses": idempotency_records,
        },
    })))
}
