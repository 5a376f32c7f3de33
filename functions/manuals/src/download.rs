//! `POST /api/manuals/download`: a manual fetched from a URL on the caller's behalf, through
//! the SSRF-safe fetcher, then checked and stored exactly like an upload.

use axum::extract::State;
use axum::response::Response;
use manuel_core::ApiError;
use manuel_core::auth::AuthenticatedUser;
use manuel_core::json::JsonBody;
use manuel_core::validation::{FieldKind, check_text};
use serde::Deserialize;

use crate::ManualsDeps;
use crate::fetch::FetchError;
use crate::upload::{sanitize_file_name, store_manual};

#[derive(Deserialize)]
pub(crate) struct DownloadRequest {
    url: String,
    /// The manual's name; by default the last part of the URL's path.
    #[serde(default, alias = "file_name", alias = "fileName")]
    filename: Option<String>,
}

pub(crate) async fn download(
    State(deps): State<ManualsDeps>,
    AuthenticatedUser(user): AuthenticatedUser,
    JsonBody(request): JsonBody<DownloadRequest>,
) -> Result<Response, ApiError> {
    let url = check_text("url", FieldKind::Url, &request.url)?;
    let given_name = match request.filename.as_deref().map(str::trim) {
        Some(name) if !name.is_empty() => Some(
            sanitize_file_name(&check_text("filename", FieldKind::FileName, name)?).ok_or_else(
                || {
                    ApiError::validation(
                        "filename",
                        "The file name must contain letters or digits.",
                    )
                },
            )?,
        ),
        _ => None,
    };
    let fetched = deps
        .fetcher
        .fetch(&url)
        .await
        .map_err(|error| match error {
            FetchError::TooLarge(_) => ApiError::PayloadTooLarge(error.to_string()),
            other => ApiError::validation("url", other.to_string()),
        })?;
    let name = given_name
        .or_else(|| {
            fetched
                .url
                .path_segments()
                .and_then(|mut segments| segments.next_back())
                .map(|segment| {
                    percent_encoding::percent_decode_str(segment)
                        .decode_utf8_lossy()
                        .into_owned()
                })
                .filter(|segment| segment.contains('.'))
                .and_then(|segment| sanitize_file_name(&segment))
        })
        .unwrap_or_else(|| "manual".to_owned());
    tracing::info!(
        host = fetched.url.host_str().unwrap_or_default(),
        size = fetched.bytes.len(),
        "manual downloaded"
    );
    store_manual(&deps, &user, name, fetched.bytes, "url").await
}
