//! `POST /api/pdf-page`: one page of the caller's own manual as a PNG at about 144 dpi, every
//! occurrence of the cited passage highlighted: the predecessor app's cited-page view.
//!
//! The manual is found from `pdf_url` only when that names one of the caller's own manuals: a
//! download link this backend signed, or a storage key under the caller's prefix. Nothing
//! else is fetched, ever (the predecessor fetched any S3 URL it was given). Rendered pages are
//! cached under [`rendered_pages_prefix`], per manual, page, highlight and colour, and removed
//! with the manual and by an erase. Text manuals answer 415: their cited passage is already
//! the whole answer's `chunk_text`, and they have no page layout to draw.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use bytes::Bytes;
use manuel_core::ApiError;
use manuel_core::auth::AuthenticatedUser;
use manuel_core::domain::{DocumentKind, Manual, ManualStatus, UserId};
use manuel_core::json::JsonBody;
use manuel_core::ports::{RenderError, RenderedPage};
use manuel_core::storage_keys::rendered_pages_prefix;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::ManualsDeps;
use crate::handlers::owned_manual;

/// 2 × 72 dpi, as the predecessor rendered (PyMuPDF matrix 2.0).
const SCALE: f32 = 2.0;
/// The predecessor's highlight opacity (RGBA alpha 100).
const HIGHLIGHT_ALPHA: u8 = 100;
/// Longer highlight texts are refused: a cited passage is a few hundred characters.
const MAX_HIGHLIGHT_CHARS: usize = 4000;
const MAX_URL_CHARS: usize = 4096;

#[derive(Deserialize)]
pub(crate) struct PageRequest {
    #[serde(default)]
    pdf_url: Option<String>,
    /// A whole number or a numeric string (the predecessor accepted both).
    #[serde(default)]
    page_number: Option<Value>,
    #[serde(default)]
    highlight_text: Option<String>,
    #[serde(default)]
    highlight_color: Option<String>,
}

/// What the cache keeps beside each image.
#[derive(Serialize, Deserialize)]
struct CachedPage {
    highlights: u32,
    page_count: u32,
    width: u32,
    height: u32,
}

pub(crate) async fn pdf_page(
    State(deps): State<ManualsDeps>,
    AuthenticatedUser(user): AuthenticatedUser,
    JsonBody(request): JsonBody<PageRequest>,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let page = page_number(request.page_number.as_ref())?;
    let highlight = highlight_text(request.highlight_text.as_deref())?;
    let (color, rgb) = highlight_color(request.highlight_color.as_deref());
    let manual = manual_of_link(&deps, &user, request.pdf_url.as_deref()).await?;
    if manual.kind != DocumentKind::Pdf {
        return Err(ApiError::UnsupportedMediaType(
            "Only PDF manuals have pages to draw; a text manual's cited passage is the source's `chunk_text`.".to_owned(),
        ));
    }
    // Only a manual that passed ingestion, within its limits, is drawn: a `failed` one may be
    // a decompression bomb (pdfium would draw it in this process), and a `processing` one has
    // not been checked yet. Neither has pages to cite.
    if manual.status != ManualStatus::Ready {
        return Err(ApiError::Conflict(
            "This manual is not ready; only the pages of a ready manual can be shown.".to_owned(),
        ));
    }
    if let Some(pages) = manual.pages
        && page > pages
    {
        return Err(out_of_range(pages));
    }

    let image_key = cache_key(&user, &manual, page, highlight.as_deref(), color);
    let (details, was_cached) =
        cached_or_drawn(&deps, &manual, page, highlight.clone(), rgb, &image_key).await?;
    let ttl = deps.config.page_image_ttl;
    let stem = manual
        .name
        .rsplit_once('.')
        .map_or(manual.name.as_str(), |(stem, _)| stem);
    let page_image_url = deps
        .objects
        .download_link(
            &image_key,
            &format!("{stem} page {page}.png"),
            "image/png",
            ttl,
        )
        .await?;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(Json(json!({
        "page_image_url": page_image_url,
        "page_image_url_expires_in": ttl.as_secs(),
        "page_number": page,
        "page_count": details.page_count,
        "manual_id": manual.id,
        "highlight_text": highlight.unwrap_or_default(),
        "highlight_color": color,
        "highlight_found": details.highlights > 0,
        "highlights": details.highlights,
        "width": details.width,
        "height": details.height,
        "cached": was_cached,
        "processing_time_ms": (elapsed_ms * 100.0).round() / 100.0,
        "timestamp": chrono::Utc::now().timestamp(),
    })))
}

