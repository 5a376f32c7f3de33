//! API Gateway REST proxy events through the core middleware: API Gateway's request id becomes
//! ours, `sourceIp` feeds the allowlist, and the Cognito authorizer's claims are used unless
//! `VERIFY_JWT` asks for the token to be verified again.

use std::sync::Arc;

use axum::body::Body;
use axum::routing::get;
use axum::{Extension, Json, Router};
use jsonwebtoken::jwk::JwkSet;
use manuel_core::auth::{AuthenticatedUser, JwtVerifier};
use manuel_core::request_id::RequestId;
use manuel_core::security::{Security, SecurityConfig, Stage};
use serde_json::{Value, json};
use tower::ServiceExt;

type TestResult = Result<(), Box<dyn std::error::Error>>;

struct NoLimits;

#[async_trait::async_trait]
impl manuel_core::ports::RateLimitStore for NoLimits {
    async fn hit(&self, _: &str, _: i64) -> Result<u64, manuel_core::PortError> {
        Ok(1)
    }
}

#[async_trait::async_trait]
impl manuel_core::ports::ReplayGuard for NoLimits {
    async fn first_use(&self, _: &str, _: i64) -> Result<bool, manuel_core::PortError> {
        Ok(true)
    }
}

/// Only GET requests here: idempotency never applies.
#[async_trait::async_trait]
impl manuel_core::ports::IdempotencyStore for NoLimits {
    async fn claim(
        &self,
        _: &str,
        _: &str,
        _: i64,
        _: i64,
    ) -> Result<manuel_core::idempotency::Claim, manuel_core::PortError> {
        Ok(manuel_core::idempotency::Claim::Claimed)
    }
    async fn complete(
        &self,
        _: &str,
        _: &str,
        _: &manuel_core::idempotency::StoredResponse,
        _: i64,
    ) -> Result<(), manuel_core::PortError> {
        Ok(())
    }
    async fn release(&self, _: &str) -> Result<(), manuel_core::PortError> {
        Ok(())
    }
    async fn erase_prefix(&self, _: &str) -> Result<u64, manuel_core::PortError> {
        Ok(0)
    }
}

fn app(trust_claims: bool, allowlist: &[&str]) -> manuel_aws::gateway::BehindApiGateway<Body> {
    let mut config = SecurityConfig::defaults(Stage::Production);
    config.ip_allowlist = allowlist
        .iter()
        .filter_map(|net| net.parse().ok())
        .collect();
    let security = Security {
        config: Arc::new(config),
        verifier: Arc::new(
            JwtVerifier::new(
                &JwkSet { keys: Vec::new() },
                "https://issuer",
                "app-client-id",
            )
            .trusting_gateway_claims(trust_claims),
        ),
        rate_limits: Arc::new(NoLimits),
        replay_guard: Arc::new(NoLimits),
        idempotency: Arc::new(NoLimits),
        idempotency_config: Default::default(),
    };
    let routes =
        Router::new().route(
            "/api/manuals",
            get(
                |AuthenticatedUser(user): AuthenticatedUser,
                 Extension(id): Extension<RequestId>| async move {
                    Json(json!({ "user": user.as_str(), "request_id": id.0 }))
                },
            ),
        );
    manuel_aws::gateway::behind_api_gateway(manuel_core::http::serve_app(
        security.protect(routes),
        &security,
    ))
}

async fn send(
    app: manuel_aws::gateway::BehindApiGateway<Body>,
) -> Result<(u16, Option<String>, Value), Box<dyn std::error::Error>> {
    let event = include_str!("fixtures/apigw-rest-get-manuals.json");
    let request = lambda_http::request::from_str(event)?;
    let (parts, body) = request.into_parts();
    let request = axum::http::Request::from_parts(parts, Body::from(body.to_vec()));
    let response = app.oneshot(request).await?;
    let status = response.status().as_u16();
    let header = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
    Ok((status, header, serde_json::from_slice(&bytes)?))
}

#[tokio::test]
async fn the_authorizers_claims_and_request_id_are_used_when_trusted() -> TestResult {
    let (status, header, body) = send(app(true, &[])).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"], "7d8f2a10-1c2b-4e5f-9a8b-0c1d2e3f4a5b");
    assert_eq!(body["request_id"], "c6af9ac6-7b61-11e6-9a41-93e8deadbeef");
    assert_eq!(
        header.as_deref(),
        Some("c6af9ac6-7b61-11e6-9a41-93e8deadbeef")
    );
    Ok(())
}

