//! The security middleware, as tower layers configured from [`SecurityConfig`].

mod client_ip;
mod config;
mod cors;
mod headers;
mod rate_limit;
mod signature;

use std::sync::Arc;

use axum::Router;
use axum::middleware::{from_fn, from_fn_with_state};

use crate::auth::{JwtVerifier, require_user};
use crate::idempotency::IdempotencyConfig;
use crate::ports::{IdempotencyStore, RateLimitStore, ReplayGuard};

pub use client_ip::{ClientIp, SourceIp};
pub use config::{SecurityConfig, Stage};
pub use headers::security_headers;
pub use signature::{RequestedPath, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_request};

/// Everything the middleware needs, built once at init and shared by every router.
#[derive(Clone)]
pub struct Security {
    pub config: Arc<SecurityConfig>,
    pub verifier: Arc<JwtVerifier>,
    pub rate_limits: Arc<dyn RateLimitStore>,
    pub replay_guard: Arc<dyn ReplayGuard>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub idempotency_config: IdempotencyConfig,
}

impl Security {
    /// Layers for a function's `/api/*` routes, in request order: authentication (401),
    /// per-user rate limit (429), HMAC signature on sensitive routes (401), idempotent retries
    /// of POST and DELETE requests that carry an `Idempotency-Key`.
    pub fn protect<S: Clone + Send + Sync + 'static>(&self, router: Router<S>) -> Router<S> {
        router
            .route_layer(from_fn_with_state(
                crate::idempotency::IdempotencyLayer {
                    store: Arc::clone(&self.idempotency),
                    config: self.idempotency_config,
                    max_body_bytes: self.config.max_body_bytes,
                },
                crate::idempotency::idempotent,
            ))
            .route_layer(from_fn_with_state(
                self.clone(),
                signature::require_signature,
            ))
            .route_layer(from_fn_with_state(self.clone(), rate_limit::limit_per_user))
            .route_layer(from_fn_with_state(Arc::clone(&self.verifier), require_user))
    }

    /// [`Security::protect`] with the routes' own body limit held by everything that reads a
    /// body: extractors, and the idempotency and signature layers, which buffer it before the
    /// handler. A body over `limit` gets 413 whatever headers come with it (an
    /// `Idempotency-Key` does not lift it), and a declared `Content-Length` over it is refused
    /// before the body is read.
    pub fn protect_with_body_limit<S: Clone + Send + Sync + 'static>(
        &self,
        router: Router<S>,
        limit: usize,
    ) -> Router<S> {
        self.protect(router)
            .layer(axum::extract::DefaultBodyLimit::max(limit))
            .layer(tower_http::limit::RequestBodyLimitLayer::new(limit))
    }

    /// Layers for the whole app, outermost first: security headers and CORS (every response),
    /// JSON bodies for errors raised by layers, body size limit (413), IP allowlist (403),
    /// per-IP rate limit (429).
    pub fn outer_layers(&self, router: Router) -> Router {
        router
            .layer(from_fn_with_state(self.clone(), rate_limit::limit_per_ip))
            .layer(from_fn_with_state(self.clone(), client_ip::allowlist))
            .layer(tower_http::limit::RequestBodyLimitLayer::new(
                self.config.max_body_bytes,
            ))
            .layer(cors::layer(&self.config))
            .layer(from_fn(crate::http::json_errors))
            .layer(from_fn(security_headers))
    }
}
