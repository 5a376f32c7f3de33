//! `GET /api/manuals`, `GET /api/manuals/{id}` and `DELETE /api/manuals/{id}`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use chrono::{DateTime, Utc};
use manuel_core::ApiError;
use manuel_core::auth::AuthenticatedUser;
use manuel_core::domain::{Manual, ManualStatus, UserId};
use manuel_core::page_token;
use manuel_core::ports::ListError;
use manuel_core::storage_keys;
use serde_json::{Value, json};

use crate::upload_link::shown_status;
use crate::{ManualsConfig, ManualsDeps};

const DEFAULT_PAGE_SIZE: usize = 20;
const MAX_PAGE_SIZE: usize = 100;

pub(crate) async fn list(
    State(deps): State<ManualsDeps>,
    AuthenticatedUser(user): AuthenticatedUser,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = parse_query(query.as_deref(), &["limit", "next_token"])?;
    let limit = match params.get("limit") {
        // The predecessor's app and CLI ask without parameters and never follow `next_token`:
        // they get every manual up to the largest page.
        None if !params.contains_key("next_token") => MAX_PAGE_SIZE,
        None => DEFAULT_PAGE_SIZE,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|limit| (1..=MAX_PAGE_SIZE).contains(limit))
            .ok_or_else(|| {
                ApiError::validation(
                    "limit",
                    format!("`limit` must be a whole number from 1 to {MAX_PAGE_SIZE}."),
                )
            })?,
    };
    let signing_key = deps.security.config.hmac_signing_key.as_deref();
    let not_issued =
        || ApiError::validation("next_token", "`next_token` is not a token this API issued.");
    let after = match params.get("next_token").filter(|token| !token.is_empty()) {
        None => None,
        Some(token) => Some(page_token::open(signing_key, &user, token).ok_or_else(not_issued)?),
    };
    let page = deps
        .manuals
        .list(&user, limit, after.as_deref())
        .await
        .map_err(|error| match error {
            ListError::BadToken => not_issued(),
            ListError::Port(error) => error.into(),
        })?;
    let next_token = page
        .next_token
        .as_deref()
        .map(|cursor| page_token::seal(signing_key, &user, cursor));
    let now = Utc::now();
    let manuals: Vec<Value> = page
        .manuals
        .iter()
        .map(|manual| list_item(manual, &deps.config, now))
        .collect();
    Ok(Json(json!({
        "count": manuals.len(),
        "manuals": manuals,
        "next_token": next_token,
    })))
}

/// The query string's parameters, each one of `known`.
pub(crate) fn parse_query(
    query: Option<&str>,
    known: &[&str],
) -> Result<HashMap<String, String>, ApiError> {
    let mut params = HashMap::new();
    for pair in query
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value).ok_or_else(|| {
            ApiError::validation(
                name,
                "The query string is not valid UTF-8 percent-encoding.",
            )
        })?;
        if !known.contains(&name) {
            let known = known
                .iter()
                .map(|name| format!("`{name}`"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ApiError::validation(
                name,
                format!("Unknown query parameter `{name}`; the known ones are {known}."),
            ));
        }
        params.insert(name.to_owned(), value);
    }
    Ok(params)
}

fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let hex = value.get(index + 1..index + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                index += 3;
            }
            b'+' => {
                out.push(b' ');
                index += 1;
            }
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn list_item(manual: &Manual, config: &ManualsConfig, now: DateTime<Utc>) -> Value {
    let (status, reason) = shown_status(manual, config, now);
    let mut item = json!({
        "id": manual.id,
        "name": manual.name,
        "upload_date": manual.created_at.to_rfc3339(),
        "size": manual.size_bytes,
        "pages": manual.pages,
        "status": status.as_str(),
        // The predecessor's app reads this name.
        "processing_status": status.as_str(),
    });
    if let (Some(reason), Some(map)) = (reason, item.as_object_mut()) {
        map.insert("status_reason".to_owned(), json!(reason));
    }
    item
}

/// Another user's manual and a manual that does not exist are the same 404. `id` is a manual
/// id, or the caller's own storage key (`manuals/<caller>/<id>.<ext>`), which the
/// predecessor's CLI shows and uses as the id.
pub(crate) async fn owned_manual(
    deps: &ManualsDeps,
    user: &UserId,
    id: &str,
) -> Result<Manual, ApiError> {
    let not_found = || ApiError::not_found("No manual with this id.");
    let manual_id = manual_id_of(user, id).ok_or_else(not_found)?;
    let manual = deps
        .manuals
        .get(user, manual_id)
        .await?
        .ok_or_else(not_found)?;
    if manual_id != id && manual.key != id {
        return Err(not_found());
    }
    Ok(manual)
}

