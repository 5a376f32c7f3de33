//! `PUT /uploads/<key>?type=…&length=…&expires=…&sig=…`: manuel-local's stand-in for an S3
//! pre-signed PUT. The link is the credential (no token), so everything it grants is checked
//! before a byte of the body is read: the signature over key, type, length and expiry, the
//! request's Content-Type, its declared Content-Length (it must be the granted length), and
//! that the manual is still waiting for its bytes. Only then is the body read, and never past
//! the granted length. The bytes then start the same processing as any other upload.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::routing::put;
use axum::{Router, extract::rejection::QueryRejection};
use manuel_core::ApiError;
use manuel_core::domain::ManualStatus;
use manuel_core::ports::{IngestionQueue, ObjectStore};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::objects::{FileObjectStore, UploadGrant};
use crate::store::SqliteStore;

#[derive(Clone)]
pub struct UploadRoutes {
    pub objects: Arc<FileObjectStore>,
    pub manuals: Arc<SqliteStore>,
    pub ingestion: Arc<dyn IngestionQueue>,
    /// The largest body any link may grant.
    pub max_bytes: usize,
}

#[derive(Deserialize)]
struct UploadParams {
    #[serde(rename = "type")]
    content_type: String,
    length: u64,
    expires: i64,
    sig: String,
}

pub fn router(routes: UploadRoutes) -> Router {
    let limit = routes.max_bytes;
    Router::new()
        .route("/uploads/{*key}", put(receive))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(limit))
        .with_state(routes)
}

fn refused(message: &str) -> ApiError {
    ApiError::Forbidden(message.to_owned())
}

async fn receive(
    State(routes): State<UploadRoutes>,
    Path(key): Path<String>,
    params: Result<Query<UploadParams>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let Ok(Query(params)) = params else {
        return Err(refused("This upload link is not valid."));
    };
    let grant = UploadGrant {
        key: &key,
        content_type: &params.content_type,
        length: params.length,
        expires: params.expires,
    };
    routes
        .objects
        .links()
        .verify_upload(&grant, &params.sig)
        .map_err(|error| refused(&error.to_string()))?;
    let sent_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if sent_type != params.content_type {
        return Err(refused(&format!(
            "This link uploads `Content-Type: {}` only.",
            params.content_type
        )));
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared != Some(params.length) {
        return Err(refused(&format!(
            "This link uploads exactly {} bytes, with `Content-Length: {}`.",
            params.length, params.length
        )));
    }
    let manual = routes
        .manuals
        .manual_at(&key)?
        .ok_or_else(|| ApiError::not_found("This manual no longer exists."))?;
    if manual.status != ManualStatus::Uploading {
        return Err(ApiError::Conflict(
            "This manual's file has already been uploaded.".to_owned(),
        ));
    }
    let length = usize::try_from(params.length).unwrap_or(usize::MAX);
    let body = axum::body::to_bytes(body, length).await.map_err(|_| {
        ApiError::validation(
            "body",
            format!(
                "The body did not match its `Content-Length: {}`.",
                params.length
            ),
        )
    })?;
    if body.len() as u64 != params.length {
        return Err(ApiError::validation(
            "body",
            format!(
                "The body is {} bytes; this link uploads exactly {}.",
                body.len(),
                params.length
            ),
        ));
    }
    routes
        .objects
        .put(&manual.key, body, &params.content_type)
        .await?;
    routes
        .ingestion
        .enqueue(&manual.user_id, &manual.id)
        .await?;
    tracing::info!(manual_id = %manual.id, size = params.length, "upload link used");
    Ok(Json(json!({
        "manual_id": manual.id,
        "status": ManualStatus::Processing.as_str(),
    })))
}
