//! Fixed-window rate limits per IP (before authentication) and per user (after it), counted
//! atomically in the store. A store failure lets the request through and is logged: losing the
//! limiter must not take the API down.

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Security;
use super::client_ip::ClientIp;
use crate::auth::AuthenticatedUser;
use crate::error::ApiError;

const WINDOW_SECONDS: i64 = 60;

struct Window {
    limit: u32,
    count: u64,
    reset_in: u64,
}

async fn count(security: &Security, scope: &str, subject: &str, limit: u32) -> Option<Window> {
    if limit == 0 {
        return None;
    }
    let now = chrono::Utc::now().timestamp();
    let start = now - now.rem_euclid(WINDOW_SECONDS);
    let end = start + WINDOW_SECONDS;
    let key = format!("{scope}#{subject}#{start}");
    match security.rate_limits.hit(&key, end).await {
        Ok(count) => Some(Window {
            limit,
            count,
            reset_in: u64::try_from(end - now).unwrap_or(1),
        }),
        Err(error) => {
            tracing::warn!(%error, scope, "rate limit store failed; request allowed");
            None
        }
    }
}

async fn apply(window: Option<Window>, request: Request, next: Next) -> Response {
    let Some(window) = window else {
        return next.run(request).await;
    };
    let mut response = if window.count > u64::from(window.limit) {
        ApiError::RateLimited {
            retry_after_secs: window.reset_in.max(1),
        }
        .into_response()
    } else {
        next.run(request).await
    };
    let remaining = u64::from(window.limit).saturating_sub(window.count);
    let headers = response.headers_mut();
    // The tightest limit wins when both scopes set the headers.
    let tighter = headers
        .get("ratelimit-remaining")
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok())
        .is_none_or(|existing| remaining <= existing);
    if tighter {
        headers.insert("ratelimit-limit", HeaderValue::from(window.limit));
        headers.insert("ratelimit-remaining", HeaderValue::from(remaining));
        headers.insert("ratelimit-reset", HeaderValue::from(window.reset_in));
    }
    response
}

pub(crate) async fn limit_per_ip(
    State(security): State<Security>,
    request: Request,
    next: Next,
) -> Response {
    let subject = request
        .extensions()
        .get::<ClientIp>()
        .and_then(|ClientIp(address)| *address)
        .map_or_else(|| "unknown".to_owned(), |address| address.to_string());
    let window = count(&security, "ip", &subject, security.config.rate_limit_per_ip).await;
    apply(window, request, next).await
}

pub(crate) async fn limit_per_user(
    State(security): State<Security>,
    request: Request,
    next: Next,
) -> Response {
    let Some(AuthenticatedUser(user)) = request.extensions().get::<AuthenticatedUser>().cloned()
    else {
        return next.run(request).await;
    };
    let window = count(
        &security,
        "user",
        user.as_str(),
        security.config.rate_limit_per_user,
    )
    .await;
    apply(window, request, next).await
}
