//! HMAC request signatures on sensitive routes (every DELETE), when `HMAC_SIGNING_KEY` is set:
//! `X-Manuel-Timestamp: <unix seconds>` and `X-Manuel-Signature: v1=<hex HMAC-SHA256>` over
//! `"<timestamp>\n<METHOD>\n<path>\n<hex SHA-256 of the body>"`, within 300 s, used once.
//!
//! `<path>` is the path the client requested. Behind API Gateway that is not the path routed
//! here: a client of `https://{api}.execute-api.{region}.amazonaws.com/v1` requests (and
//! signs) `/v1/api/manuals/{id}`, and the stage is taken off before routing. A gateway adapter
//! hands the requested path on as [`RequestedPath`]; a signature over either path is accepted
//! (both name the same resource, and the signature still binds method, body and time).

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::Security;
use crate::error::ApiError;

pub const TIMESTAMP_HEADER: &str = "x-manuel-timestamp";
pub const SIGNATURE_HEADER: &str = "x-manuel-signature";
const TOLERANCE_SECONDS: i64 = 300;

/// The path as the client requested it, when a gateway in front rewrote it before routing
/// (API Gateway's stage prefix, a custom domain's base path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestedPath(pub String);

fn is_sensitive(method: &Method) -> bool {
    method == Method::DELETE
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length.
    <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

fn message(timestamp: &str, method: &Method, path: &str, body: &[u8]) -> Vec<u8> {
    format!(
        "{timestamp}\n{method}\n{path}\n{}",
        hex::encode(Sha256::digest(body))
    )
    .into_bytes()
}

/// The `X-Manuel-Signature` value for a request, as a client computes it.
pub fn sign_request(
    key: &[u8],
    timestamp: &str,
    method: &Method,
    path: &str,
    body: &[u8],
) -> String {
    let mut mac = mac(key);
    mac.update(&message(timestamp, method, path, body));
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn refuse(reason: &str) -> Response {
    ApiError::InvalidSignature(format!("The request signature is not valid: {reason}."))
        .into_response()
}

pub(crate) async fn require_signature(
    State(security): State<Security>,
    request: Request,
    next: Next,
) -> Response {
    let Some(key) = security.config.hmac_signing_key.as_deref() else {
        return next.run(request).await;
    };
    if !is_sensitive(request.method()) {
        return next.run(request).await;
    }
    // Read before any await: a borrowed request is not `Send`.
    let (timestamp, signature) = {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        (header(TIMESTAMP_HEADER), header(SIGNATURE_HEADER))
    };
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return refuse("X-Manuel-Timestamp and X-Manuel-Signature are required");
    };
    let Ok(signed_at) = timestamp.parse::<i64>() else {
        return refuse("the timestamp is not a number of seconds");
    };
    if (chrono::Utc::now().timestamp() - signed_at).abs() > TOLERANCE_SECONDS {
        return refuse("the timestamp is too old or in the future");
    }
    let Some(expected) = signature
        .strip_prefix("v1=")
        .and_then(|hex_mac| hex::decode(hex_mac).ok())
    else {
        return refuse("expected v1=<hex>");
    };
    let (parts, body) = request.into_parts();
    let Ok(body) = to_bytes(body, security.config.max_body_bytes).await else {
        return ApiError::PayloadTooLarge(
            "The request body is larger than this endpoint accepts.".to_owned(),
        )
        .into_response();
    };
    let requested = parts.extensions.get::<RequestedPath>();
    let mut signed_paths =
        std::iter::once(parts.uri.path()).chain(requested.map(|requested| requested.0.as_str()));
    let matches = signed_paths.any(|path| {
        let mut verifier = mac(key);
        verifier.update(&message(&timestamp, &parts.method, path, &body));
        verifier.verify_slice(&expected).is_ok()
    });
    if !matches {
        return refuse("it does not match the request");
    }
    match security
        .replay_guard
        .first_use(&signature, signed_at + TOLERANCE_SECONDS + 1)
        .await
    {
        Ok(true) => {}
        Ok(false) => return refuse("it was already used"),
        Err(error) => return ApiError::from(error).into_response(),
    }
    next.run(Request::from_parts(parts, Body::from(body))).await
}