/// The page's details from the cache, or the page drawn now and cached (its image first, then
/// its details: a cache entry is complete when its details exist); `true` when cached.
async fn cached_or_drawn(
    deps: &ManualsDeps,
    manual: &Manual,
    page: u32,
    highlight: Option<String>,
    rgba: [u8; 4],
    image_key: &str,
) -> Result<(CachedPage, bool), ApiError> {
    let details_key = format!("{image_key}.json");
    let cached: Option<CachedPage> = match deps.objects.get(&details_key).await? {
        Some(bytes) => serde_json::from_slice(&bytes).ok(),
        None => None,
    };
    if let Some(details) = cached {
        return Ok((details, true));
    }
    let drawn = render(deps, manual, page, highlight, rgba).await?;
    let details = CachedPage {
        highlights: drawn.highlights,
        page_count: drawn.page_count,
        width: drawn.width,
        height: drawn.height,
    };
    deps.objects
        .put(image_key, Bytes::from(drawn.png), "image/png")
        .await?;
    let body = serde_json::to_vec(&details).map_err(ApiError::internal)?;
    deps.objects
        .put(&details_key, Bytes::from(body), "application/json")
        .await?;
    Ok((details, false))
}

/// The caller's manual that `pdf_url` names; any other URL (another user's manual, another
/// host or bucket, a forged link) is the same 404 as an unknown manual, and is never fetched.
async fn manual_of_link(
    deps: &ManualsDeps,
    user: &UserId,
    pdf_url: Option<&str>,
) -> Result<Manual, ApiError> {
    let url = pdf_url.map(str::trim).unwrap_or_default();
    if url.is_empty() {
        return Err(ApiError::validation(
            "pdf_url",
            "`pdf_url` is required: the manual's `pdfUrl` (or a source's `pdf_url`).",
        ));
    }
    if url.chars().count() > MAX_URL_CHARS {
        return Err(ApiError::validation(
            "pdf_url",
            format!("`pdf_url` must be at most {MAX_URL_CHARS} characters."),
        ));
    }
    let key = match deps.objects.key_of_link(url) {
        Some(key) => key,
        // A bare storage key (`manuals/<owner>/<id>.<ext>`), as the CLI knows manuals.
        None if url.starts_with("manuals/") => url.to_owned(),
        None => return Err(ApiError::not_found("No manual of yours at this URL.")),
    };
    if !key.starts_with("manuals/") {
        return Err(ApiError::not_found("No manual of yours at this URL."));
    }
    owned_manual(deps, user, &key)
        .await
        .map_err(|error| match error {
            ApiError::NotFound(_) => ApiError::not_found("No manual of yours at this URL."),
            other => other,
        })
}

fn page_number(raw: Option<&Value>) -> Result<u32, ApiError> {
    let invalid = || {
        ApiError::validation(
            "page_number",
            "`page_number` must be a whole number from 1 (a number or a numeric string).",
        )
    };
    let number = match raw {
        None | Some(Value::Null) => {
            return Err(ApiError::validation(
                "page_number",
                "`page_number` is required.",
            ));
        }
        Some(Value::Number(number)) => number.as_u64(),
        Some(Value::String(text)) => text.trim().parse::<u64>().ok(),
        Some(_) => None,
    };
    number
        .filter(|page| *page >= 1)
        .and_then(|page| u32::try_from(page).ok())
        .ok_or_else(invalid)
}

/// Whitespace collapsed and control characters dropped; blank is no highlight. A cited passage
/// is the manual's own text, so no injection patterns are refused here: it is only searched for.
fn highlight_text(raw: Option<&str>) -> Result<Option<String>, ApiError> {
    let cleaned = raw
        .unwrap_or_default()
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if cleaned.chars().count() > MAX_HIGHLIGHT_CHARS {
        return Err(ApiError::validation(
            "highlight_text",
            format!("`highlight_text` must be at most {MAX_HIGHLIGHT_CHARS} characters."),
        ));
    }
    Ok((!cleaned.is_empty()).then_some(cleaned))
}

