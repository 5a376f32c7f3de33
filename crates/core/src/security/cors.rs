//! CORS from `CORS_ALLOWED_ORIGINS`: exact origin match, never a wildcard with credentials.

use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::config::SecurityConfig;

pub fn layer(config: &SecurityConfig) -> CorsLayer {
    let methods = [Method::GET, Method::POST, Method::DELETE, Method::OPTIONS];
    let headers = [
        header::AUTHORIZATION,
        header::CONTENT_TYPE,
        HeaderName::from_static("idempotency-key"),
        HeaderName::from_static("x-manuel-timestamp"),
        HeaderName::from_static("x-manuel-signature"),
        HeaderName::from_static("x-request-id"),
    ];
    let exposed = [
        HeaderName::from_static("x-request-id"),
        header::RETRY_AFTER,
        HeaderName::from_static("ratelimit-limit"),
        HeaderName::from_static("ratelimit-remaining"),
        HeaderName::from_static("ratelimit-reset"),
    ];
    let base = CorsLayer::new()
        .allow_methods(methods)
        .allow_headers(headers)
        .expose_headers(exposed)
        .max_age(std::time::Duration::from_secs(600));
    // A wildcard is only accepted by the config without credentials, outside production.
    if config
        .cors_allowed_origins
        .iter()
        .any(|origin| origin == "*")
    {
        return base.allow_origin(AllowOrigin::any());
    }
    let origins: Vec<HeaderValue> = config
        .cors_allowed_origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect();
    base.allow_origin(AllowOrigin::list(origins))
        .allow_credentials(config.cors_allow_credentials)
}
