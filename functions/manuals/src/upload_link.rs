//! `POST /api/manuals/upload-url`: a manual too big for a JSON body is announced first and
//! its bytes PUT to a signed, expiring link bound to the caller's key, type and length. The
//! manual is `uploading` until the bytes arrive; their arrival starts the same processing as an
//! upload (the S3 event in AWS, manuel-local's upload route locally).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use manuel_core::auth::AuthenticatedUser;
use manuel_core::domain::{DocumentKind, Manual, ManualStatus, pending_sha256};
use manuel_core::json::JsonBody;
use manuel_core::media_type;
use manuel_core::ports::InsertOutcome;
use manuel_core::validation::{FieldKind, check_text};
use manuel_core::{ApiError, PortError};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{ManualsConfig, ManualsDeps, sanitize_file_name};

#[derive(Deserialize)]
pub(crate) struct UploadLinkRequest {
    #[serde(alias = "fileName")]
    file_name: String,
    #[serde(alias = "contentType")]
    content_type: String,
    #[serde(alias = "sizeBytes")]
    size_bytes: u64,
}

/// The declared type of a manual, from a MIME type with or without parameters.
fn declared_kind(content_type: &str) -> Result<DocumentKind, ApiError> {
    match media_type::essence(content_type).as_str() {
        "application/pdf" => Ok(DocumentKind::Pdf),
        "text/markdown" | "text/x-markdown" => Ok(DocumentKind::Markdown),
        "text/plain" => Ok(DocumentKind::Text),
        _ => Err(ApiError::UnsupportedMediaType(
            "`content_type` must be application/pdf, text/markdown or text/plain.".to_owned(),
        )),
    }
}