#[tokio::test]
async fn with_verify_jwt_the_bearer_token_is_required_again() -> TestResult {
    let (status, header, body) = send(app(false, &[])).await?;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "unauthorized");
    assert_eq!(body["request_id"], "c6af9ac6-7b61-11e6-9a41-93e8deadbeef");
    assert_eq!(
        header.as_deref(),
        Some("c6af9ac6-7b61-11e6-9a41-93e8deadbeef")
    );
    Ok(())
}

#[tokio::test]
async fn the_allowlist_checks_api_gateways_source_ip_not_forwarded_headers() -> TestResult {
    let (status, _, body) = send(app(true, &["198.51.100.0/24"])).await?;
    assert_eq!(status, 200, "{body}");
    // X-Forwarded-For says 10.9.9.9, but only sourceIp counts.
    let (status, _, body) = send(app(true, &["10.0.0.0/8"])).await?;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "forbidden");
    Ok(())
}

/// A DELETE of `/api/manuals/m1` through API Gateway's `v1` stage, signed over `signed_path`.
async fn signed_delete(signed_path: &str) -> Result<(u16, Value), Box<dyn std::error::Error>> {
    const KEY: &[u8] = b"a-signing-key-of-at-least-32-characters";
    let mut config = SecurityConfig::defaults(Stage::Production);
    config.hmac_signing_key = Some(KEY.to_vec());
    let security = Security {
        config: Arc::new(config),
        verifier: Arc::new(
            JwtVerifier::new(
                &JwkSet { keys: Vec::new() },
                "https://issuer",
                "app-client-id",
            )
            .trusting_gateway_claims(true),
        ),
        rate_limits: Arc::new(NoLimits),
        replay_guard: Arc::new(NoLimits),
        idempotency: Arc::new(NoLimits),
        idempotency_config: Default::default(),
    };
    let routes = Router::new().route(
        "/api/manuals/{id}",
        axum::routing::delete(|| async { Json(json!({"deleted": true})) }),
    );
    let app = manuel_aws::gateway::behind_api_gateway(manuel_core::http::serve_app(
        security.protect(routes),
        &security,
    ));
    let timestamp = chrono::Utc::now().timestamp().to_string();
    let signature = manuel_core::security::sign_request(
        KEY,
        &timestamp,
        &axum::http::Method::DELETE,
        signed_path,
        b"",
    );
    let mut event: Value =
        serde_json::from_str(include_str!("fixtures/apigw-rest-get-manuals.json"))?;
    event["httpMethod"] = json!("DELETE");
    event["path"] = json!("/api/manuals/m1");
    event["resource"] = json!("/api/manuals/{id}");
    event["requestContext"]["httpMethod"] = json!("DELETE");
    event["requestContext"]["stage"] = json!("v1");
    event["requestContext"]["path"] = json!("/v1/api/manuals/m1");
    for (name, value) in [
        ("X-Manuel-Timestamp", timestamp.as_str()),
        ("X-Manuel-Signature", signature.as_str()),
    ] {
        event["headers"][name] = json!(value);
        event["multiValueHeaders"][name] = json!([value]);
    }
    let request = lambda_http::request::from_str(&event.to_string())?;
    let (parts, body) = request.into_parts();
    let request = axum::http::Request::from_parts(parts, Body::from(body.to_vec()));
    let response = app.oneshot(request).await?;
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
    Ok((status, serde_json::from_slice(&bytes)?))
}

#[tokio::test]
async fn a_delete_signed_over_the_path_the_client_requested_with_its_stage_is_accepted()
-> TestResult {
    // The client called https://{api}.execute-api.../v1/api/manuals/m1 and signed that path.
    let (status, body) = signed_delete("/v1/api/manuals/m1").await?;
    assert_eq!((status, &body["deleted"]), (200, &json!(true)), "{body}");
    // A client behind a custom domain without the stage signs the routed path.
    let (status, body) = signed_delete("/api/manuals/m1").await?;
    assert_eq!(status, 200, "{body}");
    // Another resource's signature does not carry over.
    let (status, body) = signed_delete("/v1/api/manuals/m2").await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_signature")),
        "{body}"
    );
    Ok(())
}
