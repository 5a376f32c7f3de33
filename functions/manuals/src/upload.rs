//! `POST /api/manuals/upload`: a manual as base64 in JSON, checked by content and deduplicated.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use chrono::Utc;
use manuel_core::ApiError;
use manuel_core::auth::AuthenticatedUser;
use manuel_core::domain::{Manual, ManualStatus, UserId};
use manuel_core::json::JsonBody;
use manuel_core::ports::InsertOutcome;
use manuel_core::validation::{FieldKind, check_text};
use manuel_process_manual::{SniffError, sniff};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::ManualsDeps;

#[derive(Deserialize)]
pub(crate) struct UploadRequest {
    #[serde(alias = "fileName")]
    file_name: String,
    #[serde(alias = "fileContent")]
    file_data: String,
    /// Accepted for compatibility; the type is decided by the bytes.
    #[serde(alias = "contentType", default)]
    #[allow(dead_code)]
    content_type: Option<String>,
    /// The mobile app sends descriptive metadata; it is not stored yet.
    #[serde(default)]
    #[allow(dead_code)]
    metadata: Option<serde_json::Value>,
}

const MAX_NAME_CHARS: usize = 200;

pub(crate) async fn upload(
    State(deps): State<ManualsDeps>,
    AuthenticatedUser(user): AuthenticatedUser,
    JsonBody(request): JsonBody<UploadRequest>,
) -> Result<Response, ApiError> {
    let name = check_text("file_name", FieldKind::FileName, &request.file_name)?;
    let name = sanitize_file_name(&name).ok_or_else(|| {
        ApiError::validation("file_name", "The file name must contain letters or digits.")
    })?;
    let bytes = decode_file(&request.file_data, deps.config.max_upload_bytes)?;
    store_manual(&deps, &user, name, bytes, "file_data").await
}

/// Checks `bytes` by content and stores them as `user`'s manual `name` (deduplicated), then
/// starts processing: the pipeline every way of adding a manual shares. `field` names the
/// request field the bytes came from, for errors.
pub(crate) async fn store_manual(
    deps: &ManualsDeps,
    user: &UserId,
    name: String,
    bytes: Bytes,
    field: &str,
) -> Result<Response, ApiError> {
    let kind = sniff(&bytes).map_err(|error| match error {
        SniffError::Empty => ApiError::validation(field, "The file is empty."),
        SniffError::Unsupported => ApiError::UnsupportedMediaType(
            "This file type is not supported. Upload a PDF, Markdown or plain-text manual."
                .to_owned(),
        ),
    })?;
    let sha256 = hex::encode(Sha256::digest(&bytes));

    if let Some(existing) = deps.manuals.find_by_sha256(user, &sha256).await? {
        return Ok(upload_response(&existing, true));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let now = Utc::now();
    let manual = Manual {
        key: manuel_core::storage_keys::manual_key(user, &id, kind),
        id,
        user_id: user.clone(),
        name,
        kind,
        size_bytes: bytes.len() as u64,
        sha256,
        status: ManualStatus::Processing,
        status_reason: None,
        pages: None,
        created_at: now,
        updated_at: now,
    };
    deps.knowledge_base.prepare(&manual).await?;
    // The file goes first, so a failed write never leaves a record pointing at nothing.
    if let Err(error) = deps.objects.put(&manual.key, bytes, kind.mime_type()).await {
        // Whatever `prepare` wrote for it (Bedrock's metadata sidecar) goes too.
        if let Err(cleanup) = deps.objects.delete(&manual.key).await {
            tracing::warn!(error = %cleanup, key = %manual.key, "could not remove what a failed upload left");
        }
        return Err(error.into());
    }
    match deps.manuals.insert(&manual).await {
        Ok(InsertOutcome::Inserted) => {}
        Ok(InsertOutcome::Duplicate(existing)) => {
            deps.objects.delete(&manual.key).await?;
            return Ok(upload_response(&existing, true));
        }
        Err(error) => {
            if let Err(cleanup) = deps.objects.delete(&manual.key).await {
                tracing::warn!(error = %cleanup, key = %manual.key, "could not remove an orphaned upload");
            }
            return Err(error.into());
        }
    }
    deps.ingestion.enqueue(user, &manual.id).await?;
    tracing::info!(manual_id = %manual.id, kind = kind.as_str(), size = manual.size_bytes, "manual uploaded");
    Ok(upload_response(&manual, false))
}

fn upload_response(manual: &Manual, duplicate: bool) -> Response {
    let status = if duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let data = json!({
        "manual_id": manual.id,
        "key": manual.key,
        "file_name": manual.name,
        "status": manual.status.as_str(),
        "size_bytes": manual.size_bytes,
    });
    let body = json!({
        "message": if duplicate { "This manual was already uploaded." } else { "Manual uploaded successfully" },
        "manual_id": manual.id,
        "key": manual.key,
        "file_name": manual.name,
        "status": manual.status.as_str(),
        "size_bytes": manual.size_bytes,
        "duplicate": duplicate,
        // The CLI reads `response.data.*`; other clients read the top level.
        "data": data,
    });
    (status, axum::Json(body)).into_response()
}

/// Accepts standard or URL-safe base64, padded or not, with line breaks, and a `data:` URI prefix.
fn decode_file(encoded: &str, max_bytes: usize) -> Result<Bytes, ApiError> {
    let payload = match encoded.split_once("base64,") {
        Some((prefix, rest)) if prefix.starts_with("data:") => rest,
        _ => encoded,
    };
    let compact: String = payload
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if compact.is_empty() {
        return Err(ApiError::validation("file_data", "The file is empty."));
    }
    if compact.len() / 4 * 3 > max_bytes + 3 {
        return Err(too_large(max_bytes));
    }
    let lenient =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let standard = GeneralPurpose::new(&base64::alphabet::STANDARD, lenient);
    let url_safe = GeneralPurpose::new(&base64::alphabet::URL_SAFE, lenient);
    let decoded = standard
        .decode(&compact)
        .or_else(|_| url_safe.decode(&compact))
        .or_else(|_| STANDARD.decode(&compact))
        .or_else(|_| URL_SAFE.decode(&compact))
        .map_err(|_| ApiError::validation("file_data", "`file_data` is not valid base64."))?;
    if decoded.len() > max_bytes {
        return Err(too_large(max_bytes));
    }
    Ok(Bytes::from(decoded))
}

fn too_large(max_bytes: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "The manual is larger than the {} MB limit.",
        max_bytes.div_ceil(1024 * 1024)
    ))
}

