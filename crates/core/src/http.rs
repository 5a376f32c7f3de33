//! Serving a (merged) router: the JSON 404/405 fallbacks, the security layers and request ids,
//! request telemetry, and JSON bodies for errors that layers produce.

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, error_body};
use crate::request_id::request_id_layer;
use crate::security::Security;

/// Wraps a (merged) router with the JSON fallbacks, the security layers and request ids.
pub fn serve_app(router: Router, security: &Security) -> Router {
    let router = router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    security
        .outer_layers(router)
        .layer(middleware::from_fn(crate::deadline::scope))
        .layer(middleware::from_fn(crate::telemetry::request_telemetry))
        .layer(middleware::from_fn(header_limits))
        .layer(middleware::from_fn(request_id_layer))
}

/// Request headers a request may carry, in number and in bytes (names and values). Browsers
/// and the real clients send a few dozen lines and well under 8 KiB.
pub const MAX_HEADERS: usize = 100;
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// 431 with the JSON error body, logged, for a request whose headers are over
/// [`MAX_HEADERS`] or [`MAX_HEADER_BYTES`] (the HTTP server's own, larger bounds answer a bare
/// 431 and log it).
async fn header_limits(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        tracing::warn!(
            headers = headers.len(),
            bytes,
            path = request.uri().path(),
            "request headers too large; refused with 431"
        );
        return ApiError::HeadersTooLarge(format!(
            "The request headers are too large (at most {MAX_HEADERS} headers and {} KiB).",
            MAX_HEADER_BYTES / 1024
        ))
        .into_response();
    }
    next.run(request).await
}

async fn not_found() -> ApiError {
    ApiError::not_found("No such route.")
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Errors produced by axum or tower layers (not by our handlers) arrive without a JSON body;
/// they get the same body as every other error.
pub(crate) async fn json_errors(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let status = response.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        // The rest of the body was never read, so this connection cannot carry another request;
        // saying so keeps clients from reusing it.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return response;
    }
    let (code, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            "The request body is larger than this endpoint accepts.",
        ),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "This method is not allowed on this path.",
        ),
        StatusCode::NOT_FOUND => ("not_found", "No such route."),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "This content type is not supported.",
        ),
        status if status.is_server_error() => (
            "internal",
            "Something went wrong on our side. Please try again.",
        ),
        _ => ("validation_failed", "The request could not be understood."),
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = axum::Json(error_body(message, code, None)).into_response();
    let (body_parts, body) = body.into_parts();
    parts.headers.extend(body_parts.headers);
    Response::from_parts(parts, Body::new(body))
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"))
}

/// A `Content-Disposition` that opens a file inline under its name, for S3 pre-signed links and
/// the local file route alike: `inline; filename="<ascii-safe name>"; filename*=UTF-8''<RFC 5987 encoding>`.
pub fn content_disposition(file_name: &str) -> String {
    let ascii: String = file_name
        .chars()
        .map(|c| {
            if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let ascii = if ascii.trim().is_empty() {
        "download".to_owned()
    } else {
        ascii
    };
    let mut encoded = String::with_capacity(file_name.len() * 3);
    let name = if file_name.trim().is_empty() {
        "download"
    } else {
        file_name
    };
    for byte in name.bytes() {
        // RFC 5987 attr-char.
        if byte.is_ascii_alphanumeric()
            || matches!(
                byte,
                b'!' | b'#' | b'$' | b'&' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            )
        {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("inline; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}