pub(crate) async fn upload_link(
    State(deps): State<ManualsDeps>,
    AuthenticatedUser(user): AuthenticatedUser,
    JsonBody(request): JsonBody<UploadLinkRequest>,
) -> Result<Response, ApiError> {
    let name = check_text("file_name", FieldKind::FileName, &request.file_name)?;
    let name = sanitize_file_name(&name).ok_or_else(|| {
        ApiError::validation("file_name", "The file name must contain letters or digits.")
    })?;
    let kind = declared_kind(&request.content_type)?;
    let max_bytes = deps.config.max_upload_link_bytes;
    if request.size_bytes == 0 {
        return Err(ApiError::validation("size_bytes", "The file is empty."));
    }
    if request.size_bytes > max_bytes {
        return Err(ApiError::PayloadTooLarge(format!(
            "The manual is {} bytes; the largest manual accepted is {max_bytes} bytes ({:.0} MB).",
            request.size_bytes,
            max_bytes as f64 / 1e6
        )));
    }

    count_link(&deps, &user).await?;

    let id = uuid::Uuid::new_v4().to_string();
    let key = manuel_core::storage_keys::manual_key(&user, &id, kind);
    let ttl = deps.config.upload_link_ttl;
    let link = deps
        .objects
        .upload_link(&key, kind.mime_type(), request.size_bytes, ttl)
        .await?;
    let now = Utc::now();
    let manual = Manual {
        key,
        sha256: pending_sha256(&id),
        id,
        user_id: user,
        name,
        kind,
        size_bytes: request.size_bytes,
        status: ManualStatus::Uploading,
        status_reason: None,
        pages: None,
        created_at: now,
        updated_at: now,
    };
    deps.knowledge_base.prepare(&manual).await?;
    if let InsertOutcome::Duplicate(_) = deps.manuals.insert(&manual).await? {
        // The placeholder hash is unique per manual id, so only a broken store gets here.
        return Err(PortError::failed("a new manual id collided with an existing one").into());
    }
    tracing::info!(manual_id = %manual.id, kind = kind.as_str(), size = manual.size_bytes, "upload link issued");

    let headers: Map<String, Value> = link
        .headers
        .into_iter()
        .map(|(name, value)| (name, Value::String(value)))
        .collect();
    let body = json!({
        "manual_id": manual.id,
        "key": manual.key,
        "file_name": manual.name,
        "status": manual.status.as_str(),
        "size_bytes": manual.size_bytes,
        "upload_url": link.url,
        "method": "PUT",
        "headers": headers,
        "expires_in": ttl.as_secs(),
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Counts one more link for `user` in the current link-lifetime window; refuses (429) past
/// [`ManualsConfig::max_upload_links`].
async fn count_link(
    deps: &ManualsDeps,
    user: &manuel_core::domain::UserId,
) -> Result<(), ApiError> {
    let window = deps.config.upload_link_ttl.as_secs().max(1) as i64;
    let now = Utc::now().timestamp();
    let start = now - now.rem_euclid(window);
    let key = format!(
        "upload-links#{}#{start}",
        manuel_core::telemetry::user_hash(user)
    );
    let count = deps.security.rate_limits.hit(&key, start + window).await?;
    if count > deps.config.max_upload_links {
        tracing::warn!(
            count,
            limit = deps.config.max_upload_links,
            "upload link refused: too many outstanding"
        );
        return Err(ApiError::RateLimited {
            retry_after_secs: u64::try_from(start + window - now).unwrap_or(1).max(1),
        });
    }
    Ok(())
}

/// A manual's status as its owner should see it: an upload whose link expired without the
/// bytes arriving is failed, not forever `uploading`.
pub(crate) fn shown_status(
    manual: &Manual,
    config: &ManualsConfig,
    now: DateTime<Utc>,
) -> (ManualStatus, Option<String>) {
    let waited = now.signed_duration_since(manual.created_at);
    let window = chrono::Duration::from_std(config.upload_link_ttl + UPLOAD_GRACE)
        .unwrap_or(chrono::Duration::MAX);
    if manual.status == ManualStatus::Uploading && waited > window {
        return (
            ManualStatus::Failed,
            Some(
                "The file did not arrive before its upload link expired; delete this entry and request a new link."
                    .to_owned(),
            ),
        );
    }
    (manual.status, manual.status_reason.clone())
}

/// A PUT that started just before its link expired may still be landing.
const UPLOAD_GRACE: std::time::Duration = std::time::Duration::from_secs(120);

#[cfg(test)]
mod tests {
    use super::*;

    fn uploading(created_at: DateTime<Utc>) -> Manual {
        Manual {
            id: "m".to_owned(),
            user_id: manuel_core::domain::UserId::parse("alice").unwrap_or_else(|| unreachable!()),
            name: "big.pdf".to_owned(),
            key: "manuals/alice/m.pdf".to_owned(),
            kind: DocumentKind::Pdf,
            size_bytes: 10,
            sha256: pending_sha256("m"),
            status: ManualStatus::Uploading,
            status_reason: None,
            pages: None,
            created_at,
            updated_at: created_at,
        }
    }

    #[test]
    fn an_upload_that_never_arrived_shows_as_failed_once_its_link_expired() {
        let config = ManualsConfig::default();
        let now = Utc::now();
        let recent = uploading(now - chrono::Duration::minutes(10));
        assert_eq!(
            shown_status(&recent, &config, now),
            (ManualStatus::Uploading, None)
        );
        let stale = uploading(now - chrono::Duration::minutes(20));
        let (status, reason) = shown_status(&stale, &config, now);
        assert_eq!(status, ManualStatus::Failed);
        assert!(reason.is_some_and(|reason| reason.contains("expired")));
        let mut done = stale.clone();
        done.status = ManualStatus::Ready;
        assert_eq!(
            shown_status(&done, &config, now),
            (ManualStatus::Ready, None)
        );
    }

    #[test]
    fn declared_types_map_to_kinds() {
        assert_eq!(
            declared_kind("application/pdf").ok(),
            Some(DocumentKind::Pdf)
        );
        assert_eq!(
            declared_kind("Text/Markdown; charset=UTF-8").ok(),
            Some(DocumentKind::Markdown)
        );
        assert_eq!(declared_kind("text/plain").ok(), Some(DocumentKind::Text));
        assert!(matches!(
            declared_kind("text/html"),
            Err(ApiError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            declared_kind(""),
            Err(ApiError::UnsupportedMediaType(_))
        ));
    }
}
