//! The one error type every HTTP function returns, and its JSON rendering: `{"error", "code", "request_id", "timestamp", "details"?}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::request_id::current_request_id;

/// Errors a client can see. Each variant maps to one status and one stable `code`.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ApiError {
    #[error("The request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("{message}")]
    Validation { field: String, message: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    InvalidSignature(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("This method is not allowed on this path.")]
    MethodNotAllowed,
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    HeadersTooLarge(String),
    #[error("{0}")]
    Conflict(String),
    #[error(
        "This Idempotency-Key was used with a different request body; use a new key for a new request."
    )]
    IdempotencyMismatch,
    #[error("Too many requests. Please retry in {retry_after_secs} seconds.")]
    RateLimited { retry_after_secs: u64 },
    #[error(
        "Usage limit exceeded: {used} of {limit} {window} questions used. Please try again after the reset."
    )]
    QuotaExceeded {
        used: u64,
        limit: u64,
        window: &'static str,
        usage: crate::usage::UsageNumbers,
        retry_after_secs: u64,
    },
    #[error("{message}")]
    ServiceUnavailable {
        message: String,
        retry_after_secs: u64,
    },
    /// The cause is logged, never sent: a 5xx must not leak internals.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound(what.into())
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidJson(_) | Self::Validation { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) | Self::InvalidSignature(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::IdempotencyMismatch => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited { .. } | Self::QuotaExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::ServiceUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidJson(_) => "invalid_json",
            Self::Validation { .. } => "validation_failed",
            Self::Unauthorized(_) => "unauthorized",
            Self::InvalidSignature(_) => "invalid_signature",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::HeadersTooLarge(_) => "headers_too_large",
            Self::Conflict(_) => "conflict",
            Self::IdempotencyMismatch => "idempotency_mismatch",
            Self::RateLimited { .. } => "rate_limited",
            Self::QuotaExceeded { .. } => "quota_exceeded",
            Self::ServiceUnavailable { .. } => "service_unavailable",
            Self::Internal(_) => "internal",
        }
    }

    fn public_message(&self) -> String {
        match self {
            Self::Internal(_) => "Something went wrong on our side. Please try again.".to_owned(),
            other => other.to_string(),
        }
    }

    fn details(&self) -> Option<Value> {
        match self {
            Self::Validation { field, .. } => Some(json!({ "field": field })),
            Self::QuotaExceeded {
                usage,
                retry_after_secs,
                ..
            } => Some(json!({
                "usage": usage,
                "retry_after_seconds": retry_after_secs,
            })),
            _ => None,
        }
    }
}

/// Builds the JSON error body: `{"error", "code", "request_id", "timestamp", "details"?}`.
/// `timestamp` (unix seconds) is the predecessor's field, which its integration tests expect.
pub fn error_body(message: &str, code: &str, details: Option<Value>) -> Value {
    let mut body = json!({
        "error": message,
        "code": code,
        "request_id": current_request_id().unwrap_or_default(),
        "timestamp": chrono::Utc::now().timestamp(),
    });
    if let (Some(details), Some(map)) = (details, body.as_object_mut()) {
        map.insert("details".to_owned(), details);
    }
    body
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(code = self.code(), error = %self, "request failed");
        } else {
            tracing::info!(code = self.code(), error = %self, "request refused");
        }
        let mut response = (status, axum::Json(self.body())).into_response();
        response
            .extensions_mut()
            .insert(crate::telemetry::ErrorCode(self.code()));
        if let Some(retry_after_secs) = self.retry_after_secs() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response
    }
}

impl ApiError {
    /// The JSON error body clients read: in an error response, and in a stream's `error` event.
    pub fn body(&self) -> Value {
        let mut body = error_body(&self.public_message(), self.code(), self.details());
        if let (Some(retry_after), Some(map)) = (self.retry_after_secs(), body.as_object_mut()) {
            // The predecessor's CLI reads the wait from the body, next to the header.
            map.insert("retry_after".to_owned(), json!(retry_after));
        }
        body
    }

    /// Seconds until a retry may succeed: the `Retry-After` header and the body's `retry_after`.
    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::ServiceUnavailable {
                retry_after_secs, ..
            }
            | Self::RateLimited { retry_after_secs }
            | Self::QuotaExceeded {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        }
    }
}

/// What adapters report. Handlers turn it into an [`ApiError`] with `?`.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The dependency refused or failed in a way retrying will not fix soon (access denied,
    /// a missing resource, a validation error on its side).
    #[error("{service} is unavailable: {message}")]
    Unavailable {
        service: &'static str,
        message: String,
    },
    /// Throttling, a 5xx or a timeout: worth retrying after a pause.
    #[error("{service} failed transiently: {message}")]
    Transient {
        service: &'static str,
        message: String,
    },
    /// The dependency's circuit breaker is open: it was not called.
    #[error("{service} is failing; its circuit is open for {retry_after_secs} s")]
    CircuitOpen {
        service: &'static str,
        retry_after_secs: u64,
    },
    /// The dependency cannot use what the client sent (audio it cannot decode): retrying the
    /// same input will not help, and the dependency itself is healthy.
    #[error("{service} cannot use the input: {message}")]
    Rejected {
        service: &'static str,
        message: String,
    },
    #[error("{0}")]
    Failed(String),
}

impl PortError {
    pub fn failed(cause: impl std::fmt::Display) -> Self {
        Self::Failed(cause.to_string())
    }
}

impl From<PortError> for ApiError {
    fn from(error: PortError) -> Self {
        match error {
            PortError::Unavailable { service, message }
            | PortError::Transient { service, message } => {
                tracing::warn!(service, %message, "dependency unavailable");
                ApiError::ServiceUnavailable {
                    message: "A service this request needs is temporarily unavailable. Please retry shortly.".to_owned(),
                    retry_after_secs: 5,
                }
            }
            PortError::CircuitOpen {
                service,
                retry_after_secs,
            } => {
                tracing::warn!(service, retry_after_secs, "dependency circuit open");
                ApiError::ServiceUnavailable {
                    message: format!(
                        "A service this request needs is failing; please retry in {retry_after_secs} seconds."
                    ),
                    retry_after_secs,
                }
            }
            PortError::Rejected { message, .. } => ApiError::UnsupportedMediaType(message),
            PortError::Failed(message) => ApiError::Internal(message),
        }
    }
}