/// The predecessor's colours; anything else is yellow, as it was there.
fn highlight_color(raw: Option<&str>) -> (&'static str, [u8; 4]) {
    match raw
        .map(|color| color.trim().to_ascii_lowercase())
        .as_deref()
    {
        Some("blue") => ("blue", [0, 0, 255, HIGHLIGHT_ALPHA]),
        Some("green") => ("green", [0, 255, 0, HIGHLIGHT_ALPHA]),
        Some("red") => ("red", [255, 0, 0, HIGHLIGHT_ALPHA]),
        _ => ("yellow", [255, 255, 0, HIGHLIGHT_ALPHA]),
    }
}

fn out_of_range(pages: u32) -> ApiError {
    ApiError::validation(
        "page_number",
        format!("This manual has {pages} pages; `page_number` must be from 1 to {pages}."),
    )
}

/// `pages/<user>/<manual>/<page>-<digest of colour and highlight>.png`.
fn cache_key(
    user: &UserId,
    manual: &Manual,
    page: u32,
    highlight: Option<&str>,
    color: &str,
) -> String {
    let mut hasher = Sha256::new();
    hasher.update(color.as_bytes());
    hasher.update(b"\0");
    hasher.update(highlight.unwrap_or_default().as_bytes());
    let digest = hex::encode(&hasher.finalize()[..12]);
    format!(
        "{}{page}-{digest}.png",
        rendered_pages_prefix(user, &manual.id)
    )
}

async fn render(
    deps: &ManualsDeps,
    manual: &Manual,
    page: u32,
    highlight: Option<String>,
    rgba: [u8; 4],
) -> Result<RenderedPage, ApiError> {
    let renderer =
        deps.renderer
            .as_ref()
            .map(Arc::clone)
            .ok_or_else(|| ApiError::ServiceUnavailable {
                message: "Pages cannot be drawn on this server right now.".to_owned(),
                retry_after_secs: 60,
            })?;
    let pdf = deps
        .objects
        .get(&manual.key)
        .await?
        .ok_or_else(|| ApiError::not_found("This manual's file no longer exists."))?;
    let drawn = tokio::task::spawn_blocking(move || {
        renderer.render(&pdf, page, SCALE, highlight.as_deref(), rgba)
    })
    .await
    .map_err(ApiError::internal)?;
    drawn.map_err(|error| match error {
        RenderError::NoSuchPage { page_count } => out_of_range(page_count),
        RenderError::Encrypted => ApiError::UnsupportedMediaType(
            "This PDF is encrypted; its pages cannot be drawn.".to_owned(),
        ),
        RenderError::Damaged => ApiError::UnsupportedMediaType(
            "This PDF is damaged; its pages cannot be drawn.".to_owned(),
        ),
        RenderError::Exceeded(limit) => {
            ApiError::UnsupportedMediaType(format!("This page cannot be drawn here: {limit}."))
        }
        RenderError::Unavailable(cause) => ApiError::internal(cause),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_numbers_are_whole_numbers_from_one_given_as_numbers_or_strings() {
        assert_eq!(page_number(Some(&json!(3))).ok(), Some(3));
        assert_eq!(page_number(Some(&json!(" 12 "))).ok(), Some(12));
        for bad in [
            json!(0),
            json!(-1),
            json!(1.5),
            json!("x"),
            json!(true),
            json!(null),
        ] {
            assert!(page_number(Some(&bad)).is_err(), "{bad}");
        }
        assert!(page_number(None).is_err());
    }

    #[test]
    fn colours_default_to_yellow_and_highlights_are_cleaned() {
        assert_eq!(highlight_color(Some("Blue")).0, "blue");
        assert_eq!(highlight_color(Some("purple")).0, "yellow");
        assert_eq!(highlight_color(None).1, [255, 255, 0, 100]);
        assert_eq!(
            highlight_text(Some("  Press\n the\tbutton\u{0} ")).ok(),
            Some(Some("Press the button".to_owned()))
        );
        assert_eq!(highlight_text(Some(" \n ")).ok(), Some(None));
        assert!(highlight_text(Some(&"a ".repeat(3000))).is_err());
    }
}
