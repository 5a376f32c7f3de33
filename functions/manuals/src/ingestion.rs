//! `GET /api/ingestion/status`: the predecessor CLI's view of processing (`ingestion status`,
//! `ingestion job <id>`), built from the caller's own manuals, one "job" per manual. The
//! predecessor listed every user's jobs; here nothing of another user can appear.

use axum::Json;
use axum::extract::{RawQuery, State};
use chrono::Utc;
use manuel_core::ApiError;
use manuel_core::auth::AuthenticatedUser;
use manuel_core::domain::{Manual, ManualStatus};
use serde_json::{Value, json};

use crate::ManualsDeps;
use crate::handlers::{owned_manual, parse_query};
use crate::upload_link::shown_status;

/// The most recent manuals listed, as one page of the manual list.
const JOBS_LISTED: usize = 100;

pub(crate) async fn status(
    State(deps): State<ManualsDeps>,
    AuthenticatedUser(user): AuthenticatedUser,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = parse_query(query.as_deref(), &["job_id"])?;
    if let Some(job_id) = params.get("job_id") {
        let manual = owned_manual(&deps, &user, job_id).await?;
        return Ok(Json(job_detail(&deps, &manual)));
    }
    let page = deps
        .manuals
        .list(&user, JOBS_LISTED, None)
        .await
        .map_err(|error| match error {
            manuel_core::ports::ListError::Port(error) => ApiError::from(error),
            manuel_core::ports::ListError::BadToken => {
                ApiError::internal("a first page has no token")
            }
        })?;
    let jobs: Vec<Value> = page
        .manuals
        .iter()
        .map(|manual| job(&deps, manual))
        .collect();
    Ok(Json(json!({
        "total_jobs": jobs.len(),
        "jobs": jobs,
        "note": format!(
            "One job per manual: the processing of your {} most recent manuals.",
            jobs.len()
        ),
        "timestamp": Utc::now().timestamp(),
    })))
}

/// The Bedrock ingestion status the predecessor reported for a manual in this state.
fn job_status(status: ManualStatus) -> &'static str {
    match status {
        ManualStatus::Uploading => "STARTING",
        ManualStatus::Processing => "IN_PROGRESS",
        ManualStatus::Ready => "COMPLETE",
        ManualStatus::Failed => "FAILED",
    }
}

fn job(deps: &ManualsDeps, manual: &Manual) -> Value {
    let (status, _) = shown_status(manual, &deps.config, Utc::now());
    json!({
        "job_id": manual.id,
        "status": job_status(status),
        "s3_key": manual.key,
        "manual_name": manual.name,
        // Epoch seconds, as the CLI reads them.
        "created_at": manual.created_at.timestamp(),
        "updated_at": manual.updated_at.timestamp(),
    })
}

fn job_detail(deps: &ManualsDeps, manual: &Manual) -> Value {
    let (status, reason) = shown_status(manual, &deps.config, Utc::now());
    let mut body = job(deps, manual);
    if let Some(map) = body.as_object_mut() {
        map.insert(
            "statistics".to_owned(),
            json!({
                "numberOfDocumentsScanned": 1,
                "numberOfNewDocumentsIndexed": u8::from(status == ManualStatus::Ready),
                "numberOfDocumentsFailed": u8::from(status == ManualStatus::Failed),
                "pages": manual.pages,
            }),
        );
        map.insert(
            "failure_reasons".to_owned(),
            json!(reason.into_iter().collect::<Vec<_>>()),
        );
    }
    body
}
