//! Request ids: one per request, in the `X-Request-Id` header and in every error body.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

pub static REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being served, when called inside [`request_id_layer`].
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// The request's id, as an extension handlers can read.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Where a request id comes from: API Gateway's own id when the Lambda adapter put one in the
/// request extensions, otherwise a fresh UUID.
#[derive(Clone, Debug)]
pub struct UpstreamRequestId(pub String);

pub async fn request_id_layer(mut request: Request, next: Next) -> Response {
    let id = request
        .extensions()
        .get::<UpstreamRequestId>()
        .map(|upstream| upstream.0.clone())
        .filter(|id| is_printable_id(id))
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = REQUEST_ID.scope(id.clone(), next.run(request)).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(REQUEST_ID_HEADER.clone(), value);
    }
    response
}

fn is_printable_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Runs `future` with `id` as the current request id, for work that outlives the request
/// handler (background tasks) or for tests.
pub async fn with_request_id<F: std::future::Future>(id: String, future: F) -> F::Output {
    REQUEST_ID.scope(id, future).await
}