/// Reduces a client's file name to letters, digits, spaces and `-_.()`, without leading dots
/// or path parts. `None` when nothing usable is left.
pub fn sanitize_file_name(raw: &str) -> Option<String> {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
    let mut cleaned = String::with_capacity(base.len());
    for c in base.chars() {
        let keep = c.is_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.' | '(' | ')');
        let c = if keep { c } else { '_' };
        let repeated = matches!(c, ' ' | '_') && cleaned.ends_with(c);
        if !repeated {
            cleaned.push(c);
        }
    }
    let trimmed = cleaned.trim_matches(|c: char| c == ' ' || c == '.' || c == '_');
    let truncated: String = trimmed.chars().take(MAX_NAME_CHARS).collect();
    truncated
        .chars()
        .any(char::is_alphanumeric)
        .then_some(truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_reduced_to_a_safe_subset() {
        assert_eq!(
            sanitize_file_name("Printer Manual.pdf").as_deref(),
            Some("Printer Manual.pdf")
        );
        assert_eq!(
            sanitize_file_name("../../etc/passwd").as_deref(),
            Some("passwd")
        );
        assert_eq!(
            sanitize_file_name("C:\\docs\\guide v2.pdf").as_deref(),
            Some("guide v2.pdf")
        );
        assert_eq!(
            sanitize_file_name("a<b>c\"d'.md").as_deref(),
            Some("a_b_c_d_.md")
        );
        assert_eq!(
            sanitize_file_name("Kühlschrank Anleitung.pdf").as_deref(),
            Some("Kühlschrank Anleitung.pdf")
        );
        assert_eq!(sanitize_file_name("..."), None);
        assert_eq!(sanitize_file_name(""), None);
        assert_eq!(
            sanitize_file_name("a\u{0}b\nc.txt").as_deref(),
            Some("a_b_c.txt")
        );
        assert_eq!(
            sanitize_file_name(&"x".repeat(500)).map(|n| n.len()),
            Some(200)
        );
    }

    #[test]
    fn base64_variants_decode_and_limits_hold() {
        let expected = Bytes::from_static(b"%PDF-1.7 hi?>");
        for encoded in [
            "JVBERi0xLjcgaGk/Pg==",
            "JVBERi0xLjcgaGk/Pg",
            "JVBERi0xLjcgaGk_Pg",
            "JVBE\nRi0xLjcg\naGk/Pg==",
            "data:application/pdf;base64,JVBERi0xLjcgaGk/Pg==",
        ] {
            assert_eq!(
                decode_file(encoded, 1024).ok(),
                Some(expected.clone()),
                "{encoded}"
            );
        }
        assert!(matches!(
            decode_file("not base64!!", 1024),
            Err(ApiError::Validation { .. })
        ));
        assert!(matches!(
            decode_file("", 1024),
            Err(ApiError::Validation { .. })
        ));
        assert!(matches!(
            decode_file("JVBERi0xLjcgaGk/Pg==", 4),
            Err(ApiError::PayloadTooLarge(_))
        ));
    }
}