/// The manual id in `id`: `id` itself, or the id part of a storage key naming the caller as
/// its owner (either layout of [`storage_keys`]). `None` for anything else (another user's key
/// included).
fn manual_id_of<'a>(user: &UserId, id: &'a str) -> Option<&'a str> {
    let candidate = if id.starts_with(storage_keys::MANUALS) {
        let (owner, file) = storage_keys::manual_key_parts(id)?;
        if !storage_keys::names_owner(owner, user) {
            return None;
        }
        file.split_once('.')?.0
    } else {
        id
    };
    uuid::Uuid::parse_str(candidate).ok().map(|_| candidate)
}

pub(crate) async fn detail(
    State(deps): State<ManualsDeps>,
    AuthenticatedUser(user): AuthenticatedUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let manual = owned_manual(&deps, &user, &id).await?;
    let ttl = deps.config.download_link_ttl;
    // Until an upload link's bytes arrive there is no file to link to.
    let download_url = if manual.status == ManualStatus::Uploading {
        None
    } else {
        Some(
            deps.objects
                .download_link(&manual.key, &manual.name, manual.kind.mime_type(), ttl)
                .await?,
        )
    };
    // The predecessor's app opens `pdfUrl` while its detail screen is open: an hour.
    let pdf_url = match &download_url {
        None => None,
        Some(_) => Some(
            deps.objects
                .download_link(
                    &manual.key,
                    &manual.name,
                    manual.kind.mime_type(),
                    deps.config.pdf_link_ttl,
                )
                .await?,
        ),
    };
    let citations = deps.manuals.citations(&user, &manual.id).await?;
    let chunks = match manual.status {
        ManualStatus::Ready => deps.knowledge_base.chunk_count(&manual).await?,
        _ => None,
    };
    let mut body = list_item(&manual, &deps.config, Utc::now());
    if let Some(map) = body.as_object_mut() {
        map.insert("key".to_owned(), json!(manual.key));
        map.insert("pdfUrl".to_owned(), json!(pdf_url));
        map.insert(
            "uploadDate".to_owned(),
            json!(manual.created_at.to_rfc3339()),
        );
        map.insert("chunks".to_owned(), json!(chunks));
        map.insert("queryCount".to_owned(), json!(citations.count));
        map.insert(
            "lastQueried".to_owned(),
            json!(citations.last.map(|at| at.to_rfc3339())),
        );
        map.insert("format".to_owned(), json!(manual.kind.as_str()));
        map.insert("content_type".to_owned(), json!(manual.kind.mime_type()));
        map.insert("sha256".to_owned(), json!(manual.content_sha256()));
        map.insert(
            "updated_at".to_owned(),
            json!(manual.updated_at.to_rfc3339()),
        );
        map.insert("download_url".to_owned(), json!(download_url));
        map.insert("download_url_expires_in".to_owned(), json!(ttl.as_secs()));
    }
    Ok(Json(body))
}

pub(crate) async fn delete(
    State(deps): State<ManualsDeps>,
    AuthenticatedUser(user): AuthenticatedUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let manual = owned_manual(&deps, &user, &id).await?;
    // Index first, record last: a failure part-way leaves a record the user can delete again.
    deps.knowledge_base.remove(&manual).await?;
    deps.objects.delete(&manual.key).await?;
    for prefix in storage_keys::all_rendered_pages_prefixes(&user, Some(&manual.id)) {
        deps.objects.delete_prefix(&prefix).await?;
    }
    deps.manuals.delete(&user, &manual.id).await?;
    // Stored responses of idempotent requests may quote the manual (an answer's sources): a
    // replay must not bring its text back.
    deps.security
        .idempotency
        .erase_prefix(&manuel_core::idempotency::user_prefix(&user))
        .await?;
    tracing::info!(manual_id = %manual.id, "manual deleted");
    Ok(Json(json!({
        "message": "Manual deleted.",
        "manual_id": manual.id,
        "deleted": { "file": true, "index_entries": true, "rendered_pages": true, "record": true },
        // What the predecessor's CLI prints after a delete; every step either happened or
        // the request failed.
        "cleanup_summary": {
            "completed_steps": 4,
            "total_steps": 4,
            "details": {
                "s3_deletion": true,
                "knowledge_base_sync": true,
                "pdf_page_cleanup": true,
                "file_tracking_cleanup": true,
                "errors": [],
            },
        },
    })))
}
