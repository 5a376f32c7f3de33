//! Idempotent retries (the Powertools convention): a POST or DELETE sent with an
//! `Idempotency-Key` header runs once per user, route and key. A repeat with the same body gets
//! the stored response and causes no second effect; a repeat with another body is `422
//! idempotency_mismatch`; a repeat while the first is still running is `409 conflict`. Only
//! successful responses are kept (for [`IdempotencyConfig::ttl`]); a failed request frees the
//! key so the client can try again.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::AuthenticatedUser;
use crate::error::ApiError;

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Set on a response that was replayed from the store.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

#[derive(Clone, Copy, Debug)]
pub struct IdempotencyConfig {
    /// How long a completed response is kept (`IDEMPOTENCY_TTL_SECONDS`, one hour).
    pub ttl: Duration,
    /// How long a request in progress holds its key if it never finishes (a crashed invocation).
    pub in_progress_ttl: Duration,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(3600),
            in_progress_ttl: Duration::from_secs(120),
        }
    }
}

impl IdempotencyConfig {
    /// `IDEMPOTENCY_TTL_SECONDS` (3600, from 60 to 86400).
    pub fn from_vars(
        vars: &std::collections::HashMap<String, String>,
    ) -> Result<Self, crate::config::ConfigError> {
        let env = crate::config::Env::from_vars(vars.clone());
        let defaults = Self::default();
        let seconds = env.number_in(
            "IDEMPOTENCY_TTL_SECONDS",
            defaults.ttl.as_secs(),
            60..=86_400,
        )?;
        Ok(Self {
            ttl: Duration::from_secs(seconds),
            ..defaults
        })
    }
}

/// A response kept to answer repeats.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// What a claim on a key found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key was free (or its record expired): this request runs.
    Claimed,
    /// Another request with this key has not finished.
    InProgress { payload_hash: String },
    Completed {
        payload_hash: String,
        response: StoredResponse,
    },
}

/// The `status` of a record whose request is still running, and of one that finished.
pub const IN_PROGRESS: &str = "INPROGRESS";
pub const COMPLETED: &str = "COMPLETED";

impl Claim {
    /// A stored record read back: its status, payload hash and response JSON (if completed).
    /// A record that vanished between the claim and the read counts as in progress (the
    /// client may simply retry).
    pub fn from_record(
        status: Option<&str>,
        payload_hash: String,
        response: Option<&str>,
    ) -> Result<Self, crate::PortError> {
        match (status, response) {
            (Some(COMPLETED), Some(response)) => Ok(Self::Completed {
                payload_hash,
                response: serde_json::from_str(response).map_err(crate::PortError::failed)?,
            }),
            _ => Ok(Self::InProgress { payload_hash }),
        }
    }
}

const MAX_KEY_CHARS: usize = 255;

/// The prefix of every record key of `user`: erasing a user's data deletes by it.
pub fn user_prefix(user: &crate::domain::UserId) -> String {
    format!("{}#", crate::telemetry::user_hash(user))
}

/// The record's key: the user's prefix, then user, method, path and the client's key hashed
/// (the user id itself stays out of the table).
pub fn record_key(user: &crate::domain::UserId, method: &Method, path: &str, key: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [user.as_str(), method.as_str(), path, key] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    format!("{}{}", user_prefix(user), hex::encode(hasher.finalize()))
}

fn payload_hash(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

fn replay(stored: StoredResponse) -> Response {
    let status =
        axum::http::StatusCode::from_u16(stored.status).unwrap_or(axum::http::StatusCode::OK);
    let mut response = (status, stored.body).into_response();
    let headers = response.headers_mut();
    if let Some(value) = stored
        .content_type
        .and_then(|content_type| HeaderValue::from_str(&content_type).ok())
    {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    response
}

/// What the idempotency middleware needs: where records are kept, for how long, and the
/// largest body it buffers to compare a repeat with the original.
#[derive(Clone)]
pub struct IdempotencyLayer {
    pub store: Arc<dyn crate::ports::IdempotencyStore>,
    pub config: IdempotencyConfig,
    pub max_body_bytes: usize,
}

fn is_event_stream(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/event-stream"))
}

/// Middleware for authenticated routes (it runs after authentication).
pub async fn idempotent(
    State(layer): State<IdempotencyLayer>,
    request: Request,
    next: Next,
) -> Response {
    if !matches!(*request.method(), Method::POST | Method::DELETE) {
        return next.run(request).await;
    }
    let Some(key) = request.headers().get(&IDEMPOTENCY_KEY) else {
        return next.run(request).await;
    };
    let key = match key.to_str() {
        Ok(key) if !key.trim().is_empty() && key.len() <= MAX_KEY_CHARS => key.trim().to_owned(),
        _ => {
            return ApiError::validation(
                "Idempotency-Key",
                format!("The Idempotency-Key header must be 1 to {MAX_KEY_CHARS} visible ASCII characters."),
            )
            .into_response();
        }
    };
    let Some(AuthenticatedUser(user)) = request.extensions().get::<AuthenticatedUser>().cloned()
    else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, layer.max_body_bytes).await else {
        return ApiError::PayloadTooLarge(
            "The request body is larger than this endpoint accepts.".to_owned(),
        )
        .into_response();
    };
    let config = layer.config;
    let store = &layer.store;
    let record = record_key(&user, &parts.method, parts.uri.path(), &key);
    let hash = payload_hash(&bytes);
    let now = chrono::Utc::now().timestamp();
    let until = now + i64::try_from(config.in_progress_ttl.as_secs()).unwrap_or(120);
    match store.claim(&record, &hash, now, until).await {
        Err(error) => return ApiError::from(error).into_response(),
        Ok(Claim::Claimed) => {}
        Ok(Claim::Completed {
            payload_hash,
            response,
        }) => {
            return if payload_hash == hash {
                replay(response)
            } else {
                ApiError::IdempotencyMismatch.into_response()
            };
        }
        Ok(Claim::InProgress { payload_hash }) => {
            return if payload_hash == hash {
                ApiError::Conflict(
                    "A request with this Idempotency-Key is still being processed; retry shortly."
                        .to_owned(),
                )
                .into_response()
            } else {
                ApiError::IdempotencyMismatch.into_response()
            };
        }
    }

    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let status = response.status();
    if !status.is_success() {
        if let Err(error) = store.release(&record).await {
            tracing::warn!(%error, "could not free an idempotency key after a failed request");
        }
        return response;
    }
    if is_event_stream(&response) {
        // A stream is sent as it is produced and cannot be replayed: the key is freed, so a
        // retry with it asks again, as it would without the header.
        if let Err(error) = store.release(&record).await {
            tracing::warn!(%error, "could not free an idempotency key after a stream");
        }
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return ApiError::internal("the response body could not be read").into_response();
    };
    let stored = StoredResponse {
        status: status.as_u16(),
        content_type: parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned),
        body: body.to_vec(),
    };
    let expires_at = now + i64::try_from(config.ttl.as_secs()).unwrap_or(3600);
    if let Err(error) = store.complete(&record, &hash, &stored, expires_at).await {
        // The effect happened; the client gets its answer. A retry would run again, which is
        // what would happen without the header.
        tracing::error!(%error, "could not store an idempotent response");
    }
    Response::from_parts(parts, Body::from(body))
}
